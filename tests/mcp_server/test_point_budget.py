"""The budget that bounds a metrics store's points across names (``point_budget``): the caps
halve together as the names grow, never below a floor, and always fit the total."""

from __future__ import annotations

from hotcb.mcp_server.point_budget import TOTAL_POINTS, Caps, PointBudget


def test_the_caps_halve_together_down_to_a_floor() -> None:
    budget = PointBudget(5000, 2000)
    assert budget.caps(1) == budget.caps(TOTAL_POINTS // 12_000) == Caps(5000, 2000)  # 333 names in full
    assert budget.caps(TOTAL_POINTS // 12_000 + 1) == Caps(2500, 1000)
    assert budget.caps(budget.max_names) == budget.floor == Caps(32, 16)
    for names in (1, 400, 1000, 5000, 20_000, budget.max_names):
        assert names * budget.caps(names).points <= TOTAL_POINTS
