"""The metrics file is hostile input: lines whose ``step`` is non-finite or absurd are dropped with
a count, and get_status, read_trends, read_metrics, list_runs and ``/api/root/runs`` keep
answering; a fresh reader of a long file ending in a long unterminated line reads each byte about
once (counted by the kernel's own ``rchar``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hotcb.mcp_server import HotcbTools
from hotcb.mcp_server.metrics_cursor import START, read_after
from hotcb.mcp_server.metrics_seek import SEEK_ABOVE_BYTES, first_read
from hotcb.mcp_server.metrics_store import MetricsStore
from hotcb.mcp_server.run_root import RunRoot

from tests.dashboard.test_dashboard_proc import ServeProcess

BAD_STEPS = ["1e309", "-1e309", "NaN", "-3", str(2**60), "true", '"7"', "null", "[1]"]


def _write_run(run: Path) -> None:
    run.mkdir(parents=True)
    lines = [json.dumps({"step": s, "metrics": {"loss": 1.0 / s, "val_loss": 2.0 / s}}) for s in range(1, 40)]
    lines += ['{"step": ' + bad + ', "metrics": {"loss": 0.5}}' for bad in BAD_STEPS]
    lines += [json.dumps({"step": 40, "metrics": {"loss": 0.025, "val_loss": 0.05}})]
    (run / "hotcb.metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_absurd_steps_are_dropped_with_a_count_and_every_reader_answers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _write_run(root / "a")
    _write_run(root / "b")
    store = MetricsStore(root / "a" / "hotcb.metrics.jsonl")
    assert store.refresh() == 40 and store.dropped == len(BAD_STEPS) and store.last_step == 40
    batch = read_after(root / "a" / "hotcb.metrics.jsonl", START, 1000)
    assert len(batch.records) == 40 and batch.dropped == len(BAD_STEPS)

    tools = HotcbTools(root / "a", source="agent", actor="pytest")
    for _ in range(2):  # every call, not only the first
        assert tools.call("get_status", {})["last_metrics"] == {"loss": 0.025, "val_loss": 0.05}
        trends = tools.call("read_trends", {})
        assert trends["step"] == 40
        assert tools.call("read_metrics", {"metrics": ["loss"]})["last_step"] == 40
    runs = RunRoot(root).list_runs().runs
    assert [(r.name, r.key_metric, r.key_value) for r in runs] == [("a", "val_loss", 0.05), ("b", "val_loss", 0.05)]

    # a co-tenant's run whose status file no kernel wrote: listed, its unparsable fields named, the others served
    (root / "c").mkdir()
    (root / "c" / "hotcb.status.json").write_text('{"step": 1e309, "scheduled": "many"}')
    runs = RunRoot(root).list_runs().runs
    assert [(r.name, r.status, r.step) for r in runs] == [("a", "absent", None), ("b", "absent", None), ("c", "absent", None)]
    assert runs[2].error and "step" in runs[2].error and "scheduled" in runs[2].error

    with ServeProcess(root, "--root", str(root)) as srv:
        r = srv.get("/api/root/runs")
        assert r.status_code == 200, r.text
        assert sorted((x["name"], x["key_value"]) for x in r.json()["runs"]) == [("a", 0.05), ("b", 0.05), ("c", None)]
        compare = srv.get("/api/root/compare")
        assert compare.status_code == 200 and sorted(compare.json()["runs"]) == ["a", "b", "c"]


def _rchar() -> int:
    return int(next(ln for ln in Path("/proc/self/io").read_text().splitlines() if ln.startswith("rchar")).split()[1])


def test_a_fresh_reader_of_a_long_file_ending_in_an_unterminated_line_reads_it_about_once(tmp_path: Path) -> None:
    path = tmp_path / "hotcb.metrics.jsonl"
    with open(path, "wb") as f:
        for s in range(1, 20001):
            f.write(b'{"step": %d, "metrics": {"loss": 0.5}}\n' % s)
        tail = b'{"step": 20001, "metrics": {"loss": "' + b"x" * (1 << 20)
        while f.tell() < 40 << 20:
            f.write(tail)
    size = os.path.getsize(path)
    assert size > SEEK_ABOVE_BYTES
    before = _rchar()
    found = first_read(path, size, recent_cap=100, history_points=50)
    read = _rchar() - before
    assert found is not None and found.recent[-1].step == 20000
    assert read < 2 * size, f"read {read} bytes of a {size}-byte file"  # re-reading to the end would be ~20x
    store = MetricsStore(path, recent_cap=100)
    before = _rchar()
    assert store.refresh() > 0 and store.last_step == 20000
    assert _rchar() - before < 3 * size
