"""``KernelConfig``: the kernel's settings in one typed record (every field a keyword of
``HotKernel`` too, so ``HotKernel(run, checkpoint_every=50)`` and
``HotKernel(run, config=KernelConfig(checkpoint_every=50))`` mean the same)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .guard import GuardConfig


@dataclass(frozen=True)
class KernelConfig:
    guard: GuardConfig = field(default_factory=GuardConfig)
    # Where callback code may come from, whoever asks (the judge's CodePolicy; docs/security.md).
    allowed_callback_dirs: tuple[str | os.PathLike[str], ...] = ()
    allowed_callback_modules: tuple[str, ...] = ()
    callback_timeout_s: float | None = 30.0  # a callback call past this is disabled (None: no budget)
    checkpoint_every: int | None = None  # periodic in-memory snapshots of registered state
    keep_checkpoints: int = 3
    checkpoint_on_disk: bool = False
    status_interval_s: float = 0.5  # heartbeat (hotcb.status.json) at most this often
    watch_interval_s: float = 0.25  # hotcb.freeze.json / hotcb.yaml checked this often
    # hotcb.commands.jsonl is looked at (one stat) on the step at most this often; a writer in this
    # process (hotcb.jsonl_write) rings it for the next step; 0: a stat on every step.
    command_check_s: float = 0.02
    knob_publish_s: float = 1.0  # knob values a scheduler moved are republished at most this often
    pause_poll_s: float = 0.05
    record_knobs: bool = True  # echo numeric knob values into the metrics (e.g. opt/lr)
    # Metric lines are written in batches off the step, at most this long after their step (0: each
    # at its step); a decision, a status publish, a pause and close write them at once.
    metrics_flush_s: float = 0.25
    max_steps: int | None = None  # the kernel asks the loop to stop here

    @classmethod
    def build(cls, config: KernelConfig | None, options: dict[str, Any]) -> KernelConfig:
        """``config`` with ``options`` (HotKernel's keywords) on top; an unknown keyword is a TypeError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"HotKernel got unknown options {unknown} (known: {sorted(known)})")
        # None means "the default" (callers pass their own optional values through), except for
        # the callback budget, where None means "no budget".
        opts = {k: v for k, v in options.items() if v is not None or k == "callback_timeout_s"}
        for k in ("allowed_callback_dirs", "allowed_callback_modules"):
            if k in opts:
                opts[k] = tuple(opts[k])
        return replace(config or cls(), **opts)
