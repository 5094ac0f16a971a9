"""``report.md`` from ``results.json``: one table row per policy, every number computed here from
the runs (so the report and the results can be checked against each other)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ai_accounting, stats
from .score import BASELINE_FACTOR, CHANCE_FACTOR, at_chance, fmt, fmt_diff, higher_is_better, score

__all__ = ["BASELINE", "CHANCE_FACTOR", "COLUMNS", "at_chance", "summarize_runs", "table_rows", "write_report"]

BASELINE = "none"
COLUMNS = ("policy", "n", "test acc mean", "95% CI", "diff vs none", "diff 95% CI", "diff t 95% CI",
           "worst seed diff", "Wilcoxon p", "sign W-L-T (p)", "P(better than none)", "at chance",
           "interventions", "refused", "LLM calls", "tokens", "cost $", "train s", "policy s")


def _by_policy(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results["runs"]:
        out.setdefault(r["policy"], []).append(r)
    for runs in out.values():
        runs.sort(key=lambda r: r["seed"])  # aligned by seed for the paired statistics
    return out


def summarize_runs(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per policy: the score's mean and bootstrap CI, paired difference vs ``none`` over the seeds
    both have, P(better), and totals of interventions, LLM use and time. Differences are policy
    minus none on the score's own scale; for a loss (lower is better) "better", wins and the
    worst seed are read the other way."""
    groups = _by_policy(results)
    up = higher_is_better(results["runs"])
    base = {r["seed"]: score(r) for r in groups.get(BASELINE, [])}
    summary = {}
    for policy, runs in groups.items():
        paired = [r for r in runs if r["seed"] in base]
        s = stats.summarize([score(r) for r in runs])
        if policy != BASELINE and paired:
            s.update({k: v for k, v in stats.summarize([score(r) for r in paired],
                                                       [base[r["seed"]] for r in paired]).items()
                      if k.startswith(("diff", "sign", "wilcoxon")) or k == "p_better"})
            diffs = [score(r) - base[r["seed"]] for r in paired]
            s["diff_worst"] = min(diffs) if up else max(diffs)
            if not up and s["p_better"] is not None:
                s["p_better"] = 1.0 - s["p_better"]
                s["sign_wins"], s["sign_losses"] = s["sign_losses"], s["sign_wins"]
        else:
            s["diff_worst"] = None
        s.update(
            goal="max" if up else "min",
            seeds=[r["seed"] for r in runs],
            per_seed={str(r["seed"]): score(r) for r in runs},
            at_chance=sum(at_chance(r) for r in runs),
            interventions_max=max(r["interventions"] for r in runs),
            interventions_mean=sum(r["interventions"] for r in runs) / len(runs),
            refused_total=sum(r["refused"] for r in runs),
            llm_calls=sum(r.get("llm_calls", 0) for r in runs),
            tokens=sum(r.get("tokens", 0) for r in runs),
            cost_usd=sum(r.get("cost_usd", 0.0) for r in runs),
            train_s_mean=sum(r["train_s"] for r in runs) / len(runs),
            policy_s_mean=sum(r["policy_s"] for r in runs) / len(runs),
            steps=sorted({r["steps"] for r in runs}),
            errors=sum(len(r.get("policy_errors") or []) for r in runs),
        )
        summary[policy] = s
    return summary


def _ci(lo: float | None, hi: float | None, acc: bool = True) -> str:
    return "—" if lo is None or hi is None else f"[{fmt(lo, acc)}, {fmt(hi, acc)}]"


def _sign(s: dict[str, Any]) -> str:
    if s.get("sign_p") is None:
        return "—"
    return f"{int(s['sign_wins'])}-{int(s['sign_losses'])}-{int(s['sign_ties'])} ({s['sign_p']:.3f})"


def table_rows(summary: dict[str, dict[str, Any]], order: list[str]) -> list[list[str]]:
    rows = []
    for p in [p for p in order if p in summary]:
        s = summary[p]
        acc = s.get("goal", "max") == "max"
        rows.append([
            p, str(int(s["n"])), fmt(s["mean"], acc), _ci(s["ci_low"], s["ci_high"], acc),
            fmt_diff(s["diff"], acc), _ci(s["diff_low"], s["diff_high"], acc),
            _ci(s.get("diff_t_low"), s.get("diff_t_high"), acc), fmt_diff(s.get("diff_worst"), acc),
            "—" if s.get("wilcoxon_p") is None else f"{s['wilcoxon_p']:.3f}", _sign(s),
            "—" if s["p_better"] is None else f"{s['p_better']:.3f}", f"{s.get('at_chance', 0)}/{int(s['n'])}",
            f"{s['interventions_mean']:.1f}", str(s["refused_total"]), str(s["llm_calls"]), str(s["tokens"]),
            f"{s['cost_usd']:.4f}", f"{s['train_s_mean']:.1f}", f"{s['policy_s_mean']:.1f}",
        ])
    return rows


def _start(cfg: dict[str, Any]) -> str:
    if cfg.get("lr_scale") is not None:
        return f"lr x{cfg['lr_scale']:g} of the task's (`--lr-scale {cfg['lr_scale']:g}`)"
    return f"config `{cfg['start_config']}`"


