"""The ``ai`` policy with recorded replies: the agent's real LLM autopilot, its real HTTP client,
a local fake OpenAI-compatible server (the only stand-in), and its ops through the tool surface
into the ledger as source ``agent``."""

import json

import pytest
from hotcb.evals.train import RunSpec, train

from hotcb.jsonl import read_all
from hotcb.rundir import RunDir

REPLIES = [
    {"tool_calls": [{"name": "read_trends", "arguments": {"metrics": ["train_loss", "val_loss"]}}]},
    {"tool_calls": [{"name": "apply_op", "arguments": {
        "module": "opt", "op": "set_params", "params": {"lr": 0.03}, "reason": "recorded: lower lr"}}],
     "usage": {"prompt_tokens": 300, "completion_tokens": 40}},
    {"content": "Lowered lr to 0.03; watching val_loss."},
]


def test_ai_policy_acts_through_the_tools_and_lands_in_the_ledger(tmp_path):
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps({"replies": REPLIES}))
    r = train(RunSpec(task="synthetic", policy="ai", seed=0, run_dir=str(tmp_path / "run"), budget_epochs=1,
                      threads=1, policy_options={"ai_replies": str(replies), "ai_model": "recorded-model"}))
    assert r["policy_started"], r["policy_errors"]
    ledger = [e for e in read_all(RunDir(r["run_dir"]).ledger) if isinstance(e, dict)]
    ops = [e for e in ledger if e["source"] == "agent" and e["module"] == "opt"]
    assert ops and ops[0]["decision"] == "applied"
    assert ops[0]["payload"]["lr"]["new"] == pytest.approx(0.03)
    assert r["interventions"] == len([e for e in ops if e["decision"] == "applied"])
    assert r["llm_calls"] >= 3 and r["tokens"] > 0
    assert r["curves"]["lr"][-1] == pytest.approx(0.03)


def test_an_ai_row_that_the_rules_ran_says_so(tmp_path):
    """The API refuses every call: the eval's ai row reports its wakes as rules fallbacks and the
    report flags it as a rules result (it must never pass for the LLM's)."""
    from hotcb.evals import ai_accounting

    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps({"replies": [{"status": 401}] * 50}))
    r = train(RunSpec(task="synthetic", policy="ai", seed=0, run_dir=str(tmp_path / "run"), budget_epochs=1,
                      threads=1, policy_options={"ai_replies": str(replies), "ai_model": "recorded-model"}))
    assert r["ai_wakes"] >= 1 and r["ai_llm_wakes"] == 0 and r["llm_calls"] == 0
    assert r["ai_fallbacks"].get("api_down", 0) >= 1
    text = "\n".join(ai_accounting.section({"runs": [r]}))
    assert "This row is a rules result" in text and "api_down" in text
