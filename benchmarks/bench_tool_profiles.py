"""Size of what a client loads per tool profile (``hotcb mcp RUN --tools observe|control|all``).

    python benchmarks/bench_tool_profiles.py

For each profile and source: the number of tools, the characters of their input schemas as
served (strict-mode form) and of the whole ``tools/list`` result (names, descriptions, input and
output schemas, annotations), measured from a real ``tools/list`` through an in-process MCP
client, with rough tokens (chars / 4) and the ratio to ``all``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hotcb.mcp_server.server import PROFILES, build_server  # noqa: E402
from mcp import Client  # noqa: E402


async def measure(run_dir: str, source: str, profile: str) -> dict:
    async with Client(build_server(run_dir, source=source, profile=profile)) as c:
        tools = (await c.list_tools()).tools
    listed = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    inputs = sum(len(json.dumps(t["inputSchema"], separators=(",", ":"))) for t in listed)
    whole = len(json.dumps({"tools": listed}, separators=(",", ":")))
    return {"tools": len(tools), "input_chars": inputs, "list_chars": whole}


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        rows = []
        for source in ("agent", "human"):
            sizes = {p: anyio.run(measure, d, source, p) for p in PROFILES}
            full = sizes["all"]
            for p in PROFILES:
                s = sizes[p]
                rows.append((source, p, s["tools"], s["input_chars"], s["input_chars"] // 4, s["list_chars"],
                             s["list_chars"] // 4, s["list_chars"] / full["list_chars"]))
    print("| source | profile | tools | input schemas (chars) | ~tokens | whole tools/list (chars) | ~tokens | vs all |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,} | {r[4]:,} | {r[5]:,} | {r[6]:,} | {r[7]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
