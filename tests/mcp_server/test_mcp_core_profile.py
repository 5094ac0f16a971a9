"""``hotcb mcp RUN --tools core``: the five tools a small model's context holds, listed without
output schemas within 2,000 tokens (chars / 4), through the real stdio server and the SDK's
client; and the ledger's actor naming the client (``name/version``) and the model it declares."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from hotcb.mcp_server.registry import CORE_TOOLS
from mcp import Client
from mcp_types import Implementation

from tests.support.mcp_scenario import data, ledger_entry, stdio_params
from tests.support.proc import Trainer

BUDGET_TOKENS = 2000


def test_core_profile_fits_a_small_context_and_names_client_and_model(run_dir: Path) -> None:
    me = Implementation(name="tool-loop", version="0.3")
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer:
        async def main() -> None:
            async with Client(stdio_params(run_dir, "--tools", "core"), client_info=me,
                              read_timeout_seconds=120) as c:
                tools = (await c.list_tools()).tools
                assert sorted(t.name for t in tools) == sorted(CORE_TOOLS)
                listed = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
                assert not any("outputSchema" in t for t in listed)
                size = len(json.dumps({"tools": listed}, separators=(",", ":")))
                assert size / 4 <= BUDGET_TOKENS, size
                trainer.wait_step(5, timeout=120)
                status = data(await c.call_tool("get_status", {}))  # structured content without a schema
                assert status["liveness"] == "running"
                out = data(await c.call_tool("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.008},
                                                          "reason": "core profile test"},
                                             meta={"model": "qwen2.5-coder-1.5b"}))
                assert ledger_entry(run_dir, out["cmd_id"])["actor"] == "tool-loop/0.3 model=qwen2.5-coder-1.5b"
                again = data(await c.call_tool("apply_op", {"module": "loss", "op": "set_params",
                                                            "params": {"mse_w": 1.5}, "reason": "no model said"}))
                assert ledger_entry(run_dir, again["cmd_id"])["actor"] == "tool-loop/0.3"
                assert (await c.call_tool("propose_op", {})).is_error  # not served in core
        anyio.run(main)
