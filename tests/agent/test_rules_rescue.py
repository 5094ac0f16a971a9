"""The rules and the kernel's rescue: in the suggest modes the divergence rule proposes what the
rescue would do (roll back and cut lr, one decision), not a plain halving that would leave the
blown-up weights in place; approved, that proposal is the rescue's rollback."""

from __future__ import annotations

import pytest
from hotcb.agent.rules.config import RulesConfig
from hotcb.agent.rules.sensors import RulesAutopilot
from hotcb.mcp_server.tools import HotcbTools

from tests.support.proc import Trainer, wait_for


def test_suggest_mode_divergence_proposes_the_rescue_rollback(tmp_path):
    # lr 0.2 makes this model's loss climb from ~3 to hundreds over ~100 steps (measured); the
    # trainer registers its model and optimizer, so a rollback is possible.
    cfg = RulesConfig.from_dict({"rules": {"plateau": {"enabled": False}, "overfitting": {"enabled": False}}})
    with Trainer(tmp_path, "--lr", "0.2", sleep=0.01) as t:
        pilot = RulesAutopilot(HotcbTools(tmp_path, source="rule", actor="rules"), cfg, mode="suggest")
        human = HotcbTools(tmp_path, source="human", actor="alice")

        def proposals():
            pilot.tick()
            return [p for p in human.call("list_proposals", {})["proposals"] if p.get("status") == "pending"]

        props = wait_for(proposals, 120, 0.1, "a divergence proposal")
        op = props[0]["op"]
        assert (op["module"], op["op"], op["params"]) == ("rescue", "rollback", {"cut": 0.5})
        assert "diverging" in props[0]["reason"] and "roll back" in props[0]["reason"]
        assert not [e for e in t.ledger() if e.get("source") == "rule" and e.get("module") == "opt"]  # no halving
        out = human.call("decide_proposal", {"proposal_id": props[0]["proposal_id"], "decision": "approve"})
        assert out["applied"]["decision"] == "applied"
        e = [x for x in t.ledger() if x.get("cmd_id") == out["applied"]["cmd_id"]][0]
        assert (e["module"], e["op"], e["source"], e["actor"]) == ("rescue", "rollback", "rule", "divergence")
        assert e["payload"]["lr"]["new"] == pytest.approx(0.1)
        assert e["payload"]["restored_step"] < e["step"]
