"""Snapshots of registered training state, for ``core checkpoint`` and ``core rollback``, and the
knob values they and the ledger hold (the kernel's part of a framework checkpoint is
``knob_resume.py``'s).

A snapshot holds deep copies (on CPU) of each registered object's ``state_dict()`` plus the
live knob values; restoring loads them back and then re-applies only the knobs whose live value
differs (a loss weight lives in the user's dict, not in any state dict). Knob values are the
*live* ones (read back from the run), because with an LR scheduler the last value set is not
the lr in use, and re-applying a stale one would rescale the schedule.

State a knob depends on travels with every snapshot without being registered: an lr scheduler
passed to ``optimizer_actuators(opt, scheduler=sched)`` (its bases and position decide the lr
the optimizer runs after a rollback) is captured and loaded back after the registered objects
(``Snapshots.follow``), unless the script registered that same object itself.

With ``directory`` set, snapshots are ``torch.save``d there (``RUN_DIR/hotcb.checkpoints/``)
instead of held in memory, and those left by an earlier process of the same run can be rolled
back to after a restart. They are run files: opened without following a link or waiting on a
FIFO (``hotcb.jsonl.open_nofollow``), each written to a temp file of its own creation.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actuators.actuator import _plain
from .actuators.state import MutableState
from .jsonl import UnsafeFile, open_nofollow
from .state_copy import Spares, to_cpu

_FILE_RE = re.compile(r"^step-(\d{9})(?:\.rank(\d+))?\.pt$")
_TMP_RE = re.compile(r"^step-\d{9}(?:\.rank(\d+))?\.tmp$")
COMPANION = "hotcb:"  # the name prefix of state captured for a knob (e.g. "hotcb:lr", its scheduler)


@dataclass
class Snapshot:
    step: int
    states: dict[str, Any] | None  # None: held on disk at ``path`` until restored
    knobs: dict[str, Any]
    reason: str | None = None
    path: Path | None = None
    healthy: bool = False  # confirmed by the divergence detector: a state the rescue may return to
    # Put in the ring by ``take`` (no one else holds it): its tensors are reused once it leaves.
    owned: bool = field(default=False, compare=False, repr=False)


def _evictions(ring: list[Snapshot], keep: int) -> list[Snapshot]:
    """The snapshots a ring of ``keep`` evicts, in order: the oldest goes first, except the newest
    healthy snapshot, which stays until a newer one is confirmed (the rescue must always have one
    to return to)."""
    out: list[Snapshot] = []
    while len(ring) > keep:
        keeper = next((s for s in reversed(ring) if s.healthy), None)
        victim = next((s for s in ring if s is not keeper), None)
        if victim is None:
            break
        ring = [s for s in ring if s is not victim]
        out.append(victim)
    return out


class Snapshots:
    def __init__(self, keep: int = 3, directory: str | os.PathLike[str] | None = None, rank: int | None = None):
        self.objects: dict[str, Any] = {}
        self._knobs: MutableState | None = None  # whose knobs' companion state travels along
        self.keep = max(1, keep)
        self.snapshots: deque[Snapshot] = deque()
        self._reuse = True  # the last take copied a large tensor (``hotcb.state_copy``): plan reuse
        self.directory = Path(directory) if directory is not None else None
        # Each rank saves its own file: optimizer state may be sharded across ranks.
        self.rank = rank
        if self.directory is not None:
            self._discover()

    def set_rank(self, rank: int | None) -> None:
        """Learn the process's rank once distributed training started (files are per rank)."""
        if rank == self.rank:
            return
        self.rank = rank
        if self.directory is not None:
            self.snapshots.clear()
            self._discover()

    def register(self, name: str, obj: Any) -> None:
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise TypeError(f"{name}: needs state_dict() and load_state_dict()")
        self.objects[name] = obj

    def follow(self, state: MutableState) -> None:
        """Capture and restore, with the registered objects, the state ``state``'s knobs depend on
        (``HotcbActuator.companion``: an lr scheduler), looked up at each capture."""
        self._knobs = state

    def companions(self) -> dict[str, Any]:
        """The knobs' companion objects not registered by the script, by snapshot name."""
        if self._knobs is None:
            return {}
        seen = {id(o) for o in self.objects.values()}
        out: dict[str, Any] = {}
        for a in self._knobs:
            obj = a.companion
            if obj is not None and id(obj) not in seen and hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
                seen.add(id(obj))
                out[COMPANION + a.param_key] = obj
        return out

    def capture(self, step: int, knobs: dict[str, Any], reason: str | None = None) -> Snapshot:
        """A snapshot in memory, not put in the ring."""
        return Snapshot(step, {n: to_cpu(sd) for n, sd in self._live().items()}, dict(knobs), reason)

    def _live(self) -> dict[str, Any]:
        """Each object's ``state_dict()`` as it is (no copy yet)."""
        if not self.objects:
            raise RuntimeError("no state registered for checkpoints (kernel.register_state)")
        # Registered objects first: a scheduler is loaded after the optimizer it drives.
        return {n: o.state_dict() for n, o in (self.objects | self.companions()).items()}

    def add_oldest(self, snap: Snapshot) -> None:
        """Put an in-memory snapshot taken earlier (``capture``) into the ring, at its old end."""
        if snap.step not in self.steps():
            self.snapshots.appendleft(snap)
            self._evict()

    def take(self, step: int, knobs: dict[str, Any], reason: str | None = None, healthy: bool = False) -> Snapshot:
        """A snapshot put in the ring. In memory, the snapshots it replaces or evicts leave the ring
        first and lend their tensors to it (``hotcb.state_copy``): no new pages, and the ring is
        what it would be after a fresh copy (a copy that fails leaves it without them)."""
        live = self._live()
        spares = Spares()
        if self.directory is None and self._reuse and (len(self.snapshots) >= self.keep or step in self.steps()):
            leaving = self._leaving(step, healthy)
            self.snapshots = deque([s for s in self.snapshots if all(s is not g for g in leaving)])
            for s in leaving:
                if s.owned and s.states is not None:
                    spares.add(s.states)
                    s.states = None  # its tensors are the new snapshot's now: it can never be restored
        snap = Snapshot(step, {n: to_cpu(sd, spares) for n, sd in live.items()}, dict(knobs), reason,
                        healthy=healthy, owned=self.directory is None)
        self._reuse = spares.asked > 0  # a state without a large tensor: the next take plans no reuse
        if self.directory is not None:
            snap.path = self._save(snap)
            snap.states = None
        self.snapshots = deque([s for s in self.snapshots if s.step != step])
        self.snapshots.append(snap)
        self._evict()
        return snap

    def _leaving(self, step: int, healthy: bool) -> list[Snapshot]:
        """The snapshots a ``take`` at ``step`` replaces (same step) or evicts (``_evictions``,
        with the new snapshot in the ring)."""
        new = Snapshot(step, None, {}, healthy=healthy)
        ring = [s for s in self.snapshots if s.step != step] + [new]
        return [s for s in self.snapshots if s.step == step] + [v for v in _evictions(ring, self.keep) if v is not new]

    def _evict(self) -> None:
        """A ring of ``keep`` (``_evictions``); a snapshot on disk takes its file along."""
        for victim in _evictions(list(self.snapshots), self.keep):
            self.snapshots.remove(victim)
            if victim.path is not None:
                victim.path.unlink(missing_ok=True)

    def last_healthy(self) -> Snapshot | None:
        return next((s for s in reversed(self.snapshots) if s.healthy), None)

    def confirm(self, since: int, upto: int) -> None:
        """Mark healthy the snapshots taken at steps ``since..upto`` (the detector saw healthy
        training from ``since`` through at least a confirmation window after ``upto``)."""
        changed = False
        for s in self.snapshots:
            if not s.healthy and since <= s.step <= upto:
                s.healthy = changed = True
        if changed:  # called every healthy step: the ring changes only when a snapshot was confirmed
            self._evict()

    def drop_after(self, step: int) -> None:
        """Forget snapshots newer than ``step`` (after a rollback they belong to an abandoned path)."""
        for s in [s for s in self.snapshots if s.step > step]:
            self.snapshots.remove(s)
            if s.path is not None:
                s.path.unlink(missing_ok=True)

    def find(self, step: int | None = None) -> Snapshot:
        if not self.snapshots:
            raise RuntimeError("no snapshot to roll back to")
        if step is None:
            return self.snapshots[-1]
        eligible = [s for s in self.snapshots if s.step <= step]
        if not eligible:
            have = [s.step for s in self.snapshots]
            raise RuntimeError(f"no snapshot at or before step {step} (have {have})")
        return eligible[-1]

    def restore(self, snap: Snapshot) -> None:
        if snap.states is None and snap.path is None:
            raise RuntimeError(f"the snapshot of step {snap.step} left the ring: its buffers hold a newer one")
        states = snap.states if snap.states is not None else self._load(snap)["states"]
        missing = [n for n in states if n not in self.objects and not n.startswith(COMPANION)]
        if missing:
            raise RuntimeError(f"snapshot holds state that is not registered now: {missing}")
        companions = self.companions()
        for name, state in states.items():
            obj = self.objects[name] if name in self.objects else companions.get(name)
            if obj is not None:  # a companion whose knob is gone stays behind
                obj.load_state_dict(copy.deepcopy(state))

    def steps(self) -> list[int]:
        return [s.step for s in self.snapshots]

    # ------------------------------------------------------------------ on disk
    def _file(self, step: int) -> Path:
        assert self.directory is not None
        suffix = f".rank{self.rank}" if self.rank is not None else ""
        return self.directory / f"step-{step:09d}{suffix}.pt"

    def _save(self, snap: Snapshot) -> Path:
        import torch

        assert self.directory is not None
        if self.directory.is_symlink():  # a folder of run files, replaced by a link elsewhere
            raise UnsafeFile(errno.ELOOP, f"{self.directory} is a symlink; run files are never followed")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._file(snap.step)
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # whatever lies there (a link planted to be written through) goes, unfollowed
        try:
            with os.fdopen(open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as f:
                torch.save({"step": snap.step, "states": snap.states, "knobs": snap.knobs, "reason": snap.reason}, f)
            os.replace(tmp, path)  # a crash mid-save never leaves a truncated snapshot behind
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()  # a full disk: no half-written file left behind
            raise
        return path

    def _load(self, snap: Snapshot) -> dict[str, Any]:
        import torch

        assert snap.path is not None
        with os.fdopen(open_nofollow(snap.path, os.O_RDONLY), "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)

    def _discover(self) -> None:
        assert self.directory is not None
        if self.directory.is_symlink() or not self.directory.is_dir():
            return
        found = []
        for p in self.directory.iterdir():
            tmp = _TMP_RE.match(p.name)
            if tmp and tmp.group(1) == (None if self.rank is None else str(self.rank)):
                with contextlib.suppress(OSError):
                    p.unlink()  # this rank's save killed midway (each rank owns its files)
                continue
            m = _FILE_RE.match(p.name)
            rank = int(m.group(2)) if m and m.group(2) is not None else None
            if m and rank == self.rank:
                found.append((int(m.group(1)), p))
        for step, path in sorted(found)[-self.keep:]:
            try:
                data = self._load(Snapshot(step, None, {}, path=path))
            except Exception:  # an unreadable file is not a snapshot
                continue
            self.snapshots.append(Snapshot(step, None, dict(data.get("knobs") or {}), data.get("reason"), path))


# ---------------------------------------------------------------------- knob values
def live_knob_values(state: MutableState) -> dict[str, Any]:
    """Each knob's value as the run uses it now (read back where possible)."""
    out = {}
    for a in state:
        value = a.value
        if a.read_fn is not None:
            try:
                value = a.read_fn()
            except Exception:
                pass
        out[a.param_key] = _plain(value)
    return out


def restore_knobs(state: MutableState, knobs: dict[str, Any], env: dict[str, Any], step: int | None,
                  before: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bring each knob to ``knobs[key]``: apply it where the live value differs, else only
    record it. Returns ``{key: {"old", "new"}}`` for every knob it restored: ``old`` is the value
    the run used before (``before``: live values read before a state load, as a rollback passes
    them; else the knob's value as this process last knew it: configured, or last set), ``new``
    the value it uses now."""
    changed = {}
    live = live_knob_values(state)
    for key, value in knobs.items():
        act = state.get(key)
        if act is None or value is None:
            continue
        old = before[key] if before is not None and key in before else _plain(act.value)
        if live.get(key) == _plain(value):
            act.value = act.validate(value)  # the restored state already holds it
        else:
            act.apply(value, env, step)
        changed[key] = {"old": old, "new": _plain(act.value)}
    return changed


def ledger_knob_values(entries: Any, upto_step: int | None = None) -> dict[str, Any]:
    """The last value each knob was given by an applied ledger entry (at or before a step)."""
    out: dict[str, Any] = {}
    for e in entries:
        if not isinstance(e, dict) or e.get("decision") != "applied":
            continue
        if upto_step is not None and isinstance(e.get("step"), int) and e["step"] > upto_step:
            continue
        payload = e.get("payload") or {}
        if e.get("module") == "core" and e.get("op") in ("rollback", "restore"):
            payload = payload.get("knobs") or {}
        elif e.get("module") in ("core", "cb", "tune"):
            continue
        for key, change in payload.items():
            if isinstance(change, dict) and "new" in change:
                out[key] = change["new"]
    return out

