"""The live channel: Server-Sent Events fed by incremental reads through the tools.

Each connection gets one ``snapshot`` (downsampled history, recent ledger, status, knobs,
panels), then only what is new: metric points it was not sent yet, ledger rows after the last
seq, and status/knobs/panels whenever they differ from what it last got.

Metric points are tracked per metric, not by one global step: a point that arrives late for a
step already passed (a ``val_loss`` logged for step 400 after ``train_loss`` for step 450, an
evaluation job writing old steps, a metric that first appears at an early step) is still sent.
The cursor of a metric is ``(since, n)``: ``read_metrics(since_step=since)`` returns the points
from the first one at or after ``since``, in arrival order, and the first ``n`` of those were
sent. Points are only ever appended to the file, so that window only grows at its end and its
tail past ``n`` is exactly what is new, whatever steps it carries. ``since`` follows the largest
step seen (floored), which keeps each read to the recent points. The page orders points by step.

Cheap when idle: a session wakes when the metrics or ledger file changes (``wake.FileWake``,
with a fallback poll) or every ``poll_ms`` with ``live.wake: poll``; a wake first ``stat``s the
metrics and ledger files (via the tools' own ``RunDir``) and calls a reader only when a file
grew or was replaced, and the readers themselves tail by byte offset, so cost follows new data,
not file size.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.tools import HotcbTools
from starlette.concurrency import run_in_threadpool

from .api import dumps
from .config import DashboardConfig
from .wake import FileWake, wait_woken

MAX_DELTA_POINTS = 5000  # the most read_metrics returns per metric per poll
# A window this long may have been thinned by read_metrics (it strides above max_points), so the
# cursor's count would be wrong: resend a snapshot instead (a burst of thousands of points per poll).
RESYNC_POINTS = MAX_DELTA_POINTS // 2
FROM_START = -(2**53)  # since_step before any step: a new metric's whole recent window
STATUS_TOOLS = {  # event name -> (tool, arguments), every status_ms; sent only when registered
    "status": ("get_status", {}),
    "actuators": ("describe_actuators", {}),
    "replay": ("replay", {"action": "status"}),  # a read: freeze mode and the replay's progress
}
PANEL_TOOLS = {  # event name -> (tool, arguments); sent only when the tool is registered
    "autopilot": ("autopilot", {"action": "get"}),
    "proposals": ("list_proposals", {"status": "all", "last": 50}),
    "alerts": ("list_alerts", {"last": 50}),
    "schedule": ("schedule_op", {"action": "list"}),
    "rules": ("set_alert_rules", {}),  # no rules given: a read of the user's alert rules
}


def _sig(path: os.PathLike[str]) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, -1)
    return (st.st_ino, st.st_size)


def sse(event: dict[str, Any]) -> bytes:
    return f"data: {dumps(event)}\n\n".encode()


class LiveSession:
    """One browser tab's cursors. Every read is a tool call (source human, read-only tools)."""

    def __init__(self, tools: HotcbTools, cfg: DashboardConfig, available: Callable[[], set[str]]):
        self.tools = tools
        self.cfg = cfg
        self.available = available
        self.last_step: int | None = None
        self.cursors: dict[str, tuple[int, int | None]] = {}  # metric -> (since, points of that window sent)
        self.last_seq: int = -1
        self.metrics_sig = (0, -1)
        self.ledger_sig = (0, -1)
        self.sent: dict[str, str] = {}  # event -> the JSON last sent, to send only changes
        self.next_status = 0.0
        self.next_panels = 0.0
        self.woken: asyncio.Event | None = None  # set by the file watcher (or a nudge) to wake the stream

    def until_due(self) -> float:
        """Seconds until the status or panel refresh is due (a watching session sleeps no longer)."""
        return max(0.0, min(self.next_status, self.next_panels) - time.monotonic())

    def _call(self, name: str, args: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.tools.call(name, args)
        except ToolError:
            return None  # e.g. a panel tool not registered yet: that panel stays empty

    def _changed(self, name: str, data: Any) -> bool:
        text = dumps(data)
        if self.sent.get(name) == text:
            return False
        self.sent[name] = text
        return True

    def snapshot(self) -> dict[str, Any]:
        h = self.cfg.history
        self.metrics_sig = _sig(self.tools.run.metrics)
        self.ledger_sig = _sig(self.tools.run.ledger)
        metrics = self._call("read_metrics", {"max_points": h.initial_points}) or {"series": {}, "last_step": None}
        self.last_step = metrics.get("last_step")
        self._start_cursors(metrics)
        ledger = self._call("read_ledger", {"last": h.ledger_rows}) or {"entries": [], "total": 0}
        self.last_seq = max([e.get("seq") or 0 for e in ledger["entries"]], default=-1)
        out: dict[str, Any] = {"type": "snapshot", "metrics": metrics, "ledger": ledger, "ts": time.time()}
        out.update(self._status_events(force=True))
        out.update(self._panel_events(force=True))
        self.next_status = time.monotonic() + self.cfg.live.status_ms / 1000
        self.next_panels = time.monotonic() + self.cfg.live.panels_ms / 1000
        return out

    def _status_events(self, force: bool = False) -> dict[str, Any]:
        out = {}
        have = self.available()
        for name, (tool, args) in STATUS_TOOLS.items():
            if tool not in have:
                continue
            data = self._call(tool, args)
            if data is not None and (self._changed(name, data) or force):
                out[name] = data
        return out

    def _panel_events(self, force: bool = False) -> dict[str, Any]:
        have = self.available()
        out = {}
        for name, (tool, args) in PANEL_TOOLS.items():
            if tool not in have:
                continue
            data = self._call(tool, args)
            if data is not None and (self._changed(name, data) or force):
                out[name] = data
        return out

    def poll(self) -> list[dict[str, Any]]:
        """Everything new since the last poll, as events (usually none)."""
        events: list[dict[str, Any]] = []
        sig = _sig(self.tools.run.metrics)
        if sig != self.metrics_sig:
            had_file = self.metrics_sig[1] >= 0
            replaced = had_file and (sig[0] != self.metrics_sig[0] or sig[1] < self.metrics_sig[1])
            self.metrics_sig = sig
            if replaced:
                events.append(self.snapshot())  # a new run in the same directory: start over
                return events
            delta = self._metric_delta()
            if delta is None:
                events.append(self.snapshot())  # too much at once, or history trimmed: resync
                return events
            if delta:
                events.append({"type": "metrics", "series": delta, "last_step": self.last_step, "ts": time.time()})
        sig = _sig(self.tools.run.ledger)
        if sig != self.ledger_sig:
            self.ledger_sig = sig
            data = self._call("read_ledger", {"last": 5000, "since_seq": self.last_seq})
            if data and data["entries"]:
                self.last_seq = max(self.last_seq, *[e.get("seq") or 0 for e in data["entries"]])
                events.append({"type": "ledger", "entries": data["entries"], "total": data["total"]})
        now = time.monotonic()
        if now >= self.next_status:
            self.next_status = now + self.cfg.live.status_ms / 1000
            ev = self._status_events()
            if ev:
                events.append({"type": "state", **ev})
        if now >= self.next_panels:
            self.next_panels = now + self.cfg.live.panels_ms / 1000
            ev = self._panel_events()
            if ev:
                events.append({"type": "state", **ev})
        return events

    def _start_cursors(self, metrics: dict[str, Any]) -> None:
        """Cursors at the snapshot: each metric's window from its largest step, counted by a read
        of the same records (``records`` unchanged). If the trainer wrote in between, the count is
        left unknown and the first delta resends that window; the page merges a resent step."""
        self.cursors = {}
        groups: dict[int, list[str]] = {}
        for name, s in metrics["series"].items():
            if s["steps"]:
                since = math.floor(max(s["steps"]))
                self.cursors[name] = (since, None)
                groups.setdefault(since, []).append(name)
        for since, group in groups.items():
            data = self._call("read_metrics", {"metrics": group, "since_step": since, "max_points": MAX_DELTA_POINTS})
            if data is None or data.get("records") != metrics.get("records"):
                continue
            for name, s in data["series"].items():
                if len(s["steps"]) < RESYNC_POINTS:
                    self.cursors[name] = (since, len(s["steps"]))

    def _metric_delta(self) -> dict[str, dict[str, list[Any]]] | None:
        """Every metric point not sent yet, by metric (arrival order); None when the page must
        be resynced with a snapshot instead.

        One read of every metric from the largest cursor (usually the only one needed: most
        metrics share the latest step) also lists the names; metrics behind it (a val_loss
        logged less often) and new ones are read again from their own cursor."""
        top = max((since for since, _ in self.cursors.values()), default=FROM_START)
        data = self._call("read_metrics", {"since_step": top, "max_points": MAX_DELTA_POINTS})
        if data is None:
            return {}
        out: dict[str, dict[str, list[Any]]] = {}
        groups: dict[int, list[str]] = {}
        for name in data["series"]:
            since = self.cursors.get(name, (FROM_START, 0))[0]
            if since != top:
                groups.setdefault(since, []).append(name)
        if not self._take(data, top, out):
            return None
        for since, group in sorted(groups.items()):
            more = self._call("read_metrics", {"metrics": group, "since_step": since, "max_points": MAX_DELTA_POINTS})
            if more is not None and not self._take(more, since, out):
                return None
        return out

    def _take(self, data: dict[str, Any], since: int, out: dict[str, dict[str, list[Any]]]) -> bool:
        """Move the cursors of the metrics read from ``since`` and collect their unsent points;
        False when a window cannot be trusted (thinned by the reader, or trimmed past a cursor)."""
        for name, s in data["series"].items():
            cursor = self.cursors.get(name, (FROM_START, 0))
            if cursor[0] != since:
                continue  # read from another step than its cursor: its own read follows
            steps, values = s["steps"], s["values"]
            if len(steps) >= RESYNC_POINTS or (cursor[1] is not None and len(steps) < cursor[1]):
                return False
            new = slice(cursor[1] or 0, None)
            if steps[new]:
                out[name] = {"steps": steps[new], "values": values[new]}
            if steps:
                top = math.floor(max(steps))
                first = next(i for i, x in enumerate(steps) if x >= top)
                self.cursors[name] = (top, len(steps) - first)
                self.last_step = top if self.last_step is None else max(self.last_step, top)
        return True

    def refresh_soon(self) -> None:
        """After an action, show its effect at the next poll instead of a panel period later."""
        self.next_status = self.next_panels = 0.0


class LiveHub:
    """Knows the open sessions so an action can nudge them (``refresh_soon``)."""

    def __init__(self, tools: HotcbTools, cfg: DashboardConfig, available: Callable[[], set[str]]):
        self.tools = tools
        self.cfg = cfg
        self.available = available
        self.sessions: set[LiveSession] = set()
        run = tools.run
        self.wake = FileWake(run.root, {os.path.basename(run.metrics), os.path.basename(run.ledger)}) \
            if cfg.live.wake == "watch" else None

    def nudge(self) -> None:
        for s in list(self.sessions):  # called on the event loop (the action's request handler)
            s.refresh_soon()
            if s.woken is not None:
                s.woken.set()

    async def stream(self, is_disconnected: Callable[[], Any]) -> AsyncIterator[bytes]:
        session = LiveSession(self.tools, self.cfg, self.available)
        self.sessions.add(session)
        try:
            yield f"retry: {self.cfg.ui.reconnect_ms}\n\n".encode()
            woken = session.woken = self.wake.subscribe() if self.wake is not None and self.wake.watching else None
            yield sse(await run_in_threadpool(session.snapshot))
            last_sent = time.monotonic()
            while not await is_disconnected():
                if woken is not None and self.wake is not None and self.wake.watching:
                    await wait_woken(woken, min(self.cfg.live.fallback_poll_ms / 1000, session.until_due() + 0.001))
                else:
                    await asyncio.sleep(self.cfg.live.poll_ms / 1000)
                for ev in await run_in_threadpool(session.poll):
                    yield sse(ev)
                    last_sent = time.monotonic()
                if time.monotonic() - last_sent >= self.cfg.live.keepalive_s:
                    yield b": keepalive\n\n"  # keeps proxies from closing an idle stream
                    last_sent = time.monotonic()
        finally:
            self.sessions.discard(session)
            if session.woken is not None and self.wake is not None:
                self.wake.unsubscribe(session.woken)
