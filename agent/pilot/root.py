"""``hotcb autopilot --root ROOT``: one autopilot per run under a root of run directories.

Each run gets its own ``Autopilot`` (its own tools, so its own guard, cooldowns and ledger) on
its own thread, so an LLM wake on one run never delays another's rules. The root is rescanned
every interval (``RunRoot``); a run that appears later gets its autopilot then. With
``exit_when_done`` the supervisor ends once every run it has seen has ended.

A root may be shared with other users, so what a run directory says about itself is not the
operator's word: only runs whose directory the operator's user owns are managed (or exactly
the runs named with ``runs``), the mode is the operator's (``mode``; a run's own
``hotcb.autopilot.json`` is never read for it), and a run whose directory is swapped (for a
link or another directory) loses its autopilot. No LLM request is ever made for a run that is
not managed.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from hotcb.agent.pilot.autopilot import AIOptions, Autopilot
from hotcb.agent.rules.config import RulesConfig
from hotcb.mcp_server.run_root import RunRoot

log = logging.getLogger("hotcb.agent.root")


class PinnedAutopilot(Autopilot):
    """An autopilot whose mode is the operator's, whatever the run's own mode file says."""

    def __init__(self, run_dir: str | os.PathLike[str], *, mode: str, **kw: Any):
        super().__init__(run_dir, mode=mode, **kw)
        self.pinned = mode

    def mode(self) -> str:
        return self.pinned


class RootAutopilot:
    def __init__(self, root: str | os.PathLike[str], *, mode: str, rules: RulesConfig | None = None,
                 ai: AIOptions | None = None, interval_s: float = 1.0, exit_when_done: bool = True,
                 runs: list[str] | None = None, uid: int | None = None):
        self.runs = RunRoot(root, source="rule", actor="autopilot")
        self.mode, self.rules, self.ai = mode, rules, ai
        self.interval_s = interval_s
        self.exit_when_done = exit_when_done
        self.named = set(runs) if runs else None  # None: every run the operator owns
        self.uid = os.getuid() if uid is None else uid
        self.pilots: dict[str, Autopilot] = {}
        self.idents: dict[str, tuple[int, int]] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.skipped: dict[str, str] = {}  # run -> why it is not managed (logged once)
        self.stop_event = threading.Event()

    def _why_not(self, name: str) -> str | None:
        """Why run ``name`` is not managed, or None when it is."""
        st = self.runs.lstat(name)
        if st is None:
            return "not a directory under the root"
        if self.named is not None:
            return None if name in self.named else "not named with --run"
        return None if st.st_uid == self.uid else f"owned by uid {st.st_uid}, not {self.uid} (name it with --run)"

    def _forget(self, name: str, why: str) -> None:
        pilot = self.pilots.pop(name, None)
        self.idents.pop(name, None)
        if pilot is not None:
            pilot.stop()
            log.warning("autopilot stopped on run %s: %s", name, why)

    def scan(self) -> list[str]:
        """Make an autopilot for every managed run not seen before (dropping those whose directory
        changed); returns the new runs' names."""
        new = []
        for name in list(self.pilots):
            if self.runs.identity(name) != self.idents[name]:
                self._forget(name, "its directory was replaced")
        for name, tools in self.runs.scan().items():
            if name in self.pilots:
                continue
            why = self._why_not(name)
            if why is not None:
                if self.skipped.get(name) != why:
                    self.skipped[name] = why
                    log.info("run %s not managed: %s", name, why)
                continue
            ident = self.runs.identity(name)
            if ident is None:
                continue
            self.skipped.pop(name, None)
            self.idents[name] = ident
            self.pilots[name] = PinnedAutopilot(tools.run.root, mode=self.mode, rules=self.rules, ai=self.ai,
                                                interval_s=self.interval_s, exit_when_done=self.exit_when_done)
            new.append(name)
        return new

    def tick(self) -> dict[str, Any]:
        """One pass over every managed run (``--once``)."""
        self.scan()
        return {name: pilot.once() for name, pilot in sorted(self.pilots.items())}

    def run(self) -> None:
        """Each run's autopilot on its thread; rescan every interval until stopped (or all runs ended)."""
        try:
            while not self.stop_event.is_set():
                for name in self.scan():
                    t = threading.Thread(target=self.pilots[name].run, name=f"hotcb-autopilot-{name}", daemon=True)
                    self.threads[name] = t
                    t.start()
                    log.info("autopilot started on run %s", name)
                if self.exit_when_done and self.threads and not any(t.is_alive() for t in self.threads.values()):
                    return
                self.stop_event.wait(self.interval_s)
        finally:
            self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for pilot in self.pilots.values():
            pilot.stop()
        for t in self.threads.values():
            t.join(timeout=30)

    def describe(self) -> str:
        skipped = f"; not managed: {', '.join(sorted(self.skipped))}" if self.skipped else ""
        return (f"root {self.runs.root}, mode {self.mode} ({len(self.pilots)} runs: "
                f"{', '.join(sorted(self.pilots)) or 'none yet'}{skipped})")
