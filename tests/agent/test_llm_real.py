"""The real-model tier: the LLM autopilot, in its own process, against a real local model
(Qwen2.5-Coder-1.5B-Instruct behind llama.cpp's OpenAI-compatible server, CPU) over a real
training run in its own process.

Asserts plumbing and safety, never the model's taste: the model's replies are parsed into tool
calls, every op it sends is judged by the kernel (a ledger decision per command), every op has a
reason and the model's name as actor, the run's rules proposal is endorsed/overridden/vetoed on
the record, nothing crashes, and nothing is queued into the run once it has stopped.

Enable: ``eval "$(.ci/llm-model)"`` (fetches the pinned server and model into ~/.cache/hotcb-llm,
starts the server on loopback, exports HOTCB_LLM_BASE_URL / HOTCB_LLM_MODEL), then
``python -m pytest -m llm``. Outside CI, without a server, the tier skips; in CI (HOTCB_CI=1) a
missing server fails. It never skips for the CPU: where the prebuilt server cannot run,
.ci/llm-model builds one from source (once, cached).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from hotcb.mcp_server.tools import HotcbTools

from tests.support.proc import Trainer, wait_for

pytestmark = [pytest.mark.llm, pytest.mark.slow]

DEFAULT_URL = "http://127.0.0.1:8439/v1"
ENABLE = 'eval "$(.ci/llm-model)" && python -m pytest -m llm'
HOTCB = shutil.which("hotcb") or str(Path(sys.executable).with_name("hotcb"))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def llm() -> tuple[str, str]:
    url = os.environ.get("HOTCB_LLM_BASE_URL") or DEFAULT_URL
    model = os.environ.get("HOTCB_LLM_MODEL") or "qwen2.5-coder-1.5b-instruct"
    if not _answers(url):
        msg = f"no local LLM server at {url}; enable the real-model tier with: {ENABLE}"
        if os.environ.get("HOTCB_CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return url, model


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.timeout(1500)
def test_real_model_autopilot_on_a_real_run(tmp_path, llm):
    url, model = llm
    run = tmp_path / "run"
    log = open(tmp_path / "autopilot.log", "wb")
    # A flat val_loss: the plateau rule halves lr (the safety floor, as in auto), and the model is
    # woken with what the rule did in its digest.
    with Trainer(run, "--plateau", "--rescue", sleep=0.05) as t:  # snapshots: a rollback is the model's to try
        t.wait_step(150, timeout=180)  # a trainer starting beside a loaded model server
        pilot = subprocess.Popen(
            [HOTCB, "autopilot", "--dir", str(run), "--mode", "ai_auto", "--base-url", url, "--model", model,
             "--cadence-steps", "100000", "--max-rounds", "2", "--max-completion", "160", "--ai-timeout", "600",
             "--wake-deadline", "1100",
             "--interval", "0.5"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HOTCB_AI_KEY": ""})
        try:
            tools = HotcbTools(run)

            def woke() -> dict | None:
                assert pilot.poll() is None, (tmp_path / "autopilot.log").read_text()[-3000:]
                st = tools.load_ai_state().get("stats") or {}
                return st if st.get("llm_wakes", 0) + sum((st.get("fallbacks") or {}).values()) >= 1 else None

            stats = wait_for(woke, 1200, 1.0, "one wake of the real model")
            assert t.alive()
            human = HotcbTools(run, source="human", actor="tester")
            human.call("apply_op", {"module": "core", "op": "stop", "reason": "end of the real-model test"})
            wait_for(lambda: not t.alive(), 120, what="training to stop")
            assert pilot.wait(900) == 0, (tmp_path / "autopilot.log").read_text()[-3000:]
        finally:
            if pilot.poll() is None:
                pilot.kill()
            log.close()
    state = HotcbTools(run).load_ai_state()
    stats = state["stats"]
    # The model answered (no outage, no model-error fallback) and its calls were parsed.
    assert stats["llm_wakes"] >= 1 and stats["fallbacks"] == {}, stats
    assert stats["tool_calls_text"] + stats["tool_calls_native"] >= 1, (stats, state.get("reasonings"))
    assert state["usage"]["calls"] >= 1 and state["usage"]["prompt_tokens"] > 0
    # Every op the model sent was judged by the kernel, under its name, with a reason.
    cmds = [c for c in lines(run / "hotcb.commands.jsonl") if c.get("source") == "agent"]
    ledger = lines(run / "hotcb.applied.jsonl")
    decided = {e.get("cmd_id") for e in ledger}
    assert all(c["cmd_id"] in decided for c in cmds), "an agent op without a ledger decision"
    ops = [e for e in ledger if e.get("source") == "agent"]
    # What the model asked for is on the record whatever its taste: an op the kernel decided (in
    # the ledger), or a call refused before sending (not offered, no snapshot, run over) with why.
    refused = state.get("refusals") or []
    assert ops or refused, f"the model's calls left no trace: {state.get('reasonings')}"
    assert all(r.get("detail") for r in refused), refused
    assert all(e["actor"] == model and (e.get("reason") or "").strip() for e in ops), ops
    # Its stance on the rules' action is on the record: in the op's reason, as silence, or as the
    # refusal of an op whose reason was not its own (copied text, or a veto without words of its
    # own: refused before sending, the rule's action stands, and no stance is counted). Which one
    # is the model's taste; a CI run once ended its one wake with no stance counted.
    s = stats["stances"]
    own_words = [r for r in refused if r.get("kind") in ("copied_reason", "veto_reason")]
    assert s["endorse"] + s["override"] + s["veto"] + s["silent"] >= 1 or own_words, (stats, state["calls"])
    # The floor: the plateau rule acted itself, whatever the model said.
    assert [e for e in ledger if e.get("source") == "rule" and e.get("actor") == "plateau"
            and e.get("decision") == "applied"], "the plateau cut did not happen under ai_auto"
    # Every tool call of the model is in its state, with its arguments and what became of it.
    assert len(state["calls"]) >= stats["tool_calls_text"] + stats["tool_calls_native"] > 0
    assert all(c["outcome"] and c["tool"] for c in state["calls"]), state["calls"]
    # Nothing was queued into the run after it stopped.
    stop = next(e for e in ledger if e.get("op") == "stop" and e.get("decision") == "applied")
    assert not [c for c in cmds if c.get("ts", 0) > stop.get("wall_time", float("inf"))]
    # No secret or credential is in any run file.
    for f in run.iterdir():
        if f.is_file():
            assert "Bearer" not in f.read_text(errors="replace")


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mcp_tool_loop.py"


@pytest.mark.timeout(2400)
def test_an_external_client_drives_hotcb_mcp_with_the_local_model(tmp_path, llm):
    """The documented recipe (examples/mcp_tool_loop.py): the ``mcp`` SDK's stdio client over
    ``hotcb mcp RUN --tools core`` and a plain OpenAI tool loop with the local model. The pinned
    model writes its calls as fenced JSON (no native ``tool_calls`` through llama.cpp), which the
    loop reads: it reads the trends, and its reasoned op lands in the ledger under the client's
    and the model's name."""
    url, model = llm
    run = tmp_path / "run"
    goal = ("The run's val_loss has been flat for 100 steps at lr 0.01. First call read_trends to check it. Then "
            "call apply_op on module opt (op set_params, params {\"lr\": 0.005}) with a one-sentence reason "
            "that cites what the trends showed.")
    with Trainer(run, "--plateau", sleep=0.05) as t:
        t.wait_step(120)
        out = subprocess.run([sys.executable, str(EXAMPLE), str(run), "--base-url", url, "--model", model,
                              "--goal", goal, "--rounds", "3", "--timeout", "1500"],
                             capture_output=True, text=True, timeout=2300)
        assert out.returncode == 0, out.stderr[-3000:]
        calls = [json.loads(x) for x in out.stdout.splitlines() if x.startswith('{"tool"')]
        assert "read_trends" in [c["tool"] for c in calls], out.stdout[-3000:]
        ops = wait_for(lambda: [e for e in lines(run / "hotcb.applied.jsonl") if e.get("source") == "agent"],
                       120, 1.0, "the client's op decided")
        assert t.alive()
    # Plumbing, not taste: every op is judged under the client's and the model's name; one without
    # a reason is refused by the judge (the model reads why and may try again).
    assert all(e["actor"] == f"tool-loop/1 model={model}" and e["decision"] for e in ops), ops
    assert ("opt", "set_params") in [(e["module"], e["op"]) for e in ops], ops
    assert all((e.get("reason") or "").strip() or e["decision"] == "rejected" for e in ops), ops
