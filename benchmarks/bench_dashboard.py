"""Dashboard live channel: latency from a metrics append to an SSE client, and server CPU.

    python benchmarks/bench_dashboard.py [--rate 100] [--seconds 20] [--wakes watch,250]

For each wake mode (``watch``: file-change wake-ups; a number: a fixed poll of that many ms),
side by side in one run: start ``hotcb serve`` (a real uvicorn subprocess) on a fresh run
directory, connect one SSE client to ``/api/live`` (what the browser's EventSource does), then
append metric records (5 metrics each, the kernel's record shape) at ``--rate`` per second.
Latency is the client's receive time minus the append time of each step (same clock: both on
this machine). CPU is the server process's user+system time over the writing window, as a
percentage of one core; idle CPU is measured over 5 s with no appends.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_dashboard_proc import ServeProcess  # noqa: E402

from hotcb.jsonl_write import append_line  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


# complexity: a benchmark read top to bottom: start, drive, measure, stop
def run_once(rate: float, seconds: float, wake: str) -> dict[str, float]:  # noqa: C901
    run = Path(tempfile.mkdtemp(prefix="bench_dash_")) / "run"
    run.mkdir()
    metrics = run / "hotcb.metrics.jsonl"
    append_line(metrics, {"step": 0, "wall_time": time.time(), "metrics": {"loss": 1.0}})
    appended: dict[int, float] = {}
    received: dict[int, float] = {}
    ready = threading.Event()
    flags = ["--set", "live.wake=watch"] if wake == "watch" else ["--set", "live.wake=poll", "--set", f"live.poll_ms={wake}"]
    with ServeProcess(run, *flags) as srv:
        server = psutil.Process(srv.proc.pid)

        def reader() -> None:
            try:
                read()
            except httpx.HTTPError:
                pass  # the server stops at the end of the run, mid-stream

        def read() -> None:
            with httpx.stream("GET", srv.url + "/api/live", headers=srv.auth(), timeout=None) as resp:
                for line in resp.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    now = time.time()
                    ev = json.loads(line[6:])
                    if ev["type"] == "snapshot":
                        ready.set()
                    elif ev["type"] == "metrics":
                        for s in ev["series"].get("loss", {}).get("steps", []):
                            received.setdefault(int(s), now)
                    if stop.is_set():
                        return

        stop = threading.Event()
        threading.Thread(target=reader, daemon=True).start()
        ready.wait(60)
        time.sleep(1.0)
        c0, t0 = cpu_s(server), time.monotonic()
        time.sleep(5.0)
        idle = (cpu_s(server) - c0) / (time.monotonic() - t0) * 100
        n = int(rate * seconds)
        c0, t0 = cpu_s(server), time.monotonic()
        for i in range(1, n + 1):
            target = t0 + i / rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            rec = {"step": i, "epoch": 0, "wall_time": time.time(),
                   "metrics": {"loss": 1.0 / i, "val_loss": 1.1 / i, "acc": 1 - 1.0 / i, "lr": 0.01, "opt/lr": 0.01}}
            append_line(metrics, rec)
            appended[i] = time.time()
        busy = (cpu_s(server) - c0) / (time.monotonic() - t0) * 100
        deadline = time.monotonic() + 10
        while len(received) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
    lat = [(received[i] - appended[i]) * 1000 for i in range(1, n + 1) if i in received]
    return {"wake": wake, "records": n, "received": len(lat), "p50_ms": statistics.median(lat),
            "p95_ms": pct(lat, 0.95), "max_ms": max(lat), "cpu_busy_pct": busy, "cpu_idle_pct": idle}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=100.0, help="metric records per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--wakes", default="watch,250", help="watch and/or poll intervals in ms (comma-separated)")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.rate:g} records/s for {args.seconds:g} s")
    print("| wake | records | received | latency p50 | p95 | max | server CPU at rate | idle CPU |")
    print("|---|---|---|---|---|---|---|---|")
    for wake in args.wakes.split(","):
        r = run_once(args.rate, args.seconds, wake)
        label = "file change (watchfiles)" if wake == "watch" else f"poll {wake} ms"
        print(f"| {label} | {r['records']} | {r['received']} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms | "
              f"{r['max_ms']:.0f} ms | {r['cpu_busy_pct']:.1f} % of a core | {r['cpu_idle_pct']:.1f} % |", flush=True)


if __name__ == "__main__":
    main()
