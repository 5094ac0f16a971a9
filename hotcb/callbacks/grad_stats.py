"""``GradStatsCallback``: global gradient norm, largest |grad| and non-finite gradient count of
``env["model"]``, as ``grad/norm``, ``grad/max_abs``, ``grad/nonfinite``.

Runs at the safe point after ``optimizer.step()``, where the gradients of the step are still
there (loops zero them before the next backward).
"""

from __future__ import annotations

from typing import Any

import torch

from ._base import BuiltinCallback


class GradStatsCallback(BuiltinCallback):
    params = {"every": 1}

    def handle(self, event: str, env: dict[str, Any]) -> None:
        model = env.get("model")
        if event != "train_step_end" or model is None or not self.due(env):
            return
        grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        with torch.no_grad():
            sq = torch.stack([g.float().pow(2).sum() for g in grads]).sum()
            max_abs = torch.stack([g.float().abs().max() for g in grads]).max()
            nonfinite = sum(int((~torch.isfinite(g)).sum()) for g in grads)
        m = env["metrics"]
        m["grad/norm"] = float(sq.sqrt())
        m["grad/max_abs"] = float(max_abs)
        m["grad/nonfinite"] = nonfinite
