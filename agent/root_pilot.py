"""``hotcb autopilot --root ROOT``: one autopilot per run under a root of run directories.

Each run gets its own ``Autopilot`` (its own tools, so its own guard, cooldowns and ledger) on
its own thread, so an LLM wake on one run never delays another's rules. The root is rescanned
every interval (``RunRoot``); a run that appears later gets its autopilot then. With
``exit_when_done`` the supervisor ends once every run it has seen has ended.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from hotcb.mcp_server.run_root import RunRoot

from .autopilot import AIOptions, Autopilot
from .config import RulesConfig

log = logging.getLogger("hotcb.agent.root")


class RootAutopilot:
    def __init__(self, root: str | os.PathLike[str], *, mode: str | None = None, rules: RulesConfig | None = None,
                 ai: AIOptions | None = None, interval_s: float = 1.0, exit_when_done: bool = True):
        self.runs = RunRoot(root, source="rule", actor="autopilot")
        self.mode, self.rules, self.ai = mode, rules, ai
        self.interval_s = interval_s
        self.exit_when_done = exit_when_done
        self.pilots: dict[str, Autopilot] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.stop_event = threading.Event()

    def scan(self) -> list[str]:
        """Make an autopilot for every run not seen before; returns the new runs' names."""
        new = []
        for name, tools in self.runs.scan().items():
            if name not in self.pilots:
                self.pilots[name] = Autopilot(tools.run.root, mode=self.mode, rules=self.rules, ai=self.ai,
                                              interval_s=self.interval_s, exit_when_done=self.exit_when_done)
                new.append(name)
        return new

    def tick(self) -> dict[str, Any]:
        """One pass over every run (``--once``)."""
        self.scan()
        return {name: pilot.tick() for name, pilot in sorted(self.pilots.items())}

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
        return f"root {self.runs.root} ({len(self.pilots)} runs: {', '.join(sorted(self.pilots)) or 'none yet'})"
