"""``report.md`` from ``results.json``: one table row per policy, every number computed here from
the runs (so the report and the results can be checked against each other)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ai_accounting, stats

BASELINE = "none"
COLUMNS = ("policy", "n", "test acc mean", "95% CI", "diff vs none", "diff 95% CI", "P(better than none)",
           "interventions", "refused", "LLM calls", "tokens", "cost $", "train s", "policy s")


def _by_policy(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results["runs"]:
        out.setdefault(r["policy"], []).append(r)
    for runs in out.values():
        runs.sort(key=lambda r: r["seed"])  # aligned by seed for the paired statistics
    return out


def summarize_runs(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per policy: accuracy mean and bootstrap CI, paired difference vs ``none`` over the seeds
    both have, P(better), and totals of interventions, LLM use and time."""
    groups = _by_policy(results)
    base = {r["seed"]: r["test_acc"] for r in groups.get(BASELINE, [])}
    summary = {}
    for policy, runs in groups.items():
        accs = [r["test_acc"] for r in runs]
        paired = [r for r in runs if r["seed"] in base]
        s = stats.summarize(accs)
        if policy != BASELINE and paired:
            s.update({k: v for k, v in stats.summarize([r["test_acc"] for r in paired],
                                                       [base[r["seed"]] for r in paired]).items()
                      if k.startswith("diff") or k == "p_better"})
        s.update(
            seeds=[r["seed"] for r in runs],
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


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _ci(lo: float | None, hi: float | None) -> str:
    return "—" if lo is None or hi is None else f"[{100 * lo:.2f}, {100 * hi:.2f}]"


def table_rows(summary: dict[str, dict[str, Any]], order: list[str]) -> list[list[str]]:
    rows = []
    for p in [p for p in order if p in summary]:
        s = summary[p]
        rows.append([
            p, str(int(s["n"])), _pct(s["mean"]), _ci(s["ci_low"], s["ci_high"]),
            "—" if s["diff"] is None else f"{100 * s['diff']:+.2f}", _ci(s["diff_low"], s["diff_high"]),
            "—" if s["p_better"] is None else f"{s['p_better']:.3f}",
            f"{s['interventions_mean']:.1f}", str(s["refused_total"]), str(s["llm_calls"]), str(s["tokens"]),
            f"{s['cost_usd']:.4f}", f"{s['train_s_mean']:.1f}", f"{s['policy_s_mean']:.1f}",
        ])
    return rows


def write_report(results: dict[str, Any], out: str | Path, plots: list[str] | None = None) -> Path:
    cfg, summary = results["config"], results["summary"]
    lines = [
        f"# hotcb eval autopilot: {cfg['task']}",
        "",
        f"Seeds {cfg['seeds']} (paired: every policy trains from the same init, data order and augmentation "
        f"per seed), start config `{cfg['start_config']}`, equal training steps per run "
        f"({', '.join(str(s) for s in sorted({r['steps'] for r in results['runs']}))}). Accuracy is on the "
        "held-out test split, which no policy sees (policies read validation metrics only).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(summary, cfg["policies"])]
    lines += [
        "",
        "Accuracy and differences in percentage points. CI: percentile bootstrap over seeds (10,000 "
        "resamples, seeded). Diff: paired by seed against `none`. P(better than none): share of paired "
        "bootstrap resamples with a positive mean difference (0.5 = no evidence either way). With few "
        "seeds the intervals are wide and honest about it. Interventions: applied knob changes in the "
        "ledger by the policy's source, mean per run; refused: ops the guard or kernel refused (total). "
        "Train s: training compute per run (policy time excluded); policy s: time in the policy "
        "(LLM calls included), per run.",
    ]
    if cfg.get("replay_of"):
        ro = cfg["replay_of"]
        lines += ["", f"`replay` replays the recipe of the run with the best final validation accuracy "
                      f"({ro['policy']}, seed {ro['seed']}, {ro['entries']} entries) on every seed; it was selected "
                      "after the fact, so read it as an upper bound of what that recipe transfers."]
    errors = [(r["policy"], r["seed"], e) for r in results["runs"] for e in r.get("policy_errors") or []]
    if errors:
        dead = sorted({f"{r['policy']} seed {r['seed']}" for r in results["runs"] if r.get("policy_started") is False})
        lines += ["", "## Policy errors", ""]
        if dead:
            lines += [f"**Did not start (these runs trained unchanged, like `none`): {', '.join(dead)}.**", ""]
        lines += [f"- {p} seed {s}: {e}" for p, s, e in errors[:50]]
    lines += ai_accounting.section(results)  # llm-owned (issue 14): the ai policy's wakes and fallbacks
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
