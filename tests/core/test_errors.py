"""Core has one exception hierarchy: every error a core module defines is a ``HotcbError``,
except the watchdog's interrupt, which must stay uncatchable by ``except Exception``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import hotcb
from hotcb.actuators.actuator import ValueRefused
from hotcb.desired import DesiredStateError
from hotcb.errors import Conflict, HotcbError, InvalidInput, Rejected, RunLocked
from hotcb.guard import GuardRefusal
from hotcb.jsonl import UnsafeFile
from hotcb.modules.callbacks import CallbackLoadError
from hotcb.ops import CommandError
from hotcb.watchdog import CallbackTimeout

LAYERS_ABOVE = ("hotcb.mcp_server", "hotcb.agent", "hotcb.dashboard", "hotcb.evals", "hotcb.prompts")


def _core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(hotcb.__path__, "hotcb."):
        if not info.name.startswith(LAYERS_ABOVE):
            names.append(info.name)
    return names


def test_every_public_core_error_is_a_hotcb_error():
    defined = {}
    for name in _core_modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name
                    and not attr.startswith("_")):
                defined[f"{name}.{attr}"] = obj
    assert "hotcb.ops.CommandError" in defined  # the walk saw core's modules
    strays = [n for n, cls in defined.items() if cls is not CallbackTimeout and not issubclass(cls, HotcbError)]
    assert strays == []


@pytest.mark.parametrize(("error", "kind", "builtin"), [
    (CommandError, InvalidInput, ValueError),
    (DesiredStateError, InvalidInput, ValueError),
    (ValueRefused, Rejected, ValueError),
    (GuardRefusal, Rejected, ValueError),
    (UnsafeFile, Conflict, OSError),
    (CallbackLoadError, Conflict, RuntimeError),
    (RunLocked, Conflict, HotcbError),
])
def test_each_error_keeps_its_kind_and_the_builtin_its_callers_catch(error, kind, builtin):
    assert issubclass(error, kind) and issubclass(kind, HotcbError)
    assert issubclass(error, builtin)


def test_the_callback_interrupt_is_not_an_exception_a_callback_could_swallow():
    assert issubclass(CallbackTimeout, BaseException)
    assert not issubclass(CallbackTimeout, Exception)


def test_unsafe_file_is_still_an_oserror_with_its_errno(tmp_path):
    import os

    from hotcb.jsonl import open_nofollow
    target = tmp_path / "real"
    target.write_text("x")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafeFile) as caught:
        open_nofollow(tmp_path / "link", os.O_RDONLY)
    assert caught.value.errno is not None and isinstance(caught.value, HotcbError)