def _chance_rule(runs: list[dict[str, Any]]) -> str:
    if higher_is_better(runs):
        return f"test accuracy below {CHANCE_FACTOR:g} x 1/classes"
    return f"test loss at {BASELINE_FACTOR:g} x the no-learning baseline or above"


def _chance_note(results: dict[str, Any]) -> list[str]:
    runs = results["runs"]
    low = [r for r in runs if at_chance(r)]
    if not low:
        return []
    if len(low) == len(runs):
        return ["", f"**Every run ended at chance ({_chance_rule(runs)}): no policy "
                    "trained a working model here, so the differences above compare broken runs.**"]
    names = ", ".join(f"{r['policy']} seed {r['seed']}" for r in low)
    return ["", f"**At chance ({_chance_rule(runs)}): {names}.**"]


def _per_seed(summary: dict[str, dict[str, Any]], order: list[str], acc: bool = True) -> list[str]:
    """Each seed's score per policy, with its paired difference against ``none``."""
    policies = [p for p in order if p in summary]
    seeds = sorted({int(k) for p in policies for k in summary[p]["per_seed"]})
    base = summary.get(BASELINE, {}).get("per_seed", {})
    what = "Test accuracy (%)" if acc else "Test loss"
    lines = ["", "## Per seed", "", f"{what} and, in brackets, the difference from `none` on the same seed.",
             "", "| seed | " + " | ".join(policies) + " |", "|" + "---|" * (len(policies) + 1)]
    for seed in seeds:
        cells = []
        for p in policies:
            value = summary[p]["per_seed"].get(str(seed))
            if value is None:
                cells.append("—")
                continue
            b = base.get(str(seed))
            cells.append(fmt(value, acc) + ("" if p == BASELINE or b is None else f" ({fmt_diff(value - b, acc)})"))
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return lines


def write_report(results: dict[str, Any], out: str | Path, plots: list[str] | None = None) -> Path:
    cfg, summary = results["config"], results["summary"]
    acc = higher_is_better(results["runs"])
    columns = COLUMNS if acc else tuple("test loss mean" if c == "test acc mean" else c for c in COLUMNS)
    scored = ("Accuracy is on the held-out test split" if acc else
              "The score is the held-out test loss (lower is better; a broken run scores the no-learning "
              "baseline at most, as a broken classifier scores chance) on the test split")
    lines = [
        f"# hotcb eval autopilot: {cfg['task']}",
        "",
        f"Seeds {cfg['seeds']} (paired: every policy trains from the same init, data order and augmentation "
        f"per seed), start {_start(cfg)}, equal training steps per run "
        f"({', '.join(str(s) for s in sorted({r['steps'] for r in results['runs']}))}). {scored}, "
        "which no policy sees (policies read validation metrics only).",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summary, cfg["policies"])]
    lines += [
        "",
        ("Accuracy and differences in percentage points." if acc else
         "Loss and differences (policy - none) in the loss's units: negative is better.") + " CI: percentile bootstrap over seeds (10,000 "
        "resamples, seeded). Diff: paired by seed against `none`. The bootstrap is too narrow with few "
        "seeds, so beside it: diff t 95% CI, the paired Student t-interval; worst seed diff, the lowest "
        "paired difference of any seed; Wilcoxon p, the two-sided signed-rank test of the paired "
        "differences (zeros dropped); sign W-L-T (p), the seeds the policy won, lost and tied against "
        "`none` and the exact two-sided sign test. P(better than none): share of paired "
        "bootstrap resamples with a mean difference in the better direction (0.5 = no evidence either way). "
        f"At chance: runs with {_chance_rule(results['runs'])}. "
        "Interventions: applied knob changes in the "
        "ledger by the policy's source, mean per run; refused: ops the guard or kernel refused (total). "
        "Train s: training compute per run (policy time excluded); policy s: time in the policy "
        "(LLM calls included), per run.",
    ]
    lines += _chance_note(results)
    lines += _per_seed(summary, cfg["policies"], acc)
    if cfg.get("replay_of"):
        ro = cfg["replay_of"]
        lines += ["", f"`replay` replays the recipe of the run with the best final validation score "
                      f"({ro['policy']}, seed {ro['seed']}, {ro['entries']} entries) on every seed; it was selected "
                      "after the fact, so read it as an upper bound of what that recipe transfers."]
    errors = [(r["policy"], r["seed"], e) for r in results["runs"] for e in r.get("policy_errors") or []]
    if errors:
        dead = sorted({f"{r['policy']} seed {r['seed']}" for r in results["runs"] if r.get("policy_started") is False})
        lines += ["", "## Policy errors", ""]
        if dead:
            lines += [f"**Did not start (these runs trained unchanged, like `none`): {', '.join(dead)}.**", ""]
        lines += [f"- {p} seed {s}: {e}" for p, s, e in errors[:50]]
    lines += ai_accounting.section(results)  # the ai policy's wakes and fallbacks
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
