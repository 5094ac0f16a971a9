"""``launch(...)``: training in its own process, the autopilot beside it, optionally the dashboard.

    h = launch("pkg.mod:train", "runs/a", max_steps=2000, autopilot="auto")
    h.set_param("lr", 5e-4)           # as a human, through the tools (the ledger says so)
    h.wait()                          # training ended; the autopilot is stopped cleanly

The dashboard is started as ``hotcb serve`` in a subprocess (never imported: it is another
layer), and its absence is reported, not fatal.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hotcb.agent.pilot.autopilot import AIOptions, Autopilot
from hotcb.agent.rules.config import RulesConfig
from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.tools import HotcbTools
from hotcb.mcp_server.tools_autopilot_mode import AutopilotInput
from hotcb.mcp_server.tools_knobs import ApplyOpInput
from hotcb.mcp_server.tools_observe import MetricsInput
from hotcb.mcp_server.tools_protocol import tool_input

from hotcb.parent_watch import child_env, preexec
from hotcb.vocabulary import Source

log = logging.getLogger("hotcb.agent.launcher.launch")


def end_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``; to the child's whole
    process group when it leads one (``spawn_child``), so what it started ends too."""
    _signal(proc, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL)
        proc.wait()


def _signal(proc: subprocess.Popen[Any], sig: int) -> None:
    try:
        if proc.poll() is None and os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
            return
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.send_signal(sig)


