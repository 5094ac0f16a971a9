"""What an MCP client of today meets first, through a real ``hotcb mcp`` process:

- a run directory that training has not created yet: served, with "no training process yet";
- an unknown prompt: JSON-RPC -32602 (invalid params), as an unknown resource;
- every tool's input schema converts to strict mode in the OpenAI Agents SDK (no fallback),
  and the key/value-pair form of a free-form map is understood;
- annotations that match behaviour, and docs/mcp.md's table generated from them;
- tool profiles (``--tools observe|control|all``);
- HTTP: the ``bearer`` scheme in any case, and a CORS preflight from a loopback origin.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from hotcb.mcp_server import tool_docs

from tests.conftest import need
from tests.mcp_server.test_mcp_http import TOKEN, HttpServer
from tests.support.mcp_scenario import HOTCB

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def stdio_session(run_dir: Path, requests: list[dict[str, Any]], *extra: str) -> tuple[dict[int, dict], str]:
    """Send JSON-RPC requests to ``hotcb mcp RUN`` over stdio; (replies by id, stderr)."""
    msgs = [INIT, INITIALIZED, *[dict(r, jsonrpc="2.0", id=i) for i, r in enumerate(requests, 2)]]
    proc = subprocess.Popen([HOTCB, "mcp", str(run_dir), *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    replies: dict[int, dict] = {}
    try:
        for m in msgs:
            proc.stdin.write(json.dumps(m) + "\n")
            proc.stdin.flush()
            while "id" in m and m["id"] not in replies:
                line = proc.stdout.readline()
                assert line, proc.stderr.read()
                msg = json.loads(line)
                if "id" in msg:
                    replies[msg["id"]] = msg
    finally:
        proc.stdin.close()
        proc.wait(60)
    return replies, proc.stderr.read()


def test_mcp_on_a_run_directory_before_training(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "exp1"  # typed before training starts, as Claude Desktop does
    replies, err = stdio_session(run, [
        {"method": "tools/call", "params": {"name": "get_status", "arguments": {}}},
        {"method": "prompts/get", "params": {"name": "no_such_prompt", "arguments": {}}},
        {"method": "resources/read", "params": {"uri": "hotcb://run/nope"}},
        {"method": "prompts/get", "params": {"name": "training_operator", "arguments": {"goal": "g"}}},
    ])
    assert "no training process yet" in err and run.is_dir()
    status = replies[2]["result"]["structuredContent"]
    assert status["liveness"] == "absent" and "no training process yet" in status["reason"]
    assert replies[3]["error"]["code"] == -32602 and "no_such_prompt" in replies[3]["error"]["message"]
    assert replies[4]["error"]["code"] == -32602  # the same code as an unknown resource
    assert "g" in replies[5]["result"]["messages"][0]["content"]["text"]


def listed_tools(tmp_path: Path, *extra: str) -> dict[str, dict]:
    replies, _ = stdio_session(tmp_path, [{"method": "tools/list", "params": {}}], *extra)
    return {t["name"]: t for t in replies[2]["result"]["tools"]}


@pytest.mark.parametrize("extra", [(), ("--source", "human"), ("--for-autopilot",)])
def test_every_tool_schema_converts_to_strict_mode(tmp_path: Path, extra: tuple[str, ...]) -> None:
    """The OpenAI Agents SDK's own conversion (as its MCP adapter calls it), without fallback."""
    try:
        from agents.strict_schema import ensure_strict_json_schema
    except ImportError:
        need(False, "openai-agents (pip install openai-agents)")
    tools = listed_tools(tmp_path, *extra)
    assert len(tools) >= 14
    for name, t in tools.items():
        schema = copy.deepcopy(t["inputSchema"])
        schema.setdefault("properties", {})
        ensure_strict_json_schema(schema, _reject_open_objects=True)  # raises on a non-strict schema
        assert "$ref" not in json.dumps(t["inputSchema"]), name


def test_key_value_pairs_reach_the_tool_as_a_map(tmp_path: Path) -> None:
    pairs = [{"key": "lr", "value": 0.02}]
    replies, _ = stdio_session(tmp_path, [
        {"method": "tools/call", "params": {"name": "apply_op", "arguments": {
            "module": "opt", "op": "set_params", "params": pairs, "reason": "strict client", "wait_s": 0}}},
        {"method": "tools/call", "params": {"name": "apply_op", "arguments": {
            "module": "opt", "op": "set_params", "params": {"lr": 0.03}, "reason": "plain client", "wait_s": 0}}},
    ])
    assert not replies[2]["result"].get("isError"), replies[2]
    assert not replies[3]["result"].get("isError"), replies[3]
    cmds = [json.loads(line) for line in (tmp_path / "hotcb.commands.jsonl").read_text().splitlines()]
    assert [c["params"] for c in cmds] == [{"lr": 0.02}, {"lr": 0.03}]


