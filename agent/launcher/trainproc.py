"""The training process of ``launch``: ``python -m hotcb.agent.launcher.trainproc --train-fn pkg.mod:fn --dir RUN``.

Training gets its own process (never a thread of a web server or of the autopilot): a crash,
a hang or a GIL-heavy step there cannot stall the controllers, and vice versa. The function is
called as ``fn(run_dir=..., max_steps=...)`` and builds its own ``HotKernel``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotcb.parent_watch import watch_parent


def resolve(spec: str) -> Callable[..., Any]:
    """``pkg.mod:fn`` or ``path/to/file.py:fn`` -> the function."""
    mod_name, sep, fn_name = spec.rpartition(":")
    if not sep or not mod_name or not fn_name:
        raise ValueError(f"--train-fn must be module:function or file.py:function, not {spec!r}")
    if mod_name.endswith(".py"):
        path = Path(mod_name).resolve()
        if not path.is_file():
            raise ValueError(f"train function file not found: {path}")
        module_spec = importlib.util.spec_from_file_location(f"hotcb_train_{path.stem}", path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.path.insert(0, str(path.parent))  # its sibling imports work as when run as a script
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(mod_name)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ValueError(f"{spec}: {fn_name!r} is not a function of {mod_name}")
    return fn  # type: ignore[no-any-return]  # callable() checked it; its signature is the script's


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hotcb.agent.launcher.trainproc")
    ap.add_argument("--train-fn", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--max-steps", type=int, default=None)
    args = ap.parse_args(argv)
    watch_parent()  # launch's process gone (however it ended): training ends too
    sys.path.insert(0, ".")  # `pkg.mod` relative to where launch was started
    fn = resolve(args.train_fn)
    fn(run_dir=args.dir, max_steps=args.max_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
