"""A child process that ends with the process that started it, however that one ends.

``hotcb demo`` and ``launch`` start the training process and the dashboard server as children;
if the parent is killed (SIGKILL included, where no handler runs), those children must not live
on, holding a port, a GPU or a run directory. Two mechanisms, each enough alone:

- the parent starts the child with ``child_env()`` (its pid in ``HOTCB_PARENT_PID``) and, on
  Linux, ``preexec`` (``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel signals the child when
  the parent dies; used only from the parent's main thread, since the signal follows the thread
  that forked);
- the child calls ``watch_parent()``: a daemon thread that sees the parent gone (the child was
  re-parented) and sends itself SIGTERM, then SIGKILL if it has not exited after a grace period.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

PARENT_ENV = "HOTCB_PARENT_PID"
_PR_SET_PDEATHSIG = 1
POLL_S = 0.5
GRACE_S = 20.0


def _libc_prctl() -> Callable[..., int] | None:
    # Resolved here, in the parent: a forked child of a threaded process must not dlopen.
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with this process named as the child's parent."""
    return {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}


def preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel for SIGTERM when the parent dies (Linux, main thread
    only); None where it does not apply."""
    prctl = _PRCTL
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_death_signal


def watch_parent(poll_s: float = POLL_S, grace_s: float = GRACE_S) -> threading.Thread | None:
    """In a child started with ``child_env``: end this process once its parent is gone (SIGTERM,
    so it shuts down as when asked; SIGKILL after ``grace_s``). None when no parent was named."""
    try:
        parent = int(os.environ.get(PARENT_ENV, ""))
    except ValueError:
        return None
    if parent <= 1:
        return None
    os.environ.pop(PARENT_ENV, None)  # this process's own children name it, not its parent

    def watch() -> None:
        stop = threading.Event()
        while os.getppid() == parent:
            stop.wait(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        stop.wait(grace_s)
        os.kill(os.getpid(), signal.SIGKILL)

    t = threading.Thread(target=watch, name="hotcb-parent-watch", daemon=True)
    t.start()
    return t
