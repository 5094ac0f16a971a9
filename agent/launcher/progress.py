"""A live progress line for a run in the terminal (``hotcb demo``, ``hotcb launch``): step, loss,
lr and the autopilot's actions, read through the tools like every other observer.

On a terminal the line redraws in place (rich); piped to a file or a test, a plain line is
printed when something changed and at most every ``plain_every_s`` seconds, so logs stay short.
At the end, ``summary()`` gives what the autopilot did, one line per action.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from hotcb.mcp_server.tools_observe import LedgerInput, logged_values
from hotcb.mcp_server.tools_protocol import Tools

from hotcb.vocabulary import AUTOMATED_SOURCES

LOSS_NAMES = ("train_loss", "loss")
SHOWN = (*LOSS_NAMES, "lr", "opt/lr", "val_acc")  # the values a progress line shows


@dataclass
class Snapshot:
    step: int | None = None
    max_steps: int | None = None
    liveness: str = "absent"
    loss: float | None = None
    lr: float | None = None
    val_acc: float | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)  # applied autopilot changes
    story: list[dict[str, Any]] = field(default_factory=list)  # those and the story actors' changes


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def describe_change(e: dict[str, Any], reason: bool = True) -> str:
    """``step 210 rule/lr_plateau: opt.set_params lr 0.05 -> 0.025 (val_loss flat)``."""
    parts = []
    for k, v in (e.get("payload") or {}).items():
        if isinstance(v, dict) and "old" in v and "new" in v:
            parts.append(f"{k} {v['old']:.4g} -> {v['new']:.4g}" if isinstance(v["old"], float)
                         and isinstance(v["new"], float) else f"{k} {v['old']} -> {v['new']}")
    what = f"{e.get('module')}.{e.get('op')}" + (f" {', '.join(parts)}" if parts else "")
    why = f" ({e['reason']})" if reason and e.get("reason") else ""
    return f"step {e.get('step')} {e.get('source')}/{e.get('actor') or '-'}: {what}{why}"


class RunProgress:
    """Reads the run every ``interval_s`` and shows one line until ``stop()``."""

    def __init__(self, tools: Tools, out: TextIO | None = None, interval_s: float = 0.5, plain_every_s: float = 5.0,
                 story_actors: tuple[str, ...] = ()):
        self.tools = tools
        self.story_actors = story_actors  # people whose changes belong in the story too (the demo's mishap)
        self.out = out or sys.stdout
        self.interval_s = interval_s
        self.plain_every_s = plain_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last = Snapshot()

    def snapshot(self) -> Snapshot:
        st = self.tools.get_status()
        m = {n: v for n, v in logged_values(self.tools, st, list(SHOWN)).items() if v is not None}
        loss = next((_num(m[n]) for n in LOSS_NAMES if n in m), None)
        lr = _num(m.get("lr", m.get("opt/lr")))
        # ledger entries stay data here: describe_change formats any entry's payload
        rows = [e.model_dump(mode="json") for e in self.tools.read_ledger(LedgerInput(decision="applied", last=5000)).entries]
        actions = [e for e in rows if e.get("source") in AUTOMATED_SOURCES]
        story = [e for e in rows if e.get("source") in AUTOMATED_SOURCES or e.get("actor") in self.story_actors]
        return Snapshot(step=st.step, max_steps=st.max_steps, liveness=st.liveness,
                        loss=loss, lr=lr, val_acc=_num(m.get("val_acc")), actions=actions, story=story)

    @staticmethod
    def line(s: Snapshot) -> str:
        if s.step is None:
            return "waiting for the first training step..."
        step = f"step {s.step}" + (f"/{s.max_steps}" if s.max_steps else "")
        bits = [step, f"loss {s.loss:.4g}" if s.loss is not None else "loss -",
                f"lr {s.lr:.3g}" if s.lr is not None else "lr -"]
        if s.val_acc is not None:
            bits.append(f"val_acc {s.val_acc:.3f}")
        acts = f"autopilot: {len(s.actions)} action{'s' if len(s.actions) != 1 else ''}"
        if s.actions:
            acts += f" (last: {describe_change(s.actions[-1], reason=False)})"
        bits.append(acts)
        return " | ".join(bits)

    def start(self) -> RunProgress:
        self._thread = threading.Thread(target=self._run, name="hotcb-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _read(self) -> Snapshot | None:
        try:
            return self.snapshot()
        except Exception:
            return None

    def _run(self) -> None:
        if getattr(self.out, "isatty", lambda: False)():
            try:
                self._run_live()
                return
            except ImportError:
                pass
        self._run_plain()

    def _run_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out)
        with Live("", console=console, refresh_per_second=4, transient=False) as live:
            seen = 0
            while not self._stop.is_set():
                s = self._read()
                if s is not None:
                    for e in s.actions[seen:]:  # each action once, above the live line
                        live.console.print(f"[bold]autopilot[/bold] {describe_change(e)}", markup=True,
                                           highlight=False)
                    seen = len(s.actions)
                    self.last = s
                    live.update(self.line(s))
                self._stop.wait(self.interval_s)
            s = self._read()
            if s is not None:
                self.last = s
                live.update(self.line(s))

    def _run_plain(self) -> None:
        shown, seen, at = "", 0, 0.0
        while True:
            done = self._stop.is_set()
            s = self._read()
            if s is not None:
                self.last = s
                for e in s.actions[seen:]:
                    print(f"autopilot {describe_change(e)}", file=self.out, flush=True)
                seen = len(s.actions)
                text = self.line(s)
                now = time.monotonic()
                if text != shown and (done or now - at >= self.plain_every_s or not shown):
                    print(text, file=self.out, flush=True)
                    shown, at = text, now
            if done:
                return
            self._stop.wait(self.interval_s)

    def summary(self) -> list[str]:
        """What happened, for the end of the demo: the final line and each autopilot action."""
        s = self._read() or self.last
        out = [f"final: {self.line(s)}"]
        if not s.actions:
            out.append("the autopilot made no change (nothing it watches for happened)")
        if s.story:
            out.append("what happened:")
        out += [f"  {describe_change(e)}" for e in s.story]
        return out
