"""The rescue's knob (lr), followed step by step: its live value, the last step an op changed it,
and the scheduler's warmup.

A rise of the knob that no op made is the scheduler's: a warmup, during which a slow loss is
expected (the probe waits, the warmup watch measures it). A knob held below its schedule base
is in a warmup (or a decay) too. ``hotcb.rescue.Rescue`` owns one ``LrTrack`` and tells it what
changed the knob (an op, a rollback) and when a step ends.
"""

from __future__ import annotations

from typing import Any

from .codec import json_number
from .ops import HotOp


class LrTrack:
    def __init__(self, state: Any, knob: str):
        self.state = state  # the kernel's knobs, by name
        self.knob = knob
        self.seen: float | None = None  # the knob's value at the end of the last step followed
        self.changed_at: int | None = None  # the last step an op (or a rollback) changed the knob
        self.rising_at: int | None = None  # the last step the scheduler raised it (a warmup)
        self.warm_end = 0  # the step the scheduler's warmup ended (0: none seen)

    def actuator(self) -> Any:
        """The knob's actuator (None: the run has no such knob)."""
        return self.state.get(self.knob)

    def live(self) -> tuple[Any, float | None]:
        """The knob, refreshed (a scheduler may have moved it), and its value as a number
        (None: not a number); (None, None) when the run has no such knob."""
        act = self.actuator()
        if act is None:
            return None, None
        act.refresh()
        return act, json_number(act.value)

    def schedule_base(self) -> float | None:
        act = self.actuator()
        return act.schedule_base() if act is not None else None

    def watch(self, step: int) -> float | None:
        """At a step's start: the knob rose since the last step with no op changing it, so the
        scheduler is raising it (a warmup). Returns the knob's value (None: no numeric knob)."""
        lr, seen = self.live()[1], self.seen
        if lr is not None and seen is not None and lr > seen * (1 + 1e-9) and self.changed_at != step:
            self.rising_at = step
            self.warm_end = step
        return lr

    def end_step(self) -> None:
        """At a step's end, after its own ops: the value the next step's ``watch`` compares with."""
        act = self.actuator()
        self.seen = json_number(act.value) if act is not None else None

    def warming(self, step: int, window: int) -> bool:
        """The scheduler raised the knob within ``window`` steps: a warmup."""
        return self.rising_at is not None and step - self.rising_at < window

    def held_down(self) -> bool:
        """The knob's value sits below its schedule base: the scheduler holds it down (a warmup
        to go through again, or a decay; either way a slow loss is the schedule's)."""
        live, base = self.live()[1], self.schedule_base()
        return live is not None and base is not None and live < base * (1 - 1e-9)

    def before_change(self, op: HotOp, step: int) -> float | None:
        """An op (any source) about to change the knob, at ``step``: remembered as a change, not
        the scheduler's rise. Returns the value it raises the knob from (None: not a raise)."""
        act = self.actuator()
        if act is None or op.module != act.group or act.param_key not in op.params:
            return None
        act.refresh()
        self.changed_at = step
        new, old = json_number(op.params[act.param_key]), json_number(act.value)
        return old if new is not None and old is not None and new > old else None
