"""``WatchedFiles``: ``hotcb.freeze.json``, ``hotcb.yaml`` (desired state) and
``hotcb.autopilot.json`` (the autopilot mode), read on a wall-clock cadence (and at the first
step) and applied as ledger-recorded ops.

The autopilot mode decides whether the kernel's rescue acts: a mode that acts (``auto``,
``ai_auto``) enables it from the step the kernel reads it, whichever process started first, so
a blow-up in the first steps is rolled back before any autopilot has polled; leaving those modes
disables it again (unless the script enabled it). The file is hostile input: a malformed one
changes nothing and gets one refusal in the ledger, with its reason.

``hotcb.desired`` parses ``hotcb.yaml``; this turns a parsed desired state into the ops that
close its difference from the live state. It owns the two files' watches and the background
reader; the ops go down the kernel's command path. In distributed runs rank 0 reads and the
changes ride on the next command broadcast (``take_pending``).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import TYPE_CHECKING, Any

from .actuators.actuator import ValueRefused
from .desired import INLINE_DESIRED_BYTES, BackgroundRead, DesiredStateError, flatten_knobs, read_desired
from .filewatch import FileWatch
from .freeze import FreezeState
from .jsonl import read_json
from .judge import judge
from .modules import ApplyContext
from .ops import CB, CORE, RESCUE, SOURCES, CallbackTarget, CommandError, HotOp, Source
from .rundir import AUTOPILOT
from .vocabulary import AutopilotMode

AUTOPILOT_MODES = AutopilotMode.values()
ACTING_MODES = tuple(m.value for m in AutopilotMode if m.acts)  # the autopilot (and so the rescue) acts
MAX_AUTOPILOT_BYTES = 64 * 1024  # the mode file is a few fields; anything larger is not one

if TYPE_CHECKING:
    from .kernel import HotKernel


class WatchedFiles:
    def __init__(self, kernel: HotKernel) -> None:
        self.kernel = kernel
        run = kernel.run
        self.freeze_path, self.desired_path = run.freeze, run.desired
        self._freeze_watch = FileWatch(run.freeze)
        self._desired_watch = FileWatch(run.desired)
        self.autopilot_path = run.root / AUTOPILOT
        self._autopilot_watch = FileWatch(self.autopilot_path)
        self._rescue_by_mode = False  # the rescue is on because the mode file said a mode that acts
        self._desired_reader: BackgroundRead | None = None
        self._pending: dict[str, Any] = {}  # rank 0: changes not yet broadcast

    def save_freeze(self, new: FreezeState) -> None:
        """Write the freeze file for a ``core freeze`` op; our own write is not a new change."""
        new.save(self.freeze_path)
        self._freeze_watch.changed()

    def take_pending(self) -> dict[str, Any]:
        """What rank 0 read since the last broadcast (it rides on the next one)."""
        pending, self._pending = self._pending, {}
        return pending

    def watch(self, ctx: ApplyContext) -> None:
        watched = self._read()
        if self.kernel.dist is None:
            self.apply(watched, ctx)
        elif watched:
            # This runs on a wall-clock cadence, which differs across ranks: rank 0 keeps what it
            # read for the next (step-counted) command broadcast instead of applying it alone.
            self._pending.update(watched)

    def _read(self) -> dict[str, Any]:
        if not self.kernel.is_writer:
            return {}
        out: dict[str, Any] = {}
        if self._freeze_watch.changed() and self._admit(self._freeze_watch):
            out["freeze"] = read_json(self.freeze_path)
        if self._autopilot_watch.changed() and self._admit(self._autopilot_watch):
            out["autopilot"] = self._read_autopilot()
        if self._desired_reader is None:
            path = self.desired_path
            self._desired_reader = BackgroundRead(lambda: read_desired(path))
        if self._desired_watch.changed() and self._admit(self._desired_watch) and self._desired_watch.exists():
            try:
                small = os.lstat(self.desired_path).st_size <= INLINE_DESIRED_BYTES
            except OSError:
                small = False
            if small and not self._desired_reader.busy:
                # A few lines parse in about a millisecond: at this step, so every rank (and a
                # test) sees the change at the step it was made. Anything larger: off the step.
                out["desired"] = read_desired(self.desired_path)
                return out
            self._desired_reader.start()  # read and parsed off the step; applied when ready
        done = self._desired_reader.take()
        if done is not None:
            out["desired"] = done
        return out

    def _admit(self, watch: FileWatch) -> bool:
        """Whether the changed file may be read: one that is not a regular file is refused
        (recorded once), never opened."""
        return self.kernel.files.admit(watch.path, watch.mode)

    def apply(self, watched: dict[str, Any], ctx: ApplyContext) -> None:
        if watched.get("freeze") is not None:
            self._apply_freeze_file(ctx, watched["freeze"])
        if watched.get("desired") is not None:
            self._apply_desired(ctx, watched["desired"])
        if watched.get("autopilot") is not None:
            self._apply_autopilot(ctx, watched["autopilot"])

    # ------------------------------------------------------------------ the autopilot mode
    def _read_autopilot(self) -> dict[str, Any]:
        """``{"mode": ...}`` (``off`` when there is no file), or ``{"error": why}``."""
        if not self._autopilot_watch.exists():
            return {"mode": "off"}
        try:
            if os.lstat(self.autopilot_path).st_size > MAX_AUTOPILOT_BYTES:
                return {"error": f"larger than {MAX_AUTOPILOT_BYTES} bytes"}
        except OSError as e:
            return {"error": f"unreadable ({type(e).__name__})"}
        missing = object()
        doc = read_json(self.autopilot_path, missing)
        if doc is missing:
            return {"error": "not readable JSON (malformed, a symlink, or not a regular file)"}
        mode = doc.get("mode") if isinstance(doc, dict) else None
        if not isinstance(mode, str) or mode not in AUTOPILOT_MODES:
            return {"error": f"mode must be one of {', '.join(AUTOPILOT_MODES)}"}
        set_by = doc.get("set_by")
        return {"mode": mode, "set_by": set_by[:80] if isinstance(set_by, str) else None}

    def _apply_autopilot(self, ctx: ApplyContext, read: dict[str, Any]) -> None:
        """Enable the rescue in a mode that acts, disable it when the mode leaves them (one
        ledgered ``rescue`` op, source ``rule``, actor ``rescue``: the judge decides as for the
        autopilot's own enable); a malformed file: one recorded refusal, nothing changed."""
        k = self.kernel
        rescue = k.modules.get(RESCUE)
        if rescue is None:
            return
        name = self.autopilot_path.name
        if read.get("error"):
            op = HotOp(module=RESCUE, op="enable", cmd_id=f"autopilot-mode-invalid-{k.session}-{uuid.uuid4().hex[:8]}",
                       source=Source.RULE, actor="rescue", reason=f"autopilot mode in {name}")
            k.commands.record(op, ctx, "rejected", error=f"invalid {name}: {read['error']}; the rescue is left as it was")
            return
        mode, by = read["mode"], f" (set by {read['set_by']})" if read.get("set_by") else ""
        if mode in ACTING_MODES and not rescue.enabled:
            op = HotOp(module=RESCUE, op="enable", params={}, source=Source.RULE, actor="rescue",
                       reason=f"autopilot mode {mode} in {name}{by}: the rescue rolls back blow-ups from this step")
        elif mode not in ACTING_MODES and self._rescue_by_mode and rescue.enabled:
            op = HotOp(module=RESCUE, op="disable", params={}, source=Source.RULE, actor="rescue",
                       reason=f"autopilot mode {mode} in {name}{by}: a mode that does not act")
        else:
            return
        op.cmd_id = f"autopilot-mode-{op.op}-{k.session}-{uuid.uuid4().hex[:8]}"
        entry = k.commands.process(op, ctx)
        if entry.get("decision") == "applied":
            self._rescue_by_mode = op.op == "enable"
            k.publish_status()  # an autopilot reading the status sees the rescue on (and sends no enable of its own)

    def _apply_freeze_file(self, ctx: ApplyContext, raw: Any) -> None:
        if raw is None:
            return
        k, freeze = self.kernel, self.kernel.freeze
        cmd_id = raw.get("cmd_id") if isinstance(raw, dict) and isinstance(raw.get("cmd_id"), str) else None
        cmd_id = cmd_id or "freeze-" + hashlib.sha1(repr(raw).encode()).hexdigest()[:16]
        if isinstance(raw, dict) and raw.get("cmd_id") == freeze.cmd_id and raw.get("mode") == freeze.mode:
            return
        actor = raw.get("actor") if isinstance(raw, dict) else None
        op = HotOp(module=CORE, op="freeze", params={}, cmd_id=cmd_id, source=Source.HUMAN,
                   actor=actor if isinstance(actor, str) else None)
        try:
            new = FreezeState.from_dict(raw)
            if new.source not in SOURCES or new.source == Source.REPLAY:
                raise ValueError(f"source must be one of {', '.join(s for s in SOURCES if s != Source.REPLAY)}")
            op.source, op.reason = new.source, new.reason
            op.params = {"mode": new.mode, "recipe_path": new.recipe_path}
            # The file is one more way to send ``core freeze``: the same judge decides.
            refusal = judge(op, new.source, k.view(ctx.step))
            if refusal is not None:
                raise ValueError(refusal.reason)
            old = freeze.mode
            k.freeze_switch.set(new)
        except (ValueError, OSError) as e:
            if not k.ledger.has(cmd_id):
                k.commands.record(op, ctx, "rejected", error=f"invalid {self.freeze_path.name}: {e}")
            return
        if not k.ledger.has(cmd_id):
            k.commands.record(op, ctx, "applied", payload={"mode": {"old": old, "new": new.mode}})

    def _apply_desired(self, ctx: ApplyContext, read: dict[str, Any]) -> None:
        k = self.kernel
        base = f"yaml-{read.get('digest')}-{k.session}"
        try:
            if read.get("error"):
                raise DesiredStateError(read["error"])
            ops = self._desired_ops(read["doc"], base)
        except (DesiredStateError, ValueRefused, CommandError) as e:
            if not k.ledger.has(base):
                op = HotOp(module=CORE, op="desired_state", cmd_id=base, source=Source.YAML, actor="hotcb.yaml")
                k.commands.record(op, ctx, "rejected", error=str(e))
            return
        for op in ops:
            if not k.ledger.has(op.cmd_id):
                k.commands.process(op, ctx)

    def _desired_ops(self, desired: dict[str, Any], base: str) -> list[HotOp]:
        ops: list[HotOp] = []
        state = self.kernel.state
        groups = state.groups()
        by_group: dict[str, dict[str, Any]] = {}
        for (group, key), value in flatten_knobs(desired["knobs"], groups).items():
            act = state.get(key)
            if act is None or (group is not None and act.group != group):
                raise ValueRefused(f"hotcb.yaml names unknown knob {key!r} (known: {sorted(state.keys())})")
            act.validate(value)  # an invalid file changes nothing at all
            if act.describe()["value"] != (list(value) if isinstance(value, tuple) else value):
                by_group.setdefault(act.group, {})[key] = value
        for group, params in by_group.items():
            ops.append(HotOp(module=group, op="set_params", params=params))
        for cb_id, spec in desired["callbacks"].items():
            cur = self.kernel.cb.callbacks.get(cb_id)
            enabled = spec.get("enabled", True) is not False
            if cur is None:
                if spec.get("target") is None:
                    raise ValueRefused(f"hotcb.yaml callback {cb_id!r} is not loaded and has no target")
                ops.append(HotOp(module=CB, op="load", id=cb_id, params=dict(spec.get("params") or {}),
                                 target=CallbackTarget.from_dict(spec["target"]), extra={"enabled": enabled}))
                continue
            if cur.enabled != enabled:
                ops.append(HotOp(module=CB, op="enable" if enabled else "disable", id=cb_id))
            params = spec.get("params") or {}
            if params and any(cur.params.get(k) != v for k, v in params.items()):
                ops.append(HotOp(module=CB, op="set_params", id=cb_id, params=dict(params)))
        if desired["freeze"] is not None and desired["freeze"] != self.kernel.freeze.mode:
            ops.append(HotOp(module=CORE, op="freeze" if desired["freeze"] != "off" else "unfreeze",
                             params={"mode": desired["freeze"]}))
        for i, op in enumerate(ops):
            op.cmd_id, op.source, op.actor, op.reason = f"{base}-{i}", Source.YAML, "hotcb.yaml", "desired state"
        return ops
