"""The MCP server in-process (``mcp.Client(server)``) against a real training subprocess."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import anyio
import pytest
from hotcb.mcp_server.server import build_server
from mcp import Client
from mcp_types import Implementation

from tests.support.mcp_scenario import (
    agent_session,
    data,
    raw_guard_breach,
    replay_roundtrip,
    wait_async,
)
from tests.support.proc import Trainer

ME = Implementation(name="pytest-inproc", version="1.0")


def connect(run_dir: Path, **kw) -> Client:
    return Client(build_server(run_dir, **kw), client_info=ME)


@pytest.mark.slow
def test_agent_session_in_process(run_dir: Path) -> None:
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer:
        async def main() -> None:
            async with connect(run_dir) as c:
                await agent_session(c, trainer, actor="pytest-inproc/1.0")
        anyio.run(main)

        # The kernel enforces the guard whatever wrote the command: a hand-written line is refused too.
        entry = raw_guard_breach(run_dir)
        assert entry["decision"] == "rejected" and "x0.5..x2" in entry["error"], entry
        assert trainer.alive()


@pytest.mark.slow
def test_resources_prompts_progress_and_dead_process(run_dir: Path) -> None:
    trainer = Trainer(run_dir, steps=100000, sleep=0.01)
    try:
        async def main() -> None:
            async with connect(run_dir, wait_s=1.5) as c:
                trainer.wait_step(5, timeout=120)
                uris = {str(r.uri) for r in (await c.list_resources()).resources}
                assert uris == {"hotcb://run/metrics", "hotcb://run/ledger", "hotcb://run/actuators",
                                "hotcb://run/status"}
                acts = json.loads((await c.read_resource("hotcb://run/actuators")).contents[0].text)
                assert any(a["key"] == "lr" for a in acts["actuators"])
                status = json.loads((await c.read_resource("hotcb://run/status")).contents[0].text)
                assert status["liveness"] == "running"

                prompts = {p.name: p for p in (await c.list_prompts()).prompts}
                assert "training_operator" in prompts and prompts["training_operator"].arguments[0].name == "goal"
                msg = (await c.get_prompt("training_operator", {"goal": "val_loss below 0.2"})).messages[0]
                assert "val_loss below 0.2" in msg.content.text and "{goal}" not in msg.content.text

                assert data(await c.call_tool("tune_status", {}))["mode"] == "off"

                # Resource updates reach a subscriptions/listen stream as the run files change.
                async with c.listen(resource_subscriptions=["hotcb://run/status"]) as sub:
                    with anyio.fail_after(30):
                        event = await sub.__anext__()
                assert str(event.uri) == "hotcb://run/status"

                # A stalled training process (stopped, not dead): apply_op reports progress while it
                # waits, then says the decision is pending instead of hanging.
                progress: list[float] = []

                async def on_progress(p: float, total: float | None, message: str | None) -> None:
                    progress.append(p)

                os.kill(trainer.proc.pid, signal.SIGSTOP)
                try:
                    out = data(await c.call_tool(
                        "apply_op", {"module": "loss", "op": "set_params", "params": {"mse_w": 1.2}, "reason": "stall test"},
                        progress_callback=on_progress))
                finally:
                    os.kill(trainer.proc.pid, signal.SIGCONT)
                assert out["decision"] == "pending" and "safe point" in out["message"], out
                assert progress and progress == sorted(progress)
                # Once training moves again the op applies, exactly once.
                await wait_async(lambda: _applied(run_dir, out["cmd_id"]), what="the pending op applied")

                # A dead training process is reported as such, at once, not as a hang.
                trainer.kill()
                out = data(await c.call_tool("apply_op", {"module": "opt", "op": "set_params",
                                                          "params": {"momentum": 0.85}, "reason": "dead test"}))
                assert out["decision"] == "queued" and out["liveness"] == "dead", out
                assert "dead" in out["message"] and "exactly once" in out["message"]
                status = data(await c.call_tool("get_status", {}))
                assert status["liveness"] == "dead"
        anyio.run(main)
    finally:
        if trainer.proc.poll() is None:
            trainer.stop()


async def _applied(run_dir: Path, cmd_id: str) -> bool:
    from tests.support.mcp_scenario import ledger_entry

    e = ledger_entry(run_dir, cmd_id)
    return bool(e and e["decision"] == "applied")


@pytest.mark.slow
def test_replay_in_process_reproduces_trajectory(tmp_path: Path) -> None:
    anyio.run(replay_roundtrip, connect, tmp_path)
