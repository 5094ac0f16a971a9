"""The live channel: Server-Sent Events fed by incremental reads through the tools.

Each connection gets one ``snapshot`` (downsampled history, recent ledger, status, knobs,
panels), then only what is new: metric points it was not sent yet, ledger rows after the last
seq, and status/knobs/panels whenever they differ from what it last got.

Metric points follow ``read_metrics``' record cursor: each reply names the record after the
ones it carries, and a read from it returns exactly the points logged since, each once, whatever
steps they carry (a ``val_loss`` logged for a step already passed, an evaluation job writing old
steps). A replaced or truncated file comes back as ``reset`` and the page gets a new snapshot.
The page orders points by step.

Cheap when idle: a session wakes when the metrics or ledger file changes (``wake.FileWake``,
with a fallback poll) or every ``poll_ms`` with ``live.wake: poll``; a wake first ``stat``s the
metrics and ledger files (via the tools' own ``RunDir``) and calls a reader only when a file
grew or was replaced, and the readers themselves tail by byte offset, so cost follows new data,
not file size.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.tools import HotcbTools
from hotcb.mcp_server.tools_alerts import AlertRulesInput, ListAlertsInput
from hotcb.mcp_server.tools_autopilot_mode import AutopilotInput
from hotcb.mcp_server.tools_observe import LedgerInput, LedgerOutput, MetricsInput
from hotcb.mcp_server.tools_proposals import ListProposalsInput
from hotcb.mcp_server.tools_protocol import Tools
from hotcb.mcp_server.tools_replay import ReplayInput, ScheduleInput
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .api import dumps
from .config import DashboardConfig
from .wake import FileWake, wait_woken

MAX_DELTA_POINTS = 5000  # records per read_metrics call from the cursor
MAX_DELTA_READS = 4  # more records than this many reads carry at one poll: a snapshot is cheaper
A = TypeVar("A")
T = TypeVar("T")
Read = Callable[[Tools], BaseModel]
STATUS_READS: dict[str, tuple[str, Read]] = {  # event -> (tool, its read), every status_ms; when served
    "status": ("get_status", lambda t: t.get_status()),
    "actuators": ("describe_actuators", lambda t: t.describe_actuators()),
    # a read: freeze mode and the replay's progress
    "replay": ("replay", lambda t: t.replay(ReplayInput(action="status"))),
}
PANEL_READS: dict[str, tuple[str, Read]] = {  # event -> (tool, its read), every panels_ms; when served
    "autopilot": ("autopilot", lambda t: t.autopilot(AutopilotInput(action="get"))),
    "proposals": ("list_proposals", lambda t: t.list_proposals(ListProposalsInput(status="all", last=50))),
    "alerts": ("list_alerts", lambda t: t.list_alerts(ListAlertsInput(last=50))),
    "schedule": ("schedule_op", lambda t: t.schedule_op(ScheduleInput(action="list"))),
    # no rules given: a read of the user's alert rules
    "rules": ("set_alert_rules", lambda t: t.set_alert_rules(AlertRulesInput())),
}


def _sig(path: os.PathLike[str]) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, -1)
    return (st.st_ino, st.st_size)


def _seq(entry: BaseModel) -> int:
    # LedgerEntry's fields are made from LedgerRecord's at import (create_model), out of the type
    # checker's sight: its seq is read by name until the entry is a declared model.
    seq = getattr(entry, "seq", None)
    return seq if isinstance(seq, int) else 0


def sse(event: dict[str, Any]) -> bytes:
    return f"data: {dumps(event)}\n\n".encode()


class LiveSession:
    """One browser tab's cursors. Every read is a tool call (source human, read-only tools)."""

    def __init__(self, tools: HotcbTools, cfg: DashboardConfig, available: Callable[[], set[str]]):
        self.tools = tools
        self.cfg = cfg
        self.available = available
        self.last_step: int | None = None
        self.cursor: str | None = None  # read_metrics' cursor: the next record this tab has not got
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

    def _read(self, tool: Callable[[A], T], args: A) -> T | None:
        try:
            return tool(args)
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
        # The charts configured by name, else the first of the run's names (read_metrics' bound).
        metrics = self._read(self.tools.read_metrics, MetricsInput(metrics=self.cfg.chart.metrics or None,
                                                                   max_points=h.initial_points))
        self.last_step = metrics.last_step if metrics else None
        self.cursor = metrics.cursor if metrics else None
        ledger = self._read(self.tools.read_ledger, LedgerInput(last=h.ledger_rows)) or LedgerOutput(total=0, entries=[])
        self.last_seq = max([_seq(e) for e in ledger.entries], default=-1)
        out: dict[str, Any] = {"type": "snapshot",
                               "metrics": metrics.model_dump(mode="json") if metrics else {"series": {}, "last_step": None},
                               "ledger": ledger.model_dump(mode="json"), "ts": time.time()}
        out.update(self._events(STATUS_READS, force=True))
        out.update(self._events(PANEL_READS, force=True))
        self.next_status = time.monotonic() + self.cfg.live.status_ms / 1000
        self.next_panels = time.monotonic() + self.cfg.live.panels_ms / 1000
        return out

    def _events(self, reads: dict[str, tuple[str, Read]], force: bool = False) -> dict[str, Any]:
        """The reads whose result changed since this tab last got it (all of them with ``force``)."""
        out = {}
        have = self.available()
        for name, (tool, read) in reads.items():
            if tool not in have:
                continue
            result = self._read(read, self.tools)
            data = result.model_dump(mode="json") if result is not None else None
            if data is not None and (self._changed(name, data) or force):
                out[name] = data
        return out

    def poll(self) -> list[dict[str, Any]]:
        """Everything new since the last poll, as events (usually none)."""
        events: list[dict[str, Any]] = []
        sig = _sig(self.tools.run.metrics)
        if sig != self.metrics_sig:
            self.metrics_sig = sig
            delta = self._metric_delta()
            if delta is None:
                events.append(self.snapshot())  # a new run in the same directory, or too much at once
                return events
            if delta:
                events.append({"type": "metrics", "series": delta, "last_step": self.last_step, "ts": time.time()})
        sig = _sig(self.tools.run.ledger)
        if sig != self.ledger_sig:
            self.ledger_sig = sig
            data = self._read(self.tools.read_ledger, LedgerInput(last=5000, since_seq=self.last_seq))
            if data and data.entries:
                self.last_seq = max(self.last_seq, *[_seq(e) for e in data.entries])
                events.append({"type": "ledger", "entries": [e.model_dump(mode="json") for e in data.entries],
                               "total": data.total})
        now = time.monotonic()
        if now >= self.next_status:
            self.next_status = now + self.cfg.live.status_ms / 1000
            ev = self._events(STATUS_READS)
            if ev:
                events.append({"type": "state", **ev})
        if now >= self.next_panels:
            self.next_panels = now + self.cfg.live.panels_ms / 1000
            ev = self._events(PANEL_READS)
            if ev:
                events.append({"type": "state", **ev})
        return events

    def _metric_delta(self) -> dict[str, dict[str, list[Any]]] | None:
        """Every metric point logged since the cursor, by metric (file order); None when the
        page must start over with a snapshot (the file was replaced, or too much arrived)."""
        out: dict[str, dict[str, list[Any]]] = {}
        for _ in range(MAX_DELTA_READS):
            if self.cursor is None:
                return None
            args = MetricsInput(since_cursor=self.cursor, metrics=self.cfg.chart.metrics or None,
                                max_points=MAX_DELTA_POINTS)
            data = self._read(self.tools.read_metrics, args)
            if data is None:
                return out
            if data.reset:
                return None
            self.cursor = data.cursor
            for name, series in data.series.items():
                got = out.setdefault(name, {"steps": [], "values": []})
                got["steps"] += series.steps
                got["values"] += series.values
            if data.last_step is not None:
                self.last_step = data.last_step if self.last_step is None else max(self.last_step, data.last_step)
            if not data.more:
                return out
        return None

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
