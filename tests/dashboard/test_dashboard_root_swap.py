"""``hotcb serve --root ROOT`` (real uvicorn): a run swapped for a symlink to a run outside the
root after its dashboard was served is refused on the next request and leaves ``/api/root/runs``;
a new real directory under the same name is served as the new run."""

from __future__ import annotations

from pathlib import Path

from hotcb.jsonl_write import append_lines
from tests.dashboard.test_dashboard_proc import ServeProcess


def _run(run: Path, loss: float) -> None:
    run.mkdir(parents=True)
    append_lines(run / "hotcb.metrics.jsonl", [{"step": s, "metrics": {"loss": loss}} for s in range(1, 10)])


def test_a_swapped_run_is_refused_by_the_root_dashboard(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    _run(root / "a", 1.0)
    _run(root / "b", 2.0)
    _run(outside, 9.0)
    with ServeProcess(root, "--root", str(root)) as srv:
        r = srv.post("/runs/a/api/tools/get_status", json={})
        assert r.status_code == 200 and r.json()["last_metrics"] == {"loss": 1.0}
        (root / "a").rename(tmp_path / "a-moved")
        (root / "a").symlink_to(outside, target_is_directory=True)
        assert srv.post("/runs/a/api/tools/get_status", json={}).status_code == 404
        assert [x["name"] for x in srv.get("/api/root/runs").json()["runs"]] == ["b"]
        (root / "a").unlink()
        _run(root / "a", 3.0)
        r = srv.post("/runs/a/api/tools/get_status", json={})
        assert r.status_code == 200 and r.json()["last_metrics"] == {"loss": 3.0}
