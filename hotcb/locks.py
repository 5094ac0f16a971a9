"""``KnobLocks``: the knobs a human locked (``hotcb.locks.json``), each with who and when.

A ``dict`` of key -> ``{actor, step, ts}`` (what the judge and the guard read), owning its file:
loaded once at start, written whole after each change, by the writing rank only.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .jsonl import read_json
from .jsonl_write import write_json_atomic


class KnobLocks(dict[str, dict[str, Any]]):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        d = read_json(path, {})
        super().__init__({k: v for k, v in d.items() if isinstance(v, dict)} if isinstance(d, dict) else {})
        self.path = path

    def lock(self, key: str, actor: str | None, step: int) -> None:
        self[key] = {"actor": actor or "human", "step": step, "ts": time.time()}

    def save(self, is_writer: bool) -> None:
        if is_writer:
            write_json_atomic(self.path, dict(self))
