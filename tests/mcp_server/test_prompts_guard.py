"""The guard's numbers reach prompts and instructions from the config in force, never from a
number written into a prompt file."""

from __future__ import annotations

from pathlib import Path

import anyio
from hotcb.mcp_server.server import build_server
from hotcb.prompts import latest
from mcp import Client
from mcp_types import Implementation

from hotcb import GuardConfig, HotKernel
from hotcb.guard import ratio_text


def test_no_prompt_file_states_the_ratio_limit() -> None:
    for p in latest().values():
        assert "x0.5..x2" not in p.body, p.file
    assert ratio_text(GuardConfig()) == "x0.5..x2"
    assert ratio_text(GuardConfig(max_rel_change=4.0)) == "x0.25..x4"


def test_operator_prompt_says_the_runs_own_limit(run_dir: Path) -> None:
    kernel = HotKernel(run_dir, guard=GuardConfig(max_rel_change=4.0))
    try:
        async def main() -> None:
            async with Client(build_server(run_dir), client_info=Implementation(name="t", version="1")) as c:
                msg = (await c.get_prompt("training_operator", {})).messages[0]
                text = msg.content.text
                assert "x0.25..x4" in text and "{ratio_limit}" not in text

        anyio.run(main)
    finally:
        kernel.close()
