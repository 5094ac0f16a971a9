"""The safety floor under ``ai_auto``: with a model server that is slow (answers after the wake
deadline), garbage (malformed native tool calls, output the server cannot parse) or dead, the
rules' protective action (the plateau cut) lands as it does under ``auto``, the outage is named in
the exit summary and the AI state, and training runs to its end. The servers are stubs on
loopback (the network edge); the autopilot and the training process are real. On a recorded run
(steps advance only as the test logs them) the cuts land at exactly the steps ``auto`` writes."""

from __future__ import annotations

import io
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hotcb.agent.cli import llm_summary
from hotcb.agent.llm.stance import reason_refusal, veto_refusal
from hotcb.agent.llm.tool_loop import LLMAutopilot
from hotcb.agent.pilot.autopilot import AIOptions, Autopilot
from hotcb.agent.rules.config import RulesConfig
from hotcb.agent.rules.sensors import RulesAutopilot
from hotcb.evals.fake_llm import RecordedLLM
from hotcb.mcp_server.tools import HotcbTools

from tests.support.net import dead_url
from tests.support.proc import Trainer, wait_for
from tests.support.series import RecordedRun
from tests.support.series import drive as drive_series

MODEL = "stub-model"
STEPS = 400
PARSE_500 = {"status": 500, "message": "Failed to parse input at pos 12: <tool_call>{\"name\": \"apply_op\""}
GARBAGE = [{"tool_calls": [{"name": "apply_op", "raw": "{not json"}, {"name": "", "raw": "[]"}]}, PARSE_500] * 20


