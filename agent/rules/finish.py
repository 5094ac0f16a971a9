"""The finish: when the run's length is known (the kernel's ``max_steps``), cool lr down over the
last part of the run, as a warmup-stable-decay schedule does -- a few ledgered lr decisions, each
with its reason, source ``rule``, actor ``finish``.

The decay is linear from the live lr at the cool-down's start (``peak``) toward 0, held as a
staircase of ``stages`` equal steps (each stage at the line's value at its middle), so it costs
a handful of ledger entries, not one per tick. A decision never raises lr (a rescue's or a
human's lower lr stands) and never moves it by more than the guard allows per op; a stage the
guard's limit cut short is finished at the next tick.

A cool-down trades progress for quiet: it pays when the loss is held up by the lr's noise, and
costs when the lr is what limits progress (a start far too low). So before it starts the
finish looks back: when the loss (validation where there are enough points, else training) fell
by more than ``hold_fall`` between the two fifths of the run before this step, with no lr cut or
rollback in that time (a cut's own drop is the noise going, not the lr holding progress back;
a cut its own actor undid -- the descent's test of an lr too high -- is none, and its window is
left out of the look when both fifths keep enough points without it: the fall it slowed was the
test's halving, not the lr in force; regression x0.1 seed 1 read 11.9% with it, cooled the lr
that limited progress and ended +0.023 over doing nothing), the run is still descending and the
cool-down waits to look again at ``latest`` of the run;
still so there, the finish holds -- no cool-down, one alert saying why. It holds as well at the
lr the rescue's probe last found far too slow and could not raise (its raise from that lr undone,
the run still on it): the probe measured that lr as what limits progress (regression x0.1: a
cool-down from the lr whose raise was undone ended two seeds above doing nothing).

``decide`` is a pure function of the step, the run's length, the live lr and a small state
object (Ray PBT's shape: the state owns what it remembers, the function decides); ``Finisher``
reads the live lr and sends the decision through the tool surface like every rule's op.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from hotcb.agent.rules.actions import Unresolvable, resolve
from hotcb.agent.rules.config import Action
from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.tools_knobs import ApplyOpInput
from hotcb.mcp_server.tools_observe import LedgerInput
from hotcb.mcp_server.tools_proposals import ProposeInput
from hotcb.mcp_server.tools_protocol import AutopilotTools, Tools, tool_input

log = logging.getLogger("hotcb.agent.rules.finish")

ACTOR = "finish"


@dataclass(frozen=True)
class FinishConfig:
    enabled: bool = True
    start: float = 0.7  # the cool-down begins at this share of max_steps (the last 30%; from 0.8 a short
    #                     run's decay came too late: synthetic, 256 steps, 0.6 pp behind a cosine at x4)
    latest: float = 0.8  # the loss still falling fast at ``start``: it looks again here
    stages: int = 6  # the staircase's steps (6: lr x0.92, 0.75, 0.58, 0.42, 0.25, 0.08 of the peak)
    floor: float = 0.0  # where the line ends, as a multiple of the peak
    slack: float = 1.05  # act only when the live lr is above the stage's target by more than this
    min_steps: int = 100  # shorter runs have no room for a cool-down
    hold_fall: float = 0.12  # the loss fell more than this over the last fifth of the run: hold
    look_back: float = 0.2  # that fifth: the share of the run compared with the one before it
    metrics: tuple[str, ...] = ("val_loss", "train_loss")  # looked back on, the first with the points
    min_points: int = 3  # per window, for a metric to be read


@dataclass
class FinishState:
    peak: float | None = None  # the live lr when the cool-down began
    began_at: int | None = None
    decisions: int = 0
    held: str | None = None  # why the finish holds (the loss still falls fast): no cool-down
    waited: bool = False  # the loss still fell fast at the cool-down's start: look again at ``latest``


@dataclass(frozen=True)
class FinishDecision:
    lr: float  # the stage's target (the op may stop short of it: the guard's per-op limit)
    stage: int
    progress: float
    reason: str


def stage_target(progress: float, cfg: FinishConfig) -> tuple[int, float]:
    """(stage 1..stages, its lr as a multiple of the peak) at ``progress`` (0..1) of the cool-down."""
    n = max(1, cfg.stages)
    k = min(n, int(progress * n) + 1)
    line = 1.0 - (k - 0.5) / n  # the linear decay's value at the stage's middle
    return k, cfg.floor + (1.0 - cfg.floor) * line


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def recent_fall(series: dict[str, tuple[list[float], list[float]]] | None, begin: int, span: int,
                cfg: FinishConfig, skip: tuple[tuple[int, int], ...] = ()) -> tuple[str, float] | None:
    """(metric, relative fall of its median) from steps [begin - 2 span, begin - span) to
    [begin - span, begin), on the first of ``cfg.metrics`` with enough finite points in both.
    ``skip``: step spans whose points are left out (an undone test's halving slowed the fall there,
    the lr in force did not) when both windows keep enough of that metric's points without them."""
    for name in cfg.metrics:
        steps, values = (series or {}).get(name, ([], []))
        for leave in ((skip, ()) if skip else ((),)):
            pts = [(s, v) for s, v in zip(steps, values, strict=False)
                   if math.isfinite(v) and not any(a <= s <= b for a, b in leave)]
            early = [v for s, v in pts if begin - 2 * span <= s < begin - span]
            late = [v for s, v in pts if begin - span <= s < begin]
            if len(early) >= cfg.min_points and len(late) >= cfg.min_points:
                a, b = _median(early), _median(late)
                if a > 0:
                    return name, (a - b) / a
                break
    return None


