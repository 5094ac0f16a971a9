"""``JsonlLoggerCallback``: appends ``{"step","epoch","event","metrics"}`` to a JSONL file of
its own every ``every`` steps (default ``hotcb.log.jsonl`` in the run directory).

Useful to keep a full-rate log while the kernel's collector records at a lower rate. The
file must lie in the run directory (a relative ``path`` is resolved there) so a command can
never make the training process write elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..collector import number_or_tag
from ..jsonl import append_line
from ._base import BuiltinCallback


class JsonlLoggerCallback(BuiltinCallback):
    params = {"every": 1, "path": "hotcb.log.jsonl", "events": ["train_step_end"]}

    def handle(self, event: str, env: dict[str, Any]) -> None:
        if event not in self.events or not self.due(env):
            return
        kernel = env.get("kernel")
        root = kernel.run.root if kernel is not None else Path.cwd()
        target = (root / self.path).resolve()
        if target.parent != root.resolve():
            raise ValueError(f"JsonlLoggerCallback path {self.path!r} is outside the run directory")
        metrics = {k: number_or_tag(v) for k, v in (env.get("metrics") or {}).items()}
        append_line(target, {"step": env.get("step"), "epoch": env.get("epoch"), "event": event,
                             "metrics": {k: v for k, v in metrics.items() if v is not None}})
