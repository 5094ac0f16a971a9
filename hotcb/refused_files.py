"""``RefusedFiles``: the run files the kernel refused to read because they are not regular files
(a FIFO, a symlink, a directory planted where one belongs), each recorded once -- a ``rejected``
``core read_file`` decision in the ledger, an ``unsafe_file`` alert and the status's last internal
error, naming the file and why -- and recorded as cleared (an ``unsafe_file_cleared`` alert) once
a regular file is back, when the kernel reads it again. Once, not each step: the step looks at
such a file with one ``lstat`` and never opens it, and nothing is written while it stays.

The one mechanism for every file the kernel reads: the commands file, the watched files
(freeze, ``hotcb.yaml``, the autopilot mode) and those read at start (locks, intents); the
intents file also when an op is about to write its intent (the op fails meanwhile).
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import TYPE_CHECKING

from .jsonl import UnsafeFile, not_regular
from .modules import ApplyContext
from .ops import CORE, HotOp, Source

if TYPE_CHECKING:
    from .kernel import HotKernel

log = logging.getLogger("hotcb")


class RefusedFiles:
    def __init__(self, kernel: HotKernel) -> None:
        self.kernel = kernel
        self.reasons: dict[str, str] = {}  # path -> the reason recorded for it, until it is cleared

    def admit(self, path: str | os.PathLike[str], mode: int | None) -> bool:
        """Whether a file whose ``lstat`` mode is ``mode`` (None: there is none) may be read;
        refused (recorded once) when it is not a regular file, cleared when it is again."""
        refusal = not_regular(path, mode) if mode is not None else None
        if refusal is not None:
            self.refuse(path, refusal)
            return False
        self.clear(path)
        return True

    def check(self, path: str | os.PathLike[str]) -> bool:
        """``admit`` for a file the kernel reads once (at start): one ``lstat``."""
        try:
            mode: int | None = os.lstat(path).st_mode
        except OSError:
            mode = None
        return self.admit(path, mode)

    def refuse(self, path: str | os.PathLike[str], e: UnsafeFile) -> None:
        key = os.fspath(path)
        if key in self.reasons:
            return
        k = self.kernel
        name = os.path.basename(key)
        reason = f"run file {name} refused: {e.strerror or e}; nothing is read from it (nor written to it) until a regular file is back"
        self.reasons[key] = reason
        log.error("hotcb: %s", reason)
        k.note_error(reason)
        op = HotOp(module=CORE, op="read_file", params={"file": name},
                   cmd_id=f"unsafe-file-{k.session}-{uuid.uuid4().hex[:8]}",
                   source=Source.KERNEL, actor="kernel", reason="run file refused")
        try:
            k.commands.record(op, ApplyContext(k.step, k.epoch, ["unsafe_file"], {}), "rejected", error=reason)
            k.raise_alert("unsafe_file", reason)
        except OSError as err:  # a full disk: the refusal stays in the status
            k.report_error(err)
        k.publish_status()

    def clear(self, path: str | os.PathLike[str]) -> None:
        """``path`` is a regular file (or none) again: say so once, and read it from now on."""
        if not self.reasons:
            return
        reason = self.reasons.pop(os.fspath(path), None)
        if reason is None:
            return
        k = self.kernel
        message = f"run file {os.path.basename(os.fspath(path))} is a regular file again (or gone); read from now on"
        log.warning("hotcb: %s", message)
        if k.last_internal_error == reason:
            k.note_error(None)
        try:
            k.raise_alert("unsafe_file_cleared", message)
        except OSError as err:
            k.report_error(err)
        k.publish_status()
