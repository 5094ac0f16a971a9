"""``hotcb mcp ROOT``: one MCP server over a directory of run directories (``RunRoot``).

The same binding as a single run's server (``Binding``, ``ToolRunner``: worker threads,
progress, errors as ``isError`` results), over ``RunRoot.call``: ``list_runs`` plus every run
tool with a ``run`` argument. Resources (``hotcb://run/...``) name one run, so a root server
serves tools and prompts only; read a run through its tools.
"""

from __future__ import annotations

import os

from .resources import RunResources
from .run_root import RunRoot
from .server import INSTRUCTIONS, Binding, HotcbServer, ToolRunner, make_server
from .server_prompts import ServedPrompts

ROOT_INSTRUCTIONS = INSTRUCTIONS + (
    " This server serves several runs under one root: call list_runs first, then pass run=NAME to "
    "every other tool. Each run has its own guard, cooldowns, locks and ledger."
)


def build_root_server(root: str | os.PathLike[str], *, source: str = "agent", actor: str | None = None,
                      wait_s: float = 10.0, profile: str = "all") -> HotcbServer:
    runs = RunRoot(root, source=source, actor=actor, wait_s=wait_s)
    runner = ToolRunner(runs, actor)  # type: ignore[arg-type]  # RunRoot has HotcbTools' call/wait_s
    # firsthour: the same -32602 prompt errors and --tools profiles as a single run's server
    binding = Binding([s for s in runs.specs() if s.in_profile(profile)], runner, RunResources(None), ServedPrompts())
    server = make_server(binding, title="hotcb training control (a root of runs)", instructions=ROOT_INSTRUCTIONS)
    server.hotcb_root = runs  # type: ignore[attr-defined]  # for tests and embedding
    return server
