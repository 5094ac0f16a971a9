"""``hotcb serve`` as a real process: start-up, the URL it prints, layered configuration.

``ServeProcess`` is shared with the other dashboard test files (browser, security) and the
benchmark: a real uvicorn subprocess on a free 127.0.0.1 port.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

URL_RE = re.compile(r"at (http://\S+?:(\d+))/(?:\?token=(\S+))?")


class ServeProcess:
    """``python -m hotcb.cli serve --dir RUN --port 0 ...``; ``url`` once it listens.

    ``token``: the one the server generated (read from the URL it prints, as a user would) or
    the one passed with ``--token``; ``get``/``post`` send it unless told otherwise (``auth=False``)."""

    def __init__(self, run_dir: str | os.PathLike[str], *args: str, env: dict[str, str] | None = None,
                 timeout: float = 60.0):
        cmd = [sys.executable, "-m", "hotcb.cli", "serve", "--dir", str(run_dir), "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.url: str | None = None
        self.token: str | None = args[args.index("--token") + 1] if "--token" in args else None
        self._found = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._found.wait(timeout) or self.url is None:
            self.stop()
            raise AssertionError("hotcb serve did not start:\n" + "".join(self.lines[-40:]))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = URL_RE.search(line)
            if m and self.url is None:
                self.url = m.group(1)
                if m.group(3) and self.token is None:  # a generated one (a given one prints as a placeholder)
                    self.token = unquote(m.group(3))
                self._found.set()
        self._found.set()

    @property
    def port(self) -> int:
        assert self.url
        return int(self.url.rsplit(":", 1)[1])

    @property
    def page_url(self) -> str:
        """The address to open in a browser: the first load with ?token= sets the cookie."""
        assert self.url
        return self.url + (f"/?token={quote(self.token, safe='')}" if self.token else "/")

    def auth(self, headers: dict[str, Any] | None = None, auth: bool = True) -> dict[str, Any]:
        out = dict(headers or {})
        if auth and self.token and not any(k.lower() == "authorization" for k in out):
            out["Authorization"] = b"Bearer " + self.token.encode()  # bytes: a non-ASCII token as UTF-8
        return out

    def get(self, path: str, *, headers: dict[str, str] | None = None, auth: bool = True, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, headers=self.auth(headers, auth), **kw)

    def post(self, path: str, json: Any = None, *, headers: dict[str, str] | None = None, auth: bool = True,
             **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, json=json, timeout=60, headers=self.auth(headers, auth), **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def test_serve_starts_and_layers_config(tmp_path: Path) -> None:
    """defaults -> YAML -> env -> CLI, as the page receives it from /api/config."""
    run = tmp_path / "run"
    run.mkdir()
    cfg = tmp_path / "dashboard.yaml"
    cfg.write_text("live:\n  poll_ms: 400\n  status_ms: 700\nchart:\n  height: 222\nhistory:\n  ledger_rows: 77\n")
    env = {"HOTCB_DASH_LIVE__POLL_MS": "300", "HOTCB_DASH_UI__TOAST_MS": "1500"}
    with ServeProcess(run, "--config", str(cfg), "--set", "live.poll_ms=120", "--set", "chart.log_scale=[lr, mse]",
                      env=env) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        data = srv.get("/api/config").json()
        c = data["config"]
        assert c["live"]["poll_ms"] == 120          # CLI beats env beats YAML
        assert c["live"]["status_ms"] == 700        # YAML beats the default
        assert c["ui"]["toast_ms"] == 1500          # env beats the default
        assert c["chart"]["height"] == 222 and c["chart"]["log_scale"] == ["lr", "mse"]
        assert c["history"]["ledger_rows"] == 77
        assert c["history"]["initial_points"] == 2000  # untouched default
        assert data["run"] == "run" and data["compare"] is None
        assert "token" not in str(data)


def test_serve_rejects_bad_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    out = subprocess.run([sys.executable, "-m", "hotcb.cli", "serve", "--dir", str(run), "--port", "0",
                          "--set", "live.poll_ms=-5"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "bad configuration" in out.stderr and "poll_ms" in out.stderr


@pytest.mark.parametrize("flag", [["--compare", "/nonexistent/run"], ["--config", "/nonexistent/dashboard.yaml"]])
def test_serve_refuses_missing_paths_at_startup(tmp_path: Path, flag: list[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    out = subprocess.run([sys.executable, "-m", "hotcb.cli", "serve", "--dir", str(run), "--port", "0", *flag],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "hotcb serve:" in out.stderr and "Traceback" not in out.stderr
