"""A root of runs: a directory whose subdirectories are run directories, served as one tool surface.

``RunRoot`` owns one ``HotcbTools`` per run, made when the run is first seen, so each run keeps
its own guard, ledger, cached readers and lock; nothing is shared between runs. Every tool of a
single run is offered with one more argument, ``run`` (the run directory's name under the
root; optional when the root holds exactly one run, otherwise refused with the list), plus
``list_runs``. A run is a direct subdirectory holding a file the kernel writes; the root is
rescanned (one ``scandir``) on each call, so runs started later are picked up. A run's name is
only ever looked up among the scanned names: a caller cannot name a path.

A root is shared ground (a sweep directory other users may write to): a run's directory can be
swapped between two calls. Every call therefore re-checks the run under the root's own
descriptor without following links: still a real directory, still the same one (device and
inode) as when its tools were made. A run replaced by a symlink is refused (and dropped from the
list); one replaced by another real directory is a new run and gets fresh tools.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, create_model

from hotcb.records import LedgerRecord
from hotcb.rundir import ACTUATORS, COMMANDS, LEDGER, METRICS, STATUS
from hotcb.trend import sig
from hotcb.vocabulary import Source

from . import catalog
from .registry import InvalidArguments, StrictInput, ToolError, ToolSpec
from .tools import HotcbTools
from .tools_observe import KEY_METRIC_PREFERENCE

RUN_MARKERS = (STATUS, METRICS, LEDGER, COMMANDS, ACTUATORS)
RUN_ARG = "run"


class ListRunsInput(StrictInput):
    pass


class LastChange(BaseModel):
    step: int | None = None
    module: str | None = None
    params: dict[str, Any] | None = None
    source: str | None = None
    actor: str | None = None


class RunSummary(BaseModel):
    name: str = Field(description="the run's directory name under the root: the `run` argument of every tool")
    status: str = Field(description="running, paused, stopped, dead, stale, absent, or unreadable (see error)")
    step: int | None = None
    key_metric: str | None = None
    key_value: float | str | None = None
    last_change: LastChange | None = Field(None, description="the last applied knob change (ledger)")
    idle_s: float | None = Field(None, description="seconds since the run's metrics or ledger last changed")
    error: str | None = Field(None, description="why the run's files could not be read (status unreadable), or "
                                                "which fields of its status file did not parse (left out)")


class ListRunsOutput(BaseModel):
    root: str
    runs: list[RunSummary]


def _with_run_arg(spec: ToolSpec) -> ToolSpec:
    """The same tool with an optional ``run`` argument (checked here, removed before the run's tool sees it)."""
    model = create_model(
        spec.input_model.__name__, __base__=spec.input_model,
        run=(str | None, Field(None, description="the run (a name from list_runs); optional when the root "
                                                 "holds a single run")),
    )
    return replace(spec, input_model=model)


def is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in RUN_MARKERS)


def looks_like_root(path: str | os.PathLike[str]) -> bool:
    """A directory that is not a run itself but holds at least one run directory."""
    p = Path(path)
    if not p.is_dir() or is_run_dir(p):
        return False
    return any(e.is_dir() and is_run_dir(Path(e.path)) for e in os.scandir(p) if not e.name.startswith("."))


