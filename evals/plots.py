"""PNG plots of an eval: the score (accuracy or held-out loss) per policy with CIs; loss and lr
curves with intervention markers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .score import higher_is_better, score


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def accuracy_plot(results: dict[str, Any], out: Path) -> Path:
    plt = _plt()
    summary = results["summary"]
    policies = [p for p in results["config"]["policies"] if p in summary]
    acc = higher_is_better(results["runs"])
    k = 100.0 if acc else 1.0
    fig, ax = plt.subplots(figsize=(1.2 * len(policies) + 3, 4))
    for i, p in enumerate(policies):
        s = summary[p]
        values = [k * score(r) for r in results["runs"] if r["policy"] == p]
        ax.scatter([i] * len(values), values, color="0.6", s=12, zorder=2)
        ax.errorbar([i], [k * s["mean"]], yerr=[[k * (s["mean"] - s["ci_low"])], [k * (s["ci_high"] - s["mean"])]],
                    fmt="o", color="C0", capsize=6, zorder=3)
    ax.set_xticks(range(len(policies)), policies)
    ax.set_ylabel("test accuracy (%)" if acc else "test loss (lower is better)")
    ax.set_title(f"{results['config']['task']}: mean and bootstrap 95% CI over seeds")
    ax.grid(axis="y", alpha=0.3)
    path = out / "accuracy.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves_plot(results: dict[str, Any], out: Path) -> Path:
    """Train loss and lr over steps for the first seed of each policy; markers where the policy
    changed a knob."""
    plt = _plt()
    seed = results["config"]["seeds"][0]
    runs = [r for r in results["runs"] if r["seed"] == seed]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for i, r in enumerate(runs):
        c = r["curves"]
        color = f"C{i % 10}"
        style = ("-", "--", ":", "-.")[i % 4]  # identical curves (a replayed recipe) stay visible
        ax_loss.plot(c["step"], c["train_loss"], color=color, ls=style, lw=0.8, alpha=0.8, label=r["policy"])
        ax_lr.plot(c["step"], c["lr"], color=color, ls=style, lw=1.2, label=r["policy"])
        lr_at = dict(zip(c["step"], c["lr"], strict=True))
        marks = [e["step"] for e in r.get("intervention_log") or []]
        ax_lr.scatter(marks, [lr_at.get(s + 1, lr_at.get(s, c["lr"][0])) for s in marks], color=color, marker="v", s=18)
    ax_loss.set_ylabel("train loss")
    ax_loss.set_yscale("log")
    ax_lr.set_ylabel("lr")
    ax_lr.set_yscale("log")
    ax_lr.set_xlabel("step")
    ax_loss.legend(fontsize=8)
    ax_loss.set_title(f"seed {seed}: loss and lr (markers: the policy's applied changes)")
    path = out / "curves.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(results: dict[str, Any], out: str | Path) -> list[str]:
    out = Path(out)
    return [str(accuracy_plot(results, out)), str(curves_plot(results, out))]
