"""``JsonlLoggerCallback``: appends ``{"step","epoch","event","metrics"}`` to a JSONL file of
its own every ``every`` steps (default ``hotcb.log.jsonl`` in the run directory).

Useful to keep a full-rate log while the kernel's collector records at a lower rate. Its file is
a plain ``*.jsonl`` name directly in the run directory and never one of the kernel's own files
(the ledger, the commands, the metrics): a command can neither make the training process write
elsewhere nor forge the run's records. The file is opened without following symlinks.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from ..collector import number_or_tag
from ..jsonl_write import append_line
from ..rundir import ALL_FILES
from ._base import BuiltinCallback


def check_log_name(path: Any) -> str:
    """The file name if it is one this callback may write; ``ValueError`` with the reason else."""
    if not isinstance(path, str) or not path:
        raise ValueError("path must be a file name")
    p = PurePosixPath(path.replace("\\", "/"))
    if len(p.parts) != 1 or p.name in (".", ".."):
        raise ValueError(f"JsonlLoggerCallback path {path!r} must be a file name directly in the run directory")
    if not p.name.endswith(".jsonl"):
        raise ValueError(f"JsonlLoggerCallback path {path!r} must end in .jsonl")
    if p.name in ALL_FILES or (p.name.startswith("hotcb.") and not p.name.startswith("hotcb.log")):
        raise ValueError(f"JsonlLoggerCallback may not write {p.name}: hotcb.* names are the run's own files")
    return p.name


class JsonlLoggerCallback(BuiltinCallback):
    params = {"every": 1, "path": "hotcb.log.jsonl", "events": ["train_step_end"]}

    def set_params(self, **kw: Any) -> None:
        if "path" in kw:
            kw["path"] = check_log_name(kw["path"])  # refused at load/set time, not at first write
        super().set_params(**kw)

    def handle(self, event: str, env: dict[str, Any]) -> None:
        if event not in self.events or not self.due(env):
            return
        kernel = env.get("kernel")
        root = kernel.run.root if kernel is not None else Path.cwd()
        target = Path(root) / check_log_name(self.path)
        metrics = {k: number_or_tag(v) for k, v in (env.get("metrics") or {}).items()}
        append_line(target, {"step": env.get("step"), "epoch": env.get("epoch"), "event": event,
                             "metrics": {k: v for k, v in metrics.items() if v is not None}})
