"""``ActuatorInfo`` (describe_actuators' knob) is derived from ``hotcb.records.KnobSpec``, the
one definition of a knob, and its JSON schema (what MCP clients and the LLM read) is unchanged."""

from __future__ import annotations

import dataclasses
import json
import typing

from hotcb.mcp_server.schemas import ActuatorInfo

from hotcb.records import KnobSpec

TOOL_ONLY = {"locked_by", "cooldown_until_step"}  # what the guard and the locks make of a knob

SCHEMA = json.loads("""
{
 "properties": {
  "key": {
   "title": "Key",
   "type": "string"
  },
  "module": {
   "title": "Module",
   "type": "string"
  },
  "type": {
   "title": "Type",
   "type": "string"
  },
  "min": {
   "anyOf": [
    {
     "type": "number"
    },
    {
     "type": "null"
    }
   ],
   "default": null,
   "title": "Min"
  },
  "max": {
   "anyOf": [
    {
     "type": "number"
    },
    {
     "type": "null"
    }
   ],
   "default": null,
   "title": "Max"
  },
  "choices": {
   "anyOf": [
    {
     "items": {},
     "type": "array"
    },
    {
     "type": "null"
    }
   ],
   "default": null,
   "title": "Choices"
  },
  "value": {
   "default": null,
   "title": "Value"
  },
  "state": {
   "title": "State",
   "type": "string"
  },
  "label": {
   "anyOf": [
    {
     "type": "string"
    },
    {
     "type": "null"
    }
   ],
   "default": null,
   "title": "Label"
  },
  "description": {
   "default": "",
   "title": "Description",
   "type": "string"
  },
  "last_change_step": {
   "anyOf": [
    {
     "type": "integer"
    },
    {
     "type": "null"
    }
   ],
   "default": null,
   "title": "Last Change Step"
  },
  "locked_by": {
   "anyOf": [
    {
     "type": "string"
    },
    {
     "type": "null"
    }
   ],
   "default": null,
   "title": "Locked By"
  },
  "cooldown_until_step": {
   "anyOf": [
    {
     "type": "integer"
    },
    {
     "type": "null"
    }
   ],
   "default": null,
   "title": "Cooldown Until Step"
  },
  "max_rel_change": {
   "anyOf": [
    {
     "type": "number"
    },
    {
     "type": "null"
    }
   ],
   "default": null,
   "description": "per-op limit for non-human sources (x1/f..xf)",
   "title": "Max Rel Change"
  }
 },
 "required": [
  "key",
  "module",
  "type",
  "state"
 ],
 "title": "ActuatorInfo",
 "type": "object"
}
""")


def test_the_schema_is_the_one_clients_have_always_read() -> None:
    assert json.dumps(ActuatorInfo.model_json_schema()) == json.dumps(SCHEMA)


def test_every_field_but_the_tools_own_is_a_knob_spec_field_of_the_same_type() -> None:
    spec = {f.name for f in dataclasses.fields(KnobSpec)}
    hints = typing.get_type_hints(KnobSpec)
    for name, field in ActuatorInfo.model_fields.items():
        if name in TOOL_ONLY:
            continue
        assert name in spec, name
        if name not in ("state", "description"):  # the tool always has a state; "" for no description
            assert field.annotation == hints[name], name
