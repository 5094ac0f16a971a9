"""The autopilot's goals (issue 13), measured: policies none, cosine, rules, tune on paired seeds
from five starts per task, and a check of each goal.

    python benchmarks/bench_autopilot.py [--tasks digits,synthetic] [--seeds 10] [--jobs 2]
        [--out bench-autopilot] [--reuse]

Starts (the start lr as a multiple of the task's, ``hotcb eval autopilot --lr-scale X``): the
tuned start (x1), x4, x0.25, one that diverges with no policy, one ~10x too low. Each start is
one ``hotcb eval autopilot`` run into ``OUT/TASK-START/`` (results.json, report.md); ``--reuse``
skips those already there (to re-print the checks). Prints, per task, a markdown table (the one
docs/evals.md shows) and the goals, each PASS or FAIL with its figure:

- from the diverging start, rules end within 3 pp of the tuned start (none, x1) on every seed;
- from ~10x too low, rules or tune gain >= 2 pp over none (mean, paired);
- from the tuned start, rules' paired difference has a lower 95% bound >= -0.3 pp (the t-interval;
  the bootstrap's is printed beside it) and rules act at most 2 times in any run;
- tune never ends a seed more than 2 pp below none, from any start.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

POLICIES = ["none", "cosine", "rules", "tune"]
# The start lr multipliers per task: diverging = every seed of `none` ends at chance there.
STARTS = {
    "digits": {"tuned x1": 1.0, "x4": 4.0, "x0.25": 0.25, "diverging x24": 24.0, "too low x0.1": 0.1},
    "synthetic": {"tuned x1": 1.0, "x4": 4.0, "x0.25": 0.25, "diverging x40": 40.0, "too low x0.1": 0.1},
}


def _slug(task: str, start: str) -> str:
    return f"{task}-" + start.split()[-1]


def run_start(task: str, scale: float, seeds: list[int], jobs: int, out: Path, reuse: bool) -> dict[str, Any]:
    path = out / "results.json"
    if reuse and path.exists():
        return json.loads(path.read_text())
    from hotcb.evals.report import write_report
    from hotcb.evals.runner import EvalConfig, run_eval

    cfg = EvalConfig(task=task, policies=POLICIES, seeds=seeds, out=str(out), lr_scale=scale, jobs=jobs,
                     progress=False)
    results = run_eval(cfg)
    write_report(results, out)
    return json.loads(path.read_text())  # as written (the same numbers a reader of the file sees)


def _acc(results: dict[str, Any], policy: str) -> dict[int, float]:
    return {r["seed"]: r["test_acc"] for r in results["runs"] if r["policy"] == policy}


def _pp(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.2f}"


def table(task: str, measured: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"| {task} start | policy | test acc % (mean) | diff vs none | diff t 95% CI | worst seed | "
             "sign W-L-T (p) | at chance | interventions (mean / max) |", "|" + "---|" * 9]
    for start, res in measured.items():
        for p in POLICIES:
            s = res["summary"][p]
            ci = "—" if s.get("diff_t_low") is None else f"[{100 * s['diff_t_low']:+.2f}, {100 * s['diff_t_high']:+.2f}]"
            sign = "—" if s.get("sign_p") is None else \
                f"{int(s['sign_wins'])}-{int(s['sign_losses'])}-{int(s['sign_ties'])} ({s['sign_p']:.3f})"
            lines.append(f"| {start} | {p} | {100 * s['mean']:.2f} | {_pp(s.get('diff'))} | {ci} | "
                         f"{_pp(s.get('diff_worst'))} | {sign} | {s['at_chance']}/{int(s['n'])} | "
                         f"{s['interventions_mean']:.1f} / {s['interventions_max']} |")
    return lines


def goals(measured: dict[str, dict[str, Any]]) -> list[tuple[bool, str]]:
    starts = list(measured)
    tuned, diverging, low = starts[0], starts[3], starts[4]
    out = []
    ref = _acc(measured[tuned], "none")
    rules = _acc(measured[diverging], "rules")
    gaps = {s: ref[s] - a for s, a in rules.items() if s in ref}
    worst = max(gaps.values())
    out.append((worst <= 0.03, f"{diverging}: rules end within 3 pp of the tuned start (none) on every seed: "
                               f"largest gap {100 * worst:.2f} pp (seed {max(gaps, key=gaps.get)})"))
    sl = measured[low]["summary"]
    gain = max(sl["rules"]["diff"], sl["tune"]["diff"])
    out.append((gain >= 0.02, f"{low}: rules or tune gain >= 2 pp over none: rules {_pp(sl['rules']['diff'])}, "
                              f"tune {_pp(sl['tune']['diff'])} pp"))
    st = measured[tuned]["summary"]["rules"]
    out.append((st["diff_t_low"] is not None and st["diff_t_low"] >= -0.003,
                f"{tuned}: rules' paired diff lower 95% bound >= -0.3 pp: t {_pp(st['diff_t_low'])} "
                f"(bootstrap {_pp(st['diff_low'])}), mean {_pp(st['diff'])} pp"))
    out.append((st["interventions_max"] <= 2, f"{tuned}: rules act at most 2 times a run: max "
                                              f"{st['interventions_max']}, mean {st['interventions_mean']:.1f}"))
    worst_tune = {start: res["summary"]["tune"]["diff_worst"] for start, res in measured.items()}
    w = min(worst_tune.values())
    out.append((w >= -0.02, "tune never ends a seed more than 2 pp below none: worst seed per start "
                            + ", ".join(f"{k} {_pp(v)}" for k, v in worst_tune.items())))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="digits,synthetic")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="bench-autopilot")
    ap.add_argument("--reuse", action="store_true", help="reuse OUT/TASK-START/results.json where present")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    print("command: python benchmarks/bench_autopilot.py " + shlex.join(sys.argv[1:]))
    failed = 0
    for task in args.tasks.split(","):
        measured: dict[str, dict[str, Any]] = {}
        t0 = time.perf_counter()
        for start, scale in STARTS[task].items():
            measured[start] = run_start(task, scale, list(range(args.seeds)), args.jobs,
                                        Path(args.out) / _slug(task, start), args.reuse)
            print(f"  {task} {start}: `hotcb eval autopilot --task {task} --policies {','.join(POLICIES)} "
                  f"--seeds {args.seeds} --lr-scale {scale:g} --jobs {args.jobs}` "
                  f"({measured[start]['wall_s']:.0f} s)", flush=True)
        print(f"\n## {task} ({args.seeds} seeds, {time.perf_counter() - t0:.0f} s)\n")
        print("\n".join(table(task, measured)))
        print()
        for ok, text in goals(measured):
            failed += not ok
            print(f"- {'PASS' if ok else 'FAIL'}: {text}")
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
