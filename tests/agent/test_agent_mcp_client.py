"""The autopilot as an MCP client: real training processes, real ``hotcb mcp`` servers (stdio
subprocesses spawned by the autopilot, an HTTP server subprocess), the rules and the LLM acting
only through them, with their own ledger labels; and a server that dies mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest
import yaml
from hotcb.agent.mcp_client.backend import McpBackend, McpTarget, McpUnavailable
from hotcb.agent.pilot.autopilot import AIOptions, Autopilot
from hotcb.agent.rules.config import RulesConfig
from hotcb.evals.fake_llm import RecordedLLM
from hotcb.mcp_server.server import build_server
from hotcb.mcp_server.tools import HotcbTools
from hotcb.mcp_server.tools_autopilot import META_ACTOR, META_SOURCE
from mcp import Client
from mcp_types import Implementation

from tests.support.net import free_port
from tests.support.proc import Trainer, wait_for

HOTCB = str(Path(sys.executable).with_name("hotcb"))
MODEL = "fake-model"
TOKEN = "autopilot-token-0123456789"
PLATEAU = {"rules": {"plateau": {"window": 40, "warmup_steps": 40, "cooldown_steps": 100000}}}


def servers_of(run_dir: Path) -> list[int]:
    """Pids of live ``hotcb mcp`` processes serving ``run_dir`` (spawned by the autopilot)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"mcp" in argv and str(run_dir).encode() in argv:
            pids.append(int(d.name))
    return pids


class HttpServer:
    """``hotcb mcp RUN --http --for-autopilot`` as a subprocess."""

    def __init__(self, run_dir: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.err = open(run_dir.parent / "mcp-http.err", "wb")
        self.proc = subprocess.Popen([HOTCB, "mcp", str(run_dir), "--http", "--port", str(self.port),
                                      "--token", TOKEN, *extra], stdout=subprocess.DEVNULL, stderr=self.err)

        def up() -> bool:
            assert self.proc.poll() is None, (run_dir.parent / "mcp-http.err").read_text()
            try:
                httpx.get(self.url, timeout=2)
                return True
            except httpx.TransportError:
                return False

        wait_for(up, 120, 0.2, "the HTTP server")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.err.close()


def rule_ops(ledger: list[dict], rule: str) -> list[dict]:
    return [e for e in ledger if e.get("source") == "rule" and e.get("actor") == rule and e.get("decision") == "applied"]


@pytest.mark.slow
def test_rules_autopilot_cli_over_stdio_mcp(tmp_path: Path) -> None:
    """``hotcb autopilot --mode auto --mcp stdio``: the plateau rule halves lr through its own
    ``hotcb mcp`` subprocess; the ledger says rule/plateau with a reason; the process exits when
    training ends and takes its server with it."""
    run = tmp_path / "run"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(PLATEAU))
    # Without the rescue's lr probe (auto would turn the rescue on with it): a cut after its x2
    # trial began (step 120; a slow start on a loaded machine) would halve 0.02, not 0.01.
    with Trainer(run, "--plateau", "--rescue", "--no-probe", sleep=0.01) as t:
        log = open(tmp_path / "autopilot.log", "wb")
        pilot = subprocess.Popen([HOTCB, "autopilot", "--dir", str(run), "--mode", "auto", "--mcp", "stdio",
                                  "--rules", str(rules), "--interval", "0.2"], stdout=log, stderr=subprocess.STDOUT)
        try:
            ops = wait_for(lambda: rule_ops(t.ledger(), "plateau") or pilot.poll() is not None, 240, 0.2,
                           "the plateau rule acting over MCP")
            assert pilot.poll() is None, (tmp_path / "autopilot.log").read_text()[-3000:]
            e = ops[0]
            assert e["module"] == "opt" and e["op"] == "set_params"
            assert e["payload"]["lr"] == {"old": pytest.approx(0.01), "new": pytest.approx(0.005)}
            assert "plateau" in e["reason"] and e["reason"].startswith("rule plateau:")
            wait_for(lambda: any(m["metrics"].get("lr") == pytest.approx(0.005) for m in t.metrics()), 60,
                     what="training at the new lr")
            assert servers_of(run), "the autopilot's own hotcb mcp server is running"
        except BaseException:
            pilot.kill()
            raise
        finally:
            log.close()
    # Training ended: the autopilot notices (through MCP), exits cleanly, and its server is gone.
    assert pilot.wait(120) == 0, (tmp_path / "autopilot.log").read_text()[-3000:]
    wait_for(lambda: not servers_of(run), 60, 0.2, "the spawned hotcb mcp server to exit")
    tools = HotcbTools(run)
    mode = tools.call("autopilot", {})
    assert mode["mode"] == "auto" and mode["set_source"] == "human" and mode["set_by"] == "hotcb-autopilot"
    alerts = tools.call("list_alerts", {"last": 100})["alerts"]
    plateau = [a for a in alerts if a["rule"] == "plateau"]
    assert plateau and plateau[0]["source"] == "rule" and plateau[0]["actor"] == "rules"  # as in-process
    assert "applied" in plateau[0]["message"]


