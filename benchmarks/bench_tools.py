"""Tool-surface benchmarks: read_trends on a million-record metrics file, apply_op round trips.

    python benchmarks/bench_tools.py [--records 1000000] [--ops 40]

1. read_trends over ``hotcb.metrics.jsonl`` with ``--records`` records (4 metrics each): the cold
   call in a fresh process (the first read seeks: recent window from the end, sampled history),
   beside the same call reading the whole file (the seek disabled); the dashboard's first
   snapshot read; warm calls with nothing new, and warm calls after 100 new records -- compared
   with the same call after 100 new records on a 1,000-record file, which shows the cost follows
   new data, not the file's size. Peak memory by tracemalloc.
2. apply_op round trip (tool call -> command line -> the kernel's ledger decision -> result)
   against a real training process stepping every 10 ms: p50/p99, through ``HotcbTools.call``
   and through an in-process MCP client (the SDK's full request path).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hotcb.mcp_server import HotcbTools  # noqa: E402

from hotcb.jsonl_write import append_lines  # noqa: E402


def write_metrics(path: Path, start: int, n: int, chunk: int = 50_000) -> None:
    """Records as the kernel writes them (one JSON line per step), in large appends for speed."""
    for lo in range(start, start + n, chunk):
        hi = min(lo + chunk, start + n)
        with open(path, "a") as f:
            f.write("".join(
                json.dumps({"step": s, "epoch": s // 1000, "wall_time": 1.7e9 + s * 0.01,
                            "metrics": {"train_loss": 2.0 * (s + 10) ** -0.3, "val_loss": 2.2 * (s + 10) ** -0.3,
                                        "lr": 0.01, "opt/lr": 0.01}}, separators=(",", ":")) + "\n"
                for s in range(lo, hi)))


def timed(fn, repeat: int = 1) -> float:
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return statistics.median(best)


FRESH = """
import json, sys, time
t0 = time.perf_counter()
from hotcb.mcp_server import HotcbTools, metrics_store
if sys.argv[2] == "whole":
    metrics_store.SEEK_ABOVE_BYTES = 1 << 62
t1 = time.perf_counter()
tools = HotcbTools(sys.argv[1])
tools.call(sys.argv[3], json.loads(sys.argv[4]))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t2 - t1}))
"""


def fresh_process(run: Path, mode: str, tool: str = "read_trends", args: str = "{}") -> dict:
    """A first call in a new interpreter: what a restarted ``hotcb mcp`` or dashboard pays."""
    out = subprocess.run([sys.executable, "-c", FRESH, str(run), mode, tool, args], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_trends(records: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="hotcb-bench-tools-"))
    big, small = tmp / "big", tmp / "small"
    big.mkdir()
    small.mkdir()
    t = time.perf_counter()
    write_metrics(big / "hotcb.metrics.jsonl", 1, records)
    write_s = time.perf_counter() - t
    size_mb = (big / "hotcb.metrics.jsonl").stat().st_size / 1e6
    write_metrics(small / "hotcb.metrics.jsonl", 1, 1000)

    cold_fresh = [fresh_process(big, "seek") for _ in range(3)]
    snapshot_fresh = fresh_process(big, "seek", "read_metrics", '{"max_points": 2000}')
    whole_fresh = fresh_process(big, "whole")
    # Peak memory on its own cold pass: tracemalloc slows allocation-heavy code several times over.
    tracemalloc.start()
    HotcbTools(big).call("read_trends", {})
    _, cold_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tools = HotcbTools(big)
    cold = timed(lambda: tools.call("read_trends", {}))
    warm_idle = timed(lambda: tools.call("read_trends", {}), repeat=20)
    tracemalloc.start()
    tools.call("read_trends", {})
    _, warm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert tools.metrics.records == records, tools.metrics.records

    def after_100(t: HotcbTools, run: Path, start: list[int]) -> float:
        times = []
        for _ in range(20):
            append_lines(run / "hotcb.metrics.jsonl", [
                {"step": s, "epoch": 0, "wall_time": 1.7e9 + s, "metrics": {"train_loss": 0.1, "val_loss": 0.12,
                                                                             "lr": 0.01, "opt/lr": 0.01}}
                for s in range(start[0], start[0] + 100)])
            start[0] += 100
            t0 = time.perf_counter()
            t.call("read_trends", {})
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    warm_big = after_100(tools, big, [records + 1])
    small_tools = HotcbTools(small)
    small_tools.call("read_trends", {})
    warm_small = after_100(small_tools, small, [1001])
    out = json.dumps(tools.call("read_trends", {}), separators=(",", ":"))
    return {"records": records, "file_mb": round(size_mb, 1), "write_s": round(write_s, 1),
            "cold_fresh_process_s": round(statistics.median(c["first_call_s"] for c in cold_fresh), 3),
            "import_s": round(statistics.median(c["import_s"] for c in cold_fresh), 2),
            "snapshot_read_metrics_fresh_s": round(snapshot_fresh["first_call_s"], 3),
            "whole_read_fresh_process_s": round(whole_fresh["first_call_s"], 2),
            "cold_ratio_seek_vs_whole": round(statistics.median(c["first_call_s"] for c in cold_fresh)
                                              / whole_fresh["first_call_s"], 3),
            "cold_in_process_s": round(cold, 3), "cold_peak_mb": round(cold_peak / 1e6, 1),
            "warm_idle_ms": round(warm_idle * 1e3, 2), "warm_idle_peak_kb": round(warm_peak / 1e3, 1),
            "warm_after_100_ms": round(warm_big * 1e3, 2), "same_on_1k_file_ms": round(warm_small * 1e3, 2),
            "ratio_big_vs_small": round(warm_big / warm_small, 2),
            "cold_cost_of_100_records_ms": round(cold / records * 100 * 1e3, 3),
            "output_chars": len(out)}


def past_cooldown(trainer, step: int, cooldown: int = 10) -> None:
    """Wait until the guard's per-knob cooldown for agents (10 steps) has passed."""
    while trainer.status().get("step", 0) < step + cooldown + 1:
        time.sleep(0.01)