def test_annotations_match_behaviour_and_the_doc_is_generated(tmp_path: Path) -> None:
    tools = listed_tools(tmp_path)
    rules = tools["set_alert_rules"]["annotations"]
    assert rules["destructiveHint"] is True  # its default (replace) drops every rule not given
    assert tools["read_trends"]["annotations"]["readOnlyHint"] is True
    doc = tool_docs.DOC.read_text()
    assert tool_docs.render(doc) == doc, "docs/mcp.md is out of date: python -m hotcb.mcp_server.tool_docs --write"
    table = doc.split(tool_docs.BEGIN, 1)[1].split(tool_docs.END, 1)[0]
    assert "\n\n" not in table.strip()  # one table, not two split by a blank line
    assert "| `set_alert_rules` | destructive" in table


def test_tool_profiles(tmp_path: Path) -> None:
    observe = listed_tools(tmp_path, "--tools", "observe")
    control = listed_tools(tmp_path, "--tools", "control")
    every = listed_tools(tmp_path)
    assert all(t["annotations"]["readOnlyHint"] for t in observe.values())
    assert {"get_status", "read_trends", "read_ledger", "describe_actuators"} <= set(observe)
    assert set(control) - set(observe) == {"apply_op", "propose_op", "schedule_op"}
    assert set(observe) < set(control) < set(every) and "replay" in every
    replies, _ = stdio_session(tmp_path, [{"method": "tools/call", "params": {"name": "apply_op", "arguments": {
        "module": "opt", "op": "set_params", "params": {"lr": 0.1}}}}], "--tools", "observe")
    reply = replies[2]
    assert "error" in reply or reply["result"].get("isError")  # not served: nothing written
    assert not (tmp_path / "hotcb.commands.jsonl").exists()


def test_http_bearer_any_case_and_cors_preflight(tmp_path: Path) -> None:
    run = tmp_path / "run"
    server = HttpServer(run, "--token", TOKEN)
    try:
        accept = {"Accept": "application/json, text/event-stream"}
        for scheme in ("Bearer", "bearer", "BEARER"):
            r = httpx.post(server.url, json=INIT, headers={**accept, "Authorization": f"{scheme} {TOKEN}"}, timeout=60)
            assert r.status_code == 200, (scheme, r.status_code, r.text[:200])
        assert httpx.post(server.url, json=INIT, headers={**accept, "Authorization": f"Basic {TOKEN}"},
                          timeout=60).status_code == 401
        origin = "http://localhost:6274"  # a browser client on this machine (the Inspector's UI)
        pre = httpx.options(server.url, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers": "authorization, content-type"},
                            timeout=60)
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == origin
        assert "authorization" in pre.headers["access-control-allow-headers"]
        r = httpx.post(server.url, json=INIT, headers={**accept, "Origin": origin, "Authorization": f"Bearer {TOKEN}"},
                       timeout=60)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        foreign = httpx.options(server.url, headers={"Origin": "http://evil.example",
                                                     "Access-Control-Request-Method": "POST"}, timeout=60)
        assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers
    finally:
        server.stop()


def _inspector_http(inspector: str, url: str, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    auth = ["--header", f"Authorization: Bearer {token}"] if token else []
    return subprocess.run([inspector, "--cli", url, "--transport", "http", *auth, *args],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.node
@pytest.mark.slow
def test_inspector_drives_http_with_a_bearer_token(inspector: str, tmp_path: Path) -> None:
    """A real MCP Inspector release that sends headers (2.x), over streamable HTTP with the token."""
    version = subprocess.run([inspector, "--cli", "--version"], capture_output=True, text=True, timeout=120)
    assert int(version.stdout.strip().split(".")[0]) >= 2, "the Inspector must be 2.x (it can send headers)"
    run = tmp_path / "run"
    server = HttpServer(run, "--token", TOKEN)
    try:
        out = _inspector_http(inspector, server.url, "--method", "tools/list")
        assert out.returncode == 0, out.stderr[-2000:]
        tools = {t["name"]: t for t in json.loads(out.stdout)["tools"]}
        assert {"apply_op", "read_trends", "get_status"} <= set(tools)
        assert tools["set_alert_rules"]["annotations"]["destructiveHint"] is True
        out = _inspector_http(inspector, server.url, "--method", "tools/call", "--tool-name", "apply_op",
                              "--tool-arg", "module=opt", "op=set_params", 'params={"lr":0.02}', "reason=inspector",
                              "wait_s=0")
        assert out.returncode == 0, out.stderr[-2000:]
        res = json.loads(out.stdout)
        assert res["isError"] is False and res["structuredContent"]["liveness"] == "absent"
        cmds = [json.loads(x) for x in (run / "hotcb.commands.jsonl").read_text().splitlines()]
        assert cmds[-1]["params"] == {"lr": 0.02} and cmds[-1]["actor"]
        out = _inspector_http(inspector, server.url, "--method", "resources/read", "--uri", "hotcb://run/status")
        assert out.returncode == 0, out.stderr[-2000:]
        out = _inspector_http(inspector, server.url, "--method", "prompts/get", "--prompt-name", "training_operator",
                              "--prompt-args", "goal=val_loss below 0.2")
        assert out.returncode == 0 and "val_loss below 0.2" in out.stdout, out.stderr[-2000:]
        # without the token the server answers 401 and the Inspector fails
        out = _inspector_http(inspector, server.url, "--method", "tools/list", token=None)
        assert out.returncode != 0 and '"tools"' not in out.stdout
    finally:
        server.stop()
