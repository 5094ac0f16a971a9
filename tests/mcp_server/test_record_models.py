"""The tool surface's ledger entry and knob models are core's records as the tools return them:
written out as classes (so type checkers see their fields), held here to ``LedgerRecord`` and
``KnobSpec``, the one definition of each."""

from __future__ import annotations

import dataclasses
import typing

from hotcb.mcp_server.schemas import ActuatorInfo, LedgerEntry

from hotcb.records import KnobSpec, LedgerRecord

# ActuatorInfo's fields that are KnobSpec's own (the rest is what the guard and locks add).
KNOB_FIELDS = ("key", "module", "type", "min", "max", "choices", "value", "label", "last_change_step",
               "max_rel_change")


def test_ledger_entry_is_the_ledger_record_every_field_optional_in_order() -> None:
    hints = typing.get_type_hints(LedgerRecord)
    record = [f.name for f in dataclasses.fields(LedgerRecord) if f.name != "extra"]
    assert list(LedgerEntry.model_fields) == record
    for name in record:
        field = LedgerEntry.model_fields[name]
        assert field.annotation == (hints[name] | None), name
        assert field.default is None, name


def test_actuator_info_takes_each_knob_field_from_knob_spec() -> None:
    hints = typing.get_type_hints(KnobSpec)
    spec = {f.name: f for f in dataclasses.fields(KnobSpec)}
    for name in KNOB_FIELDS:
        field = ActuatorInfo.model_fields[name]
        assert field.annotation == hints[name], name
        if spec[name].default is dataclasses.MISSING:
            assert field.is_required(), name
        else:
            assert field.default == spec[name].default, name


def test_a_knob_spec_round_trips_through_actuator_info() -> None:
    knob = KnobSpec(key="lr", module="opt", type="float", min=1e-6, max=1.0, value=0.1)
    info = ActuatorInfo(state="live", **{k: getattr(knob, k) for k in KNOB_FIELDS})
    assert info.key == "lr" and info.value == 0.1 and info.locked_by is None and info.description == ""
