"""``FeatureCapture``: compact activation statistics of chosen layers into hotcb.features.jsonl.

Forward hooks stay installed but do work only on capture steps (every ``every_n``), so the
cost between captures is one attribute check per hooked layer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from .jsonl_write import append_line


class FeatureCapture:
    def __init__(self, path: str | os.PathLike[str], model: Any, layers: Iterable[str], every_n: int = 50):
        import torch  # core depends on torch; imported here to keep `import hotcb` light

        self._torch = torch
        self.path = os.fspath(path)
        self.every_n = max(1, int(every_n))
        self._armed_step: int | None = None
        self._pending: dict[str, dict[str, float]] = {}
        self._handles = []
        modules = dict(model.named_modules())
        self.layers = list(layers)
        missing = [n for n in self.layers if n not in modules]
        if missing:
            raise ValueError(f"unknown layers {missing}; known: {[n for n in modules if n][:20]}")
        for name in self.layers:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if self._armed_step is None:
                return
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(out, self._torch.Tensor):
                return
            with self._torch.no_grad():
                x = out.detach().float()
                finite = self._torch.isfinite(x)
                n = x.numel()
                xf = x[finite] if not bool(finite.all()) else x
                self._pending[name] = {
                    "mean": float(xf.mean()) if xf.numel() else float("nan"),
                    "std": float(xf.std()) if xf.numel() > 1 else 0.0,
                    "absmax": float(xf.abs().max()) if xf.numel() else float("nan"),
                    "frac_zero": float((x == 0).sum()) / max(n, 1),
                    "nonfinite": int(n - int(finite.sum())),
                    "shape": list(x.shape),
                }
            if len(self._pending) == len(self.layers):
                self.flush()

        return hook

    def on_step(self, step: int) -> None:
        """Arm the hooks for the next forward pass when ``step`` is a capture step."""
        if step % self.every_n == 0:
            self._armed_step = step

    def flush(self) -> None:
        if self._pending and self._armed_step is not None:
            append_line(self.path, {"step": self._armed_step, "wall_time": time.time(), "layers": self._pending})
        self._pending = {}
        self._armed_step = None

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
