"""Which state a rescue rollback returns to, and what the rescue remembers to choose it.

A snapshot that looks healthy is not always one to return to: a dead network's loss is quiet, so
its snapshots confirm as healthy (one whose loss had sat at chance for a window holds nothing
learned: the run's first state is returned to instead); and snapshots taken just after a raise
of lr (healthy for a few steps while momentum builds up) would restore the raise with the
weights. So the rescue keeps,
beside the kernel's ring of snapshots, the detector as it stood at each one, the run's first state
(outside the ring: an autopilot that enables the rescue a few steps in can still return to the
start) and the knob's last raise; ``RollbackTargets`` holds them and makes the choice.
"""

from __future__ import annotations

from typing import Any

from .actuators.actuator import ValueRefused
from .checkpoint import Snapshot, Snapshots
from .codec import json_number
from .divergence import DetectorConfig, LossDetector, Verdict


class RollbackTargets:
    def __init__(self, snapshots: Snapshots, knob: str, blame_steps: int):
        self.snapshots = snapshots
        self.knob = knob
        self.blame_steps = blame_steps  # a blow-up this soon after a raise of the knob is the raise's
        self.start: Snapshot | None = None  # the run's first state
        self.raised: tuple[int, float] | None = None  # (step, value before) of the knob's last raise
        self._detector_at: dict[int, LossDetector] = {}
        self._base_at: dict[int, float] = {}  # the knob's schedule base at each snapshot (a scheduled lr)
        self.passed_over: Snapshot | None = None  # the last choice's healthy snapshot left for the start (at chance)
        self.unproven: Snapshot | None = None  # the last choice's healthy snapshot left for the start (trained
        #                                         only at the lr that blew up, early in the run)

    # ------------------------------------------------------------------ what is remembered
    def hold_start(self, snap: Snapshot, detector: LossDetector, base: float | None = None) -> None:
        """The run's first state, and the detector with it (called again at that step once its
        loss is seen, without ``base``: a rollback to the start keeps the run's first loss as its
        reference, and the knob's base stays the one that goes with the snapshot's value)."""
        self.start = snap
        self._detector_at[snap.step] = detector.copy()
        if base is not None:
            self._base_at[snap.step] = base

    def keep_detector(self, step: int, detector: LossDetector, base: float | None = None) -> None:
        """The detector as it stood at a snapshot taken at ``step`` (a rollback returns the run
        *and* its measured level there), and the knob's schedule base then; those of evicted
        snapshots are dropped."""
        kept = set(self.snapshots.steps()) | ({self.start.step} if self.start else set())
        self._detector_at = {s: d for s, d in self._detector_at.items() if s in kept}
        self._base_at = {s: b for s, b in self._base_at.items() if s in kept}
        self._detector_at[step] = detector.copy()
        self._base_at.pop(step, None)
        if base is not None:
            self._base_at[step] = base

    def base_at(self, step: int) -> float | None:
        """The knob's schedule base when the snapshot of ``step`` was taken (None: not scheduled)."""
        return self._base_at.get(step)

    def detector_at(self, step: int) -> LossDetector | None:
        """A copy of the detector as it stood at the snapshot of ``step`` (None: not kept)."""
        det = self._detector_at.get(step)
        return det.copy() if det is not None else None

    def reconfigure(self, config: DetectorConfig) -> None:
        for det in self._detector_at.values():
            det.config = config

    def note_raise(self, step: int, old: float) -> None:
        self.raised = (step, old)

    def raised_since(self, step: int) -> bool:
        """The knob was last raised (by an op) at or after ``step``."""
        return self.raised is not None and self.raised[0] >= step

    # ------------------------------------------------------------------ the choice
    def choose(self, verdict: Verdict, step: int, detector: LossDetector, *,
               early_lr: float | None = None) -> Snapshot | None:
        """The state a rescue returns to: the newest healthy snapshot that was alive, unless the
        run is dead (at chance) and that snapshot never learned, or that snapshot's loss had sat at
        chance for a window, or (``early_lr``: the knob's value at an early first blow-up) every
        state the run holds was trained at that value or above: then the run's first state; and
        after a recent raise of the knob, the newest healthy one from before it."""
        self.passed_over = self.unproven = None
        before = self._before_raise(step)
        snap = before or self.last_alive()
        if self.start is None or snap is self.start:
            return snap
        if snap is None or ((verdict is Verdict.CHANCE or detector.dead()) and not self._learned(snap, detector)):
            return self.start
        if self._sat_at_chance(snap):
            self.passed_over = snap
            # It holds nothing learned, and a network that collapsed to chance may never leave it:
            # charlm x30 seed 2 (AdamW at 0.3 sat at the unigram loss, the probe raised it, it blew
            # up) went back to that state at half the lr and stayed at the unigram loss to the end,
            # where seeds 0 and 1, whose pre-raise state was not yet confirmed, restarted and learned.
            return self.start
        if before is None and early_lr is not None and self._trained_only_at(early_lr):
            # The run started at an lr it could not hold and holds no state trained below it: what it
            # learned there came with damage a loss level does not show. Fashion-mnist x8 seed 4 (SGD
            # at 0.4) blew up at step 86, went back to step 70 at half the lr and plateaued at a loss
            # twice the other seeds' (73% test accuracy); from its first state at that lr: 86%.
            self.unproven = snap
            return self.start
        return snap

    def trained_at_most(self, value: float, by_step: int) -> Snapshot | None:
        """The newest healthy snapshot taken by ``by_step`` with the knob at ``value`` or below,
        else the run's first state: where an overshot warmup goes back to (``hotcb.warmup_watch``),
        a state trained only at lrs the range test allows."""
        ceiling = value * (1 + 1e-9)

        def allowed(s: Snapshot) -> bool:
            v = json_number(s.knobs.get(self.knob))
            return v is not None and v <= ceiling

        fit = [s for s in self.snapshots.snapshots if s.healthy and s.step <= by_step and allowed(s)]
        return fit[-1] if fit else self.start

    def describe(self, snap: Snapshot | None) -> str:
        """The last choice's target, as a rollback's reason says it."""
        if snap is None:
            return "no healthy snapshot"
        if snap is self.start and self.unproven is not None:
            return (f"roll back to the run's first state (step {snap.step}: every state since was trained at the "
                    f"lr that blew up, this early in the run; the newest healthy one was step {self.unproven.step})")
        if snap is self.start and self.passed_over is not None:
            return (f"roll back to the run's first state (step {snap.step}: the newest healthy state, step "
                    f"{self.passed_over.step}, had sat at chance: nothing learned to keep)")
        if snap is self.start and snap is not self.last_alive():
            return f"roll back to the run's first state (step {snap.step}: no learning state was confirmed)"
        return f"roll back to step {snap.step}"

    def named(self, at: Any) -> Snapshot:
        """The snapshot a ``rescue rollback`` op names (``params.step``), else the newest healthy
        one that was alive, else the run's first state; refused when there is none."""
        snaps = self.snapshots
        if not snaps.objects:
            raise ValueRefused("no state registered (kernel.register_state): nothing to roll back")
        if at is None:
            snap = self.last_alive() or self.start
        elif isinstance(at, bool) or not isinstance(at, int):
            raise ValueRefused("rescue rollback: params.step must be the step of a healthy snapshot")
        elif self.start is not None and at == self.start.step:
            snap = self.start
        else:
            snap = next((s for s in snaps.snapshots if s.step == at and s.healthy), None)
            if snap is None:
                raise ValueRefused(f"no healthy snapshot at step {at} (healthy: "
                                   f"{[s.step for s in snaps.snapshots if s.healthy]})")
        if snap is None:
            raise ValueRefused(f"no healthy snapshot to roll back to (have {snaps.steps()})")
        return snap

    def last_alive(self) -> Snapshot | None:
        """The newest healthy snapshot whose network was not already dead when it was taken."""
        for s in reversed(self.snapshots.snapshots):
            det = self._detector_at.get(s.step)
            if s.healthy and not (det is not None and det.dead()):
                return s
        return None

    def _before_raise(self, step: int) -> Snapshot | None:
        """After a recent raise, the newest healthy snapshot whose knob is not above its value
        before the raise (None: the ring holds none from before it any more)."""
        if self.raised is None or step - self.raised[0] > self.blame_steps:
            return None
        before = self.raised[1] * (1 + 1e-9)

        def low(s: Snapshot) -> bool:
            v = s.knobs.get(self.knob)
            return isinstance(v, (int, float)) and v <= before

        return next((s for s in reversed(self.snapshots.snapshots) if s.healthy and low(s)), None)

    def _trained_only_at(self, value: float) -> bool:
        """The run's first state and every snapshot since have the knob at ``value`` or above: the
        run never trained at a lower one (a warmup, a cut or a person's lower value says it did)."""
        assert self.start is not None
        floor = value * (1 - 1e-9)
        knobs = [self.start.knobs.get(self.knob), *(s.knobs.get(self.knob) for s in self.snapshots.snapshots)]
        return all(isinstance(v, (int, float)) and v >= floor for v in knobs)

    def _sat_at_chance(self, snap: Snapshot) -> bool:
        """The detector, as it stood at ``snap``, had the level at chance for a window."""
        det = self._detector_at.get(snap.step)
        return det is not None and det.at_chance >= det.config.chance_window

    def _learned(self, snap: Snapshot, detector: LossDetector) -> bool:
        """The detector, as it stood at ``snap``, had the loss clearly below chance (or no chance
        level is known, so a healthy snapshot is taken at its word)."""
        det = self._detector_at.get(snap.step)
        chance = detector.chance_level
        if chance is None or det is None or det.level is None:
            return chance is None
        return det.level < (1 - 2 * det.config.chance_tol) * chance
