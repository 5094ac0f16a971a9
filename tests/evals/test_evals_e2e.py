"""End to end on the synthetic task: the CLI writes results.json, report.md and plots whose
numbers agree; identical policy + seed gives identical runs; paired seeds share init and data."""

import json
import re

import numpy as np
import pytest
from hotcb.evals import stats
from hotcb.evals.train import RunSpec, train

from hotcb.cli import main
from hotcb.jsonl import read_all
from hotcb.rundir import RunDir


def _table(report: str) -> dict[str, dict[str, str]]:
    """The report's first table (the summary), by policy."""
    text = report.split("\n| policy ", 1)[1].split("\n\n", 1)[0]
    lines = ["| policy " + text.splitlines()[0]] + text.splitlines()[1:]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def _pair(text: str) -> tuple[float, float]:
    lo, hi = re.match(r"\[(-?[\d.]+), (-?[\d.]+)\]", text).groups()
    return float(lo), float(hi)


def test_eval_cli_writes_a_report_that_matches_results(tmp_path):
    out = tmp_path / "eval"
    rc = main(["eval", "autopilot", "--task", "synthetic", "--policies", "none,cosine,replay", "--seeds", "2",
               "--budget-epochs", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    runs = [r for r in results["runs"] if r["policy"] != "replay"]
    assert sorted((r["policy"], r["seed"]) for r in runs) == [("cosine", 0), ("cosine", 1), ("none", 0), ("none", 1)]
    assert len({r["steps"] for r in runs}) == 1  # equal training steps for every policy

    rows = _table((out / "report.md").read_text())
    acc = {p: [r["test_acc"] for r in sorted(runs, key=lambda r: r["seed"]) if r["policy"] == p]
           for p in ("none", "cosine")}
    for p in ("none", "cosine"):
        mean, lo, hi = stats.bootstrap_ci(acc[p])  # recomputed here, independently of the report code
        assert float(rows[p]["test acc mean"]) == pytest.approx(100 * mean, abs=0.006)
        assert _pair(rows[p]["95% CI"]) == pytest.approx((100 * lo, 100 * hi), abs=0.006)
        assert rows[p]["n"] == "2"
    d, dlo, dhi = stats.paired_bootstrap(acc["cosine"], acc["none"])
    assert float(rows["cosine"]["diff vs none"]) == pytest.approx(100 * d, abs=0.006)
    assert _pair(rows["cosine"]["diff 95% CI"]) == pytest.approx((100 * dlo, 100 * dhi), abs=0.006)
    assert float(rows["cosine"]["P(better than none)"]) == pytest.approx(stats.p_better(acc["cosine"], acc["none"]), abs=6e-4)
    assert rows["none"]["diff vs none"] == "—"
    _, tlo, thi = stats.paired_t(acc["cosine"], acc["none"])
    assert _pair(rows["cosine"]["diff t 95% CI"]) == pytest.approx((100 * tlo, 100 * thi), abs=0.006)
    sign = stats.sign_test(acc["cosine"], acc["none"])
    assert rows["cosine"]["sign W-L-T (p)"] == f"{sign.wins}-{sign.losses}-{sign.ties} ({sign.p:.3f})"
    assert float(rows["cosine"]["Wilcoxon p"]) == pytest.approx(stats.wilcoxon_p(acc["cosine"], acc["none"]), abs=6e-4)

    # Interventions are the cosine policy's applied lr changes, as the run's own ledger says.
    for r in runs:
        ledger = [e for e in read_all(RunDir(r["run_dir"]).ledger) if isinstance(e, dict)]
        applied = [e for e in ledger if e["source"] == "rule" and e["decision"] == "applied" and e["module"] == "opt"]
        assert r["interventions"] == len(applied)
        assert (r["interventions"] > 0) == (r["policy"] == "cosine")
        lrs = r["curves"]["lr"]
        assert (lrs[-1] < 0.5 * lrs[0]) == (r["policy"] == "cosine")
    cos = [r for r in runs if r["policy"] == "cosine"]
    assert float(rows["cosine"]["interventions"]) == pytest.approx(np.mean([r["interventions"] for r in cos]), abs=0.06)

    # replay: the best-validation run's recipe, replayed through the replay tool on every seed,
    # reproduces that run exactly on its own seed.
    src = results["config"]["replay_of"]
    best = next(r for r in runs if (r["policy"], r["seed"]) == (src["policy"], src["seed"]))
    again = next(r for r in results["runs"] if r["policy"] == "replay" and r["seed"] == src["seed"])
    assert src["entries"] == best["interventions"] > 0
    assert again["interventions"] == best["interventions"]
    assert again["curves"]["lr"] == best["curves"]["lr"]
    assert again["curves"]["train_loss"] == best["curves"]["train_loss"]
    assert "replay" in rows
    for png in ("accuracy.png", "curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _ledger_trajectory(run_dir: str) -> list[tuple]:
    return [(e["step"], e["source"], e["module"], e["op"], json.dumps(e.get("payload"), sort_keys=True))
            for e in read_all(RunDir(run_dir).ledger) if isinstance(e, dict) and e.get("decision") == "applied"]


@pytest.mark.parametrize("policy", ["cosine", "tune"])
def test_identical_policy_and_seed_reproduce_exactly(tmp_path, policy):
    a, b = (train(RunSpec(task="synthetic", policy=policy, seed=3, run_dir=str(tmp_path / name),
                          budget_epochs=2, threads=1)) for name in ("a", "b"))
    assert a["interventions"] > 0
    assert a["curves"]["train_loss"] == b["curves"]["train_loss"]
    assert a["curves"]["lr"] == b["curves"]["lr"]
    assert a["test_acc"] == b["test_acc"]
    assert _ledger_trajectory(a["run_dir"]) == _ledger_trajectory(b["run_dir"])


def test_an_eval_run_again_into_the_same_out_starts_each_run_afresh(tmp_path):
    from hotcb.evals.runner import EvalConfig, run_eval

    cfg = EvalConfig(task="synthetic", policies=["cosine"], seeds=[0], out=str(tmp_path), budget_epochs=1,
                     progress=False)
    first, again = run_eval(cfg), run_eval(cfg)
    (a,), (b,) = first["runs"], again["runs"]
    assert a["interventions"] == b["interventions"] > 0 and a["test_acc"] == b["test_acc"]
    ledger = [e for e in read_all(RunDir(tmp_path / "runs" / "cosine-s0").ledger) if isinstance(e, dict)]
    assert len({e["cmd_id"] for e in ledger}) == len(ledger) == b["interventions"]  # one run's decisions only


def test_paired_seed_shares_init_and_data_until_the_first_intervention(tmp_path):
    base = train(RunSpec(task="synthetic", policy="none", seed=5, run_dir=str(tmp_path / "n"), budget_epochs=1, threads=1))
    cos = train(RunSpec(task="synthetic", policy="cosine", seed=5, run_dir=str(tmp_path / "c"), budget_epochs=1, threads=1))
    first = cos["intervention_log"][0]["step"]  # applied at this step's safe point: steps 1..first are untouched
    assert cos["curves"]["train_loss"][:first] == base["curves"]["train_loss"][:first]
    assert cos["curves"]["train_loss"][first + 1] != base["curves"]["train_loss"][first + 1]


def test_lr_scale_sets_the_start_lr_and_the_report_shows_seeds_and_chance(tmp_path):
    # x400 of synthetic's lr blows the network up at the first steps: every run ends at chance.
    out = tmp_path / "eval"
    rc = main(["eval", "autopilot", "--task", "synthetic", "--policies", "none,cosine", "--seeds", "2",
               "--budget-epochs", "1", "--lr-scale", "400", "--out", str(out), "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["lr_scale"] == 400.0 and results["config"]["threads_per_run"] == 1
    for r in results["runs"]:
        assert r["base_lr"] == pytest.approx(0.05 * 400) and r["chance_acc"] == pytest.approx(0.1)
        assert r["curves"]["lr"][0] == pytest.approx(r["base_lr"]) or r["policy"] == "cosine"
        assert r["test_acc"] < 0.15
    report = (out / "report.md").read_text()
    assert "`--lr-scale 400`" in report
    assert "Every run ended at chance" in report
    rows = _table(report)
    assert rows["none"]["at chance"] == "2/2" and rows["cosine"]["at chance"] == "2/2"
    # The per-seed table: one row per seed, each policy's accuracy, the paired difference beside it.
    acc = {(r["policy"], r["seed"]): 100 * r["test_acc"] for r in results["runs"]}
    for seed in (0, 1):
        row = next(ln for ln in report.splitlines() if ln.startswith(f"| {seed} | "))
        none, cos = (c.strip() for c in row.strip("|").split("|")[1:])
        assert float(none) == pytest.approx(acc[("none", seed)], abs=0.006)
        assert cos == f"{acc[('cosine', seed)]:.2f} ({acc[('cosine', seed)] - acc[('none', seed)]:+.2f})"


def test_lr_scale_and_start_config_are_one_choice():
    with pytest.raises(SystemExit):
        main(["eval", "autopilot", "--task", "synthetic", "--lr-scale", "2", "--start-config", "lr_high",
              "--out", "x"])
    with pytest.raises(SystemExit):
        main(["eval", "autopilot", "--task", "synthetic", "--lr-scale", "-1", "--out", "x"])
