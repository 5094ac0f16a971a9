"""``AnomalyGuard``: watches for NaN/Inf in ``env["metrics"]`` (and ``env["loss"]``) and in the
gradients of ``env["model"]`` (``check_grads=True``), raises an alert through the kernel, and
optionally asks the kernel to ``pause`` or ``rollback`` (``action``).

The request goes through ``kernel.submit`` as a ``core`` op with source ``rule``, so it gets a
ledger entry and obeys freeze mode like any other change. ``cooldown`` steps must pass between
two actions, so a run that stays non-finite is not rolled back on every step.
"""

from __future__ import annotations

import math
from typing import Any

from ..codec import decode_number
from ..collector import to_number
from ..ops import CORE, HotOp, Source
from ._base import BuiltinCallback

ACTIONS = ("none", "pause", "rollback")


class AnomalyGuard(BuiltinCallback):
    params = {"keys": ["*loss*"], "action": "none", "check_grads": False, "cooldown": 50}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._last_action: int | None = None
        self.triggered = 0

    def set_params(self, **kw: Any) -> None:
        if "action" in kw and kw["action"] not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {kw['action']!r}")
        super().set_params(**kw)

    def _bad_values(self, env: dict[str, Any]) -> dict[str, float]:
        import fnmatch

        bad = {}
        items = dict(env.get("metrics") or {})
        if "loss" in env:
            items.setdefault("loss", env["loss"])
        for name, value in items.items():
            if not any(fnmatch.fnmatchcase(name, p) for p in self.keys):
                continue
            v = to_number(value)
            if v is None:
                v = decode_number(value)  # a recorded tag ("nan", "inf", "-inf")
            if v is not None and not math.isfinite(v):
                bad[name] = v
        model = env.get("model")
        if self.check_grads and model is not None:
            import torch

            n = sum(int((~torch.isfinite(p.grad)).sum()) for p in model.parameters() if p.grad is not None)
            if n:
                bad["grad/nonfinite"] = float(n)
        return bad

    def handle(self, event: str, env: dict[str, Any]) -> None:
        if event != "train_step_end":
            return
        bad = self._bad_values(env)
        if not bad:
            return
        self.triggered += 1
        step = int(env.get("step") or 0)
        kernel = env.get("kernel")
        name, value = next(iter(bad.items()))
        if kernel is not None:
            kernel.raise_alert("non_finite", f"non-finite values at step {step}: {sorted(bad)}",
                               metric=name, value=value)
        if self.action == "none" or kernel is None:
            return
        if self._last_action is not None and step - self._last_action < self.cooldown:
            return
        self._last_action = step
        kernel.submit(HotOp(module=CORE, op=self.action, source=Source.RULE, actor="anomaly_guard",
                            reason=f"non-finite {name} at step {step}"), env)
