"""The status heartbeat's writer thread: the newest value wins, whichever thread writes last."""

from __future__ import annotations

import json

from hotcb.offstep import LatestFile


def test_a_value_written_now_is_never_replaced_by_an_older_posted_one(tmp_path):
    path = tmp_path / "hotcb.status.json"
    out = LatestFile(path)
    for i in range(200):
        out.post({"step": i})
    out.write_now({"step": "forced"})
    out.close()  # joins the writer: whatever it still held was older than the forced value
    assert json.loads(path.read_text()) == {"step": "forced"}


def test_the_newest_posted_value_is_written(tmp_path):
    path = tmp_path / "hotcb.status.json"
    out = LatestFile(path)
    for i in range(50):
        out.post({"step": i})
    out.close()
    assert json.loads(path.read_text()) == {"step": 49}
