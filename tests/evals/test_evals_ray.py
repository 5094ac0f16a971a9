"""The Ray executor on a local Ray instance (2 CPUs) gives the same results.json numbers as the
local executor for 2 policies x 2 seeds on ``synthetic``, and the run directories come back to
``--out`` as the local executor leaves them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hotcb.cli import main
from hotcb.jsonl import read_all
from hotcb.rundir import RunDir

ray = pytest.importorskip("ray")

TIMING = {"wall_s", "policy_s", "train_s", "run_dir", "train_s_mean", "policy_s_mean"}  # how long and where: not results


def _numbers(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in results["runs"]]


def _eval(out: Path, *extra: str) -> dict[str, Any]:
    rc = main(["eval", "autopilot", "--task", "synthetic", "--policies", "none,cosine", "--seeds", "2",
               "--budget-epochs", "1", "--jobs", "2", "--out", str(out), "--no-progress", *extra])
    assert rc == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture
def local_ray() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_executor_gives_the_local_numbers_and_run_dirs(tmp_path: Path, local_ray: Any) -> None:
    local = _eval(tmp_path / "local")
    on_ray = _eval(tmp_path / "ray", "--executor", "ray")
    assert on_ray["config"]["executor"] == "ray" and local["config"]["executor"] == "local"
    assert [(r["policy"], r["seed"]) for r in on_ray["runs"]] == [("none", 0), ("none", 1), ("cosine", 0), ("cosine", 1)]
    assert _numbers(on_ray) == _numbers(local)
    strip = lambda summary: {p: {k: v for k, v in row.items() if k not in TIMING}  # noqa: E731
                             for p, row in summary.items()}
    assert strip(on_ray["summary"]) == strip(local["summary"])
    for a, b in zip(local["runs"], on_ray["runs"], strict=True):
        assert Path(b["run_dir"]) == tmp_path / "ray" / "runs" / Path(a["run_dir"]).name
        ledger_a = [(e["step"], e["decision"], e.get("payload")) for e in read_all(RunDir(a["run_dir"]).ledger)]
        ledger_b = [(e["step"], e["decision"], e.get("payload")) for e in read_all(RunDir(b["run_dir"]).ledger)]
        assert ledger_a == ledger_b and (bool(ledger_b) or a["policy"] == "none")
        assert sorted(p.name for p in Path(a["run_dir"]).iterdir()) == sorted(p.name for p in Path(b["run_dir"]).iterdir())
