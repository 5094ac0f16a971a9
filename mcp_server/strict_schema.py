"""Input schemas that strict-mode clients accept (OpenAI's structured tool calls, the OpenAI
Agents SDK), and the arguments they send mapped back to what the tools take.

Strict mode allows only closed objects (``additionalProperties: false``, every key declared) and
``$ref`` targets it has validated. Two things in hotcb's inputs are neither:

- free-form maps (``params: {"lr": 5e-4}``, a callback ``target``): their keys are the run's
  knobs, known only at run time. They are advertised as a list of ``{"key", "value"}`` pairs;
  ``from_pairs`` turns such a list back into the map before the tool sees it. A client that
  sends the map itself (as every hotcb doc shows) is still understood: the pairs are the
  advertised form, not the only one.
- references into ``$defs``: inlined (the schemas are small and not recursive).

The registry's pydantic models stay the one truth; this is a view of them for the wire.
"""

from __future__ import annotations

import copy
from typing import Any

SCALAR = [{"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}]
_LIST = {"type": "array", "items": {"anyOf": SCALAR[:3]}}
_INNER_PAIRS = {"type": "array", "items": {
    "type": "object", "additionalProperties": False, "required": ["key", "value"],
    "properties": {"key": {"type": "string"}, "value": {"anyOf": [*SCALAR, _LIST]}}}}
# A map's value: a scalar, a list of scalars, or one nested map as pairs (a recipe entry's params).
ANY_VALUE: dict[str, Any] = {"anyOf": [*SCALAR, _LIST, _INNER_PAIRS]}
PAIRS_NOTE = "As a list of {key, value} pairs, e.g. [{\"key\": \"lr\", \"value\": 0.0005}]."


def is_open_map(node: Any) -> bool:
    """An object schema whose keys are not declared (a free-form map)."""
    return (isinstance(node, dict) and node.get("type") == "object" and not node.get("properties")
            and node.get("additionalProperties", True) is not False)


def _pairs(node: dict[str, Any]) -> dict[str, Any]:
    extra = node.get("additionalProperties")
    value = copy.deepcopy(extra) if isinstance(extra, dict) and extra else ANY_VALUE
    desc = " ".join(x for x in (node.get("description"), PAIRS_NOTE) if x)
    out: dict[str, Any] = {
        "type": "array", "description": desc,
        "items": {"type": "object", "additionalProperties": False, "required": ["key", "value"],
                  "properties": {"key": {"type": "string"}, "value": value}},
    }
    if "title" in node:
        out["title"] = node["title"]
    return out


def _resolve(node: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    if depth > 50:
        raise ValueError("schema nesting too deep (a recursive $ref?)")
    if isinstance(node, list):
        return [_resolve(x, defs, depth + 1) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = str(node["$ref"]).rsplit("/", 1)[-1]
        target = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(target, defs, depth + 1)
    if is_open_map(node):
        return _pairs(node)
    return {k: _resolve(v, defs, depth + 1) for k, v in node.items() if k != "$defs"}


def strict_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with ``$ref``s inlined and free-form maps advertised as key/value pairs."""
    return _resolve(schema, schema.get("$defs") or {})


def from_pairs(schema: dict[str, Any], args: Any) -> Any:
    """``args`` with every key/value-pair list that stands for a free-form map of ``schema``
    turned back into the map; anything else is left as sent (the tool's own model judges it)."""
    return _back(schema, args, schema.get("$defs") or {}, 0)


def _is_pairs(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(p, dict) and set(p) == {"key", "value"} for p in value)


def _map(value: Any, nested: bool) -> Any:
    if _is_pairs(value):
        value = {str(p["key"]): p["value"] for p in value}
    if nested and isinstance(value, dict):
        return {k: _map(v, False) if _is_pairs(v) else v for k, v in value.items()}
    return value


def _back(node: Any, value: Any, defs: dict[str, Any], depth: int) -> Any:
    if not isinstance(node, dict) or depth > 50:
        return value
    if "$ref" in node:
        return _back(defs.get(str(node["$ref"]).rsplit("/", 1)[-1]), value, defs, depth + 1)
    for alt in node.get("anyOf") or []:
        if value is not None:
            value = _back(alt, value, defs, depth + 1)
    if is_open_map(node):
        nested = not isinstance(node.get("additionalProperties"), dict)  # values may be maps as pairs
        return _map(value, nested)
    if isinstance(value, dict) and isinstance(node.get("properties"), dict):
        props = node["properties"]
        return {k: _back(props.get(k), v, defs, depth + 1) for k, v in value.items()}
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_back(node["items"], v, defs, depth + 1) for v in value]
    return value
