"""The autopilot tools (proposals, mode, alerts, alert rules) and the autopilot process's ai mode
waking the LLM on an alert; plus the rule that agent/ never names the IPC files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotcb.agent.pilot.autopilot import AIOptions, Autopilot
from hotcb.evals.fake_llm import RecordedLLM as FakeLLM
from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.tools import HotcbTools

from tests.support.proc import Trainer, wait_for

OP = {"module": "opt", "op": "set_params", "params": {"lr": 0.005}}


def test_proposals_fold_and_decisions_are_human_only(tmp_path):
    agent = HotcbTools(tmp_path, source="agent", actor="m")
    human = HotcbTools(tmp_path, source="human", actor="alice")
    p1 = agent.call("propose_op", {"op": OP, "reason": "flat"})
    p2 = agent.call("propose_op", {"op": OP, "reason": "flat again"})
    with pytest.raises(ToolError, match="reserved to humans"):
        agent.call("decide_proposal", {"proposal_id": p1["proposal_id"], "decision": "approve"})
    out = human.call("decide_proposal", {"proposal_id": p1["proposal_id"], "decision": "reject", "note": "no"})
    assert out["proposal"]["status"] == "rejected" and out["proposal"]["decided_by"] == "alice"
    with pytest.raises(ToolError, match="already rejected"):
        human.call("decide_proposal", {"proposal_id": p1["proposal_id"], "decision": "approve"})
    pend = human.call("list_proposals", {})
    assert [p["proposal_id"] for p in pend["proposals"]] == [p2["proposal_id"]] and pend["total"] == 2
    with pytest.raises(ToolError, match="no proposal"):
        human.call("decide_proposal", {"proposal_id": "nope", "decision": "reject"})
    with pytest.raises(ToolError, match="invalid arguments"):
        agent.call("propose_op", {"op": OP})  # a reason is required


def test_mode_is_set_by_humans_only_and_alert_rules_validate(tmp_path):
    agent = HotcbTools(tmp_path, source="agent", actor="m")
    human = HotcbTools(tmp_path, source="human", actor="alice")
    assert agent.call("autopilot", {})["mode"] == "off"
    with pytest.raises(ToolError, match="only a human"):
        agent.call("autopilot", {"action": "set", "mode": "ai_auto"})
    assert human.call("autopilot", {"action": "set", "mode": "suggest"})["set_by"] == "alice"
    with pytest.raises(ToolError, match="needs above or below"):
        human.call("set_alert_rules", {"rules": [{"id": "t", "kind": "threshold", "metric": "val_loss"}]})
    with pytest.raises(ToolError, match="finite"):
        human.call("set_alert_rules", {"rules": [{"id": "t", "kind": "threshold", "metric": "x", "above": "nan"}]})
    human.call("set_alert_rules", {"rules": [{"id": "a", "kind": "non_finite", "metric": "loss"}]})
    out = human.call("set_alert_rules", {"rules": [{"id": "b", "kind": "spike", "metric": "g"}], "replace": False})
    assert [r["id"] for r in out["rules"]] == ["a", "b"]
    out = human.call("set_alert_rules", {"remove": ["a"]})  # by id: rules added meanwhile survive
    assert [r["id"] for r in out["rules"]] == ["b"]
    with pytest.raises(ToolError, match="no alert rule 'a'"):
        human.call("set_alert_rules", {"remove": ["a"]})


def test_ai_auto_process_wakes_on_a_user_alert_and_acts(tmp_path):
    script = [{"tool_calls": [{"name": "apply_op", "arguments": {**OP, "reason": "val_loss above 0.4 alert"}}]},
              {"content": "cut lr on the alert"}]
    # A slow step: the rules (ai_auto's safety floor) halve lr at step ~105 on the flat val_loss, and
    # an agent op right after that waits out the guard's cooldown (refused, and the script has no
    # second try); at 0.01 s a step a loaded machine's wake came after it.
    with Trainer(tmp_path, "--plateau", sleep=0.05) as t, FakeLLM(script) as llm:
        HotcbTools(tmp_path, source="human").call("set_alert_rules", {"rules": [
            {"id": "val_high", "kind": "threshold", "metric": "val_loss", "above": 0.4}]})
        pilot = Autopilot(tmp_path, mode="ai_auto", ai=AIOptions(api_key="k", base_url=llm.base_url, model="fake",
                                                                 cadence_steps=10**9))
        t.wait_step(10)

        def acted():
            pilot.tick()
            return [e for e in t.ledger() if e.get("source") == "agent" and e["decision"] == "applied"]

        e = wait_for(acted, 120, 0.2, "the LLM acting on the alert")[0]
        assert e["actor"] == "fake" and e["payload"]["lr"]["new"] == pytest.approx(0.005)
    assert "val_high" in llm.requests[0]["messages"][1]["content"]  # the wake's digest names the alert


def test_agent_code_never_names_the_ipc_files():
    root = Path(__file__).resolve().parents[2] / "agent"
    for f in root.rglob("*.py"):
        text = f.read_text()
        assert "commands.jsonl" not in text and "applied.jsonl" not in text, f
