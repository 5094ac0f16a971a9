"""The rescue: the kernel module that watches every step's loss (``hotcb.divergence``), keeps
snapshots to return to, and on a blow-up rolls back and cuts lr as one ledgered decision.

Registered by the kernel as module ``rescue``; it sees every ``kernel.apply`` (``on_step``).
The detector always runs (O(1) a step; on quiet steps of a healthy run, where nothing else can
happen, the losses wait and are fed to it in a batch before anyone reads it: ``hotcb/quiet.py``);
nothing acts until the rescue is enabled, by an op
(``rescue enable``: the autopilot sends it when its mode acts, ``auto`` / ``ai_auto``) or by the
training script (``rescue_of(kernel).configure(enabled=True)``). Its ops go through
``kernel.submit``, so freeze mode, the guard and the ledger apply as to any rule op.

Snapshots (``kernel.snapshots``, a ring of ``keep_checkpoints``): the run's first state (held
by the rescue, one copy, and put in the ring as healthy when the rescue is enabled), one every
``snapshot_every`` steps while healthy, and one right before any non-human knob change (the
kernel calls ``before_change``). A snapshot is *healthy* once the detector has
seen ``confirm`` healthy points after it (a pre-change snapshot taken while the run is confirmed
healthy is healthy at once); the ring never evicts the newest healthy one.

On a blow-up (``persist`` points far above the run's level), a non-finite loss, or a classifier
dead at chance, the rescue submits ``rescue rollback`` (source ``rule``, actor ``rescue``): the
weights, optimizer and knobs go back to the newest healthy snapshot (within ``blame_steps`` of a
raise of lr, the newest from before the raise: snapshots taken after it restore it), and lr is
cut by ``cut`` from the lower of the lr in use and the snapshot's (a raise since the snapshot is
undone by the rollback; repeated blow-ups cut further). The choice of state is
``hotcb.rollback_target``'s; the op itself, restore and cut, is ``hotcb.rescue_rollback``'s. The
cut is the judge's to allow (``hotcb.judge.judge_rescue_cut``: the guard's ratio limit from that
lower lr and its bounds, not the knob's cooldown); a locked knob is left. In a distributed run
the rescue only watches (each rank sees its own loss, and every rank must act alike).

The knob is followed step by step (``hotcb.lr_track``: a rise no op made is the scheduler's
warmup) while the warmup watch or the unsettled probe needs it. A warmup whose loss turns up
while the scheduler raises lr (``hotcb.warmup_watch``) is rolled back the same way, to a state
trained at an lr the warmup allows, and its schedule cut until the peak is a tenth of the lr
where the loss turned (``hotcb.overshot_warmup``, the cuts ``hotcb.peak_cut``'s; the rescue's
verdict is ``overshot`` for that step: the detector alone calls such a run healthy, and the
judge lets a rule roll back only a run that is not).

The lr moves it makes besides (with ``probe`` on; ``hotcb.lr_steps``): the probe
(``hotcb.probe``) raises a start far too low; after a rescue of the run's own blow-up the
descent (``hotcb.descent``) cuts an lr still held up by the loss's noise floor, each cut
measured; on a run that never blew up and was never raised, the descent's test (one measured cut
between 20% and 60% of the run, undone unless the loss clearly drops) looks for an lr too high.
These and the peak cut are each one rule op, asked of the guard before it is sent
(``hotcb.rule_lr_op``). What stays here is one step's orchestration: the detector, the
snapshots, and the choice between a rescue, the overshot warmup and the lr steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from .actuators.actuator import ValueRefused
from .checkpoint import Snapshot, live_knob_values
from .codec import json_number
from .descent import DescentConfig, LrDescent
from .divergence import DetectorConfig, LossDetector, Verdict
from .lr_steps import LrSteps
from .lr_track import LrTrack
from .modules import ApplyContext
from .ops import RESCUE, RESCUE_OPS, HotOp, Source
from .overshot_warmup import OvershotWarmup
from .peak_cut import PeakCut
from .probe import LrProbe, ProbeConfig, ProbeState
from .quiet import QUIET_POINTS, QuietSteps
from .records import RescueStatus
from .rescue_rollback import RescueRollback
from .rollback_target import RollbackTargets
from .rule_lr_op import RuleLrOp
from .warmup_watch import WarmupWatch, WarmupWatchConfig

ACTOR = "rescue"
LOSS_METRICS = ("train_loss", "loss")


@dataclass(frozen=True)
class RescueConfig:
    metric: str | None = None        # the loss to watch (None: train_loss, else loss)
    held_metric: str = "val_loss"    # a held-out loss the probe measures on when the step loss is too noisy
    knob: str = "lr"                 # the knob a rescue cuts and the probe raises
    cut: float = 0.5                 # a rescue's lr factor (the guard's per-op limit binds it)
    snapshot_every: int = 50         # healthy snapshots while enabled (steps)
    max_rescues: int = 8             # then the rescue stops acting and says so
    floor: float = 1e-3              # no cut below this share of the run's first lr (a sane floor)
    early_share: float = 0.25        # a first blow-up this early in a known budget may restart the run
    blame_steps: int = 100           # a blow-up this soon after a raise of the knob is the raise's
    probe: bool = True               # the lr probe (the way up) and, after a rescue, the descent (hotcb.descent)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    probe_config: ProbeConfig = field(default_factory=ProbeConfig)
    descent_config: DescentConfig = field(default_factory=DescentConfig)
    warmup_config: WarmupWatchConfig = field(default_factory=WarmupWatchConfig)


class Rescue:
    def __init__(self, kernel: Any, config: RescueConfig | None = None):
        self.kernel = kernel
        self.config = config or RescueConfig()
        self.enabled = False
        self._detector = LossDetector(self.config.detector)
        self._quiet: QuietSteps | None = None  # coming steps that only feed the detector (hotcb/quiet.py)
        self.probe = LrProbe(self.config.probe_config)
        self.descent = LrDescent(self.config.descent_config)
        self.warmup = WarmupWatch(self.config.warmup_config)
        self.peak_cut = PeakCut(self.config.warmup_config.range_rule, self.config.cut)  # after an overshot warmup
        self.rescues = 0
        self.started = False
        self.last_snapshot_step: int | None = None
        self.last_action: str | None = None
        self.last_restored: int | None = None  # the step the last rollback returned to
        self.targets = RollbackTargets(kernel.snapshots, self.config.knob, self.config.blame_steps)
        self._acting = False
        self.lr_track = LrTrack(kernel.state, self.config.knob)  # the knob, step by step (hotcb/lr_track.py)
        self.rollback = RescueRollback(kernel, self.targets, self.lr_track)  # the rollback op (hotcb/rescue_rollback.py)
        self.lr_op = RuleLrOp(kernel, self.config.knob, self._submit)  # a rule's lr op, guard asked first (hotcb/rule_lr_op.py)
        self.overshot = OvershotWarmup(self.peak_cut, self.targets, self.lr_track, self.lr_op,
                                       self._submit_rollback, actor=ACTOR)  # its rollback, its peak cut (hotcb/overshot_warmup.py)
        self.lr_steps = LrSteps(self.probe, self.descent, self.lr_track, self.lr_op,
                                self.config.floor)  # the probe's and the descent's lr steps (hotcb/lr_steps.py)

    @property
    def detector(self) -> LossDetector:
        """The divergence detector, with every step's loss so far fed to it (``hotcb/quiet.py``)."""
        if self._quiet is not None:
            self._fold()
        return self._detector

    @detector.setter
    def detector(self, det: LossDetector) -> None:
        if self._quiet is not None:
            self._fold()  # the points belong to the detector replaced, as they would at their steps
        self._detector = det

    def _fold(self) -> None:
        """End the quiet stretch: feed its waiting losses to the detector, in order."""
        q, self._quiet = self._quiet, None
        if q is not None:
            self._detector.update_quiet(q.points)

    # ------------------------------------------------------------------ configuration
    # complexity: one keyword per thing the script may say about its task, each applied where it belongs
    def configure(self, *, enabled: bool | None = None, classes: int | None = None,
                  baseline: float | None = None, loss_floor: float | None = None, probe: bool | None = None,
                  **detector: Any) -> None:
        """For the training script, what it knows about its task: ``classes=10`` (a classifier:
        "stuck at chance" is ln 10), or ``baseline=float(y.var())`` (a regression: the loss of
        predicting the mean, where a collapsed network sits), or neither; ``loss_floor`` (the
        lowest loss it can reach: no probe raise near it)."""
        self._fold()  # a quiet stretch was worked out under the configuration in force
        if classes is not None or baseline is not None or detector:
            over = dict(detector)
            if classes is not None:
                over["classes"] = int(classes)
            if baseline is not None:
                b = float(baseline)
                if not (math.isfinite(b) and b > 0):
                    raise ValueError(f"baseline must be a positive finite loss, got {baseline!r}")
                over["baseline"] = b
            self.config = replace(self.config, detector=replace(self.config.detector, **over))
            self.detector.config = self.config.detector
            self.targets.reconfigure(self.config.detector)
        if loss_floor is not None:
            self.config = replace(self.config, probe_config=replace(self.config.probe_config,
                                                                    loss_floor=float(loss_floor)))
            self.probe.config = self.config.probe_config
        if probe is not None:
            self.config = replace(self.config, probe=bool(probe))
        if enabled is not None:
            self.enabled = bool(enabled)

    @property
    def verdict(self) -> Verdict:
        """The run as the rescue judges it: the detector's verdict, or ``OVERSHOT`` while the
        rescue rolls back an overshot warmup (the judge lets a rule roll back a run that is not
        healthy, and the detector alone calls that run healthy)."""
        return Verdict.OVERSHOT if self.overshot.rolling_back else self.detector.verdict

    def why_broken(self) -> str | None:
        """The detector's reason no change can be judged now (None: the run is healthy)."""
        return self.detector.why_broken()

    def status(self) -> RescueStatus:
        """The rescue section of the status file, as every reader parses it."""
        d = self.detector
        return RescueStatus(enabled=self.enabled, verdict=d.verdict.value, level=_num(d.level), noise=_num(d.noise),
                            rescues=self.rescues, probe=self.probe.state.value if self.config.probe else "off",
                            descent=self.descent.state.value if self.config.probe else "off",
                            last_action=self.last_action, can_roll_back=bool(self.kernel.snapshots.objects))

    # ------------------------------------------------------------------ ops
    def handle(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        self._fold()  # an op of the rescue's own changes what a quiet stretch assumed
        if op.op == "enable":
            old = self.enabled
            p = op.params
            b = json_number(p.get("baseline"))
            self.configure(enabled=True, classes=p.get("classes") if isinstance(p.get("classes"), int) else None,
                           baseline=b if b is not None and math.isfinite(b) and b > 0 else None,
                           probe=p.get("probe") if isinstance(p.get("probe"), bool) else None)
            return {"enabled": {"old": old, "new": True}, "probe": self.config.probe}
        if op.op == "disable":
            old, self.enabled = self.enabled, False
            return {"enabled": {"old": old, "new": False}}
        if op.op == "rollback":
            return self._rollback(op, ctx)
        raise ValueRefused(f"unknown rescue op {op.op!r}; known: {', '.join(RESCUE_OPS)}")

    def before_change(self, op: HotOp, ctx: ApplyContext) -> None:
        """The kernel calls this just before it applies a knob op (any source)."""
        self._fold()  # a knob change may move what a quiet stretch assumed (the descent, the probe)
        group = self.lr_track.actuator()
        if any(op.module != (group.group if group else None) and k in self.kernel.state for k in op.params):
            self.detector.reset()  # a loss weight changes the loss's scale: learn the new level
        raised_from = self.lr_track.before_change(op, ctx.step)
        if raised_from is not None:  # a blow-up soon after a raise (by anyone) is its doing
            self.targets.note_raise(ctx.step, raised_from)
        if not self.enabled or op.source in self.kernel.guard.trusted_sources or not self.kernel.snapshots.objects:
            return
        self._snapshot(ctx.step, "before a change by " + (op.actor or op.source), healthy=self.detector.confirmed())

    # ------------------------------------------------------------------ every step
    def on_step(self, ctx: ApplyContext) -> None:
        q = self._quiet
        if q is not None:
            # A quiet step (hotcb/quiet.py): its loss waits for the detector, nothing else can happen.
            metrics = ctx.env.get("metrics")
            x = metrics.get(q.metric) if metrics else None
            if q.keep(ctx.step, x, self.kernel.snapshots.snapshots, self.kernel.max_steps):
                return
            self._fold()
            if ctx.step == q.next and self._reopen(ctx.step, x):
                return
        self._full_step(ctx)

    def _reopen(self, step: int, x: Any) -> bool:
        """After a stretch that ran to the step before this one: the rescue stands as a full step
        there would leave it, so the next stretch is worked out from there, and this step is its
        first if its loss is inside the new band (else it is a full step)."""
        self._open_quiet(step - 1)
        q = self._quiet
        if q is not None and q.keep(step, x, q.ring, q.max_steps):  # the ring and length just read
            return True
        self._quiet = None  # nothing kept yet: the full step starts from the same state
        return False

    def _full_step(self, ctx: ApplyContext) -> None:
        if self.targets.start is None or not self.started:  # else _hold_start has nothing left to do
            self._hold_start(ctx.step)
        probe = self.config.probe
        lr = self.lr_track.watch(ctx.step) if self._reads_lr() else None  # once nothing needs it, no more reads
        metrics = ctx.env.get("metrics") or {}
        x = self._loss(metrics)
        if x is None:
            return
        verdict = self._detector.update(x)
        overshoot = self.warmup.observe(ctx.step, x, lr, self.lr_track.rising_at) if self.warmup.active else None
        start = self.targets.start
        if start is not None and ctx.step == start.step:
            # A rollback to the first state keeps the run's first loss as its reference (the early rise).
            self.targets.hold_start(start, self.detector)
        if self._observing():
            self._observe(ctx.step, x, metrics)  # else neither keeps a point
        if not self.enabled or self.kernel.dist is not None or self._acting:
            return
        if verdict in (Verdict.BLOWUP, Verdict.NON_FINITE, Verdict.CHANCE):
            self._rescue(ctx, verdict, x)
            return
        if self.overshot.mind(ctx, overshoot, x, spent=self.rescues >= self.config.max_rescues):
            return
        det = self._detector
        if det.confirmed() and not det.dead():  # a dead network's quiet loss confirms nothing
            self.kernel.snapshots.confirm(since=ctx.step - det.healthy_run + 1, upto=ctx.step - det.config.confirm)
        every = self.config.snapshot_every
        if (verdict is Verdict.HEALTHY and self.kernel.snapshots.objects
                and (self.last_snapshot_step is None or ctx.step - self.last_snapshot_step >= every)):
            self._snapshot(ctx.step, "periodic (confirmed healthy later)", healthy=False)
        if probe:
            self._move_lr(ctx)
        if self._reads_lr():  # the probe may have settled at this step
            self.lr_track.end_step()
        self._open_quiet(ctx.step)

    def _open_quiet(self, step: int) -> None:
        """After a full step: the coming steps on which nothing but the detector's update can
        happen, each bound of the stretch the first step where something else might
        (``hotcb/quiet.py``)."""
        det, kernel = self._detector, self.kernel
        probe = self.config.probe
        if (self._quiet is not None or not self.enabled or kernel.dist is not None or not self.started
                or self.targets.start is None or det.verdict is not Verdict.HEALTHY
                or self.warmup.active or self.peak_cut.active or self._observing()):
            return
        band = det.quiet_band(QUIET_POINTS)
        if band is None:
            return
        until = step + 1 + QUIET_POINTS
        snaps = kernel.snapshots
        if snaps.objects:  # the next periodic snapshot is a full step
            if self.last_snapshot_step is None:
                return
            until = min(until, self.last_snapshot_step + self.config.snapshot_every)
        since = step - det.healthy_run + 1  # a snapshot from this healthy run is confirmed ``confirm`` steps on
        for s in snaps.snapshots:
            if not s.healthy and s.step >= since:
                until = min(until, s.step + det.config.confirm)
        first = self.targets.start.step
        if first > step:  # a rollback to the run's start holds its loss at that step
            until = min(until, first)
        if probe and self._untouched():  # where ``LrSteps.move`` may arm the descent's test
            test = self.lr_steps.test_from(step, kernel.max_steps)
            if test is not None:
                until = min(until, test)
        if until > step + 1:
            self._quiet = QuietSteps(self.config.metric or LOSS_METRICS[0], band[0], band[1], step + 1, until,
                                     snaps.snapshots, kernel.max_steps)

    def _observe(self, step: int, x: float, metrics: dict[str, Any]) -> None:
        """The probe's and the descent's points: the step loss, and a held-out loss when logged."""
        if self.probe.state is not ProbeState.SETTLED:
            self.probe.observe(x)
            held = self._value(metrics, self.config.held_metric)
            if held is not None:
                self.probe.observe_held(step, held)
        self.descent.observe(x)

    def _move_lr(self, ctx: ApplyContext) -> None:
        """The probe's or the descent's lr step, if one is due (``hotcb.lr_steps``)."""
        action = self.lr_steps.move(ctx, self.detector, self.kernel.max_steps, untouched=self._untouched(),
                                    floor=self._floor())
        if action is not None:
            self.last_action = action

    def _hold_start(self, step: int) -> None:
        if self.targets.start is None and self.kernel.snapshots.objects:
            # The run's first state, held outside the ring until the rescue is enabled: an
            # autopilot that enables it a few steps in can still return to the start.
            start = self.kernel.snapshots.capture(step, live_knob_values(self.kernel.state), "run start")
            self.targets.hold_start(start, self.detector, self.lr_track.schedule_base())
        if self.enabled and not self.started:
            self.started = True
            if self.targets.start is not None:
                self.targets.start.healthy = True
                self.kernel.snapshots.add_oldest(self.targets.start)

    def _observing(self) -> bool:
        """Whether the probe (until it settles) or the descent keeps the step's points."""
        return self.config.probe and (self.probe.state is not ProbeState.SETTLED or self.descent.observing())

    def _untouched(self) -> bool:
        """A run that never blew up and was never too slow (no rescue, no raise by the probe):
        the descent's one test of an lr too high may be due."""
        return self.rescues == 0 and not self.probe.raises

    def _reads_lr(self) -> bool:
        """Whether the warmup watch or the unsettled probe still follows the lr step by step."""
        return self.warmup.active or (self.config.probe and self.probe.state is not ProbeState.SETTLED)

    def warming(self, step: int) -> bool:
        """The scheduler raised lr within the probe's window: a warmup (a slow loss is expected)."""
        return self.lr_steps.warming(step)

    def _loss(self, metrics: dict[str, Any]) -> float | None:
        if not self.config.metric:
            x = metrics.get(LOSS_METRICS[0])
            if type(x) is float:  # a float train_loss, the common case, at once
                return x
        names = (self.config.metric,) if self.config.metric else LOSS_METRICS
        for name in names:
            if metrics.get(name) is not None:
                return self._value(metrics, name)
        return None

    @staticmethod
    def _value(metrics: dict[str, Any], name: str) -> float | None:
        v = metrics.get(name)
        n = json_number(v)
        if n is not None:
            return n
        if v is not None:
            try:
                return float(v)  # a 0-d tensor
            except (TypeError, ValueError):
                return None
        return None

    def _snapshot(self, step: int, reason: str, healthy: bool) -> None:
        self.kernel.snapshots.take(step, live_knob_values(self.kernel.state), reason, healthy=healthy)
        self.last_snapshot_step = step
        self.targets.keep_detector(step, self.detector, self.lr_track.schedule_base())

    def _floor(self) -> float | None:
        """No cut below ``floor`` x the run's first value of the knob (None: not known)."""
        start = self.targets.start
        first = start.knobs.get(self.config.knob) if start is not None else None
        return self.config.floor * first if isinstance(first, (int, float)) else None

    def _submit(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        self._acting = True
        try:
            return self.kernel.submit(op, env=ctx.env)
        finally:
            self._acting = False

    # ------------------------------------------------------------------ the rescue
    def _rescue(self, ctx: ApplyContext, verdict: Verdict, x: float) -> None:
        det = self.detector
        if self.rescues >= self.config.max_rescues:
            if self.rescues == self.config.max_rescues:
                self.rescues += 1
                self.kernel.raise_alert("rescue", f"the rescue rolled back {self.config.max_rescues} times and "
                                        "stops acting: this run needs a person", metric=self.config.metric, value=x)
            return
        why = det.explain(verdict, x)
        self._submit_rollback(ctx, self.targets.choose(verdict, ctx.step, det, early_lr=self._early_lr(ctx.step)), why, x)

    def _early_lr(self, step: int) -> float | None:
        """The knob's value at the run's first blow-up, when it comes in the first ``early_share``
        of a known budget (None otherwise): a rollback then weighs a restart (``RollbackTargets``),
        which costs at most that share of the run."""
        budget = self.kernel.max_steps
        if self.rescues or not budget or step > self.config.early_share * budget:
            return None
        return self.lr_track.live()[1]

    def _submit_rollback(self, ctx: ApplyContext, snap: Snapshot | None, why: str, x: float) -> dict[str, Any]:
        """Submit one ``rescue rollback`` (to ``snap``, cutting lr) and keep the rescue's books."""
        target = self.targets.describe(snap)
        params: dict[str, Any] = {"cut": self.config.cut}
        if snap is not None:
            params["step"] = snap.step
        op = HotOp(module=RESCUE, op="rollback", params=params, source=Source.RULE, actor=ACTOR,
                   reason=f"rescue: {why}; {target} and cut {self.config.knob}")
        entry = self._submit(op, ctx)
        self.rescues += 1
        self.last_action = f"step {ctx.step}: rollback {entry.get('decision')}"
        det = self.detector  # restored with the snapshot when the rollback landed
        det.over = 0
        det.healthy_run = 0
        det.at_chance = 0
        self.probe.settle(f"rescue at step {ctx.step}")
        if entry.get("decision") == "applied":
            if not self.rollback.raise_undone:  # a blow-up that followed a raise is explained by it (and undone)
                self.descent.arm(f"rescue at step {ctx.step}")
            self.kernel.raise_alert("rescue", op.reason or "", metric=self.config.metric, value=x)
        return entry

    def _rollback(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        """One decision: restore a healthy snapshot and cut the knob (``hotcb.rescue_rollback``),
        then return the detector to where it stood at that snapshot, on probation."""
        snap, payload = self.rollback.apply(op, ctx, cut=self.config.cut, floor=self._floor())
        kept = self.targets.detector_at(snap.step)
        if kept is not None:
            self.detector = kept
        self.detector.probation = True
        # A window at chance from here is dead unless the run resumes in a warmup: a scheduler that
        # holds lr below its base at the restored state raises it again, and until it has, a slow
        # loss is expected (charlm, rolled back to its start, sits at the unigram loss for the 50
        # steps of its warmup: called dead there, every seed went back to step 0 every ~29 steps).
        self.detector.dead_on_probation = not self.lr_track.held_down()
        self.lr_track.changed_at = ctx.step
        self.last_restored = snap.step
        self.last_snapshot_step = ctx.step
        return payload


def rescue_of(kernel: Any) -> Rescue:
    """The kernel's rescue module (for the training script: ``rescue_of(kernel).configure(...)``)."""
    return kernel.modules[RESCUE]


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(f"{v:.4g}")
