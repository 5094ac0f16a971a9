"""The ``rules`` policy in an eval run is the agent's real rules autopilot: from a too-high start
lr it acts through the tool surface, and its changes are ledger entries with source ``rule``."""

from hotcb.evals.train import RunSpec, train

from hotcb.jsonl import read_all
from hotcb.rundir import RunDir


def test_rules_policy_acts_through_the_tools_and_lands_in_the_ledger(tmp_path):
    r = train(RunSpec(task="synthetic", policy="rules", seed=0, run_dir=str(tmp_path / "run"),
                      start_config="lr_high", threads=1))
    assert r["policy_started"], r["policy_errors"]
    ledger = [e for e in read_all(RunDir(r["run_dir"]).ledger) if isinstance(e, dict)]
    applied = [e for e in ledger if e["source"] == "rule" and e["module"] == "opt" and e["decision"] == "applied"]
    assert applied, [(e["source"], e["decision"], e.get("error")) for e in ledger]
    assert all(e["reason"] for e in applied)
    assert r["interventions"] == len(applied)
    first = applied[0]["payload"]["lr"]
    assert first["new"] < first["old"]  # the rules cut a too-high lr, never raise it here
    assert r["curves"]["lr"][-1] < r["curves"]["lr"][0]
