"""The errors hotcb raises to the code that builds it (never into a running loop's ``apply``)."""

from __future__ import annotations


class HotcbError(Exception):
    """Base of the errors hotcb raises to its caller."""


class RunLocked(HotcbError):
    """Another live kernel holds this run directory: two kernels would apply every command twice."""

    def __init__(self, run_dir: str, holder: dict[str, object]) -> None:
        self.run_dir = run_dir
        self.holder = holder
        pid, host = holder.get("pid"), holder.get("host")
        who = f"pid {pid}" + (f" on {host}" if host else "") if pid is not None else "another process"
        super().__init__(f"run directory {run_dir} is already driven by a live kernel ({who}); "
                         "one kernel per run: stop that process, or give this run its own --dir")
