"""``TensorStatsCallback``: mean, std and |max| of named tensors in ``env`` (e.g. ``loss``,
``logits``) and, with ``weights=True``, the global parameter norm of ``env["model"]``.

Metrics are ``tensor/<name>/mean`` etc. and ``param/norm``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._base import BuiltinCallback


class TensorStatsCallback(BuiltinCallback):
    params = {"every": 10, "keys": ["loss", "logits"], "weights": True}

    def handle(self, event: str, env: dict[str, Any]) -> None:
        if event != "train_step_end" or not self.due(env):
            return
        m = env["metrics"]
        with torch.no_grad():
            for key in self.keys:
                t = env.get(key)
                if not isinstance(t, torch.Tensor) or t.numel() == 0:
                    continue
                x = t.detach().float()
                m[f"tensor/{key}/mean"] = float(x.mean())
                m[f"tensor/{key}/std"] = float(x.std()) if x.numel() > 1 else 0.0
                m[f"tensor/{key}/absmax"] = float(x.abs().max())
            model = env.get("model")
            if self.weights and model is not None:
                norms = [p.detach().float().pow(2).sum() for p in model.parameters()]
                if norms:
                    m["param/norm"] = float(torch.stack(norms).sum().sqrt())
