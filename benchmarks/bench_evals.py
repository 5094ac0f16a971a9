"""Eval throughput: runs per minute for the ``digits`` task (or ``--tasks``: any offline ones,
e.g. digits,charlm,regression,fashion-mnist) on this machine; for ``cifar10``, seconds per run
where a GPU and the data are present.

    python benchmarks/bench_evals.py [--tasks digits] [--seeds 2] [--jobs 1] [--policies none,cosine,tune]
        [--executors local,ray]  # side by side; ray: a local Ray instance on this machine's CPUs
        [--cifar-data-dir DIR]   # adds one cifar10 run per policy (GPU expected)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from hotcb.evals.runner import EvalConfig, run_eval


def bench(task: str, policies: list[str], seeds: list[int], jobs: int, executor: str = "local",
          **task_options: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cfg = EvalConfig(task=task, policies=policies, seeds=seeds, out=out, jobs=jobs, progress=False,
                         task_options=dict(task_options), executor=executor)
        t0 = time.perf_counter()
        res = run_eval(cfg)
        wall = time.perf_counter() - t0
    runs = res["runs"]
    return {
        "task": task, "executor": executor, "runs": len(runs), "jobs": jobs, "wall_s": round(wall, 2),
        "runs_per_min": round(60 * len(runs) / wall, 1), "s_per_run": round(wall / len(runs), 2),
        "train_s_per_run": round(sum(r["train_s"] for r in runs) / len(runs), 2),
        "steps_per_run": runs[0]["steps"], "device": runs[0]["device"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="digits", help="comma-separated offline tasks")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--policies", default="none,cosine,tune")
    ap.add_argument("--executors", default="local", help="comma-separated: local, ray")
    ap.add_argument("--cifar-data-dir", default=None)
    args = ap.parse_args()
    policies = args.policies.split(",")
    info = {"cpus": os.cpu_count(), "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    out: dict = {"machine": info}
    for executor in args.executors.split(","):
        if executor == "ray":  # started once, outside the timing (a cluster is up before an eval)
            import ray

            t0 = time.perf_counter()
            ray.init(include_dashboard=False, log_to_driver=False)
            out["ray_init_s"] = round(time.perf_counter() - t0, 2)
        for task in args.tasks.split(","):
            out[f"{task}_{executor}"] = bench(task, policies, list(range(args.seeds)), args.jobs, executor)
    if args.cifar_data_dir:
        out["cifar10"] = bench("cifar10", policies, [0], 1, data_dir=args.cifar_data_dir)
    else:
        out["cifar10"] = "skipped: pass --cifar-data-dir (a GPU is expected)"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