def _begins(step: int, max_steps: int, lr: float, state: FinishState, cfg: FinishConfig,  # noqa: PLR0913
            series: dict[str, tuple[list[float], list[float]]] | None, cut_before: bool,
            found_slow: float | None, skip: tuple[tuple[int, int], ...] = ()) -> bool:
    """Whether the cool-down begins at ``step`` (then ``state.peak`` is set); else it waits or holds
    (``state.waited``, ``state.held``)."""
    if found_slow is not None and math.isclose(lr, found_slow, rel_tol=1e-3):
        state.held = (f"finish: no cool-down: the probe found lr {found_slow:.4g} far too slow and its raise "
                      f"did not hold; at lr {lr:.4g} the lr is what limits progress, not its noise; holding it to "
                      f"the end (step {max_steps})")
        return False
    # Still falling fast over the last fifth: the cool-down waits (a too-high lr's loss can fall
    # fast early on and then sit on its noise floor: regression x8 fell 18-22% before 70% of
    # the run); still so at ``latest``, the lr is what limits progress and it holds to the end.
    # Two looks, not one a tick: scanning every tick for a dip below ``hold_fall`` would find a
    # lucky one in the validation noise (regression x0.1 seed 1 cooled at 75% and lost 0.016).
    latest = int(cfg.latest * max_steps)
    if state.waited and step < latest:
        return False
    span = int(cfg.look_back * max_steps)
    fall = recent_fall(series, step, span, cfg, skip)
    if fall is not None and fall[1] > cfg.hold_fall and not cut_before:
        if step < latest:
            state.waited = True
            return False
        # The spans the look left out, for the reason: all of them, where leaving them out changed it.
        skipped = skip if skip and fall != recent_fall(series, step, span, cfg) else ()
        state.held = (f"finish: no cool-down: {fall[0]} fell {fall[1]:.0%} over the last {cfg.look_back:.0%} of "
                      f"the run before step {step} (more than {cfg.hold_fall:.0%}"
                      + "".join(f"; steps {a}-{b}, an undone test's halving, left out" for a, b in skipped)
                      + f"): the lr {lr:.4g} is what "
                      "limits progress, not its noise; holding it to the end (step "
                      f"{max_steps})")
        return False
    state.peak, state.began_at = lr, step
    return True


