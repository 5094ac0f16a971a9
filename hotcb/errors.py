"""The errors hotcb raises to the code that builds or drives it (never into a running loop's
``apply``). Every one is a ``HotcbError``; a caller that catches that catches them all, and the
tool surface maps them to its own errors in one place (``mcp_server/core_errors.py``).

The one exception outside this tree is ``hotcb.watchdog.CallbackTimeout``: it is raised inside a
user's callback to interrupt it, so it must not be an ``Exception`` the callback could catch.

Each class keeps the builtin base its callers already catch (``ValueError``, ``OSError``,
``RuntimeError``) beside ``HotcbError``.
"""

from __future__ import annotations


class HotcbError(Exception):
    """Base of the errors hotcb raises to its caller."""


class InvalidInput(HotcbError):
    """Input that cannot be read as what it claims to be (a command line, a desired-state file):
    nothing was applied, and the same input would fail again."""


class Rejected(HotcbError):
    """Well-formed input that hotcb's rules refuse (a value out of a knob's bounds, a locked knob):
    the run is unchanged; the same request may pass with another value or later."""


class Conflict(HotcbError):
    """The run's state or files do not allow the request (another live kernel, an unsafe file, a
    callback that will not load): nothing is wrong with the request itself."""


class RunLocked(Conflict):
    """Another live kernel holds this run directory: two kernels would apply every command twice."""

    def __init__(self, run_dir: str, holder: dict[str, object]) -> None:
        self.run_dir = run_dir
        self.holder = holder
        pid, host = holder.get("pid"), holder.get("host")
        who = f"pid {pid}" + (f" on {host}" if host else "") if pid is not None else "another process"
        super().__init__(f"run directory {run_dir} is already driven by a live kernel ({who}); "
                         "one kernel per run: stop that process, or give this run its own --dir")