@pytest.mark.slow
def test_llm_autopilot_over_http_mcp_and_the_server_dying(tmp_path: Path) -> None:
    """The LLM autopilot through ``hotcb mcp --http --for-autopilot``: read_trends then apply_op
    land in the ledger as agent / the model's name; its memory is written through the server.
    Then the server is killed: ticks return an error, never raise, and closing does not hang."""
    run = tmp_path / "run"
    script = [
        {"tool_calls": [{"name": "read_trends", "arguments": {"metrics": ["train_loss", "val_loss"]}}]},
        {"tool_calls": [{"name": "apply_op", "arguments": {"module": "opt", "op": "set_params",
                                                           "params": {"lr": 0.005}, "reason": "val_loss flat"}}]},
        {"content": "Halved lr after a flat val_loss; check the slope next wake."},
    ]
    # The rescue on from the script, without its lr probe: the probe's x2 trial (steps 120-138)
    # made the model's 0.01 -> 0.005 a x0.25 change, which the guard refused, when a loaded
    # machine put the wake past step 120 (ai_auto would turn the rescue on with the probe).
    with Trainer(run, "--plateau", "--rescue", "--no-probe", sleep=0.01) as t, RecordedLLM(script) as llm:
        HotcbTools(run, source="human", actor="pytest").call("autopilot", {"action": "set", "mode": "ai_auto"})
        server = HttpServer(run, "--for-autopilot")
        try:
            # The CLI refuses a wrong token clearly, and a mode it could only set as a human.
            bad = subprocess.run([HOTCB, "autopilot", "--dir", str(run), "--mcp-url", server.url, "--mcp-token",
                                  "wrong", "--once"], capture_output=True, text=True, timeout=120)
            assert bad.returncode == 1 and "401" in bad.stderr and "token" in bad.stderr, bad.stderr
            moded = subprocess.run([HOTCB, "autopilot", "--mcp-url", server.url, "--mode", "auto", "--once"],
                                   capture_output=True, text=True, timeout=120)
            assert moded.returncode == 2 and "--mode" in moded.stderr

            backend = McpBackend(McpTarget.http(server.url, TOKEN), call_timeout_s=30, retry_s=3600).start()
            ai = AIOptions(api_key="test", base_url=llm.base_url, model=MODEL, cadence_steps=10**9, timeout_s=20)
            # The plateau rule off: its own cut (the floor under ai_auto) would leave the model's halving unchanged.
            rules = RulesConfig.from_dict({"rules": {"plateau": {"enabled": False}}})
            pilot = Autopilot(run, ai=ai, backend=backend, rules=rules)
            t.wait_step(30)

            def acted() -> list[dict]:
                out = pilot.tick()
                assert "error" not in out, out
                return [e for e in t.ledger() if e.get("source") == "agent" and e.get("decision") == "applied"]

            e = wait_for(acted, 180, 0.2, "the LLM's apply_op over MCP")[0]
            pilot.finish(120)  # the wake (in its worker) ends: its memory is written
            assert e["actor"] == MODEL and e["reason"].startswith("val_loss flat")  # + its stance on the rules
            assert e["payload"]["lr"] == {"old": pytest.approx(0.01), "new": pytest.approx(0.005)}
            assert llm.tools_called()[:2] == ["read_trends", "apply_op"]
            assert "train_loss" in llm.requests[0]["messages"][1]["content"]  # the digest, read over MCP
            state = HotcbTools(run).call("autopilot", {})["ai"]  # written by save_state through the server
            assert state["model"] == MODEL and state["calls"] >= 3 and state["api"] == "ok"
            assert any("Halved lr" in r["text"] for r in state["reasonings"])

            server.kill()  # mid-run: training goes on, the autopilot's server is gone
            for _ in range(3):
                out = pilot.tick()
                assert set(out) == {"error"} and "127.0.0.1" in out["error"], out
            assert pilot.training_over() is False  # unknown, not "over"
            assert t.alive()
            pilot.close()
            pilot.close()  # idempotent
        finally:
            server.kill()


