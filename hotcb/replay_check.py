"""A recipe checked before a replay is asked for, by the rules the kernel applies when it starts
one (``FreezeSwitch.set``): each line JSON, ``validate_recipe``'s structure, the judge's static
verdict on every entry as the replay's starter (``judge_recipe``: modules, ops, types, bounds),
the size limit, and a path the kernel will open (``CodePolicy.place``: the run directory or a
directory the training script allowed). Nothing here is a second rule: it asks the same ones
early, so ``hotcb recipe validate`` and ``hotcb freeze --mode replay`` never report success for
a replay the kernel would refuse on those grounds.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from .jsonl import parse_line
from .jsonl_write import write_bytes_atomic
from .judge import CodePolicy, View, judge_recipe
from .recipe import apply_overlay, validate_recipe
from .rundir import RunDir
from .vocabulary import Source

MAX_RECIPE_BYTES = 16 << 20
RECIPES_DIR = "recipes"  # where an outside recipe is copied, under its content's name
_ENTRY = re.compile(r"^(?:overlay )?entry (\d+)")


def read_recipe_file(path: str | os.PathLike[str]) -> tuple[list[Any], list[int], list[str]]:
    """(entries, the line number of each, problems): a line that is not JSON is a problem naming
    its line, never skipped silently."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_RECIPE_BYTES + 1)
    except OSError as e:
        return [], [], [f"{path}: cannot read: {e.strerror or e}"]
    if len(data) > MAX_RECIPE_BYTES:
        return [], [], [f"{path}: larger than {MAX_RECIPE_BYTES >> 20} MiB"]
    entries, lines, problems = [], [], []
    for n, raw in enumerate(data.decode("utf-8", errors="replace").split("\n"), start=1):
        if not raw.strip():
            continue
        value, err = parse_line(raw.strip())
        if err is not None:
            problems.append(f"line {n}: not JSON ({err})")
            continue
        entries.append(value)
        lines.append(n)
    return entries, lines, problems


def replay_problems(entries: list[Any], overlay: list[Any], mode: str, who: str,
                    view: View) -> tuple[list[Any], list[str]]:
    """The entries a replay in ``mode`` plays (for ``replay_adjusted``, with the overlay applied)
    and what the kernel refuses in them and in the overlay when ``who`` starts it."""
    problems = validate_recipe(entries, "entry") + validate_recipe(overlay, "overlay entry", overlay=True)
    if mode == "replay_adjusted" and overlay:
        entries = apply_overlay(entries, overlay)
    return entries, problems + judge_recipe(entries, who, view)


def check_recipe_file(path: str | os.PathLike[str], view: View, who: str = Source.HUMAN, *,
                      overlay: list[Any] | None = None, mode: str = "replay") -> list[str]:
    """Every problem the kernel would find starting a replay of ``path`` for ``who``, each
    naming the recipe's line (an entry's index once an overlay has reordered them)."""
    entries, lines, problems = read_recipe_file(path)
    adjusted = mode == "replay_adjusted" and bool(overlay)
    _, found = replay_problems(entries, list(overlay or []), mode, who, view)

    def at_line(problem: str) -> str:
        m = _ENTRY.match(problem)
        if adjusted or m is None or problem.startswith("overlay") or int(m.group(1)) >= len(lines):
            return problem
        return f"line {lines[int(m.group(1))]}{problem[m.end():]}"

    return problems + [at_line(p) for p in found]


def place_recipe(run: RunDir, path: str, code: CodePolicy) -> str:
    """The recipe path to put in the run's freeze file: ``path`` (made absolute) when the kernel
    will open it there, else a copy in ``RUN/recipes/<sha256[:16]>.jsonl`` (content-addressed: the same
    recipe twice is one file). Raises ValueError with the reason when neither works."""
    src = Path(path).absolute()  # a path on the command line is the caller's, not the run's
    if not src.is_file():
        raise ValueError(f"recipe not found: {path}")
    if code.place(str(src)) is not None:
        return str(src)
    try:
        with open(src, "rb") as f:
            data = f.read(MAX_RECIPE_BYTES + 1)
    except OSError as e:
        raise ValueError(f"cannot read the recipe {path}: {e.strerror or e}") from e
    if len(data) > MAX_RECIPE_BYTES:
        raise ValueError(f"the recipe {path} is larger than {MAX_RECIPE_BYTES >> 20} MiB")
    rel = f"{RECIPES_DIR}/{hashlib.sha256(data).hexdigest()[:16]}.jsonl"
    dest = run.root / rel
    if code.place(rel) is None:  # a run directory whose recipes/ leads elsewhere (a link)
        raise ValueError(f"the copy {dest} is outside the run directory; refusing")
    dest.parent.mkdir(exist_ok=True)
    if dest.is_symlink() or not dest.is_file() or dest.read_bytes() != data:
        write_bytes_atomic(dest, data)  # a run file: never written through what lies there
    if code.place(rel) is None:  # recipes/ swapped for a link meanwhile
        raise ValueError(f"the copy {dest} is outside the run directory; refusing")
    return rel
