"""Ledger entries the kernel writes on its own: who a raising callback is attributed to, the
values a resume re-applied (``core restore``), and the shared ledger filter."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from hotcb import HotKernel, loss_actuators, mutable_state
from hotcb.checkpoint import ledger_knob_values
from hotcb.ledger import filter_entries
from hotcb.recipe import export_recipe, is_replayable
from tests.support.core_loop import Loop

BAD_CB = (
    "class Bad:\n"
    "    def handle(self, event, env):\n"
    "        if env['step'] >= 4:\n"
    "            raise RuntimeError('boom')\n"
)


def failures(loop: Loop) -> list[dict[str, Any]]:
    return [e for e in loop.ledger() if e["module"] == "cb" and e["decision"] == "failed"]


# ---------------------------------------------------------------------- raising callbacks
@pytest.mark.parametrize("source, actor", [("agent", "claude"), ("yaml", "hotcb.yaml"), ("human", "ana")])
def test_raising_callback_is_attributed_to_its_loader_and_itself(run_dir: Path, source: str, actor: str) -> None:
    (run_dir / "bad_cb.py").write_text(BAD_CB)
    loop = Loop(run_dir)
    loop.send("cb", "load", id="bad", target={"kind": "python_file", "path": "bad_cb.py", "symbol": "Bad"},
              source=source, actor=actor, reason="watch the loss")
    loop.run(5)
    loop.close()
    [e] = failures(loop)
    assert (e["source"], e["actor"], e["id"], e["op"]) == (source, "bad", "bad", "handle")
    # The ledger filters find it under the loader's source (a documented source, never "kernel").
    assert filter_entries(loop.ledger(), source=source, decision="failed") == [e]


def test_raising_callback_added_in_code_is_attributed_to_a_human(run_dir: Path) -> None:
    class Bad:
        def handle(self, event: str, env: dict[str, Any]) -> None:
            raise ValueError("nope")

    loop = Loop(run_dir, callbacks={"inline": Bad()})
    loop.run(2)
    loop.close()
    [e] = failures(loop)
    assert (e["source"], e["actor"], e["id"]) == ("human", "inline", "inline")
    assert loop.step_no == 2 and loop.kernel.internal_errors == 0


def test_a_callback_reloaded_by_someone_else_is_attributed_to_the_last_loader(run_dir: Path) -> None:
    (run_dir / "bad_cb.py").write_text(BAD_CB)
    loop = Loop(run_dir)
    target = {"kind": "python_file", "path": "bad_cb.py", "symbol": "Bad"}
    loop.send("cb", "load", id="bad", target=target, source="agent")
    loop.run(1)
    loop.send("cb", "load", id="bad", target=target, source="human", actor="ana")
    loop.run(4)
    loop.close()
    assert [e["source"] for e in failures(loop)] == ["human"]


# ---------------------------------------------------------------------- resume re-apply
def train_then_checkpoint(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A run whose knobs a human changed; returns its hotcb state, optimizer state, commands."""
    loop = Loop(run_dir)
    loop.run(2)
    cmds = [loop.send("opt", "set_params", {"lr": 0.02}), loop.send("loss", "set_params", {"l2_w": 1e-3})]
    loop.run(4)
    state, opt_state = loop.kernel.state_dict(), copy.deepcopy(loop.opt.state_dict())
    loop.close()
    return state, opt_state, cmds


def restores(loop: Loop) -> list[dict[str, Any]]:
    return [e for e in loop.ledger() if e["op"] == "restore"]


@pytest.mark.parametrize("with_state", [True, False])
def test_resume_records_the_reapplied_values_once(run_dir: Path, with_state: bool) -> None:
    state, opt_state, cmds = train_then_checkpoint(run_dir)
    # A new process: configured values (lr 0.05, l2_w 0.0); the framework loads the optimizer.
    loop = Loop(run_dir)
    loop.opt.load_state_dict(opt_state)
    changed = loop.kernel.load_state_dict(state if with_state else None, env={"step": 6})
    loop.run(3)
    loop.close()

    [e] = restores(loop)
    assert (e["module"], e["decision"], e["source"], e["actor"], e["step"]) == ("core", "applied", "kernel", "resume", 6)
    assert e["payload"]["from"] == ("checkpoint" if with_state else "ledger")
    assert e["payload"]["knobs"] == changed
    assert changed["l2_w"] == {"old": 0.0, "new": 1e-3}
    assert changed["lr"] == {"old": 0.05, "new": 0.02}  # the optimizer state held it; configured was 0.05
    assert loop.weights["l2_w"] == 1e-3 and loop.opt.param_groups[0]["lr"] == pytest.approx(0.02)
    # No command was applied a second time, and the restore names the live values.
    assert [x["cmd_id"] for x in loop.ledger() if x["source"] == "human"] == cmds
    assert ledger_knob_values(loop.ledger())["l2_w"] == 1e-3


