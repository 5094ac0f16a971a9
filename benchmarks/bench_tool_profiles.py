"""Size of what a client loads per tool profile (``hotcb mcp RUN --tools core|observe|control|all``).

    python benchmarks/bench_tool_profiles.py

For each profile and source: the number of tools, the characters of their input schemas as
served (strict-mode form) and of the whole ``tools/list`` result (names, descriptions, input and
output schemas, annotations), measured from a real ``tools/list`` through an in-process MCP
client, with rough tokens (chars / 4: the stated estimate; no tokenizer is downloaded) and the
ratio to ``all``. ``core`` is served without output schemas (as ``hotcb mcp --tools core``); the
last rows show each profile without them too (``--no-output-schemas``). The core profile's budget
is 2,000 tokens: the script exits 1 if it is over.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hotcb.mcp_server.server import SERVED_PROFILES, build_server  # noqa: E402
from mcp import Client  # noqa: E402

CORE_BUDGET_TOKENS = 2000


async def measure(run_dir: str, source: str, profile: str, output_schemas: bool | None = None) -> dict:
    async with Client(build_server(run_dir, source=source, profile=profile, output_schemas=output_schemas)) as c:
        tools = (await c.list_tools()).tools
    listed = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    inputs = sum(len(json.dumps(t["inputSchema"], separators=(",", ":"))) for t in listed)
    whole = len(json.dumps({"tools": listed}, separators=(",", ":")))
    return {"tools": len(tools), "input_chars": inputs, "list_chars": whole}


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        rows = []
        for source in ("agent", "human"):
            sizes = {p: anyio.run(measure, d, source, p) for p in SERVED_PROFILES}
            sizes |= {f"{p} (no output schemas)": anyio.run(measure, d, source, p, False) for p in SERVED_PROFILES[1:]}
            full = sizes["all"]
            for p, s in sizes.items():
                rows.append((source, p, s["tools"], s["input_chars"], s["input_chars"] // 4, s["list_chars"],
                             s["list_chars"] // 4, s["list_chars"] / full["list_chars"]))
    print("| source | profile | tools | input schemas (chars) | ~tokens | whole tools/list (chars) | ~tokens | vs all |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,} | {r[4]:,} | {r[5]:,} | {r[6]:,} | {r[7]:.2f}x |")
    over = [r for r in rows if r[1] == "core" and r[6] > CORE_BUDGET_TOKENS]
    for r in over:
        print(f"core profile over its budget for source {r[0]}: ~{r[6]:,} > {CORE_BUDGET_TOKENS:,} tokens")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