class SlowLLM:
    """An OpenAI-compatible server that holds every request until ``release`` (long after the
    wake deadline), then answers with a note."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests += 1
                owner.release.wait(120)
                data = json.dumps({"id": "slow", "object": "chat.completion", "created": 0, "model": MODEL,
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": "no change"}}],
                                   "usage": {"prompt_tokens": 10, "completion_tokens": 2}}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def rule_cuts(t: Trainer) -> list[tuple]:
    return [(e["actor"], e["module"], e["op"], round(e["payload"]["lr"]["new"], 8)) for e in t.ledger()
            if e.get("source") == "rule" and e["decision"] == "applied" and e["op"] == "set_params"]


def drive(run, mode: str, url: str | None) -> tuple[Trainer, Autopilot, io.StringIO]:
    """Train ``STEPS`` steps of a flat val_loss under the autopilot in ``mode``; return when both end."""
    live = io.StringIO()
    ai = AIOptions(api_key="test", base_url=url, model=MODEL, cadence_steps=40, timeout_s=60, max_rounds=2,
                   wake_deadline_s=2.0)
    with Trainer(run, "--plateau", steps=STEPS, sleep=0.01) as t:
        pilot = Autopilot(run, mode=mode, ai=ai, interval_s=0.05, live=live)
        pilot.LIVE_EVERY_S = 0.2
        thread = threading.Thread(target=pilot.run, daemon=True)
        thread.start()
        wait_for(lambda: t.proc.poll() is not None, 240, 0.2, "training to finish")
        thread.join(120)
        assert not thread.is_alive(), "the autopilot outlived the run"
        assert t.proc.returncode == 0 and t.status()["step"] >= STEPS - 1  # training unaffected
    return t, pilot, live


@pytest.fixture(scope="module")
def auto_cuts(tmp_path_factory) -> list[tuple]:
    t, _, _ = drive(tmp_path_factory.mktemp("auto"), "auto", None)
    cuts = rule_cuts(t)
    assert cuts and cuts[0][0] == "plateau"
    return cuts


@pytest.mark.parametrize("server", ["slow", "garbage", "dead"])
def test_the_rules_act_as_under_auto_whatever_the_model_server(tmp_path, auto_cuts, server):
    slow = SlowLLM() if server == "slow" else None
    garbage = RecordedLLM(GARBAGE).__enter__() if server == "garbage" else None
    url = slow.base_url if slow else garbage.base_url if garbage else dead_url()
    try:
        t, pilot, live = drive(tmp_path, "ai_auto", url)
    finally:
        if slow:
            slow.close()
        if garbage:
            garbage.__exit__(None, None, None)
    # The floor: the plateau cut, by the rule, to the same lr as under auto.
    assert rule_cuts(t)[:1] == auto_cuts[:1]
    assert not [e for e in t.ledger() if e.get("source") == "agent" and e["decision"] == "applied"]
    state = HotcbTools(tmp_path).load_ai_state()
    stats = state["stats"]
    assert stats["stances"]["veto"] == 0  # silence, timeouts and garbage are never vetoes
    summary = "\n".join(llm_summary(HotcbTools(tmp_path)))
    alerts = {a["rule"] for a in HotcbTools(tmp_path).call("list_alerts", {})["alerts"]}
    if server == "slow":
        assert stats["timed_out"] >= 1 and stats["outages"] >= 1 and "autopilot_api_down" in alerts
        assert "timed out" in summary and "wake deadline" in state["api"]["error"]
        assert "waiting for the model" in live.getvalue()  # the live line while it thought
    elif server == "dead":
        assert stats["outages"] >= 1 and "autopilot_api_down" in alerts and "LLM outage" in summary
    else:
        assert stats["model_errors"] >= 1 or state["refusals"]
        assert "model errors" in summary
        assert {c["outcome"] for c in state["calls"]} >= {"refused (bad_json)"}
    assert f"{stats['outages']} outages" in summary


def test_a_veto_reason_must_be_the_models_own():
    shown = ["val_loss plateaued: 0.001 relative improvement over 100 points (threshold 0.01)",
             "refused (tool_error): lr is in cooldown for 40 more steps"]
    assert veto_refusal("", shown) and veto_refusal("undo it", shown)  # empty, or too short to say why
    assert veto_refusal("val_loss plateaued: 0.001 relative improvement over 100 points", shown)  # copied
    assert veto_refusal("  VAL_LOSS   plateaued 0.001 relative improvement over 100 points!", shown)  # recased
    assert veto_refusal("lr is in cooldown for 40 more steps", shown)  # a refusal, parroted
    assert veto_refusal("train loss still falls fast, so the flat val_loss is noise", shown) is None


def test_any_op_whose_reason_parrots_a_refusal_is_refused():
    # Seen with the real 1.5B model: a rollback whose reason was the guard's refusal of its last op.
    shown = ["refused (tool_error): lr 0.05 -> 0.01 is a x0.2 change; agent changes are limited to x0.5..x2 per op"]
    assert reason_refusal("refused: lr 0.05 -> 0.01 is a x0.2 change; agent changes are limited to x0.5..x2 per op",
                          shown)
    assert reason_refusal("val_loss has been flat for 100 points; a smaller lr should settle it", shown) is None
    assert reason_refusal("", shown) is None  # an empty reason is the judge's to refuse, as for anyone


def plateau_curve(s: int) -> dict[str, float]:
    """A flat val_loss, a falling train loss (tests/support/trainer.py --plateau)."""
    return {"train_loss": 1.0 / (1 + 0.01 * s), "val_loss": 0.5 + 1e-4 * math.sin(s)}


@pytest.mark.parametrize("server", ["dead", "garbage", "silent"])
def test_the_plateau_cuts_land_at_the_same_steps_as_under_auto(tmp_path, server):
    """On a recorded run (tests/support/series.py: steps advance only as the test logs them), the
    plateau rule's cuts under ai_auto are written at exactly the steps auto writes them, whatever
    the model server does."""
    cfg = RulesConfig.from_dict({"rescue": False, "rules": {"plateau": {"window": 40, "warmup_steps": 40,
                                                                        "cooldown_steps": 60}}})
    auto_run, ai_run = RecordedRun(tmp_path / "auto", lr=0.01), RecordedRun(tmp_path / "ai", lr=0.01)
    rules = RulesAutopilot(HotcbTools(auto_run.run.root, source="rule", actor="rules", wait_s=0), cfg, mode="auto")
    replies = {"garbage": GARBAGE, "silent": [{"content": "no change: still improving"}] * 40}.get(server)
    stub = RecordedLLM(replies).__enter__() if replies else None
    try:
        ai = LLMAutopilot(HotcbTools(ai_run.run.root, source="agent", actor=MODEL, wait_s=0), api_key="k",
                          base_url=stub.base_url if stub else dead_url(), model=MODEL, mode="ai_auto", timeout_s=20,
                          retries=0, retry_wait_s=0.01, cadence_steps=25, max_rounds=2, rules=cfg,
                          rule_tools=HotcbTools(ai_run.run.root, source="rule", actor="rules", wait_s=0))
        drive_series([rules], auto_run, range(1, 240), plateau_curve)
        drive_series([ai], ai_run, range(1, 240), plateau_curve)
    finally:
        if stub:
            stub.__exit__(None, None, None)
    cuts = [(w.step, w.op, w.params) for w in auto_run.ops("plateau")]
    assert len(cuts) == 3 and cuts == [(w.step, w.op, w.params) for w in ai_run.ops("plateau")]
    assert ai.stats["wakes"] >= 1 and ai.stats["stances"]["veto"] == 0
    assert (ai.stats["outages"] == 1) == (server == "dead")
