"""The LLM autopilot with the API mocked at the HTTP edge (a local OpenAI-compatible server):
its real openai client, its real tool calls through HotcbTools, real training processes."""

from __future__ import annotations

import socket
import time

import pytest
from hotcb.agent.llm.budget import Budget
from hotcb.agent.llm.tool_call import AI_TOOLS
from hotcb.agent.llm.tool_loop import LLMAutopilot
from hotcb.agent.llm.untrusted import FENCE_OPEN
from hotcb.evals.fake_llm import RecordedLLM as FakeLLM
from hotcb.mcp_server.catalog import TOOLS
from hotcb.mcp_server.tools import HotcbTools

from tests.support.net import dead_url
from tests.support.proc import Trainer, wait_for

MODEL = "fake-model"


def pilot(run, llm_url, **kw):
    kw.setdefault("retry_wait_s", 0.01)
    return LLMAutopilot(HotcbTools(run, source="agent", actor=MODEL), api_key="test", base_url=llm_url,
                        model=MODEL, timeout_s=20, **kw)


def agent_entries(t):
    return [e for e in t.ledger() if e.get("source") == "agent"]


def test_reads_trends_then_applies_in_a_real_training_process(tmp_path):
    script = [
        {"tool_calls": [{"name": "read_trends", "arguments": {"metrics": ["train_loss", "val_loss"]}}]},
        {"tool_calls": [{"name": "apply_op", "arguments": {"module": "opt", "op": "set_params",
                                                           "params": {"lr": 0.005}, "reason": "val_loss flat"}}]},
        {"content": "Halved lr after a flat val_loss; check the slope next wake."},
    ]
    with Trainer(tmp_path, "--plateau", sleep=0.01) as t, FakeLLM(script) as llm:
        t.wait_step(30)
        out = pilot(tmp_path, llm.base_url).wake("test")
        assert out["outcome"] == "ok", out
        applied = [e for e in agent_entries(t) if e["decision"] == "applied"]
        assert applied and applied[0]["actor"] == MODEL and applied[0]["reason"] == "val_loss flat"
        assert applied[0]["payload"]["lr"] == {"old": pytest.approx(0.01), "new": pytest.approx(0.005)}
        wait_for(lambda: any(m["metrics"].get("lr") == pytest.approx(0.005) for m in t.metrics()), 30,
                 what="the training loop running at the new lr")
    assert llm.tools_called() == ["read_trends", "apply_op"]
    # The model was offered the tool surface's own schemas, narrowed to what it may do.
    first = llm.requests[0]
    assert [t["function"]["name"] for t in first["tools"]] == list(AI_TOOLS) == ["read_trends", "apply_op"]
    for offered in first["tools"]:
        surface = TOOLS[offered["function"]["name"]].openai_function()["function"]["parameters"]["properties"]
        props = offered["function"]["parameters"]["properties"]
        assert set(props) <= set(surface)
    apply = first["tools"][1]["function"]["parameters"]
    assert apply["properties"]["op"]["enum"] == ["set_params", "rollback"] and "reason" in apply["required"]
    assert "lock" not in apply["properties"] and "wait_s" not in apply["properties"]
    assert "train_loss" in first["messages"][1]["content"]  # the digest
    state = HotcbTools(tmp_path).call("autopilot", {})["ai"]
    assert state["calls"] == 3 and state["tokens"] == 360 and state["api"] == "ok"
    assert "Halved lr" in state["reasonings"][-1]["text"]


def test_hostile_replies_are_refused_and_recorded(tmp_path):
    script = [
        {"tool_calls": [
            {"name": "apply_op", "arguments": {"module": "opt", "op": "set_params", "params": {"lr": 1000}, "reason": "go"}},
            {"name": "apply_op", "raw": '{"module": "opt", "op": "set_params", "params": {"lr": NaN}, "reason": "nan"}'},
            {"name": "delete_everything", "arguments": {}},
            {"name": "apply_op", "raw": "{not json"},
            {"name": "apply_op", "arguments": {"module": "core", "op": "stop", "reason": "bye"}},
        ]},
        {"content": "ok"},
    ]
    with Trainer(tmp_path, sleep=0.01) as t, FakeLLM(script) as llm:
        t.wait_step(5)
        out = pilot(tmp_path, llm.base_url, max_tool_calls=10).wake("test")
        assert out["outcome"] == "ok" and out["actions"] == []
        # lr=1000, lr=NaN: recorded by the kernel (at its next safe points), none applied; core stop
        # is not offered to the autopilot at all (refused before it is sent).
        wait_for(lambda: len([e for e in agent_entries(t) if e["decision"] == "rejected"]) >= 2, 60,
                 what="two refusals in the ledger")
        t.wait_step(t.status()["step"] + 5)  # a few more steps: nothing else arrives late
        assert len([e for e in agent_entries(t) if e["decision"] == "rejected"]) == 2
        assert not [e for e in agent_entries(t) if e["decision"] == "applied"]
        assert t.alive()
    kinds = [r["kind"] for r in HotcbTools(tmp_path).load_ai_state()["refusals"]]
    assert kinds.count("tool_error") == 2 and "unknown_tool" in kinds and "bad_json" in kinds
    assert "not_offered" in kinds
    # The model was told why, in the tool messages of its next request.
    tool_msgs = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert len(tool_msgs) == 5 and all(m.startswith(FENCE_OPEN + "\nrefused") for m in tool_msgs)