def bench_apply(ops: int) -> dict:
    import anyio
    import anyio.to_thread
    from hotcb.mcp_server.server import build_server
    from mcp import Client

    from tests.support.proc import Trainer

    run = Path(tempfile.mkdtemp(prefix="hotcb-bench-apply-")) / "run"
    trainer = Trainer(run, steps=10_000_000, sleep=0.01)
    try:
        trainer.wait_step(20, timeout=180)
        tools = HotcbTools(run, source="agent", actor="bench")
        direct = []
        value = 0.01
        for _ in range(ops):
            value = 0.015 if value == 0.01 else 0.01
            t = time.perf_counter()
            out = tools.call("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": value}})
            direct.append(time.perf_counter() - t)
            assert out["decision"] == "applied", out
            past_cooldown(trainer, out["step"])

        mcp_times: list[float] = []

        async def over_mcp() -> None:
            nonlocal value
            async with Client(build_server(run, actor="bench-mcp")) as c:
                for _ in range(ops):
                    value = 0.015 if value == 0.01 else 0.01
                    t = time.perf_counter()
                    r = await c.call_tool("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": value}})
                    mcp_times.append(time.perf_counter() - t)
                    assert not r.is_error and r.structured_content["decision"] == "applied", r
                    await anyio.to_thread.run_sync(past_cooldown, trainer, r.structured_content["step"])

        anyio.run(over_mcp)
        steps_s = trainer.status().get("steps_per_s")
    finally:
        trainer.stop()

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3, 1)

    return {"ops": ops, "loop_steps_per_s": steps_s,
            "tool_p50_ms": pct(direct, 0.5), "tool_p99_ms": pct(direct, 0.99), "tool_max_ms": pct(direct, 1.0),
            "mcp_p50_ms": pct(mcp_times, 0.5), "mcp_p99_ms": pct(mcp_times, 0.99), "mcp_max_ms": pct(mcp_times, 1.0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--ops", type=int, default=40)
    ap.add_argument("--only", choices=["trends", "apply"], default=None)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.only in (None, "trends"):
        print("read_trends:", json.dumps(bench_trends(args.records)))
    if args.only in (None, "apply"):
        print("apply_op:", json.dumps(bench_apply(args.ops)))


if __name__ == "__main__":
    main()
