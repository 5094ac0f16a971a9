"""Recipes: the applied changes of a run, exported from its ledger, replayed step for step."""

from __future__ import annotations

import os
from typing import Any

from .jsonl import read_all
from .jsonl_write import append_lines
from .ops import CB_OPS, CORE, CallbackTarget, CommandError

# What a replay reproduces: knob changes, callback changes, and state restores.
REPLAYED_CORE_OPS = ("checkpoint", "rollback")
RECIPE_KEYS = ("step", "event", "module", "op", "id", "params", "target")


def _entry_params(entry: dict[str, Any]) -> dict[str, Any]:
    """For a knob change, the value the kernel actually set (coerced), else the request."""
    payload = entry.get("payload") or {}
    if entry.get("op") == "set_params" and entry.get("module") not in ("cb", "tune", CORE):
        out = {}
        for key, value in (entry.get("params") or {}).items():
            change = payload.get(key)
            out[key] = change["new"] if isinstance(change, dict) and "new" in change else value
        return out
    return dict(entry.get("params") or {})


def is_replayable(entry: dict[str, Any]) -> bool:
    if entry.get("decision") != "applied" or entry.get("step") is None:
        return False
    if entry.get("source") == "kernel":
        # What the kernel recorded on its own (a resume's ``core restore`` of knob values) is no
        # change anyone asked for: replayed, those values would be applied a second time.
        return False
    module, op = entry.get("module"), entry.get("op")
    if module == CORE:
        return op in REPLAYED_CORE_OPS
    if module == "tune":
        return False  # tune's own knob changes are recorded as knob entries and replayed as such
    if module == "cb":
        return op in CB_OPS
    return op == "set_params"


def export_recipe(ledger_entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recipe entries, in ledger order, for every replayable applied change."""
    out = []
    for e in ledger_entries:
        if not isinstance(e, dict) or not is_replayable(e):
            continue
        rec = {
            "step": e["step"], "epoch": e.get("epoch"), "event": e.get("event"),
            "module": e["module"], "op": e["op"], "id": e.get("id"), "params": _entry_params(e),
            "target": e.get("target"), "source_hash": (e.get("payload") or {}).get("source_hash"),
            "cmd_id": e.get("cmd_id"), "source": e.get("source"), "actor": e.get("actor"),
            "reason": e.get("reason"),
        }
        out.append(rec)
    return out


def write_recipe(path: str | os.PathLike[str], entries: list[dict[str, Any]]) -> None:
    tmp = os.fspath(path) + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    append_lines(tmp, entries)
    os.replace(tmp, path)


def load_recipe(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    return read_all(path)


MAX_RECIPE_ENTRIES = 100_000


def validate_recipe(entries: Any, what: str = "entry", overlay: bool = False) -> list[str]:
    """Human-readable problems of a recipe (or, ``overlay``, of patches); none means it can be
    replayed. The judge's own checks (code, who may) come on top, in the kernel and the tools."""
    if not isinstance(entries, list):
        return [f"a recipe is a list of entries, got {type(entries).__name__}"]
    if len(entries) > MAX_RECIPE_ENTRIES:
        return [f"{len(entries)} entries; at most {MAX_RECIPE_ENTRIES}"]
    problems = []
    last_step = -1
    for i, e in enumerate(entries):
        where = f"{what} {i}"
        if not isinstance(e, dict):
            problems.append(f"{where}: not an object")
            continue
        step = e.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            problems.append(f"{where}: step must be a non-negative integer")
            continue
        if step < last_step and not overlay:
            problems.append(f"{where}: steps must not decrease ({step} after {last_step})")
        last_step = max(last_step, step)
        if not isinstance(e.get("module"), str) or not isinstance(e.get("op"), str):
            problems.append(f"{where}: module and op must be strings")
        if not isinstance(e.get("params", {}), dict):
            problems.append(f"{where}: params must be an object")
        if e.get("module") == "cb" and e.get("op") == "load":
            try:
                CallbackTarget.from_dict(e.get("target"))
            except CommandError as err:
                problems.append(f"{where}: {err}")
    return problems


def apply_overlay(entries: list[dict[str, Any]], overlay: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Patch a recipe. An overlay entry replaces the recipe's change of the same
    (step, module, key) or adds a new one; ``{"drop": true, ...}`` removes it."""

    def keys_of(e: dict[str, Any]) -> set[tuple[int, str, str]]:
        names = list((e.get("params") or {}).keys()) or [e.get("id") or e.get("op")]
        return {(e.get("step"), e.get("module"), str(n)) for n in names}

    out = [dict(e) for e in entries]
    for patch in overlay:
        if not isinstance(patch, dict):
            continue
        hit = keys_of(patch)
        kept = []
        for e in out:
            if keys_of(e) & hit and e.get("module") not in ("cb",):
                remaining = {k: v for k, v in (e.get("params") or {}).items()
                             if (e.get("step"), e.get("module"), k) not in hit}
                if remaining and e.get("op") == "set_params":
                    kept.append({**e, "params": remaining})
                continue
            kept.append(e)
        out = kept
        if not patch.get("drop"):
            out.append({k: v for k, v in patch.items() if k != "drop"} | {"overlay": True})
    out.sort(key=lambda e: e["step"] if isinstance(e.get("step"), int) else 0)
    return out


class RecipePlayer:
    """Yields the recipe's entries due at a step, each once, in order.

    An entry fires at the kernel call for its step whose events include its event (any event
    when it names none); an entry whose step was skipped fires at the next call, marked late.
    """

    def __init__(self, entries: list[dict[str, Any]]):
        # Validated before a replay starts; anything malformed that slips by is left out here
        # rather than raising at every step.
        self.entries = sorted(
            [e for e in entries if isinstance(e, dict) and isinstance(e.get("step"), int)
             and not isinstance(e.get("step"), bool)],
            key=lambda e: e["step"],
        )
        self.position = 0
        self.fired = 0
        self.late = 0

    @property
    def done(self) -> bool:
        return self.position >= len(self.entries)

    def next_step(self) -> int | None:
        return None if self.done else int(self.entries[self.position]["step"])

    def due(self, step: int, events: list[str]) -> list[dict[str, Any]]:
        out = []
        while not self.done:
            e = self.entries[self.position]
            s = int(e["step"])
            if s > step:
                break
            if s == step and e.get("event") and events and e["event"] not in events:
                break
            if s < step:
                e = {**e, "late": True}
                self.late += 1
            out.append(e)
            self.position += 1
            self.fired += 1
        return out

    def status(self) -> dict[str, Any]:
        return {"total": len(self.entries), "fired": self.fired, "late": self.late,
                "next_step": self.next_step(), "done": self.done}
