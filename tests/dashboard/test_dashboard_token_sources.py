"""Tokens stay out of ``ps`` and out of every log line (real ``hotcb serve`` / ``hotcb mcp``
processes): a token file or the environment works without a word, ``--token`` still works but
warns that argv is visible to other local users, and the access log of ``hotcb serve --log-level
info`` shows the first load ``/?token=...`` redacted."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from tests.dashboard.test_dashboard_proc import ServeProcess
from tests.mcp_server.test_mcp_http import HttpServer
from tests.support.mcp_scenario import HOTCB
from tests.support.proc import wait_for

SECRET = "file-secret-0123456789"


def _token_file(tmp_path: Path, text: str = SECRET + "\n") -> Path:
    f = tmp_path / "token"
    f.write_text(text)
    f.chmod(0o600)
    return f


def test_serve_reads_a_token_file_and_the_access_log_never_shows_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    f = _token_file(tmp_path)
    with ServeProcess(run, "--token-file", str(f), "--log-level", "info") as srv:
        srv.token = SECRET
        assert srv.get("/api/config").status_code == 200
        assert srv.get("/api/config", auth=False).status_code == 401
        first = srv.get(f"/?token={SECRET}&x=1", auth=False, follow_redirects=False)
        assert first.status_code == 303
        wait_for(lambda: any("token=<redacted>" in ln for ln in srv.lines), 60, what="the access log line")
        log = "".join(srv.lines)
        assert SECRET not in log and "GET /api/config" in log
        assert "process list" not in log  # no warning: the token never was on argv


def test_a_token_under_an_encoded_parameter_name_is_redacted_too(tmp_path: Path) -> None:
    """Seen: ``/?tok%65n=T`` (the name percent-encoded, as some URL tools write it) was accepted
    as the token, as the server decodes names, but the access log's redaction matched only the
    literal ``token=``, so the line showed the token in clear."""
    run = tmp_path / "run"
    run.mkdir()
    with ServeProcess(run, "--token-file", str(_token_file(tmp_path)), "--log-level", "info") as srv:
        first = srv.get(f"/?tok%65n={SECRET}&x=1", auth=False, follow_redirects=False)
        assert first.status_code == 303  # accepted: the name decodes to token
        assert srv.get(f"/api/config?%74oken={SECRET}", auth=False).status_code == 401  # never on the API
        wait_for(lambda: sum("<redacted>" in ln for ln in srv.lines) >= 2, 60, what="the access log lines")
        log = "".join(srv.lines)
        assert SECRET not in log and "x=1" in log


def test_token_on_argv_warns_and_still_works(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with ServeProcess(run, "--token", "argv-secret-123") as srv:
        assert srv.get("/api/config").status_code == 200
        assert any("--token puts the token in the process list" in ln for ln in srv.lines), srv.lines


def test_bad_token_files_are_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for text, why in (("\n", "empty"), ("x" * 5000, "over")):
        f = _token_file(tmp_path, text)
        for cmd in (["serve", "--dir", str(run), "--port", "0"], ["mcp", str(run), "--http", "--port", "1"]):
            r = subprocess.run([HOTCB, *cmd, "--token-file", str(f)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 2 and why in r.stderr, (cmd, r.stderr)
    r = subprocess.run([HOTCB, "mcp", str(run), "--http", "--port", "1", "--token", "a", "--token-file", str(f)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "use one" in r.stderr


def test_mcp_http_reads_its_token_from_a_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    env_before = os.environ.pop("HOTCB_MCP_TOKEN", None)
    server = HttpServer(run, "--token-file", str(_token_file(tmp_path)))
    try:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}
        headers = {"Accept": "application/json, text/event-stream"}
        assert httpx.post(server.url, json=init, headers=headers, timeout=30).status_code == 401
        ok = httpx.post(server.url, json=init, headers={**headers, "Authorization": f"Bearer {SECRET}"}, timeout=30)
        assert ok.status_code == 200
    finally:
        server.stop()
        if env_before is not None:
            os.environ["HOTCB_MCP_TOKEN"] = env_before
    err = (tmp_path / "mcp-http.err").read_text()
    assert SECRET not in err and "bearer token (send" not in err  # neither generated nor printed
