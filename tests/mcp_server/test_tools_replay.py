"""replay's stop through the tool dispatch against a real training process: it ends a replay and
never lifts another freeze mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotcb.mcp_server import HotcbTools, ToolError

from tests.support.proc import Trainer, wait_for


def test_replay_stop_refuses_to_lift_a_prod_freeze_and_ends_a_running_replay(run_dir: Path) -> None:
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer:
        trainer.wait_step(5, timeout=120)
        human = HotcbTools(run_dir, source="human", actor="alice")
        human.call("apply_op", {"module": "core", "op": "freeze", "params": {"mode": "prod"}, "reason": "ship it"})
        wait_for(lambda: trainer.status().get("freeze_mode") == "prod", 60, what="prod mode")
        with pytest.raises(ToolError, match="no replay is running"):
            human.call("replay", {"action": "stop"})
        assert trainer.status().get("freeze_mode") == "prod"

        human.call("apply_op", {"module": "core", "op": "freeze", "params": {"mode": "off"}, "reason": "replay"})
        wait_for(lambda: trainer.status().get("freeze_mode") == "off", 60, what="freeze off")
        step = trainer.status()["step"]
        recipe = [{"step": step + 100_000, "module": "loss", "op": "set_params", "params": {"mse_w": 1.5}}]
        human.call("replay", {"action": "start", "recipe": recipe, "reason": "test"})
        wait_for(lambda: trainer.status().get("freeze_mode") == "replay", 60, what="replay mode")
        assert human.call("replay", {"action": "stop"})["freeze_mode"] == "off"
        wait_for(lambda: trainer.status().get("freeze_mode") == "off", 60, what="replay stopped")
