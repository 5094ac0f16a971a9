"""The kernel is a coordinator over objects: core ops one module among the others,
the command path and the watched files objects of their own; ``Source`` the one set of sources."""

from __future__ import annotations

import json
from pathlib import Path

import hotcb
from hotcb import HotKernel, loss_actuators, mutable_state
from hotcb.command_path import CommandPath
from hotcb.core_ops import CoreOps
from hotcb.jsonl import read_all
from hotcb.ledger import Decision
from hotcb.ops import SOURCES, HotOp, Source
from hotcb.watched import WatchedFiles


def test_kernel_composes_its_parts_and_routes_core_like_any_module(run_dir: Path) -> None:
    k = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators({"aux_w": 1.0})))
    try:
        assert HotKernel.__mro__ == (HotKernel, object)
        assert isinstance(k.modules["core"], CoreOps) and k.module_for("core") is k.modules["core"]
        assert isinstance(k.commands, CommandPath) and isinstance(k.watched, WatchedFiles)
        assert k.module_for("loss") is None  # a knob group: the knob handler
        k.apply(env={"step": 1})
        entry = k.submit(HotOp(module="core", op="pause", source="human", actor="alice"))
        assert entry["decision"] == "applied" and k.paused and k.status()["paused"]
        k.submit(HotOp(module="core", op="resume", source="human"))
        assert not k.paused
    finally:
        k.close()


def test_source_is_one_string_compatible_enum(run_dir: Path) -> None:
    assert hotcb.Source is Source and hotcb.Decision is Decision
    assert SOURCES == tuple(s.value for s in Source if s is not Source.KERNEL)
    assert Source.HUMAN == "human" and f"{Source.AGENT}" == "agent" and str(Source.RULE) == "rule"
    assert json.dumps({"source": Source.YAML}) == '{"source": "yaml"}' and Source("tune") is Source.TUNE
    # A kernel's own record carries the bare string in the ledger file, in memory too.
    k = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators({"aux_w": 1.0})))
    try:
        k.apply(env={"step": 3})
        k.load_state_dict({"version": 1, "step": 3, "knobs": {"aux_w": 0.5}})
    finally:
        k.close()
    (entry,) = [e for e in read_all(k.run.ledger) if e["op"] == "restore"]
    assert entry["source"] == "kernel" and type(k.ledger.history[-1]["source"]) is str