def decide(step: int, max_steps: int | None, lr: float | None, state: FinishState,  # noqa: PLR0913
           cfg: FinishConfig, series: dict[str, tuple[list[float], list[float]]] | None = None,
           cut_before: bool = False, found_slow: float | None = None,
           skip: tuple[tuple[int, int], ...] = ()) -> FinishDecision | None:
    """The lr this step should run at, when it is lower than the live one by more than the slack.
    ``series`` (metric -> steps, values) is what the finish looks back on at the cool-down's start;
    ``cut_before``: lr was cut (or the run rolled back) in that look-back; ``found_slow``: the
    lr the probe found far too slow and whose raise it undid (None: none such); ``skip``: the step
    spans of cuts their own actor undid (the descent's test), left out of the look back."""
    if not cfg.enabled or not isinstance(max_steps, int) or max_steps < cfg.min_steps:
        return None
    if lr is None or not (math.isfinite(lr) and lr > 0) or state.held:
        return None
    begin = int(cfg.start * max_steps)
    if step < begin or step >= max_steps:
        return None
    if state.peak is None and not _begins(step, max_steps, lr, state, cfg, series, cut_before, found_slow,
                                           skip):
        return None
    peak = state.peak
    if peak is None:
        return None
    begin = state.began_at if state.began_at is not None else begin
    progress = (step - begin) / max(1, max_steps - begin)
    k, mult = stage_target(progress, cfg)
    target = peak * mult
    if lr <= target * cfg.slack:
        return None
    end = "0" if cfg.floor == 0 else f"{cfg.floor:g}x that lr"
    reason = (f"finish: the run ends at step {max_steps}; cooling lr down over its last {(max_steps - begin) / max_steps:.0%} "
              f"(from step {begin}, lr {state.peak:.4g} then) along a linear decay to {end}, stage "
              f"{k}/{cfg.stages}: target {target:.4g} ({mult:.2f}x the lr at the cool-down's start)")
    return FinishDecision(lr=target, stage=k, progress=progress, reason=reason)


