"""The ``cb`` module: load, unload, enable, disable and reconfigure callbacks while training.

A callback is duck-typed: ``handle(event, env)`` and optionally ``set_params(**kw)`` and
``close()``. Loading captures a hash of the source so a replay can tell it runs the same code.
Anything a callback raises -- ``SystemExit`` and ``KeyboardInterrupt`` included, at import time
too -- disables that callback and is recorded; so does running past its time budget
(``hotcb.watchdog``). A callback cannot end training: only the kernel's own stop does.
Where code may come from is the judge's ``CodePolicy``; this module only loads it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..actuators.actuator import ValueRefused
from ..errors import Conflict
from ..ops import CallbackTarget, HotOp
from ..watchdog import CallbackTimeout, CallWatchdog
from . import ApplyContext


class CallbackLoadError(Conflict, RuntimeError):
    """A callback whose code cannot be imported or built: nothing was loaded."""


@dataclass
class LoadedCallback:
    id: str
    obj: Any
    target: CallbackTarget | None
    enabled: bool = True
    source_hash: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    errors: int = 0
    last_error: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id, "enabled": self.enabled, "type": type(self.obj).__name__,
            "target": self.target.to_dict() if self.target else None, "source_hash": self.source_hash,
            "params": self.params, "errors": self.errors, "last_error": self.last_error,
            "state": "enabled" if self.enabled else ("failed" if self.last_error else "disabled"),
        }


def _hash_source(path: str | None) -> str | None:
    if not path or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def resolve_file(path: str, run_dir: Path, allowed_dirs: list[Path]) -> Path:
    """A callback file must lie inside the run directory or an allowed directory."""
    p = Path(path)
    candidates = [p] if p.is_absolute() else [run_dir / p] + [d / p for d in allowed_dirs]
    for c in candidates:
        c = c.resolve()
        if any(c == d or d in c.parents for d in [run_dir, *allowed_dirs]):
            if c.is_file():
                return c
    if not any(c.resolve().is_file() for c in candidates):
        raise CallbackLoadError(f"callback file not found: {path}")
    raise CallbackLoadError(f"callback file {path} is outside the run directory and the allowed directories")


def _what(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"SystemExit({e.code!r}) (a callback cannot end training)"
    if isinstance(e, KeyboardInterrupt):
        return "KeyboardInterrupt (a callback cannot end training)"
    return f"{e!r}"[:500]


def load_target(target: CallbackTarget, params: dict[str, Any], run_dir: Path,
                allowed_dirs: list[Path]) -> tuple[Any, str | None]:
    """Import the target and build the callback. Anything raised (``SystemExit`` at import
    included) becomes ``CallbackLoadError``: the command fails, the run goes on."""
    try:
        return _load_target(target, params, run_dir, allowed_dirs)
    except CallbackLoadError:
        raise
    except BaseException as e:
        raise CallbackLoadError(f"loading {target.path}:{target.symbol} raised {_what(e)}") from None


def _load_target(target: CallbackTarget, params: dict[str, Any], run_dir: Path,
                 allowed_dirs: list[Path]) -> tuple[Any, str | None]:
    if target.kind == "module":
        try:
            module = importlib.import_module(target.path)
        except BaseException as e:
            raise CallbackLoadError(f"cannot import {target.path}: {_what(e)}") from None
        source = getattr(module, "__file__", None)
    else:
        file = resolve_file(target.path, run_dir, allowed_dirs)
        name = "hotcb_user_cb_" + hashlib.sha1(str(file).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise CallbackLoadError(f"cannot load {file}")
        module = importlib.util.module_from_spec(spec)
        try:
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except BaseException as e:
            sys.modules.pop(name, None)
            raise CallbackLoadError(f"error executing {file}: {_what(e)}") from None
        source = str(file)
    factory = getattr(module, target.symbol, None)
    if factory is None:
        raise CallbackLoadError(f"{target.path} has no symbol {target.symbol!r}")
    home = getattr(factory, "__module__", None) or module.__name__
    if home != module.__name__ and not home.startswith(module.__name__ + "."):
        # Only what the module (or its package) defines: an imported name (os, Popen) is no callback.
        raise CallbackLoadError(f"{target.path}.{target.symbol} is not defined in {target.path}")
    if inspect.isclass(factory):
        try:
            obj = factory(**params)
        except TypeError:
            obj = factory()
            if params and hasattr(obj, "set_params"):
                obj.set_params(**params)
    else:
        obj = factory
    if not callable(getattr(obj, "handle", None)):
        raise CallbackLoadError(f"{target.symbol} has no handle(event, env) method")
    return obj, _hash_source(source)


class CallbackModule:
    name = "cb"

    def __init__(self, run_dir: Path, allowed_dirs: list[Path] | None = None,
                 on_error: Callable[[LoadedCallback, str, int, str], None] | None = None,
                 timeout_s: float | None = 30.0) -> None:
        self.run_dir = run_dir
        self.allowed_dirs = [Path(d).resolve() for d in (allowed_dirs or [])]
        self.callbacks: dict[str, LoadedCallback] = {}
        self._on_error = on_error  # the kernel's hook: records a raising callback in the ledger
        self.watchdog = CallWatchdog(timeout_s)

    def add(self, cb_id: str, obj: Any, enabled: bool = True) -> None:
        """Register a callback object from code (not through a command)."""
        if not callable(getattr(obj, "handle", None)):
            raise TypeError(f"callback {cb_id!r} has no handle(event, env) method")
        src = None
        try:
            src = inspect.getsourcefile(type(obj))
        except TypeError:
            pass
        self.callbacks[cb_id] = LoadedCallback(cb_id, obj, None, enabled, _hash_source(src))

    def _get(self, op: HotOp) -> LoadedCallback:
        if not op.id:
            raise ValueRefused(f"cb {op.op} needs an id")
        cb = self.callbacks.get(op.id)
        if cb is None:
            known = ", ".join(sorted(self.callbacks)) or "none"
            raise ValueRefused(f"no callback with id {op.id!r} (loaded: {known})")
        return cb

    def handle(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        if op.op == "load":
            if not op.id:
                raise ValueRefused("cb load needs an id")
            if op.target is None:
                raise ValueRefused("cb load needs a target {kind, path, symbol}")
            call = self.watchdog.begin(f"loading {op.id}")
            try:
                try:
                    obj, digest = load_target(op.target, op.params, self.run_dir, self.allowed_dirs)
                finally:
                    late = self.watchdog.end(call)
            except CallbackTimeout:
                late = True
            if late:
                raise CallbackLoadError(f"loading {op.id} ran past the {self.watchdog.budget_s:g}s budget")
            old = self.callbacks.pop(op.id, None)
            if old is not None:
                _close(old.obj)
            enabled = op.extra.get("enabled", True) is not False
            self.callbacks[op.id] = LoadedCallback(op.id, obj, op.target, enabled, digest, dict(op.params))
            return {"source_hash": digest, "replaced": old is not None, "enabled": enabled}
        cb = self._get(op)
        if op.op == "unload":
            del self.callbacks[cb.id]
            _close(cb.obj)
            return {"unloaded": cb.id}
        if op.op in ("enable", "disable"):
            old = cb.enabled
            cb.enabled = op.op == "enable"
            if cb.enabled:
                cb.last_error = None
            return {"enabled": {"old": old, "new": cb.enabled}}
        if op.op == "set_params":
            setter = getattr(cb.obj, "set_params", None)
            if not callable(setter):
                raise ValueRefused(f"callback {cb.id!r} does not accept set_params")
            setter(**op.params)
            cb.params.update(op.params)
            return {"params": op.params}
        raise ValueRefused(f"unknown cb op {op.op!r}")

    def dispatch(self, events: list[str], env: dict[str, Any], step: int) -> None:
        for cb in list(self.callbacks.values()):
            if not cb.enabled:
                continue
            for event in events:
                call = self.watchdog.begin(cb.id)
                try:
                    try:
                        cb.obj.handle(event, env)
                    finally:
                        late = self.watchdog.end(call)
                    if late:
                        raise CallbackTimeout
                except BaseException as e:
                    self._disable(cb, e, event, step)
                    break

    def _disable(self, cb: LoadedCallback, e: BaseException, event: str, step: int) -> None:
        cb.enabled = False
        cb.errors += 1
        if isinstance(e, CallbackTimeout):
            cb.last_error = f"timed out: {event} ran past the {self.watchdog.budget_s:g}s budget"
        elif isinstance(e, (SystemExit, KeyboardInterrupt)):
            cb.last_error = _what(e)
        else:
            cb.last_error = f"{type(e).__name__}: {str(e)[:500]}"
        if self._on_error is not None:
            self._on_error(cb, event, step, traceback.format_exc(limit=3))

    def describe(self) -> list[dict[str, Any]]:
        return [cb.describe() for cb in self.callbacks.values()]

    def close(self) -> None:
        for cb in self.callbacks.values():
            _close(cb.obj)
        self.watchdog.close()


def _close(obj: Any) -> None:
    closer = getattr(obj, "close", None)
    if callable(closer):
        try:
            closer()
        except BaseException:
            pass
