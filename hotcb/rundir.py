"""Names of the files in a run directory (docs/core.md), fixed and shared by every layer."""

from __future__ import annotations

import os
from pathlib import Path

COMMANDS = "hotcb.commands.jsonl"
LEDGER = "hotcb.applied.jsonl"
METRICS = "hotcb.metrics.jsonl"
ACTUATORS = "hotcb.actuators.json"
STATUS = "hotcb.status.json"
FREEZE = "hotcb.freeze.json"
RECIPE = "hotcb.recipe.jsonl"
FEATURES = "hotcb.features.jsonl"
AI_STATE = "hotcb.ai.state.json"
PROPOSALS = "hotcb.proposals.jsonl"
DESIRED = "hotcb.yaml"
LOCKS = "hotcb.locks.json"
SCHEDULE = "hotcb.schedule.json"
ALERTS = "hotcb.alerts.jsonl"
ALERT_RULES = "hotcb.alerts.json"
AUTOPILOT = "hotcb.autopilot.json"
CHECKPOINTS = "hotcb.checkpoints"
TUNE = "hotcb.tune.json"
INTENTS = "hotcb.intents.jsonl"  # a command's handler started (hotcb.intents)
KERNEL_LOCK = "hotcb.kernel.lock"  # held by the one live kernel (hotcb.runlock)

ALL_FILES = (
    COMMANDS, LEDGER, METRICS, ACTUATORS, STATUS, FREEZE, RECIPE, FEATURES, AI_STATE, PROPOSALS,
    DESIRED, LOCKS, SCHEDULE, ALERTS, ALERT_RULES, AUTOPILOT, TUNE, INTENTS, KERNEL_LOCK,
)


class RunDir:
    """A run directory: paths of its fixed files. Never hands out a path outside it."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True):
        self.root = Path(path).resolve()
        if create:
            self.root.mkdir(parents=True, exist_ok=True)

    def __fspath__(self) -> str:
        return str(self.root)

    def file(self, name: str) -> Path:
        if name not in ALL_FILES and not name.startswith("hotcb."):
            raise ValueError(f"not a run-directory file: {name!r}")
        p = (self.root / name).resolve()
        if p.parent != self.root:
            raise ValueError(f"path escapes the run directory: {name!r}")
        return p

    @property
    def commands(self) -> Path:
        return self.root / COMMANDS

    @property
    def ledger(self) -> Path:
        return self.root / LEDGER

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def actuators(self) -> Path:
        return self.root / ACTUATORS

    @property
    def status(self) -> Path:
        return self.root / STATUS

    @property
    def freeze(self) -> Path:
        return self.root / FREEZE

    @property
    def recipe(self) -> Path:
        return self.root / RECIPE

    @property
    def features(self) -> Path:
        return self.root / FEATURES

    @property
    def locks(self) -> Path:
        return self.root / LOCKS

    @property
    def schedule(self) -> Path:
        return self.root / SCHEDULE

    @property
    def desired(self) -> Path:
        return self.root / DESIRED

    @property
    def intents(self) -> Path:
        return self.root / INTENTS

    def remove_stale_tmp(self) -> list[str]:
        """Remove the temp files an atomic write killed midway left (``.hotcb.*.tmp``): only the
        run's lock holder calls this, so no live writer owns one."""
        removed = []
        try:
            names = os.listdir(self.root)
        except OSError:
            return removed
        for name in names:
            if name.startswith(".hotcb.") and name.endswith(".tmp"):
                try:
                    if not os.path.islink(self.root / name):
                        os.unlink(self.root / name)
                        removed.append(name)
                except OSError:
                    pass
        return removed


# The one wording every controller (mcp, serve, set, status, autopilot) uses for a run directory
# whose training has not started: starting a controller first is normal, not an error.
NO_TRAINING_YET = "no training process yet"


def open_for_controller(path: str | os.PathLike[str]) -> tuple[RunDir, str | None]:
    """The run directory a controller acts on, created if missing (as ``hotcb init`` would), and
    the note to show when no training process has written to it yet (None once one has).

    Raises ValueError when the path exists and is not a directory."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{p} exists and is not a directory")
    run = RunDir(p)
    if run.status.exists():
        return run, None
    return run, f"{NO_TRAINING_YET} in {run.root}; waiting for one (commands queue until it starts)"