def test_recipe_export_leaves_the_restore_out(run_dir: Path) -> None:
    state, opt_state, _ = train_then_checkpoint(run_dir)
    loop = Loop(run_dir)
    loop.opt.load_state_dict(opt_state)
    loop.kernel.load_state_dict(state, env={"step": 6})
    loop.close()
    [restore] = restores(loop)
    assert not is_replayable(restore)
    recipe = export_recipe(loop.ledger())
    assert [(r["step"], r["module"], r["params"]) for r in recipe] == [
        (3, "opt", {"lr": 0.02}), (3, "loss", {"l2_w": 1e-3})]


def test_resume_with_nothing_to_restore_writes_nothing(run_dir: Path) -> None:
    loop = Loop(run_dir)
    assert loop.kernel.load_state_dict(None, env={"step": 0}) == {}
    loop.close()
    assert loop.ledger() == []


class OtherRank:
    rank, world_size = 1, 2

    def broadcast(self, reader: Any) -> Any:
        return None


def test_only_the_writer_rank_records_the_restore(run_dir: Path) -> None:
    state, _, _ = train_then_checkpoint(run_dir)
    before = (run_dir / "hotcb.applied.jsonl").read_bytes()
    weights = {"ce_w": 1.0, "l2_w": 0.0}
    kernel = HotKernel(run_dir, mutable_state=mutable_state(loss_actuators(weights)), distributed=OtherRank())
    changed = kernel.load_state_dict(state, env={"step": 6})
    kernel.close()
    assert changed["l2_w"]["new"] == 1e-3 and weights["l2_w"] == 1e-3  # applied on this rank too
    assert (run_dir / "hotcb.applied.jsonl").read_bytes() == before  # recorded by rank 0 only


def test_a_ledger_that_cannot_be_written_never_stops_the_resume(run_dir: Path) -> None:
    state, opt_state, _ = train_then_checkpoint(run_dir)
    loop = Loop(run_dir)

    def broken(**kw: Any) -> dict[str, Any]:
        raise OSError("disk full")

    loop.kernel.ledger.record = broken  # type: ignore[method-assign]
    changed = loop.kernel.load_state_dict(state, env={"step": 6})
    assert changed["l2_w"]["new"] == 1e-3 and loop.weights["l2_w"] == 1e-3
    assert loop.kernel.internal_errors == 1
    loop.close()


# ---------------------------------------------------------------------- the shared filter
ENTRIES = [
    {"seq": 1, "step": 0, "source": "human", "decision": "applied", "module": "opt", "cmd_id": "a"},
    {"seq": 2, "step": 5, "source": "agent", "decision": "rejected", "module": "opt", "cmd_id": "b"},
    {"seq": 3, "step": 10, "source": "agent", "decision": "applied", "module": "loss", "cmd_id": "c"},
    {"seq": 4, "step": None, "source": "human", "decision": "rejected", "module": None, "cmd_id": "d"},
    {"seq": 5, "step": 15, "source": "kernel", "decision": "applied", "module": "core", "cmd_id": "e"},
    "not an entry",
]


@pytest.mark.parametrize("kw, ids", [
    ({}, "abcde"),
    ({"since_step": 5}, "bce"),
    ({"until_step": 10}, "abc"),
    ({"since_step": 5, "until_step": 10}, "bc"),
    ({"since_step": 10, "until_step": 10}, "c"),
    ({"since_step": 0, "source": "agent"}, "bc"),
    ({"until_step": 12, "decision": "applied"}, "ac"),
    ({"module": "opt", "since_seq": 1}, "b"),
    ({"cmd_id": "d"}, "d"),
])
def test_filter_entries(kw: dict[str, Any], ids: str) -> None:
    assert "".join(e["cmd_id"] for e in filter_entries(ENTRIES, **kw)) == ids


def test_filter_entries_refuses_an_empty_step_range() -> None:
    with pytest.raises(ValueError, match="since_step"):
        filter_entries(ENTRIES, since_step=11, until_step=10)
