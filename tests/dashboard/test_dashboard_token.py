"""The dashboard's defaults through a real ``hotcb serve`` (uvicorn in its own process).

- A token is required by default, even on loopback: generated and printed in the URL it gives
  (as notebook servers do); ``--no-token`` is explicit. Without it, any local process could load
  code or stop training as a human.
- Writes from a foreign Origin are refused even with the token.
- Request bodies are bounded while read: a huge upload is cut off after the 1 MB limit, never
  held in memory whole.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import psutil
from hotcb.dashboard.security import cookie_name

from tests.dashboard.test_dashboard_proc import ServeProcess

LOAD_POPEN = {"module": "cb", "op": "load", "id": "x", "reason": "probe",
              "target": {"kind": "module", "path": "subprocess", "symbol": "Popen"},
              "params": {"args": ["true"]}}


def commands(run: Path) -> str:
    f = run / "hotcb.commands.jsonl"
    return f.read_text() if f.exists() else ""


def test_default_serve_needs_the_token_it_prints(tmp_path: Path) -> None:
    with ServeProcess(tmp_path) as srv:
        assert srv.token, "the printed URL carries a generated token: " + "".join(srv.lines)
        # a local process without the token: refused before any tool runs
        r = srv.post("/api/tools/apply_op", LOAD_POPEN, auth=False)
        assert r.status_code == 401
        assert srv.get("/api/config", auth=False).status_code == 401
        assert srv.get("/", auth=False).status_code == 401
        assert "Popen" not in commands(tmp_path)
        # the URL it printed opens the page (cookie), and the token works as a bearer header
        first = srv.get(srv.page_url[len(srv.url):], auth=False, follow_redirects=False)
        assert first.status_code == 303 and f"{cookie_name(srv.port)}=" in first.headers["set-cookie"]
        assert srv.get("/api/config").status_code == 200
        # writes from another site's page are refused even when the browser carries the token
        r = srv.post("/api/tools/apply_op", {"module": "core", "op": "pause", "reason": "x"},
                     headers={"Origin": "http://evil.example"})
        assert r.status_code == 403


def test_no_token_is_explicit(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, "--no-token") as srv:
        assert srv.token is None
        assert any(line.rstrip().endswith(srv.url + "/") for line in srv.lines)
        assert srv.get("/api/config").status_code == 200


def test_given_token_is_not_echoed_into_the_log(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, "--token", "my-own-secret") as srv:
        assert "my-own-secret" not in "".join(srv.lines)
        assert srv.get("/api/config").status_code == 200


def test_serve_before_training_waits_with_the_common_wording(tmp_path: Path) -> None:
    run = tmp_path / "not-yet"
    with ServeProcess(run) as srv:
        assert "no training process yet" in "".join(srv.lines)
        assert srv.get("/api/config").status_code == 200


def _response_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n" not in data:
        got = sock.recv(4096)
        if not got:
            break
        data += got
    return data


def test_huge_body_is_cut_off_while_read(tmp_path: Path) -> None:
    """A 300 MB chunked upload: the answer (413) comes after about 1 MB, and the server's memory
    does not grow by the body's size. A server that reads the whole body first never answers
    before the upload ends (and holds all of it)."""
    with ServeProcess(tmp_path) as srv:
        server = psutil.Process(srv.proc.pid)
        before = server.memory_info().rss
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=120)
        sock.sendall((f"POST /api/tools/apply_op HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                      f"Authorization: Bearer {srv.token}\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n").encode())
        chunk = b"[" * 65536
        sent = [0]

        def upload() -> None:
            frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
            try:
                while sent[0] < 300_000_000:
                    sock.sendall(frame)
                    sent[0] += len(chunk)
            except OSError:
                pass  # the server answered and closed: what we want

        t = threading.Thread(target=upload, daemon=True)
        t.start()
        head = _response_head(sock)
        assert head.split(b"\r\n", 1)[0].split()[1:2] == [b"413"], head[:200]
        assert sent[0] < 300_000_000
        grown = server.memory_info().rss - before
        assert grown < 100_000_000, grown
        sock.close()
        t.join(60)
        # a declared size over the limit is refused before reading anything
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=120)
        sock.sendall((f"POST /api/tools/apply_op HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                      f"Authorization: Bearer {srv.token}\r\nContent-Type: application/json\r\n"
                      "Content-Length: 300000000\r\n\r\n[").encode())
        head = _response_head(sock)
        assert head.split(b"\r\n", 1)[0].split()[1:2] == [b"413"], head[:200]
        sock.close()
        assert srv.get("/api/config").status_code == 200  # the server is fine afterwards
