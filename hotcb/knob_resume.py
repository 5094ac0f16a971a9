"""``KnobResume``: the kernel's part of a framework checkpoint -- the live knob values, step and
epoch that ``HotKernel.state_dict`` saves -- and putting them back after the framework loaded one
(``HotKernel.load_state_dict``, which the trainer adapters call), recorded as one ``core restore``
ledger entry. Re-applying matters: loading optimizer state would otherwise silently reset lr.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, TypeGuard

from .checkpoint import ledger_knob_values, live_knob_values, restore_knobs
from .jsonl import read_all
from .modules import ApplyContext
from .ops import CORE, HotOp, Source

if TYPE_CHECKING:
    from .kernel import HotKernel

STATE_VERSION = 1


class KnobResume:
    def __init__(self, kernel: HotKernel) -> None:
        self.kernel = kernel

    def save(self) -> dict[str, Any]:
        """What a framework checkpoint must carry for hotcb: live knob values and the step."""
        k = self.kernel
        return {"version": STATE_VERSION, "step": k.step, "epoch": k.epoch, "knobs": live_knob_values(k.state)}

    def load(self, state: dict[str, Any] | None, env: dict[str, Any] | None = None) -> dict[str, Any]:
        """Re-apply knob values after a framework checkpoint was loaded; returns those that changed.

        The checkpoint's own hotcb state wins (it matches the weights saved with it); a checkpoint
        without one falls back to the ledger's last applied value of each knob, so a resumed run
        keeps the values it had rather than the configured ones.
        """
        k = self.kernel
        changed = self._restore(state, env)
        k.publish_actuators()
        if changed:
            try:
                self._record(changed, "checkpoint" if _has_knobs(state) else "ledger", env)
            except Exception as e:  # the values are in place; a lost record must not stop the resume
                k.report_error(e)
        return changed

    def _restore(self, state: dict[str, Any] | None, env: dict[str, Any] | None) -> dict[str, Any]:
        k = self.kernel
        env = dict(env or {})
        if _has_knobs(state):
            knobs = state["knobs"]
            if isinstance(state.get("step"), int):
                k.step = state["step"]
            if isinstance(state.get("epoch"), int):
                k.epoch = state["epoch"]
        else:
            upto = env.get("step")
            knobs = ledger_knob_values(read_all(k.run.ledger), upto if isinstance(upto, int) else None)
        if isinstance(env.get("step"), int):
            k.step = env["step"]
        return restore_knobs(k.state, knobs, env, k.step)

    def _record(self, knobs: dict[str, Any], origin: str, env: dict[str, Any] | None) -> None:
        """The knob values a resume re-applied, configured (old) -> live (new). Not a change anyone
        asked for: recipes leave it out (``hotcb.recipe.is_replayable``)."""
        k = self.kernel
        op = HotOp(module=CORE, op="restore", cmd_id=f"restore-{k.session}-{uuid.uuid4().hex[:12]}",
                   source=Source.KERNEL, actor="resume",
                   reason=f"knob values re-applied after a checkpoint load (from the {origin})")
        ctx = ApplyContext(k.step, k.epoch, ["resume"], dict(env or {}))
        k.commands.record(op, ctx, "applied", payload={"knobs": knobs, "from": origin})


def _has_knobs(state: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a checkpoint's hotcb state carries knob values (else the ledger supplies them)."""
    return isinstance(state, dict) and isinstance(state.get("knobs"), dict)
