"""``hotcb mcp ROOT`` over a directory of live runs (real trainers), through the SDK's stdio client:
list_runs names them, an op goes to the run named (its ledger, its guard) and no other, a run
started later is picked up, and a call that names no run is refused with the list."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hotcb.mcp_server import HotcbTools
from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.run_root import RunRoot, looks_like_root
from mcp import Client
from mcp_types import Implementation

from hotcb.jsonl_write import append_lines
from tests.support.mcp_scenario import stdio_params
from tests.support.proc import Trainer

ME = Implementation(name="pytest-root", version="1.0")


def _text(r: object) -> str:
    return r.content[0].text  # type: ignore[attr-defined]


@pytest.mark.slow
def test_mcp_root_lists_live_runs_and_acts_on_the_one_named(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    trainers = {name: Trainer(root / name, steps=100000, sleep=0.01) for name in ("a", "b", "c")}
    late: Trainer | None = None
    try:
        for t in trainers.values():
            t.wait_step(5, timeout=120)
        assert looks_like_root(root)

        async def main() -> None:
            nonlocal late
            async with Client(stdio_params(root), client_info=ME, read_timeout_seconds=120) as c:
                tools = {t.name: t for t in (await c.list_tools()).tools}
                assert "list_runs" in tools and "run" in tools["apply_op"].input_schema["properties"]
                listed = (await c.call_tool("list_runs", {})).structured_content
                assert [r["name"] for r in listed["runs"]] == ["a", "b", "c"]
                assert all(r["status"] == "running" and r["step"] >= 5 for r in listed["runs"])

                op = {"module": "loss", "op": "set_params", "params": {"mse_w": 1.5}, "reason": "root test"}
                refused = await c.call_tool("apply_op", op)  # three runs: which one?
                assert refused.is_error and "a, b, c" in _text(refused)
                unknown = await c.call_tool("apply_op", {**op, "run": "../a"})
                assert unknown.is_error and "no run '../a'" in _text(unknown)

                r = await c.call_tool("apply_op", {**op, "run": "b"})
                assert not r.is_error, _text(r)
                assert r.structured_content["decision"] == "applied"
                ledger = await c.call_tool("read_ledger", {"run": "b", "cmd_id": r.structured_content["cmd_id"]})
                entry = ledger.structured_content["entries"][0]
                assert (entry["source"], entry["actor"], entry["decision"]) == ("agent", "pytest-root/1.0", "applied")
                # The named run's guard decides: a's knob is still at 1.0, so 2.5 is beyond x2.
                too_far = await c.call_tool("apply_op", {**op, "params": {"mse_w": 2.5}, "run": "a"})
                assert too_far.is_error and "x0.5..x2" in _text(too_far)
                other = await c.call_tool("apply_op", {**op, "run": "a"})
                assert not other.is_error and other.structured_content["decision"] == "applied"

                listed = (await c.call_tool("list_runs", {})).structured_content["runs"]
                by_name = {r["name"]: r for r in listed}
                assert by_name["b"]["last_change"]["params"] == {"mse_w": 1.5}
                assert by_name["c"]["last_change"] is None

                late = Trainer(root / "d", steps=100000, sleep=0.01)  # a run started later
                late.wait_step(3, timeout=120)
                listed = (await c.call_tool("list_runs", {})).structured_content["runs"]
                assert [r["name"] for r in listed] == ["a", "b", "c", "d"]
                trends = await c.call_tool("read_trends", {"run": "d"})
                assert not trends.is_error and trends.structured_content["step"] >= 1

        anyio.run(main)
        applied = {name: [e for e in t.ledger() if e.get("reason") == "root test" and e["decision"] == "applied"]
                   for name, t in trainers.items()}
        assert [len(applied[n]) for n in ("a", "b", "c")] == [1, 1, 0]  # each op in its own run's ledger only
    finally:
        for t in [*trainers.values(), *([late] if late else [])]:
            t.stop()


def test_a_root_with_one_run_needs_no_run_argument(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "only").mkdir(parents=True)
    append_lines(root / "only" / "hotcb.metrics.jsonl", [{"step": s, "metrics": {"loss": 1.0 / s}} for s in range(1, 30)])
    runs = RunRoot(root)
    assert runs.call("read_metrics", {"metrics": ["loss"]})["last_step"] == 29
    assert runs.call("read_metrics", {"metrics": ["loss"], "run": "only"})["last_step"] == 29
    with pytest.raises(ToolError, match="invalid arguments for read_metrics"):
        runs.call("read_metrics", {"bogus": 1})
    (root / "empty-dir").mkdir()  # not a run: no file the kernel writes
    (root / "second").mkdir()
    append_lines(root / "second" / "hotcb.metrics.jsonl", [{"step": 1, "metrics": {"loss": 2.0}}])
    with pytest.raises(ToolError, match="runs: only, second"):
        runs.call("read_metrics", {})
    assert [r.name for r in runs.list_runs().runs] == ["only", "second"]
    assert isinstance(runs.get("only"), HotcbTools) and runs.get("only") is runs.get("only")
    assert not looks_like_root(root / "only") and looks_like_root(root)
    spec = {s.name: s for s in runs.specs()}
    assert "run" in spec["apply_op"].input_schema()["properties"] and "list_runs" in spec


def _static_run(run: Path, loss: float) -> None:
    run.mkdir(parents=True)
    append_lines(run / "hotcb.metrics.jsonl", [{"step": s, "metrics": {"loss": loss}} for s in range(1, 10)])


def test_a_run_swapped_for_a_link_mid_session_is_refused(tmp_path: Path) -> None:
    """A root is shared ground: ``ROOT/a`` replaced by a symlink to a run outside the root after
    the server has served it is refused on the next call (nothing written there) and leaves
    list_runs; replaced by another real directory it is a new run, served afresh."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    _static_run(root / "a", 1.0)
    _static_run(root / "b", 2.0)
    _static_run(outside, 9.0)

    async def main() -> None:
        async with Client(stdio_params(root), client_info=ME, read_timeout_seconds=120) as c:
            st = await c.call_tool("get_status", {"run": "a"})
            assert not st.is_error and st.structured_content["last_metrics"] == {"loss": 1.0}

            (root / "a").rename(tmp_path / "a-moved")
            (root / "a").symlink_to(outside, target_is_directory=True)
            op = {"module": "opt", "op": "set_params", "params": {"lr": 0.5}, "reason": "swap", "run": "a"}
            for name, args in (("apply_op", op), ("get_status", {"run": "a"}), ("read_metrics", {"run": "a"})):
                r = await c.call_tool(name, args)
                assert r.is_error and "no longer a directory under this root" in _text(r), (name, _text(r))
            listed = (await c.call_tool("list_runs", {})).structured_content["runs"]
            assert [r["name"] for r in listed] == ["b"]

            (root / "a").unlink()
            _static_run(root / "a", 3.0)  # a new run under the same name: served as itself
            st = await c.call_tool("get_status", {"run": "a"})
            assert not st.is_error and st.structured_content["last_metrics"] == {"loss": 3.0}

    anyio.run(main)
    assert sorted(p.name for p in outside.iterdir()) == ["hotcb.metrics.jsonl"]  # no command written there
