"""The no-verdict-in-a-distributed-run rule is one function, which the kernel's view and the
published status's view both apply."""

from __future__ import annotations

from hotcb.divergence import Verdict, verdict_for_judge
from hotcb.records import StatusRecord


def test_the_verdict_is_weighed_in_a_single_process_run_only() -> None:
    assert verdict_for_judge(Verdict.HEALTHY.value, 1) == "healthy"
    assert verdict_for_judge(Verdict.HEALTHY.value, 2) is None
    assert verdict_for_judge(None, 1) is None


def test_the_published_status_applies_the_same_rule() -> None:
    doc = {"step": 5, "rescue": {"enabled": True, "verdict": "healthy"}}
    assert StatusRecord.from_json({**doc, "world_size": 1}).run_verdict == "healthy"
    assert StatusRecord.from_json({**doc, "world_size": 4}).run_verdict is None
    assert StatusRecord.from_json({"step": 5}).run_verdict is None

