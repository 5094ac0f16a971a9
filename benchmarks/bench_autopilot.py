"""The autopilot's goals, measured: policies none, cosine, rules, tune on paired seeds from four
or five starts per task, and a check of each goal.

    python benchmarks/bench_autopilot.py [--tasks charlm,regression,fashion-mnist,digits,synthetic]
        [--seeds 10] [--jobs 2] [--out bench-autopilot] [--reuse]

Starts (the start lr as a multiple of the task's, ``hotcb eval autopilot --lr-scale X``): the
tuned start (x1), an unstable one (x4, or the task's own), ~10x too low (x0.1), one that
diverges with no policy (digits and synthetic also x0.25). Each start is one
``hotcb eval autopilot`` run into ``OUT/TASK-START/`` (results.json, report.md); ``--reuse``
skips those already there (to re-print the checks). Every task is scored on its own scale:
test accuracy (pp), or held-out test loss for charlm and regression (lower is better; a margin
of 1% of a loss stands for 0.3-0.5 pp of accuracy). Prints, per task, a markdown table (the one
docs/evals.md shows) and the goals, each PASS or FAIL with its figure:

- from every start, rules are no worse than none: the paired t 95% bound on rules - none is
  >= -0.3 pp (a loss: <= +1% of none's mean loss);
- from every start, rules' mean is within 0.5 pp (1% of a loss) of the better of none and cosine;
- from the diverging start, every seed of rules ends within 3 pp (5% of a loss) of the tuned
  start's none on the same seed;
- from x0.1, rules recover >= 60% of the gap between none there and none from the tuned start;
- moonshot (printed after all tasks): from the tuned start rules beat cosine with a paired
  t-test p < 0.05 on at least two tasks.
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
# Per task: start label -> (lr multiplier, role). Diverging = `none` ends at chance (or the
# regression's no-learning baseline) on every seed there.
STARTS: dict[str, dict[str, tuple[float, str]]] = {
    "digits": {"tuned x1": (1.0, "tuned"), "x4": (4.0, "unstable"), "x0.25": (0.25, "other"),
               "diverging x24": (24.0, "diverging"), "too low x0.1": (0.1, "low")},
    "synthetic": {"tuned x1": (1.0, "tuned"), "x4": (4.0, "unstable"), "x0.25": (0.25, "other"),
                  "diverging x40": (40.0, "diverging"), "too low x0.1": (0.1, "low")},
    "charlm": {"tuned x1": (1.0, "tuned"), "unstable x10": (10.0, "unstable"), "too low x0.1": (0.1, "low"),
               "diverging x30": (30.0, "diverging")},
    "regression": {"tuned x1": (1.0, "tuned"), "unstable x8": (8.0, "unstable"), "too low x0.1": (0.1, "low"),
                   "diverging x20": (20.0, "diverging")},
    "fashion-mnist": {"tuned x1": (1.0, "tuned"), "x4": (4.0, "unstable"), "too low x0.1": (0.1, "low"),
                      "diverging x8": (8.0, "diverging")},
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


def _score(results: dict[str, Any], policy: str) -> dict[int, float]:
    from hotcb.evals.score import score

    return {r["seed"]: score(r) for r in results["runs"] if r["policy"] == policy}


def _is_acc(measured: dict[str, dict[str, Any]]) -> bool:
    from hotcb.evals.score import higher_is_better

    return higher_is_better(next(iter(measured.values()))["runs"])


def _f(x: float | None, acc: bool, signed: bool = True) -> str:
    from hotcb.evals.score import fmt, fmt_diff

    return (fmt_diff if signed else fmt)(x, acc)


def table(task: str, measured: dict[str, dict[str, Any]]) -> list[str]:
    acc = _is_acc(measured)
    what = "test acc % (mean)" if acc else "test loss (mean)"
    lines = [f"| {task} start | policy | {what} | diff vs none | diff t 95% CI | worst seed | "
             "sign W-L-T (p) | at chance | interventions (mean / max) |", "|" + "---|" * 9]
    for start, res in measured.items():
        for p in POLICIES:
            s = res["summary"][p]
            ci = "—" if s.get("diff_t_low") is None else \
                f"[{_f(s['diff_t_low'], acc)}, {_f(s['diff_t_high'], acc)}]"
            sign = "—" if s.get("sign_p") is None else \
                f"{int(s['sign_wins'])}-{int(s['sign_losses'])}-{int(s['sign_ties'])} ({s['sign_p']:.3f})"
            lines.append(f"| {start} | {p} | {_f(s['mean'], acc, False)} | {_f(s.get('diff'), acc)} | {ci} | "
                         f"{_f(s.get('diff_worst'), acc)} | {sign} | {s['at_chance']}/{int(s['n'])} | "
                         f"{s['interventions_mean']:.1f} / {s['interventions_max']} |")
    return lines


def _by_role(task: str, measured: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {role: start for start, (_, role) in STARTS[task].items() if start in measured}


def _no_worse(start: str, res: dict[str, Any], acc: bool) -> tuple[bool, str]:
    s, base = res["summary"]["rules"], res["summary"]["none"]["mean"]
    if acc:
        bound = s["diff_t_low"]
        ok = bound is not None and bound >= -0.003
        return ok, f"{start}: rules no worse than none: t 95% lower bound {_f(bound, acc)} pp (>= -0.30)"
    bound = s["diff_t_high"]
    ok = bound is not None and bound <= 0.01 * base
    return ok, (f"{start}: rules no worse than none: t 95% upper bound {_f(bound, acc)} "
                f"(<= +1% of none's {base:.4f}: {0.01 * base:+.4f})")


def _near_best(start: str, res: dict[str, Any], acc: bool) -> tuple[bool, str]:
    sm = res["summary"]
    rules, none, cos = sm["rules"]["mean"], sm["none"]["mean"], sm["cosine"]["mean"]
    best = max(none, cos) if acc else min(none, cos)
    ok = rules >= best - 0.005 if acc else rules <= 1.01 * best
    gap = rules - best
    limit = "0.5 pp" if acc else f"1% = {0.01 * best:.4f}"
    return ok, f"{start}: rules within {limit} of the better of none and cosine: rules - best {_f(gap, acc)}"


def goals(task: str, measured: dict[str, dict[str, Any]]) -> list[tuple[bool, str]]:
    acc = _is_acc(measured)
    role = _by_role(task, measured)
    out = []
    for start, res in measured.items():
        out.append(_no_worse(start, res, acc))
        out.append(_near_best(start, res, acc))
    ref = _score(measured[role["tuned"]], "none")
    if "diverging" in role:
        rules = _score(measured[role["diverging"]], "rules")
        gaps = {s: (ref[s] - v if acc else (v - ref[s]) / ref[s]) for s, v in rules.items() if s in ref}
        worst_seed = max(gaps, key=gaps.get)
        worst = gaps[worst_seed]
        ok = worst <= (0.03 if acc else 0.05)
        text = f"{100 * worst:.2f} pp" if acc else f"{100 * worst:+.1f}% of the tuned loss"
        out.append((ok, f"{role['diverging']}: every seed of rules within {'3 pp' if acc else '5%'} of the tuned "
                        f"start (none, same seed): worst {text} (seed {worst_seed})"))
    if "low" in role:
        sl = measured[role["low"]]["summary"]
        tuned = measured[role["tuned"]]["summary"]["none"]["mean"]
        gap = tuned - sl["none"]["mean"]
        rec = (sl["rules"]["mean"] - sl["none"]["mean"]) / gap + 0.0 if gap != 0 else float("nan")  # no "-0%"
        if gap * (1 if acc else -1) <= 0:
            out.append((True, f"{role['low']}: no gap to recover (none there {_f(sl['none']['mean'], acc, False)}, "
                              f"tuned {_f(tuned, acc, False)})"))
        else:
            out.append((rec >= 0.6, f"{role['low']}: rules recover >= 60% of the gap to the tuned start: "
                                    f"{100 * rec:.0f}% (none {_f(sl['none']['mean'], acc, False)}, rules "
                                    f"{_f(sl['rules']['mean'], acc, False)}, tuned {_f(tuned, acc, False)})"))
    return out


def beats_cosine(measured: dict[str, dict[str, Any]], tuned: str) -> tuple[float, float | None]:
    """(mean rules - cosine in the better direction, paired t-test two-sided p) from the tuned start."""
    from scipy import stats as sst

    acc = _is_acc(measured)
    r, c = _score(measured[tuned], "rules"), _score(measured[tuned], "cosine")
    seeds = sorted(set(r) & set(c))
    d = [(r[s] - c[s]) * (1 if acc else -1) for s in seeds]
    if len(d) < 2 or all(x == d[0] for x in d):
        return (sum(d) / len(d) if d else 0.0), None
    return sum(d) / len(d), float(sst.ttest_rel([r[s] for s in seeds], [c[s] for s in seeds]).pvalue)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="charlm,regression,fashion-mnist,digits,synthetic")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="bench-autopilot")
    ap.add_argument("--reuse", action="store_true", help="reuse OUT/TASK-START/results.json where present")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    print("command: python benchmarks/bench_autopilot.py " + shlex.join(sys.argv[1:]))
    failed = 0
    moonshot: list[str] = []
    wins = 0
    for task in args.tasks.split(","):
        measured: dict[str, dict[str, Any]] = {}
        t0 = time.perf_counter()
        for start, (scale, _) in STARTS[task].items():
            measured[start] = run_start(task, scale, list(range(args.seeds)), args.jobs,
                                        Path(args.out) / _slug(task, start), args.reuse)
            print(f"  {task} {start}: `hotcb eval autopilot --task {task} --policies {','.join(POLICIES)} "
                  f"--seeds {args.seeds} --lr-scale {scale:g} --jobs {args.jobs}` "
                  f"({measured[start]['wall_s']:.0f} s)", flush=True)
        print(f"\n## {task} ({args.seeds} seeds, {time.perf_counter() - t0:.0f} s)\n")
        print("\n".join(table(task, measured)))
        print()
        for ok, text in goals(task, measured):
            failed += not ok
            print(f"- {'PASS' if ok else 'FAIL'}: {text}")
        print()
        gain, p = beats_cosine(measured, _by_role(task, measured)["tuned"])
        won = p is not None and p < 0.05 and gain > 0
        wins += won
        moonshot.append(f"{task} {_f(gain, _is_acc(measured))} "
                        f"(p {'—' if p is None else f'{p:.3f}'})")
    print(f"- moonshot {'PASS' if wins >= 2 else 'FAIL'}: from the tuned start rules beat cosine (paired t, "
          f"p < 0.05) on {wins} task(s) (>= 2 wanted); rules - cosine, in the better direction: "
          + ", ".join(moonshot))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