class RunRoot:
    """The runs under ``root``, each with its own ``tools_class(run_dir, source=, actor=, wait_s=)``."""

    def __init__(self, root: str | os.PathLike[str], *, source: str = "agent", actor: str | None = None,
                 wait_s: float = 10.0, tools_class: type[HotcbTools] = HotcbTools):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"{root} is not a directory")
        self.source, self.actor, self.wait_s, self.tools_class = source, actor, wait_s, tools_class
        self._runs: dict[str, HotcbTools] = {}
        self._ids: dict[str, tuple[int, int]] = {}  # (st_dev, st_ino) of each run's directory at first sight
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._lock = threading.Lock()

    def lstat(self, name: str) -> os.stat_result | None:
        """``ROOT/name`` looked up under the root's descriptor without following a link; None
        when it is not (or no longer) a real directory."""
        try:
            st = os.stat(name, dir_fd=self._root_fd, follow_symlinks=False)
        except (OSError, ValueError):
            return None
        return st if stat.S_ISDIR(st.st_mode) else None

    def identity(self, name: str) -> tuple[int, int] | None:
        """``(st_dev, st_ino)`` of run ``name``'s directory (``lstat``), or None."""
        st = self.lstat(name)
        return (st.st_dev, st.st_ino) if st is not None else None

    def _checked(self, name: str) -> HotcbTools | None:
        """The tools of run ``name`` if it is still the directory they were made for; a run
        swapped for another real directory gets fresh tools, anything else is dropped."""
        ident = self.identity(name)
        if ident is None:
            self._runs.pop(name, None)
            self._ids.pop(name, None)
            return None
        if self._ids.get(name) != ident:
            self._runs[name] = self.make_tools(self.root / name)
            self._ids[name] = ident
        return self._runs[name]

    def make_tools(self, run_dir: Path) -> HotcbTools:
        return self.tools_class(run_dir, source=self.source, actor=self.actor, wait_s=self.wait_s)

    def scan(self) -> dict[str, HotcbTools]:
        """The runs now under the root (new ones get their tools on first sight)."""
        with self._lock:
            try:
                entries = sorted(os.scandir(self.root), key=lambda e: e.name)
            except OSError:
                return dict(self._runs)
            for name in list(self._runs):
                self._checked(name)
            for e in entries:
                if e.name in self._runs or e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
                    continue
                if is_run_dir(Path(e.path)):
                    self._checked(e.name)
            return dict(self._runs)

    def names(self) -> list[str]:
        return sorted(self.scan())

    def get(self, name: str | None) -> HotcbTools:
        runs = self.scan()
        if name is None:
            if len(runs) == 1:
                return next(iter(runs.values()))
            listed = ", ".join(sorted(runs)) or "none yet"
            raise ToolError(f"this server serves {len(runs)} runs; name one with the 'run' argument "
                            f"(runs: {listed}; see list_runs)")
        if name not in runs:
            if self._is_link(name):
                raise ToolError(f"run {name!r} is no longer a directory under this root (it is a link): refused; "
                                f"runs: {', '.join(sorted(runs)) or 'none yet'}")
            raise ToolError(f"no run {name!r} under this root; runs: {', '.join(sorted(runs)) or 'none yet'}")
        return self.verified(name)

    def _is_link(self, name: str) -> bool:
        if "/" in name or name.startswith("."):
            return False
        try:
            return stat.S_ISLNK(os.stat(name, dir_fd=self._root_fd, follow_symlinks=False).st_mode)
        except (OSError, ValueError):
            return False

    def verified(self, name: str) -> HotcbTools:
        """Run ``name``'s tools, re-checked now (the scan may be a moment old)."""
        with self._lock:
            tools = self._checked(name)
        if tools is None:
            raise ToolError(f"run {name!r} is no longer a directory under this root (replaced by a link or "
                            "removed): refused; see list_runs")
        return tools

    def specs(self) -> list[ToolSpec]:
        """``list_runs`` and every tool this caller may use on one run, each with the ``run`` argument."""
        one = catalog.served(human=self.source == Source.HUMAN)
        return [LIST_RUNS] + [_with_run_arg(s) for s in one]

    def call(self, name: str, arguments: dict[str, Any] | None = None, *, actor: str | None = None) -> dict[str, Any]:
        args = dict(arguments or {})
        if name == LIST_RUNS.name:
            if args:
                raise InvalidArguments(f"invalid arguments for list_runs: takes none, got {', '.join(sorted(args))}")
            return self.list_runs().model_dump(mode="json")
        run = args.pop(RUN_ARG, None)
        if run is not None and not isinstance(run, str):
            raise InvalidArguments(f"invalid arguments for {name}: run: must be a run name (a string)")
        return self.get(run).call(name, args, actor=actor)

    def list_runs(self) -> ListRunsOutput:
        return ListRunsOutput(root=str(self.root), runs=[_summary(n, t) for n, t in sorted(self.scan().items())])


LIST_RUNS = ToolSpec(
    name="list_runs", group=RunRoot, input_model=ListRunsInput, output_model=ListRunsOutput,
    read_only=True, profile="observe", idempotent=True, title="List runs",
    description="The runs under this server's root: name (the `run` argument of every other tool), status, "
                "step, the key metric's last value, the last applied knob change and seconds since the run "
                "last wrote. New runs appear as they start.",
)



def _idle_s(tools: HotcbTools) -> float | None:
    times = []
    for p in (tools.run.metrics, tools.run.ledger):
        try:
            times.append(os.stat(p).st_mtime)
        except OSError:
            pass
    return round(max(0.0, time.time() - max(times)), 1) if times else None


def _summary(name: str, tools: HotcbTools) -> RunSummary:
    """One run's line; a run whose files cannot be read (a co-tenant's, or a corrupt one) is
    listed as unreadable with the reason, never failing the whole list."""
    try:
        return summarize(name, tools)
    except Exception as e:
        return RunSummary(name=name, status="unreadable", error=f"{type(e).__name__}: {str(e)[:300]}")


def summarize(name: str, tools: HotcbTools) -> RunSummary:
    """One run's line in ``list_runs``, through its own tools (the same reads as get_status)."""
    st = tools.call("get_status", {})
    last = st.get("last_metrics") or {}
    key = next((m for m in KEY_METRIC_PREFERENCE if m in last), None)
    change = None
    with tools.lock:
        entries = tools.ledger_entries()
    for e in filter(None, map(LedgerRecord.from_json, reversed(entries[-500:]))):
        if e.is_knob_change:
            params = {k: new for k, (_, new) in e.knob_changes().items()}
            change = LastChange(step=e.step, module=e.module, params=params, source=e.source, actor=e.actor)
            break
    value = last.get(key) if key else None
    return RunSummary(name=name, status=st["liveness"], step=st.get("step"), key_metric=key,
                      key_value=sig(value) if isinstance(value, float) else value, last_change=change,
                      idle_s=_idle_s(tools), error="; ".join(st.get("status_problems") or []) or None)
