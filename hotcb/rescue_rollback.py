"""The ``rescue rollback`` op: restore a healthy snapshot and cut the rescue's knob, as one decision.

Which snapshot is ``hotcb.rollback_target``'s choice (or the op's ``params.step``). The knob is
cut by ``cut`` from the lower of the lr in use and the snapshot's (``cut_from``: a raise since
the snapshot is undone by the rollback itself), not below its floor, and as far as the judge
allows (``hotcb.judge.judge_rescue_cut``); a locked knob is left as it is. Everything is checked
before anything is restored, so a refusal leaves the run as it was.

``hotcb.rescue.Rescue`` owns one ``RescueRollback``, hands it the op, and keeps its own books
after it (the detector as it stood at the snapshot, on probation).
"""

from __future__ import annotations

from typing import Any

from .actuators.actuator import ValueRefused
from .checkpoint import Snapshot, live_knob_values, restore_knobs
from .codec import json_number
from .judge import judge_rescue_cut
from .lr_track import LrTrack
from .modules import ApplyContext
from .ops import HotOp
from .rollback_target import RollbackTargets


class RescueRollback:
    def __init__(self, kernel: Any, targets: RollbackTargets, lr_track: LrTrack):
        self.kernel = kernel
        self.targets = targets
        self.lr_track = lr_track  # the knob a rollback cuts
        self.raise_undone = False  # the last rollback undid a raise of the knob made since its snapshot

    # complexity: every check happens before anything is restored (a refusal leaves the run as it was), so they stay in one place
    def apply(self, op: HotOp, ctx: ApplyContext, *, cut: float, floor: float | None) -> tuple[Snapshot, dict[str, Any]]:
        """Restore a healthy snapshot (``params.step``, else the newest) and cut the knob by
        ``params.cut`` (default ``cut``), not below ``floor``. Returns the snapshot restored and
        the ledger's payload."""
        snaps = self.kernel.snapshots
        snap = self.targets.named(op.params.get("step"))
        cut = op.params.get("cut", cut)
        if isinstance(cut, bool) or not isinstance(cut, (int, float)) or not 0 < cut <= 1:
            raise ValueRefused("rescue rollback: params.cut must be a number in (0, 1]")
        locks = self.kernel.locks
        key = self.lr_track.knob
        act = self.lr_track.actuator()
        new_value, note = None, None
        self.raise_undone = False
        if act is not None and key in locks:
            note = f"{key} is locked by {locks[key].get('actor') or 'a human'}: left as it is"
        elif act is not None:
            act.refresh()
            live = act.value
            if json_number(live) is not None and live > 0:
                base = cut_from(live, snap.knobs.get(key), act.schedule_base(), self.targets.base_at(snap.step))
                # A raise by an op since the snapshot (a warmup's rise is the schedule's, not a raise).
                self.raise_undone = base < live and self.targets.raised_since(snap.step)
                desc = act.describe()
                floors = [desc.get("min"), floor]
                lo = max((f for f in floors if isinstance(f, (int, float))), default=None)
                target = max(base * cut, lo) if lo is not None else base * cut
                if target < base:
                    new_value = judge_rescue_cut(desc, base, target, source=op.source, step=ctx.step,
                                                 config=self.kernel.guard)
                else:
                    note = f"{key} {base:g} is at its floor: not cut further"
        in_use = live_knob_values(self.kernel.state)  # the ledger's "old": what the run used until now
        snaps.restore(snap)
        knobs = {k: v for k, v in snap.knobs.items() if k not in locks}
        restored = restore_knobs(self.kernel.state, knobs, ctx.env, ctx.step, before=in_use)
        payload: dict[str, Any] = {k: v for k, v in restored.items() if v["old"] != v["new"]}
        if new_value is not None and act is not None:
            act.apply(new_value, ctx.env, ctx.step)
            act.refresh()  # "new" is what the optimizer runs from the next step
            payload[key] = {"old": in_use.get(key, act.value), "new": act.value}
        snaps.drop_after(snap.step)
        payload["restored_step"] = snap.step
        if note:
            payload["note"] = note
        return snap, payload


def cut_from(live: float, before: Any, now_base: float | None, then_base: float | None) -> float:
    """The lr a rescue cuts from, at the snapshot's place: the lower of the lr in use (``live``)
    and the snapshot's (``before``): a raise since the snapshot is undone by the rollback itself,
    and the lr that led here is cut. Under a schedule (``now_base``, ``then_base``: the schedule's
    base now and at the snapshot) the two are compared by their bases: a snapshot from earlier in
    a warmup has a lower lr only because of where it sat in it, and reading that as the lower lr
    would make every rollback to it cut from its old base, never further (three blow-ups in a
    warmup each ended at half the first base)."""
    if json_number(before) is None or not before > 0:
        return live
    if now_base is not None and then_base is not None:
        return before * min(1.0, now_base / then_base)
    return min(live, before)
