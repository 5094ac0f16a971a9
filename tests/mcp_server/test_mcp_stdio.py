"""``hotcb mcp RUN_DIR`` as a real stdio subprocess (the SDK's stdio client, and the MCP Inspector
CLI) against a real training subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp_types import Implementation

from tests.support.mcp_scenario import HOTCB, agent_session, replay_roundtrip, stdio_params
from tests.support.proc import Trainer

ME = Implementation(name="pytest-stdio", version="1.0")


def connect(run_dir: Path, *extra: str) -> Client:
    return Client(stdio_params(run_dir, *extra), client_info=ME, read_timeout_seconds=120)


@pytest.mark.slow
def test_agent_session_over_stdio(run_dir: Path) -> None:
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer:
        async def main() -> None:
            async with connect(run_dir) as c:
                await agent_session(c, trainer, actor="pytest-stdio/1.0")
        anyio.run(main)


@pytest.mark.slow
def test_actor_override_over_stdio(run_dir: Path) -> None:
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer:
        async def main() -> None:
            async with connect(run_dir, "--actor", "ops-bot") as c:
                trainer.wait_step(5, timeout=120)
                r = await c.call_tool("apply_op", {"module": "loss", "op": "set_params", "params": {"mse_w": 1.5},
                                                   "reason": "stdio test"})
                assert not r.is_error, r.content[0].text
                ledger = await c.call_tool("read_ledger", {"cmd_id": r.structured_content["cmd_id"]})
                entry = ledger.structured_content["entries"][0]
                assert entry["actor"] == "ops-bot" and entry["source"] == "agent"
        anyio.run(main)


@pytest.mark.slow
def test_replay_over_stdio_reproduces_trajectory(tmp_path: Path) -> None:
    anyio.run(replay_roundtrip, connect, tmp_path)


def _inspector(inspector: str, run_dir: Path, *args: str) -> dict:
    proc = subprocess.run([inspector, "--cli", HOTCB, "mcp", str(run_dir), *args],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.node
@pytest.mark.slow
def test_mcp_inspector_cli(inspector: str, run_dir: Path) -> None:
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer:
        trainer.wait_step(5, timeout=120)
        listed = _inspector(inspector, run_dir, "--method", "tools/list")
        tools = {t["name"]: t for t in listed["tools"]}
        assert {"describe_actuators", "read_trends", "apply_op", "replay"} <= set(tools)
        assert tools["apply_op"]["annotations"]["destructiveHint"] is True
        assert "module" in tools["apply_op"]["inputSchema"]["properties"]
        called = _inspector(inspector, run_dir, "--method", "tools/call", "--tool-name", "get_status")
        assert called.get("isError") is not True
        assert called["structuredContent"]["liveness"] == "running"
        assert called["structuredContent"]["step"] >= 5
