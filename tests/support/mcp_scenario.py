"""One agent session against a live training run, run over any MCP transport (in-process, stdio,
HTTP) by the tests in tests/test_mcp_*.py, so every transport is held to the same assertions."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
from hotcb.mcp_server import HotcbTools
from mcp import Client

from hotcb.jsonl_write import append_line

from .proc import Trainer, read_jsonl, wait_for

REQUIRED_TOOLS = {"describe_actuators", "read_trends", "apply_op", "replay"}
HOTCB = str(Path(sys.executable).with_name("hotcb"))  # the console script of this venv


def data(result: Any) -> dict[str, Any]:
    """The structured content of a successful tool result (fails the test with the error text)."""
    assert not result.is_error, result.content[0].text if result.content else result
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: Any) -> str:
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    return result.content[0].text


async def wait_async(cond: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await cond()
        if value:
            return value
        await anyio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def ledger_entry(run_dir: Path, cmd_id: str) -> dict[str, Any] | None:
    return next((e for e in read_jsonl(run_dir / "hotcb.applied.jsonl") if e.get("cmd_id") == cmd_id), None)


async def check_tool_list(c: Client) -> dict[str, Any]:
    tools = {t.name: t for t in (await c.list_tools()).tools}
    assert REQUIRED_TOOLS <= set(tools), sorted(tools)
    assert "lock_knobs" not in tools  # human-only tools are not offered to an agent
    apply_op = tools["apply_op"]
    props = apply_op.input_schema["properties"]
    assert {"module", "op", "params", "reason", "wait_s"} <= set(props)  # flat arguments, not one nested arg
    assert apply_op.input_schema.get("additionalProperties") is False
    assert apply_op.annotations.destructive_hint is True and apply_op.annotations.read_only_hint is False
    for name in ("describe_actuators", "read_trends", "get_status", "read_ledger"):
        ann = tools[name].annotations
        assert ann.read_only_hint is True and ann.open_world_hint is False and ann.title
    for t in tools.values():
        assert t.output_schema and t.output_schema["type"] == "object", t.name
        assert t.description
    return tools


async def agent_session(c: Client, trainer: Trainer, actor: str) -> None:
    """The core story: read, change lr, see it in the trends, get refusals as tool errors."""
    run_dir = trainer.run_dir
    await check_tool_list(c)
    trainer.wait_step(10, timeout=120)

    desc = data(await c.call_tool("describe_actuators", {}))
    lr = next(a for a in desc["actuators"] if a["key"] == "lr")
    assert lr["module"] == "opt" and lr["value"] == 0.01 and lr["min"] is not None
    assert desc["liveness"] == "running"

    out = data(await c.call_tool("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.005},
                                              "reason": "halve lr (test)"}))
    assert out["decision"] == "applied", out
    assert out["changes"]["lr"] == {"old": 0.01, "new": 0.005}
    applied_step = out["step"]
    entry = ledger_entry(run_dir, out["cmd_id"])
    assert entry["source"] == "agent" and entry["actor"] == actor and entry["reason"] == "halve lr (test)"

    trainer.wait_step(applied_step + 10, timeout=120)
    trends = data(await c.call_tool("read_trends", {"metrics": ["lr", "opt/lr", "val_loss"], "window": 50}))
    assert trends["metrics"]["lr"]["last"] == 0.005  # logged by the trainer
    assert trends["metrics"]["opt/lr"]["last"] == 0.005  # echoed by the kernel
    assert trends["metrics"]["val_loss"]["trend"] in ("improving", "flat", "volatile", "worsening")
    assert any(ch["key"] == "lr" and ch["new"] == 0.005 and ch["actor"] == actor
               for ch in trends["recent_changes"])

    # Refusals: tool errors with the reason, recorded in the ledger, and training goes on.
    step_before = trainer.status()["step"]
    for params, why in (({"lr": "nan"}, "finite"), ({"lr": 100.0}, "maximum"), ({"lr": 0.0001}, "x0.5..x2"),
                        ({"no_such_knob": 1.0}, "unknown knob")):
        text = error_text(await c.call_tool("apply_op", {"module": "opt", "op": "set_params", "params": params}))
        assert why in text, text
        cmd_id = text.split("cmd_id ")[1].split(")")[0].split(",")[0]
        rejected = await wait_async(lambda cid=cmd_id: _async(ledger_entry(run_dir, cid)), what="refusal in ledger")
        assert rejected["decision"] == "rejected" and rejected["actor"] == actor
    bad_args = error_text(await c.call_tool("apply_op", {"module": "opt", "op": "set_params", "bogus": 1}))
    assert "bogus" in bad_args
    trainer.wait_step(step_before + 10, timeout=120)
    status = data(await c.call_tool("get_status", {}))
    assert status["liveness"] == "running" and trainer.alive()
    assert data(await c.call_tool("read_metrics", {"metrics": ["opt/lr"], "max_points": 20}))["series"]["opt/lr"]

    # A knob a human locked refuses the agent (the human acts through their own tool object).
    human = HotcbTools(run_dir, source="human", actor="alice")
    human.call("lock_knobs", {"keys": ["lr"], "reason": "mine"})
    text = error_text(await c.call_tool("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.006}}))
    assert "locked by alice" in text
    desc = data(await c.call_tool("describe_actuators", {}))
    assert next(a for a in desc["actuators"] if a["key"] == "lr")["locked_by"] == "alice"
    human.call("lock_knobs", {"keys": ["lr"], "lock": False})


async def _async(value: Any) -> Any:
    return value


def raw_guard_breach(run_dir: Path) -> dict[str, Any]:
    """A command line written by hand (no tool) that breaks the guard: the kernel must refuse it."""
    cmd_id = uuid.uuid4().hex
    append_line(run_dir / "hotcb.commands.jsonl", {"cmd_id": cmd_id, "source": "agent", "actor": "rogue",
                                                    "module": "opt", "op": "set_params", "params": {"lr": 5.0}})
    return wait_for(lambda: ledger_entry(run_dir, cmd_id), 60, what="kernel decision on a raw line")


def stdio_params(run_dir: Path, *extra: str) -> Any:
    from mcp.client.stdio import StdioServerParameters

    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYTHONPATH", "LANG", "TMPDIR")}
    return StdioServerParameters(command=HOTCB, args=["mcp", str(run_dir), *extra], env=env)


def summary(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


async def replay_roundtrip(connect: Any, tmp: Path) -> None:
    """Record a run with agent changes, export its recipe, replay it into a fresh run with the same
    seed: the per-step lrs and losses must be identical. ``connect(run_dir)`` gives a Client."""
    steps = "260"
    run1, run2 = tmp / "rec", tmp / "rep"
    t1 = Trainer(run1, "--summary", str(tmp / "s1.json"), steps=int(steps), sleep=0.02)
    try:
        async with connect(run1) as c:
            t1.wait_step(30, timeout=120)
            first = data(await c.call_tool("apply_op", {"module": "opt", "op": "set_params",
                                                        "params": {"lr": 0.006}, "reason": "replay test 1"}))
            assert first["decision"] == "applied"
            t1.wait_step(first["step"] + 15, timeout=120)
            second = data(await c.call_tool("apply_op", {"module": "loss", "op": "set_params",
                                                         "params": {"mse_w": 1.5}, "reason": "replay test 2"}))
            assert second["decision"] == "applied" and second["step"] < int(steps), second
            t1.proc.wait(180)
            exported = data(await c.call_tool("replay", {"action": "export"}))
        assert exported["entries"] >= 2 and not exported["truncated"]
        keys = {k for e in exported["recipe"] for k in (e.get("params") or {})}
        assert {"lr", "mse_w"} <= keys, exported["recipe"]
    finally:
        t1.stop()
    run2.mkdir()
    async with connect(run2) as c:
        started = data(await c.call_tool("replay", {"action": "start", "recipe": exported["recipe"],
                                                    "reason": "reproduce run1"}))
        assert started["freeze_mode"] == "replay" and (run2 / "hotcb.freeze.json").exists()
    t2 = Trainer(run2, "--summary", str(tmp / "s2.json"), steps=int(steps), sleep=0.0)
    try:
        t2.proc.wait(180)
    finally:
        t2.stop()
    s1, s2 = summary(tmp / "s1.json"), summary(tmp / "s2.json")
    assert s1["steps"] == s2["steps"] == int(steps)
    assert s1["lrs"] == s2["lrs"]
    assert s1["losses"] == s2["losses"]
    assert len(set(s1["lrs"])) >= 2  # the recipe really changed the run
