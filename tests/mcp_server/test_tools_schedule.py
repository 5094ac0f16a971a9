"""schedule_op through the tool dispatch (``HotcbTools.call``) against a real training process."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotcb.mcp_server import HotcbTools, ToolError

from tests.support.proc import Trainer, wait_for


@pytest.mark.slow
def test_schedule_add_list_move_cancel_then_fire_into_the_recipe(run_dir: Path) -> None:
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer:
        trainer.wait_step(5, timeout=120)
        tools = HotcbTools(run_dir, source="agent", actor="planner")
        now = trainer.status()["step"]
        op = {"module": "loss", "op": "set_params", "params": {"mse_w": 1.5}, "reason": "later"}
        far = tools.call("schedule_op", {"action": "add", "op": op, "at_step": now + 100_000})
        soon = tools.call("schedule_op", {"action": "add", "op": op, "at_step": now + 100_000})
        pending = wait_for(lambda: len(tools.call("schedule_op", {"action": "list"})["pending"]) == 2 and
                           tools.call("schedule_op", {"action": "list"})["pending"], 60, what="2 pending ops")
        assert {p["cmd_id"] for p in pending} == {far["cmd_id"], soon["cmd_id"]}

        assert tools.call("schedule_op", {"action": "cancel", "cmd_id": far["cmd_id"]})["message"] == "applied"
        # Far enough ahead that the move is decided before the run gets there even when this
        # process waits seconds for a core (the trainer steps ~100/s; 40 steps failed once).
        target = trainer.status()["step"] + 400
        assert tools.call("schedule_op", {"action": "move", "cmd_id": soon["cmd_id"],
                                          "at_step": target})["message"] == "applied"
        with pytest.raises(ToolError, match="no scheduled op"):
            tools.call("schedule_op", {"action": "cancel", "cmd_id": far["cmd_id"]})
        with pytest.raises(ToolError, match="above its maximum"):
            tools.call("schedule_op", {"action": "add", "at_step": target,
                                       "op": {"module": "loss", "op": "set_params", "params": {"mse_w": 1e9}}})

        fired = wait_for(lambda: next((e for e in trainer.ledger() if e["cmd_id"] == soon["cmd_id"]), None),
                         120, what="the moved op to fire")
        assert fired["decision"] == "applied" and fired["step"] == target
        assert not any(e["cmd_id"] == far["cmd_id"] and e["decision"] == "applied" for e in trainer.ledger())
        assert tools.call("schedule_op", {"action": "list"})["pending"] == []

        recipe = tools.call("replay", {"action": "export"})["recipe"]
        assert any(e.get("step") == target and (e.get("params") or {}).get("mse_w") == 1.5 for e in recipe), recipe
