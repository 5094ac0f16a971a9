"""``hotcb mcp RUN_DIR --http``: streamable HTTP on loopback behind a bearer token, as a real
server subprocess; and the stdio channel carrying nothing but protocol."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import Implementation

from tests.support.mcp_scenario import HOTCB, data, error_text
from tests.support.proc import Trainer

TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer:
    def __init__(self, run_dir: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.err = open(run_dir.parent / "mcp-http.err", "wb")
        self.proc = subprocess.Popen([HOTCB, "mcp", str(run_dir), "--http", "--port", str(self.port), *extra],
                                     stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (run_dir.parent / "mcp-http.err").read_text()
            try:
                httpx.get(self.url, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the HTTP server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


@pytest.mark.slow
def test_http_requires_the_token_and_then_serves_tools(run_dir: Path) -> None:
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer:
        server = HttpServer(run_dir, "--token", TOKEN)
        try:
            init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
            headers = {"Accept": "application/json, text/event-stream"}
            for auth in (None, "Bearer wrong-token", TOKEN):
                h = dict(headers, **({"Authorization": auth} if auth else {}))
                r = httpx.post(server.url, json=init, headers=h, timeout=30)
                assert r.status_code == 401 and r.json()["error"] == "unauthorized", (auth, r.status_code)

            trainer.wait_step(5, timeout=120)

            async def main() -> None:
                http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
                async with http, Client(streamable_http_client(server.url, http_client=http),
                                        client_info=Implementation(name="pytest-http", version="1")) as c:
                    names = {t.name for t in (await c.list_tools()).tools}
                    assert {"describe_actuators", "read_trends", "apply_op", "replay"} <= names
                    out = data(await c.call_tool("apply_op", {"module": "opt", "op": "set_params",
                                                              "params": {"lr": 0.008}, "reason": "http"}))
                    assert out["decision"] == "applied" and out["changes"]["lr"]["new"] == 0.008
                    assert "maximum" in error_text(await c.call_tool(
                        "apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 50.0}}))
                    ledger = data(await c.call_tool("read_ledger", {"cmd_id": out["cmd_id"]}))
                    assert ledger["entries"][0]["actor"] == "pytest-http/1"
            anyio.run(main)
        finally:
            server.stop()


def test_http_refuses_non_loopback_host_without_token(run_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HOTCB_MCP_TOKEN"}
    proc = subprocess.run([HOTCB, "mcp", str(run_dir), "--http", "--host", "0.0.0.0", "--port", "1"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "non-loopback" in proc.stderr and proc.stdout == ""


def test_stdio_stdout_is_protocol_only(run_dir: Path) -> None:
    """Every stdout line of ``hotcb mcp`` is a JSON-RPC message (logs go to stderr)."""
    msgs = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "apply_op", "arguments": {
            "module": "opt", "params": {"lr": 0.1}}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "get_status", "arguments": {}}},
    ]
    proc = subprocess.Popen([HOTCB, "mcp", str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    replies: dict[int, dict] = {}
    try:
        for m in msgs:
            proc.stdin.write(json.dumps(m) + "\n")
            proc.stdin.flush()
            if "id" in m:
                while m["id"] not in replies:
                    line = proc.stdout.readline()
                    assert line, proc.stderr.read()
                    msg = json.loads(line)  # anything that is not JSON-RPC fails here
                    assert msg["jsonrpc"] == "2.0"
                    if "id" in msg:
                        replies[msg["id"]] = msg
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert replies[1]["result"]["serverInfo"]["name"] == "hotcb"
    assert replies[2]["result"]["isError"] is True  # missing "op": a tool error, not a crash
    assert "op" in replies[2]["result"]["content"][0]["text"]
    assert replies[3]["result"]["structuredContent"]["liveness"] == "absent"
    assert sys.executable  # the venv that runs the tests is the one whose hotcb script served them