class Finisher:
    """The finish's state and its one tool call per decision (source the tools', actor ``finish``)."""

    def __init__(self, config: FinishConfig | None = None):
        self.config = config or FinishConfig()
        self.state = FinishState()
        self.outcomes: list[str] = []

    def tick(self, tools: AutopilotTools, status: dict[str, Any], mode: str,
             series: dict[str, tuple[list[float], list[float]]] | None = None) -> FinishDecision | None:
        """One look at the run; in ``auto`` an ``apply_op``, in ``suggest`` a ``propose_op``.
        ``series``: the metric points the rules read (the look back at the cool-down's start)."""
        if mode not in ("auto", "suggest") or not self.config.enabled or self.state.held:
            return None
        step, max_steps = status.get("step"), status.get("max_steps")
        if not isinstance(step, int) or not isinstance(max_steps, int) or step < self.config.start * max_steps:
            return None  # not the cool-down yet: no tool call
        try:
            knobs = tools.describe_actuators().model_dump(mode="json")  # as resolve reads them
        except ToolError as e:
            log.warning("finish: could not read the knobs: %s", e)
            return None
        lr = next((k["value"] for k in knobs["actuators"] if k["key"] == "lr"), None)
        since = step - 2 * int(self.config.look_back * max_steps)
        # One read of the look-back's ledger: whether a cut stands there, and the undone ones' spans.
        cut, skip = self._cuts(tools, since, step) if self.state.peak is None else (False, ())
        slow = self._found_slow(tools, step) if self.state.peak is None else None
        d = decide(step, max_steps, lr if isinstance(lr, (int, float)) else None, self.state, self.config, series,
                   cut_before=cut, found_slow=slow, skip=skip)
        if self.state.held:
            self._alert(tools, step, self.state.held)
        if d is None or not isinstance(lr, (int, float)):  # no lr read: decide() gave nothing
            return None
        try:
            op = resolve(Action(knob="lr", factor=d.lr / float(lr)), knobs)  # the guard's per-op limit, bounds
        except Unresolvable as e:
            self.outcomes.append(f"step {step}: no action: {e}")
            return None
        new = float(op["params"]["lr"])
        reason = f"{d.reason}; lr {lr:.4g} -> {new:.4g}" + (
            " (the guard's per-op limit: the rest at the next look)" if new > d.lr * 1.001 else "")
        op = {**op, "reason": reason}
        try:
            if mode == "suggest":
                tools.propose_op(tool_input("propose_op", ProposeInput, {"op": op, "reason": reason}), actor=ACTOR)
            else:
                tools.apply_op(tool_input("apply_op", ApplyOpInput, op), actor=ACTOR)
            self.state.decisions += 1
            self.outcomes.append(f"step {step}: lr {lr:.4g} -> {new:.4g}")
        except ToolError as e:  # refused (a lock, a freeze, the knob's cooldown): the ledger has it
            self.outcomes.append(f"step {step}: refused: {e}")
        return d

    @staticmethod
    def _cuts(tools: Tools, since: int, until: int) -> tuple[bool, tuple[tuple[int, int], ...]]:
        """(whether the ledger holds an applied lr cut that stands or a rollback at steps since..until,
        the step spans of the cuts their own actor undid there: the descent's test of a good lr,
        halved for a window, then back)."""
        try:
            out = tools.read_ledger(tool_input("read_ledger", LedgerInput, {
                "decision": "applied", "since_step": max(0, since), "until_step": until, "last": 500}))
        except ToolError:
            return False, ()
        cuts: list[tuple[str | None, float, int]] = []  # (actor, lr before, step) of the cuts that stand
        undone: list[tuple[int, int]] = []
        for e in out.entries:
            if e.op == "rollback":
                return True, tuple(undone)
            lr = (e.payload or {}).get("lr")
            if not (isinstance(lr, dict) and all(isinstance(lr.get(k), (int, float)) for k in ("old", "new"))):
                continue
            if lr["new"] < lr["old"]:
                cuts.append((e.actor, float(lr["old"]), int(e.step or 0)))
            elif cuts and cuts[-1][0] == e.actor and lr["new"] >= cuts[-1][1] * (1 - 1e-6):
                undone.append((cuts.pop()[2], int(e.step or 0)))  # undone by the actor that made it
        return bool(cuts), tuple(undone)

    @classmethod
    def _cut_since(cls, tools: Tools, since: int, until: int) -> bool:
        """Whether the ledger holds an applied lr cut or a rollback at steps since..until; a cut its
        own actor undid (the descent's test of a good lr: halved for a window, then back) is none."""
        return cls._cuts(tools, since, until)[0]

    @classmethod
    def _undone(cls, tools: Tools, since: int, until: int) -> tuple[tuple[int, int], ...]:
        """The step spans (cut, undo) of the lr cuts their own actor undid at steps since..until."""
        return cls._cuts(tools, since, until)[1]

    @staticmethod
    def _found_slow(tools: Tools, until: int) -> float | None:
        """The lr the probe's last raise started from when the probe undid that raise (it found the
        lr far too slow and a higher one no faster); None when it never raised, kept its last raise,
        went back to an lr it had raised to (a raise after a kept one), or a rollback came after
        it (a raise that blew up was too high, not slow)."""
        try:
            out = tools.read_ledger(tool_input("read_ledger", LedgerInput, {
                "decision": "applied", "source": "rule", "until_step": until, "last": 500}))
        except ToolError:
            return None
        found: float | None = None
        raised: float | None = None  # the old lr of the last probe raise that found it too slow, while it stands
        chained = False  # the last probe op was a raise: a raise now goes on from one it kept
        for e in out.entries:
            if e.op == "rollback":
                found = raised = None
                chained = False
            lr = (e.payload or {}).get("lr")
            if e.actor != "probe" or not isinstance(lr, dict) or not all(
                    isinstance(lr.get(k), (int, float)) for k in ("old", "new")):
                continue
            if lr["new"] > lr["old"]:
                # A raise after a kept one starts from the lr the probe chose, not one it found slow
                # (synthetic x0.25: 0.0125 -> 0.025 kept, 0.05 undone; holding 0.025 cost 0.3 pp).
                raised, found = (None if chained else float(lr["old"])), None
                chained = True
            else:
                found, raised = raised, None  # undone: back to the lr it found far too slow
                chained = False
        return found

    def _alert(self, tools: AutopilotTools, step: int, message: str) -> None:
        self.outcomes.append(f"step {step}: {message}")
        try:
            tools.record_alert(rule=ACTOR, kind=ACTOR, metric="lr", severity="info", step=step, message=message)
        except Exception as e:
            log.warning("finish: could not record alert: %s", e)