def spawn_child(cmd: list[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[Any]:
    """A child that ends with this process however this one ends (``hotcb.parent_watch``: the
    kernel's parent-death signal and the child's own watch), in its own process group (a Ctrl-C
    at the terminal reaches this process, which stops the child cleanly; ``end_process`` reaches
    the child's own children)."""
    return subprocess.Popen(cmd, env=child_env(env), preexec_fn=preexec(), start_new_session=True, **kw)


class LaunchHandle:
    def __init__(self, run_dir: Path, train: subprocess.Popen[Any], pilot: Autopilot | None,
                 serve: subprocess.Popen[Any] | None, url: str | None, log_file: Any):
        self.run_dir = run_dir
        self.train = train
        self.pilot = pilot
        self.serve = serve
        self.url = url
        self._log_file = log_file
        self.tools = HotcbTools(run_dir, source=Source.HUMAN, actor="launch")
        self._thread: threading.Thread | None = None
        if pilot is not None:
            self._thread = threading.Thread(target=pilot.run, name="hotcb-autopilot", daemon=True)
            self._thread.start()

    @property
    def returncode(self) -> int | None:
        return self.train.poll()

    def running(self) -> bool:
        return self.train.poll() is None

    def wait(self, timeout: float | None = None, keep_dashboard: bool = False) -> int | None:
        """Wait for training to end (None on timeout), then stop the autopilot and (unless
        ``keep_dashboard``: ``close()`` does it later) the dashboard."""
        try:
            rc = self.train.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._shutdown(keep_dashboard)
        return rc

    def close(self) -> None:
        """Stop whatever still runs: training (cleanly), the autopilot, the dashboard."""
        if self.running():
            self.stop()
        self._shutdown()

    def stop(self, timeout: float = 60.0, reason: str = "stopped from launch", keep_dashboard: bool = False) -> int:
        """Ask training to stop at its next safe point; kill it only if it does not."""
        if self.running():
            try:
                self.tools.apply_op(tool_input("apply_op", ApplyOpInput, {
                    "module": "core", "op": "stop", "reason": reason, "wait_s": 0}))
            except ToolError as e:
                log.warning("stop command refused: %s", e)
            try:
                self.train.wait(timeout)
            except subprocess.TimeoutExpired:
                end_process(self.train)
        self._shutdown(keep_dashboard)
        return self.train.returncode

    def _shutdown(self, keep_dashboard: bool = False) -> None:
        if self.pilot is not None:
            self.pilot.stop()
            if self._thread is not None:
                self._thread.join(timeout=120)
        if keep_dashboard:
            return
        if self.serve is not None and self.serve.poll() is None:
            end_process(self.serve)
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.close()

    # -------------------------------------------------------------- the run, through the tools
    # (each returns the tool's output as JSON data, as the tool's MCP reply carries it)
    def metrics(self, names: list[str] | None = None, max_points: int = 200) -> dict[str, Any]:
        args = tool_input("read_metrics", MetricsInput, {"metrics": names, "max_points": max_points})
        return self.tools.read_metrics(args).model_dump(mode="json")

    def set_param(self, key: str, value: Any, reason: str | None = None, wait_s: float | None = None) -> dict[str, Any]:
        knobs = self.tools.describe_actuators().actuators
        mod = next((a.module for a in knobs if a.key == key), None)
        if mod is None:
            raise ToolError(f"unknown knob {key!r}; knobs: {', '.join(a.key for a in knobs)}")
        return self.send_command(mod, "set_params", {key: value}, reason=reason, wait_s=wait_s)

    def send_command(self, module: str, op: str, params: dict[str, Any] | None = None, *, reason: str | None = None,
                     id: str | None = None, wait_s: float | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"module": module, "op": op, "params": params or {}, "reason": reason, "id": id}
        if wait_s is not None:
            args["wait_s"] = wait_s
        return self.tools.apply_op(tool_input("apply_op", ApplyOpInput, args)).model_dump(mode="json")

    def ai_status(self) -> dict[str, Any]:
        return self.tools.autopilot(AutopilotInput()).model_dump(mode="json")

    def __enter__(self) -> LaunchHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


SERVE_URL = re.compile(r" at (http://\S+?):(\d+)/")
SERVE_START_S = 120.0  # generous: a loaded machine imports FastAPI slowly; the wait ends on the line


def start_serve(run_dir: Path, port: int) -> tuple[subprocess.Popen[Any] | None, str | None]:
    """``hotcb serve`` as a subprocess behind a fresh token, and the URL it really serves (with
    the token, so opening it logs the browser in). A port in use falls back to a free one (said
    so); None, None if the dashboard cannot start (e.g. its extra is missing)."""
    token = secrets.token_urlsafe(24)
    proc, bound = _serve_on(run_dir, port, token)
    if proc is None and bound == "in use" and port != 0:
        print(f"hotcb: port {port} is in use; the dashboard takes a free port instead", file=sys.stderr)
        proc, bound = _serve_on(run_dir, 0, token)
    if proc is None:
        print(f"hotcb: dashboard not started ({bound}; see {run_dir / 'serve.log'}); training goes on without it",
              file=sys.stderr)
        return None, None
    return proc, f"{bound}/?token={quote(token, safe='')}"


def _serve_on(run_dir: Path, port: int, token: str) -> tuple[subprocess.Popen[Any] | None, str]:
    """(process, "http://host:port") once it listens, else (None, why). The token travels in the
    environment (not argv, which other users can read); serve.log gets serve's own lines, which
    never contain a token it was given."""
    cmd = [sys.executable, "-m", "hotcb.cli", "serve", "--dir", str(run_dir), "--port", str(port)]
    try:
        proc = spawn_child(cmd, env={**os.environ, "HOTCB_DASH_TOKEN": token}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    except OSError as e:
        return None, str(e)
    found: list[str] = []
    seen: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        with open(run_dir / "serve.log", "a") as log_file:
            for line in proc.stderr:
                log_file.write(line)
                log_file.flush()
                seen.append(line)
                m = SERVE_URL.search(line)
                if m and not found:
                    found.append(f"{m.group(1)}:{m.group(2)}")
                    ready.set()
        ready.set()  # the process ended

    threading.Thread(target=drain, name="hotcb-serve-log", daemon=True).start()
    ready.wait(SERVE_START_S)
    if found:
        return proc, found[0]
    if proc.poll() is None:
        _signal(proc, signal.SIGKILL)
    proc.wait()
    text = "".join(seen)
    return None, "in use" if "cannot listen" in text and "in use" in text else f"hotcb serve exited {proc.returncode}"


# complexity: the public launch() options, all keyword-only and documented in the README
def launch(train_fn: str, run_dir: str | os.PathLike[str], *, max_steps: int | None = None,  # noqa: PLR0913
           autopilot: str | None = "off", rules: RulesConfig | str | None = None, ai: AIOptions | None = None,
           serve: bool = False, port: int = 8421, interval_s: float = 1.0,
           env: dict[str, str] | None = None) -> LaunchHandle:
    """Start ``train_fn`` (``pkg.mod:fn`` or ``file.py:fn``, called as fn(run_dir=, max_steps=)) in its
    own process, the autopilot in ``autopilot`` mode (None: keep the run's stored mode) and, with
    ``serve``, the dashboard. Returns at once; ``handle.wait()`` returns when training ends."""
    root = Path(run_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hotcb.agent.launcher.trainproc", "--train-fn", train_fn, "--dir", str(root)]
    if max_steps is not None:
        cmd += ["--max-steps", str(max_steps)]
    log_file = open(root / "train.log", "ab")
    train = spawn_child(cmd, env={**os.environ, **(env or {})}, stdout=log_file, stderr=subprocess.STDOUT)
    pilot = None
    if autopilot is not None:
        cfg = RulesConfig.load(rules) if isinstance(rules, (str, os.PathLike)) else rules
        pilot = Autopilot(root, mode=autopilot, rules=cfg, ai=ai, interval_s=interval_s, exit_when_done=False)
    # The autopilot watches from the first step: it starts before the dashboard, whose start can
    # take many seconds on a loaded machine (a short run would otherwise end unwatched).
    handle = LaunchHandle(root, train, pilot, None, None, log_file)
    if serve:
        handle.serve, handle.url = start_serve(root, port)
    return handle
