"""``hotcb mcp ROOT``: one MCP server over a directory of run directories (``RunRoot``).

The same binding as a single run's server (``SpecTool``, ``ToolRunner``: worker threads,
progress, errors as ``isError`` results), over ``RunRoot.call``: ``list_runs`` plus every run
tool with a ``run`` argument. Resources (``hotcb://run/...``) name one run, so a root server
serves tools and prompts only; read a run through its tools.
"""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

from hotcb import prompts as prompt_files

from .run_root import RunRoot
from .server import INSTRUCTIONS, SERVER_NAME, HotcbMCPServer, SpecTool, ToolRunner, _prompt, in_profile

ROOT_INSTRUCTIONS = INSTRUCTIONS + (
    " This server serves several runs under one root: call list_runs first, then pass run=NAME to "
    "every other tool. Each run has its own guard, cooldowns, locks and ledger."
)


def build_root_server(root: str | os.PathLike[str], *, source: str = "agent", actor: str | None = None,
                      wait_s: float = 10.0, profile: str = "all") -> MCPServer:
    runs = RunRoot(root, source=source, actor=actor, wait_s=wait_s)
    runner = ToolRunner(runs, actor)  # type: ignore[arg-type]  # RunRoot has HotcbTools' call/wait_s
    from hotcb import __version__

    # firsthour: the same -32602 prompt errors and --tools profiles as a single run's server
    server = HotcbMCPServer(
        SERVER_NAME, title="hotcb training control (a root of runs)", instructions=ROOT_INSTRUCTIONS,
        version=__version__, tools=[SpecTool.from_spec(spec, runner) for spec in runs.specs()
                                    if in_profile(spec, profile)], log_level="WARNING",
    )
    for p in prompt_files.latest().values():
        if p.mcp:
            server.add_prompt(_prompt(p))
    server.hotcb_root = runs  # type: ignore[attr-defined]  # for tests and embedding
    return server
