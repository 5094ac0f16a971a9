"""A time budget for calls into user code (callbacks) on the training thread.

The call stays on the training thread (a callback sees the loop's thread-local state: grad mode,
autocast, the CUDA stream), so the only cost per call is two attribute writes. A daemon thread
watches the call in progress; past its budget it marks the call timed out and raises
``CallbackTimeout`` inside the training thread (``PyThreadState_SetAsyncExc``). Python code that
loops is interrupted at once; a call blocked inside C (a sleep, a socket) sees the exception when
it returns. Either way the caller records the timeout and disables the callback.

The exception is only ever delivered inside the guarded block: ``end`` (under the same lock as
the injection) takes back an injection that has not landed yet. Guard a call like this, so that
an exception landing anywhere before ``end`` returns is caught::

    call = watchdog.begin("callback x")
    try:
        try:
            x.handle(event, env)
        finally:
            late = watchdog.end(call)
    except BaseException as e:
        ...  # isinstance(e, CallbackTimeout): it ran past its budget
"""

from __future__ import annotations

import ctypes
import threading
import time


class CallbackTimeout(BaseException):
    """Raised inside a callback that ran past its time budget. A BaseException, and so outside
    the ``HotcbError`` tree on purpose: it interrupts user code, whose own ``except Exception``
    must not swallow it before the watchdog's caller sees it."""


class _Call:
    __slots__ = ("what", "deadline", "fired")

    def __init__(self, what: str, deadline: float):
        self.what = what
        self.deadline = deadline
        self.fired = False


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class CallWatchdog:
    """Guards one thread's calls: ``token = begin(what)``; call; ``end(token)``."""

    def __init__(self, budget_s: float | None, *, tick_s: float | None = None):
        self.budget_s = budget_s
        self._tick = tick_s if tick_s is not None else (min(0.5, budget_s / 4) if budget_s else 0.5)
        self._lock = threading.Lock()
        self._current: _Call | None = None
        self._thread_id: int | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def enabled(self) -> bool:
        return bool(self.budget_s)

    def begin(self, what: str) -> _Call | None:
        if not self.budget_s:
            return None
        if self._watcher is None:
            self._start()
        call = _Call(what, time.monotonic() + self.budget_s)
        with self._lock:
            self._thread_id = threading.get_ident()
            self._current = call
        return call

    def end(self, call: _Call | None) -> bool:
        """Close the call; True if it ran past its budget (an injection not landed is taken back)."""
        if call is None:
            return False
        with self._lock:
            self._current = None
            if call.fired and self._thread_id is not None:
                _async_raise(self._thread_id, None)
            return call.fired

    def _start(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name="hotcb-callback-watchdog", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._tick):
            with self._lock:
                call = self._current
                if call is None or call.fired or time.monotonic() < call.deadline or self._thread_id is None:
                    continue
                call.fired = True
                _async_raise(self._thread_id, CallbackTimeout)

    def close(self) -> None:
        self._stop.set()