def test_429_and_500_are_retried(tmp_path):
    with FakeLLM([{"status": 429}, {"status": 500}, {"content": "all good"}]) as llm:
        out = pilot(tmp_path, llm.base_url).wake("test")
    assert out["outcome"] == "ok" and len(llm.requests) == 3
    ai = HotcbTools(tmp_path).call("autopilot", {})["ai"]
    assert ai["api"] == "ok" and ai["calls"] == 1 and ai["reasonings"][-1]["text"] == "all good"


def test_non_transient_error_is_not_retried(tmp_path):
    with FakeLLM([{"status": 401}, {"content": "never reached"}]) as llm:
        out = pilot(tmp_path, llm.base_url).wake("test")
    assert out["outcome"] == "api_down" and len(llm.requests) == 1


def test_dead_api_degrades_to_rules(tmp_path):
    with Trainer(tmp_path, "--nan-at", "20", sleep=0.02) as t:
        p = pilot(tmp_path, dead_url(), retries=1, probe_s=3600)
        first = p.wake("test")
        assert first["outcome"] == "api_down"

        def rule_cut():
            p.wake("cadence")
            # The fallback rules act: their non_finite rule, or the kernel's rescue they enabled.
            return [e for e in t.ledger() if e.get("source") == "rule" and e["decision"] == "applied"
                    and (e.get("actor") == "non_finite" or (e["module"], e["op"]) == ("rescue", "rollback"))]

        try:
            wait_for(rule_cut, 90, 0.1, "the fallback rules acting on NaN")
        except AssertionError:
            raise AssertionError([(e.get("source"), e.get("actor"), e["module"], e["op"], e["decision"], e.get("error"))
                                  for e in t.ledger()]) from None
        assert t.alive()
    tools = HotcbTools(tmp_path)
    ai = tools.call("autopilot", {})["ai"]
    assert ai["api"] == "down" and ai["fallback"] == "rules" and ai["calls"] == 0
    assert any(a["rule"] == "autopilot_api_down" for a in tools.call("list_alerts", {})["alerts"])


def test_budget_cap_stops_calls(tmp_path):
    with FakeLLM([{"content": "a"}, {"content": "b"}, {"content": "c"}]) as llm:
        p = pilot(tmp_path, llm.base_url, budget=Budget(max_tokens=200))
        outs = [p.wake("test")["outcome"] for _ in range(4)]
    assert len(llm.requests) == 2  # 120 tokens each: the second reaches the cap, the third is never sent
    assert outs == ["ok", "ok", "budget_exhausted", "budget_exhausted"]
    tools = HotcbTools(tmp_path)
    ai = tools.call("autopilot", {})["ai"]
    assert ai["budget_exhausted"] and ai["tokens"] == 240 and ai["budget"]["max_tokens"] == 200
    assert [a["rule"] for a in tools.call("list_alerts", {})["alerts"]].count("autopilot_budget") == 1
    # A restarted autopilot over the same run keeps its spend.
    again = pilot(tmp_path, "http://127.0.0.1:9/v1", budget=Budget(max_tokens=200))
    assert again.wake("test")["outcome"] == "budget_exhausted"


def test_money_cap_uses_the_price_table(tmp_path):
    with FakeLLM([{"content": "a", "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 0}}]) as llm:
        p = LLMAutopilot(HotcbTools(tmp_path, source="agent", actor="gpt-4o-mini"), api_key="k",
                         base_url=llm.base_url, model="gpt-4o-mini", budget=Budget(max_cost_usd=0.10))
        p.wake("test")
        assert p.usage()["cost_usd"] == pytest.approx(0.15)
        assert p.wake("test")["outcome"] == "budget_exhausted" and len(llm.requests) == 1


def test_ai_suggest_turns_apply_op_into_a_proposal(tmp_path):
    script = [{"tool_calls": [{"name": "apply_op", "arguments": {"module": "opt", "op": "set_params",
                                                                 "params": {"lr": 0.008}, "reason": "try lower lr"}}]},
              {"content": "proposed"}]
    with Trainer(tmp_path, sleep=0.01) as t, FakeLLM(script) as llm:
        t.wait_step(5)
        out = pilot(tmp_path, llm.base_url, mode="ai_suggest").wake("test")
        assert out["actions"][0]["tool"] == "propose_op"
        human = HotcbTools(tmp_path, source="human", actor="bob")
        props = human.call("list_proposals", {})["proposals"]
        assert len(props) == 1 and props[0]["actor"] == MODEL and props[0]["reason"] == "try lower lr"
        assert not agent_entries(t)
        res = human.call("decide_proposal", {"proposal_id": props[0]["proposal_id"], "decision": "approve"})
        assert res["applied"]["decision"] == "applied"
        e = [x for x in t.ledger() if x["cmd_id"] == res["applied"]["cmd_id"]][0]
        assert (e["source"], e["actor"], e["payload"]["lr"]["new"]) == ("agent", MODEL, pytest.approx(0.008))


def test_a_hanging_api_times_out(tmp_path):
    # A server that accepts and never answers: the client's timeout ends the wake.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        p = LLMAutopilot(HotcbTools(tmp_path, source="agent", actor=MODEL), api_key="k",
                         base_url=f"http://127.0.0.1:{s.getsockname()[1]}/v1", model=MODEL, timeout_s=0.5,
                         retries=1, retry_wait_s=0.01)
        t0 = time.monotonic()
        assert p.wake("test")["outcome"] == "api_down"
        assert time.monotonic() - t0 < 60  # bounded, not a hang (generous: shared slow machine)
    finally:
        s.close()
