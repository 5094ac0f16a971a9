"""``InternalErrors``: what went wrong inside hotcb while the training run went on -- how many
errors were caught, the last one (or a problem noted without an exception: a held command, a
refused run file), and the pace of their tracebacks in the log. The kernel owns one
(``HotKernel.report_error``, ``note_error``); the status file publishes the count and the last.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("hotcb")


class InternalErrors:
    def __init__(self) -> None:
        self.count = 0
        self.last: str | None = None
        self._next_log = 0.0  # monotonic time of the next traceback allowed in the log

    def caught(self, e: Exception) -> None:
        """Count ``e``, keep it as the last, and log its traceback (from inside its ``except``)."""
        self.count += 1
        self.last = f"{type(e).__name__}: {str(e)[:500]}"
        now = time.monotonic()
        if now >= self._next_log:  # at most one traceback a minute: a full disk fails every step
            self._next_log = now + 60.0
            log.exception("hotcb: internal error in kernel.apply (training continues; %d so far)", self.count)