@pytest.mark.slow
def test_stdio_server_killed_mid_run_then_respawned(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with Trainer(run, sleep=0.01) as t:
        backend = McpBackend(McpTarget.stdio(run), call_timeout_s=30, retry_s=3600).start()
        pilot = Autopilot(run, mode="auto", backend=backend)  # the mode through a short-lived human server
        try:
            t.wait_step(5)
            first = pilot.tick()
            assert first["mode"] == "auto" and "error" not in first, first
            pids = wait_for(lambda: servers_of(run), 30, what="the spawned server")
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            errors = [pilot.tick() for _ in range(3)]
            assert all(set(out) == {"error"} for out in errors), errors
            assert "hotcb mcp" in errors[0]["error"]
            assert t.alive()
            backend.conn.retry_s = 0.5  # now allow a reconnect: a fresh server is spawned
            wait_for(lambda: "error" not in pilot.tick(), 120, 0.5, "the autopilot reconnecting")
            assert pilot.tick()["mode"] == "auto"
        finally:
            pilot.close()
        wait_for(lambda: not servers_of(run), 60, 0.2, "the spawned server to exit on close")


def test_ordinary_server_is_refused_and_unreachable_is_clear(tmp_path: Path) -> None:
    with pytest.raises(McpUnavailable, match="--for-autopilot"):
        McpBackend(McpTarget(run_dir=str(tmp_path), server_args=("--source", "agent"))).start()
    with pytest.raises(McpUnavailable, match="cannot reach"):
        McpBackend(McpTarget.http(f"http://127.0.0.1:{free_port()}/mcp", TOKEN), connect_timeout_s=20).start()
    proc = subprocess.run([HOTCB, "mcp", str(tmp_path), "--for-autopilot", "--source", "human"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "human" in proc.stderr


def test_identity_over_mcp_is_rule_or_agent_and_memory_is_the_agents(tmp_path: Path) -> None:
    """On a --for-autopilot server a call names rule or agent (never human) and its actor; an
    ordinary server ignores those keys and has no autopilot_process tool."""
    me = Implementation(name="pytest", version="1")

    async def main() -> None:
        async with Client(build_server(tmp_path, for_autopilot=True), client_info=me) as c:
            who = await c.call_tool("autopilot_process", {"action": "whoami"},
                                    meta={META_SOURCE: "rule", META_ACTOR: "plateau"})
            assert who.structured_content["source"] == "rule" and who.structured_content["actor"] == "plateau"
            who = await c.call_tool("autopilot_process", {"action": "whoami"})
            assert who.structured_content["source"] == "agent" and who.structured_content["actor"] == "pytest/1"
            human = await c.call_tool("apply_op", {"module": "core", "op": "stop"}, meta={META_SOURCE: "human"})
            assert human.is_error and "not 'human'" in human.content[0].text
            save = {"action": "save_state", "state": {"model": "m"}}
            refused = await c.call_tool("autopilot_process", save, meta={META_SOURCE: "rule"})
            assert refused.is_error and "agent" in refused.content[0].text
            ok = await c.call_tool("autopilot_process", save, meta={META_SOURCE: "agent", META_ACTOR: "m"})
            assert not ok.is_error
            alert = await c.call_tool("autopilot_process", {"action": "record_alert", "alert": {
                "rule": "plateau", "kind": "plateau", "message": "flat", "value": "nan"}},
                meta={META_SOURCE: "rule", META_ACTOR: "plateau"})
            assert alert.structured_content["alert"]["source"] == "rule"
        async with Client(build_server(tmp_path), client_info=me) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert "autopilot_process" not in names
            res = await c.call_tool("autopilot", {"action": "get"}, meta={META_SOURCE: "rule", META_ACTOR: "x"})
            assert not res.is_error
            proposed = await c.call_tool("propose_op", {
                "op": {"module": "opt", "op": "set_params", "params": {"lr": 0.001}}, "reason": "r"},
                meta={META_SOURCE: "rule", META_ACTOR: "x"})
            p = proposed.structured_content
            assert p["source"] == "agent" and p["actor"] == "pytest/1"  # the meta keys are ignored here

    anyio.run(main)
    tools = HotcbTools(tmp_path)
    assert tools.load_ai_state() == {"model": "m"}
    assert [a["actor"] for a in tools.call("list_alerts", {})["alerts"]] == ["plateau"]
