"""``HotKernel``: the control plane's half that lives inside the training process.

Call ``kernel.apply(env=..., events=[...])`` at each safe point (after ``optimizer.step()``).
With nothing new it costs one ``stat`` of the commands file. New command lines are parsed,
checked against freeze mode and the guard, applied, and each gets exactly one ledger decision.
Nothing in here may raise into the training loop: every failure becomes a recorded decision.

The ``core`` module's ops (pause, freeze, checkpoint, rollback, ...) live in ``core_ops.py``;
reading and applying ``hotcb.freeze.json`` and ``hotcb.yaml`` in ``watched.py``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from .actuators.actuator import ValueRefused
from .actuators.state import MutableState
from .checkpoint import Snapshots, kernel_state, live_knob_values, load_kernel_state
from .collector import MetricsCollector
from .core_ops import CoreOps
from .distributed import launched_as_other_rank
from .filewatch import FileWatch
from .freeze import FreezeState
from .jsonl import JsonlTail, UnsafeFile, append_line, read_json, write_json_atomic
from .judge import CodePolicy, Refusal, View, judge, unchanged_keys
from .kernel_config import KernelConfig
from .ledger import Ledger
from .modules import ApplyContext
from .modules.callbacks import CallbackLoadError, CallbackModule
from .ops import CB, CORE, TUNE, CommandError, HotOp, auto_cmd_id, parse_command
from .recipe import RecipePlayer
from .rescue import RESCUE, Rescue
from .rundir import ALERTS, CHECKPOINTS, RunDir
from .rundir import TUNE as TUNE_FILE
from .watched import WatchedFiles

log = logging.getLogger("hotcb")


class HotKernel(CoreOps, WatchedFiles):
    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        mutable_state: MutableState | None = None,
        debounce_steps: int = 1,
        *,
        config: KernelConfig | None = None,
        metrics_collector: MetricsCollector | None = None,
        freeze: FreezeState | str | None = None,
        callbacks: dict[str, Any] | None = None,
        features: Any = None,
        distributed: Any = None,
        **options: Any,
    ):
        """``options`` are ``KernelConfig`` fields (guard, allowed_callback_modules, checkpoint_every,
        max_steps, ...), applied over ``config``; the rest are the loop's collaborators."""
        self.config = cfg = KernelConfig.build(config, options)
        self.run = RunDir(run_dir)
        self.state = mutable_state if mutable_state is not None else MutableState()
        self.debounce_steps = max(1, int(debounce_steps))
        self.guard = cfg.guard
        self.collector = metrics_collector or MetricsCollector(self.run.metrics)
        self.features = features
        self.status_interval_s = cfg.status_interval_s
        self.watch_interval_s = cfg.watch_interval_s
        self.pause_poll_s = cfg.pause_poll_s
        self.record_knobs = cfg.record_knobs
        self.max_steps = cfg.max_steps
        self.checkpoint_every = cfg.checkpoint_every
        self.session = uuid.uuid4().hex[:8]
        self.dist = distributed if distributed is not None else _detect_distributed()
        # Built before the process group (Lightning/HF start it in fit/train): the launcher's
        # environment tells a non-zero rank not to write until ``distributed.attach`` runs.
        self.is_writer = self.dist.rank == 0 if self.dist is not None else not launched_as_other_rank()

        self.ledger = Ledger(self.run.ledger)
        self._commands = JsonlTail(self.run.commands)
        self._freeze_watch = FileWatch(self.run.freeze)
        self._desired_watch = FileWatch(self.run.desired)
        # Where callback code (and recipes) may come from, for every source: the judge's policy.
        self.code = CodePolicy.build(self.run.root, cfg.allowed_callback_modules, cfg.allowed_callback_dirs)
        self.cb = CallbackModule(self.run.root, [Path(d) for d in self.code.dirs], on_error=self._callback_failed,
                                 timeout_s=cfg.callback_timeout_s)
        # Who loaded each callback by command (its failures are attributed to them); a callback
        # added in code was put there by the script's author, a human.
        self._cb_loaders: dict[str, str] = {}
        for cb_id, obj in (callbacks or {}).items():
            self.cb.add(cb_id, obj)
        self.modules: dict[str, Any] = {CB: self.cb}
        self.snapshots = Snapshots(
            keep=cfg.keep_checkpoints, directory=self.run.root / CHECKPOINTS if cfg.checkpoint_on_disk else None,
            rank=self.dist.rank if self.dist is not None else None,
        )
        self.modules[RESCUE] = Rescue(self)  # rescue (issue 13): divergence watch + rollback, off until enabled

        self.step = 0
        self.epoch: int | None = None
        self.paused = False
        self.stop_requested = False
        self.closed = False
        self.freeze = FreezeState()
        self.player: RecipePlayer | None = None
        self.locks: dict[str, dict[str, Any]] = self._load_locks()
        self.scheduled: dict[str, HotOp] = {}
        self._reschedules = self._load_reschedules()
        self._calls = 0
        self._next_watch = 0.0
        self._watched_pending: dict[str, Any] = {}  # rank 0: watched-file changes not yet broadcast
        self._next_status = 0.0
        self._rate_mark: tuple[float, int] | None = None
        self.steps_per_s: float | None = None
        self.internal_errors = 0
        self.last_internal_error: str | None = None
        self._next_error_log = 0.0
        self._refused_files: set[str] = set()  # run files refused (symlinks): recorded once each
        self._last_metrics: dict[str, Any] = {}

        self._started = time.time()  # before anything below may write status
        self.state.initialize()
        if isinstance(freeze, str):
            freeze = FreezeState(mode=freeze)
        if freeze is not None:
            self._set_freeze(freeze, from_code=True)
        self._publish_actuators()
        self._write_status(force=True)
        self._resume_tune()

    # ------------------------------------------------------------------ public API
    @property
    def should_stop(self) -> bool:
        """True once a ``core stop`` was applied (or ``max_steps`` reached): end the loop cleanly."""
        return self.stop_requested

    def register_state(self, name: str, obj: Any) -> None:
        """Register an object with ``state_dict``/``load_state_dict`` for checkpoint/rollback."""
        self.snapshots.register(name, obj)

    def publish_status(self) -> None:
        """Write ``hotcb.status.json`` now, whatever ``status_interval_s`` (evals edit: a harness
        that ticks its controller at fixed steps publishes the step the controller reads)."""
        self._write_status(force=True)

    def add_actuators(self, actuators: list[Any]) -> None:
        """Add knobs after start-up (adapters discover optimizers at fit start). A key that
        exists is re-bound to the new object (a second ``fit`` builds new optimizers)."""
        for a in actuators:
            cur = self.state.get(a.param_key)
            if cur is None:
                self.state.add(a)
                a.initialize()
            else:
                cur.apply_fn, cur.read_fn = a.apply_fn, a.read_fn
                cur.initialize()
        self._publish_actuators()

    def state_dict(self) -> dict[str, Any]:
        """Knob values (live) and step, to save inside a framework checkpoint."""
        return kernel_state(self)

    def load_state_dict(self, state: dict[str, Any] | None, env: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call after a framework checkpoint load: re-applies knob values (the state's, else the
        ledger's), since loading optimizer state would otherwise silently reset lr. The values
        re-applied are recorded as one ``core restore`` ledger entry (source ``kernel``)."""
        changed = load_kernel_state(self, state, env)
        self._publish_actuators()
        if changed:
            try:
                self._record_restore(changed, "checkpoint" if _has_knobs(state) else "ledger", env)
            except Exception as e:  # the values are in place; a lost record must not stop the resume
                self._internal_error(e)
        return changed

    def add_callback(self, cb_id: str, obj: Any, enabled: bool = True) -> None:
        self.cb.add(cb_id, obj, enabled)
        self._cb_loaders.pop(cb_id, None)
        self._publish_actuators()

    def register_module(self, name: str, module: Any) -> None:
        """Route ops of ``module == name`` to ``module.handle(op, ctx)`` (e.g. tune)."""
        self.modules[name] = module

    def submit(self, op: HotOp, env: dict[str, Any] | None = None) -> dict[str, Any]:
        """Apply an op produced inside the training process (e.g. by tune) now, with a ledger
        entry; it passes the judge like any command from its source."""
        if not op.cmd_id:
            op.cmd_id = f"{op.source}-{uuid.uuid4().hex}"
        ctx = ApplyContext(self.step, self.epoch, ["internal"], env or {})
        return self._process(op, ctx)

    def apply(self, env: dict[str, Any] | None = None, events: list[str] | None = None, **kw: Any) -> None:
        """The safe point. Never raises into the training loop."""
        try:
            env = dict(env) if env else {}
            env.update(kw)
            self._apply(env, list(events) if events else ["train_step_end"])
        except Exception as e:  # the run matters more than this call
            self._internal_error(e)

    def view(self, step: int | None = None) -> View:
        """The run as the judge sees it now (live knob values, locks, freeze, schedule)."""
        state = self.state

        def knob(module: str, key: str) -> dict[str, Any] | None:
            act = state.get(key)
            if act is None or act.group != module:
                return None
            act.refresh()  # the guard's relative limit applies to the live value (schedulers move it)
            return act.describe()

        def scheduled_source(cmd_id: str) -> str | None:
            op = self.scheduled.get(cmd_id)
            return op.source if op is not None else None

        return View(code=self.code, guard=self.guard, freeze_mode=self.freeze.mode, freeze_source=self.freeze.source,
                    step=self.step if step is None else step,
                    locks=self.locks, groups=frozenset(state.groups()), knob=knob, knob_keys=state.keys,
                    scheduled_source=scheduled_source)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.cb.close()
            for m in self.modules.values():
                closer = getattr(m, "close", None)
                if callable(closer) and m is not self.cb:
                    closer()
            if self.features is not None:
                self.features.close()
        finally:
            self.closed = True
            self._write_status(force=True)

    def __enter__(self) -> HotKernel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop
    def _apply(self, env: dict[str, Any], events: list[str]) -> None:
        step = env.get("step")
        self.step = int(step) if step is not None else self.step + 1
        if env.get("epoch") is not None:
            self.epoch = int(env["epoch"])
        env.setdefault("kernel", self)
        # Callbacks may add metrics; they go into a copy so the caller's dict is left alone.
        metrics_in = env.get("metrics")
        env["metrics"] = dict(metrics_in) if isinstance(metrics_in, dict) else {}
        ctx = ApplyContext(self.step, self.epoch, events, env)
        self._calls += 1

        now = time.monotonic()
        if now >= self._next_watch:
            self._next_watch = now + self.watch_interval_s
            self._watch_files(ctx)
        if self._calls % self.debounce_steps == 0:
            self._poll_commands(ctx)
        if self.scheduled:
            self._fire_scheduled(ctx)
        if self.player is not None:
            self._fire_replay(ctx)
        for module in self.modules.values():
            hook = getattr(module, "on_step", None)
            if hook is not None and module is not self.cb:
                hook(ctx)
        if self.cb.callbacks:
            self.cb.dispatch(events, env, self.step)
        metrics = env.get("metrics")
        if metrics:
            self._record_metrics(metrics)
        if self.features is not None:
            self.features.on_step(self.step + 1)
        if self.checkpoint_every and self.snapshots.objects and self.step % self.checkpoint_every == 0:
            self.snapshots.take(self.step, live_knob_values(self.state), "periodic")
        if self.max_steps is not None and self.step >= self.max_steps:
            self.stop_requested = True
        self._write_status()
        while self.paused and not self.stop_requested:
            time.sleep(self.pause_poll_s)
            self._watch_files(ctx)
            self._poll_commands(ctx)
            self._write_status()

    def _record_metrics(self, metrics: dict[str, Any]) -> None:
        if not self.is_writer:
            return
        if self.record_knobs:
            metrics = dict(metrics)
            for a in self.state:
                a.refresh()
                v = a.value
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    metrics.setdefault(f"{a.group}/{a.param_key}", v)
        rec = self.collector.record(self.step, metrics, self.epoch)
        if rec is not None:
            self._last_metrics = rec["metrics"]
            self.state.verify(metrics)

    # ------------------------------------------------------------------ reading commands
    def _poll_commands(self, ctx: ApplyContext) -> None:
        if self.dist is not None:
            # One collective per poll, entered by every rank at the same step: rank 0's new
            # command lines and watched-file changes, so all ranks apply the same ops.
            lines, watched = self.dist.broadcast(self._read_batch if self.is_writer else None) or ([], {})
            self._apply_watched(watched, ctx)
        else:
            if not self._commands.changed() and not self.ledger.pending:
                return
            lines = self._read_lines()
        for i, (offset, raw, value, error) in enumerate(lines):
            try:
                self._handle_line(offset, raw, value, error, ctx)
            except Exception as e:  # one line never wedges the stream: it gets a decision
                self._handle_line_error(offset, raw, value, e, ctx)
            if self.ledger.pending:
                # Its decision could not be written (a full disk): it stays held and is retried
                # first; the lines after it are read again then, none is lost or decided twice.
                if self.dist is None and i + 1 < len(lines):
                    self._commands.offset = lines[i + 1][0]
                    self._commands.size_seen = -1
                break

    def _handle_line_error(self, offset: int, raw: str, value: Any, e: Exception, ctx: ApplyContext) -> None:
        given = value.get("cmd_id") if isinstance(value, dict) else None
        cmd_id = given if isinstance(given, str) and 0 < len(given) <= 128 else auto_cmd_id(raw, offset)
        if not self.ledger.has(cmd_id):
            self._record_refusal(cmd_id, None, f"could not be handled: {type(e).__name__}: {str(e)[:300]}", ctx, raw=raw)

    def _read_batch(self) -> tuple[list[tuple[int, str, Any, str | None]], dict[str, Any]]:
        watched, self._watched_pending = self._watched_pending, {}
        return self._read_lines(), watched

    def _read_lines(self) -> list[tuple[int, str, Any, str | None]]:
        if self.ledger.pending and not self.ledger.flush():
            return []  # decisions still held: read nothing new until they are written
        resets = self._commands.reset_count
        try:
            lines = self._commands.read_new()
        except UnsafeFile as e:
            self._refuse_file(self._commands.path, e)
            return []
        if self._commands.reset_count != resets:
            log.warning("hotcb: %s was truncated or replaced; re-reading it from the start", self._commands.path)
            self._write_status(force=True)
        return [(ln.offset, ln.raw, ln.value, ln.error) for ln in lines]

    def _refuse_file(self, path: str, e: OSError) -> None:
        """A run file that is a symlink: never followed; one recorded refusal (and an alert)."""
        if path in self._refused_files:
            return
        self._refused_files.add(path)
        reason = f"{os.path.basename(path)} is a symlink; hotcb never reads or writes through links ({e})"
        log.error("hotcb: %s", reason)
        self.last_internal_error = reason
        op = HotOp(module=CORE, op="read_commands", cmd_id=f"unsafe-file-{self.session}-{uuid.uuid4().hex[:8]}",
                   source="kernel", actor="kernel", reason="run file refused")
        try:
            self._record(op, ApplyContext(self.step, self.epoch, ["unsafe_file"], {}), "rejected", error=reason)
            self.raise_alert("unsafe_file", reason)
        except OSError:
            pass

    def _handle_line(self, offset: int, raw: str, value: Any, error: str | None, ctx: ApplyContext) -> None:
        fallback = auto_cmd_id(raw, offset)
        if error is not None:
            if not self.ledger.has(fallback):
                self._record_refusal(fallback, None, error, ctx, raw=raw)
            return
        try:
            op = parse_command(value)
        except CommandError as e:
            given = value.get("cmd_id") if isinstance(value, dict) else None
            # A usable id of its own keeps one refusal per command; anything else gets the line's id.
            cmd_id = given if isinstance(given, str) and 0 < len(given) <= 128 else fallback
            if not self.ledger.has(cmd_id):
                self._record_refusal(cmd_id, value if isinstance(value, dict) else None, str(e), ctx, raw=raw)
            return
        if self.ledger.has(op.cmd_id) or op.cmd_id in self.scheduled:
            return
        if op.cmd_id in self._reschedules:
            op.at_step = self._reschedules[op.cmd_id]
        if (op.at_step is not None and op.at_step > self.step) or (
            op.at_event is not None and op.at_event not in ctx.events
        ):
            self.scheduled[op.cmd_id] = op
            self._publish_schedule()
            return
        self._process(op, ctx)

    def _fire_scheduled(self, ctx: ApplyContext) -> None:
        due = [
            op for op in self.scheduled.values()
            if (op.at_step is None or op.at_step <= self.step)
            and (op.at_event is None or op.at_event in ctx.events)
        ]
        if not due:
            return
        due.sort(key=lambda o: (o.at_step or 0))
        for op in due:
            del self.scheduled[op.cmd_id]
            self._process(op, ctx)
        self._publish_schedule()

    def _fire_replay(self, ctx: ApplyContext) -> None:
        assert self.player is not None
        for entry in self.player.due(self.step, ctx.events):
            rec = {
                "cmd_id": f"replay-{entry.get('cmd_id') or uuid.uuid4().hex}-{entry.get('step')}",
                "source": "replay", "actor": "recipe", "reason": entry.get("reason"),
                "module": entry.get("module"), "op": entry.get("op"), "id": entry.get("id"),
                "params": entry.get("params") or {}, "target": entry.get("target"),
            }
            if entry.get("late"):
                rec["late"] = True
            if entry.get("overlay"):
                rec["overlay"] = True
            if self.ledger.has(rec["cmd_id"]):
                continue
            try:
                op = parse_command(rec)
            except CommandError as e:
                self._record_refusal(rec["cmd_id"], rec, str(e), ctx)
                continue
            # A recipe entry acts for whoever started the replay: an agent's recipe is an agent's op.
            op.extra["acting_for"] = self.freeze.source
            self._process(op, ctx, who=self.freeze.source)
        if self.player.done:
            self._write_status(force=True)

    # ------------------------------------------------------------------ applying one op
    def _process(self, op: HotOp, ctx: ApplyContext, who: str | None = None) -> dict[str, Any]:
        """Judge, then apply: the one path every op takes, whatever wrote it."""
        refused = op.extra.get("refused")
        if refused:  # the tool surface already refused it: recorded, never applied
            return self._record(op, ctx, "rejected", error=str(refused))
        who = who or op.source
        if who == "replay":
            who = "human"  # a recipe line written by hand into the commands file: its writer's
        verdict: Refusal | None = judge(op, who, self.view(ctx.step))
        if verdict is not None:
            return self._record(op, ctx, verdict.decision.value, error=verdict.reason)
        try:
            if op.op == "set_params" and op.module in self.state.groups():  # rescue (issue 13): pre-change snapshot
                self.modules[RESCUE].before_change(op, ctx)
            if op.module == CORE:
                payload = self._core(op, ctx)
            elif op.module in self.modules:
                payload = self.modules[op.module].handle(op, ctx)
            elif op.module == TUNE:
                payload = self._load_tune().handle(op, ctx)
            else:
                payload = self._knobs(op, ctx)
        except ValueRefused as e:
            return self._record(op, ctx, "rejected", error=str(e))
        except CallbackLoadError as e:
            self._publish_actuators()
            return self._record(op, ctx, "failed", error=str(e))
        except BaseException as e:  # noqa: BLE001 - user code (callbacks) may raise even SystemExit
            self._publish_actuators()
            return self._record(op, ctx, "failed", error=f"{type(e).__name__}: {str(e)[:500]}")
        entry = self._record(op, ctx, "applied", payload=payload)
        if op.module == CB and op.op == "load" and op.id:
            self._cb_loaders[op.id] = op.source
        self._publish_actuators()
        return entry

    def _knobs(self, op: HotOp, ctx: ApplyContext) -> dict[str, Any]:
        if op.op != "set_params":
            raise ValueRefused(f"unknown op {op.op!r} for knob group {op.module!r} (use set_params)")
        if op.module not in self.state.groups():
            groups = ", ".join(sorted(self.state.groups() | {CB, CORE, TUNE}))
            raise ValueRefused(f"unknown module {op.module!r} (known: {groups})")
        if not op.params:
            raise ValueRefused("set_params needs at least one key")
        # The judge has passed every value; keys already in force are left alone (no cooldown).
        same = set(unchanged_keys(self.view(ctx.step), op))
        params = {k: v for k, v in op.params.items() if k not in same} or {}
        payload = self.state.apply(op.module, params, ctx.env, ctx.step) if params else {}
        if op.lock and op.source == "human":
            for key in op.params:
                self.locks[key] = {"actor": op.actor or "human", "step": ctx.step, "ts": time.time()}
            self._save_locks()
        return payload

    def _load_tune(self) -> Any:
        try:
            from .modules.tune import TuneModule
        except ImportError as e:
            raise ValueRefused(f"tune is unavailable ({e}); install it with: pip install 'hotcb[tune]'") from None
        module = TuneModule(self)
        self.modules[TUNE] = module
        return module

    def _resume_tune(self) -> None:
        """A run directory where tune was on (hotcb.tune.json): continue its study in this process."""
        saved = read_json(self.run.root / TUNE_FILE, None)
        if not isinstance(saved, dict) or saved.get("mode") in (None, "off"):
            return
        try:
            self._load_tune()
        except Exception as e:  # without optuna the run still trains; the refusal is logged
            log.warning("hotcb: tune was enabled in %s but cannot resume: %s", self.run.root, e)

    # ------------------------------------------------------------------ records and files
    def _record(self, op: HotOp, ctx: ApplyContext, decision: str, *, payload: dict[str, Any] | None = None,
                error: str | None = None) -> dict[str, Any]:
        extra = dict(op.extra)
        if op.target is not None:
            extra["target"] = op.target.to_dict()
        if op.at_step is not None:
            extra["at_step"] = op.at_step
        if op.lock:
            extra["lock"] = True
        entry = {
            "cmd_id": op.cmd_id, "module": op.module, "op": op.op, "decision": decision, "step": ctx.step,
            "epoch": ctx.epoch, "event": ctx.event, "id": op.id, "source": op.source, "actor": op.actor,
            "reason": op.reason, "params": op.params, "payload": payload, "error": error,
        }
        if not self.is_writer:
            self.ledger.cmd_ids.add(op.cmd_id)
            return entry
        return self.ledger.record(**entry, extra=extra)

    def _record_refusal(self, cmd_id: str, rec: dict[str, Any] | None, reason: str, ctx: ApplyContext,
                        raw: str | None = None) -> None:
        rec = rec or {}

        def s(k: str) -> Any:
            v = rec.get(k)
            return v if isinstance(v, (str, type(None))) else repr(v)

        extra = {"raw": raw[:500]} if raw is not None and not rec else None
        if not self.is_writer:
            self.ledger.cmd_ids.add(cmd_id)
            return
        self.ledger.record(
            cmd_id=cmd_id, module=s("module"), op=s("op"), decision="rejected", step=ctx.step,
            epoch=ctx.epoch, event=ctx.event, id=s("id"), source=s("source"), actor=s("actor"),
            reason=s("reason"), params=rec.get("params") if isinstance(rec.get("params"), dict) else None,
            error=reason, extra=extra,
        )

    def _record_restore(self, knobs: dict[str, Any], origin: str, env: dict[str, Any] | None) -> None:
        """The knob values a resume re-applied, configured (old) -> live (new). Not a change anyone
        asked for: recipes leave it out (``hotcb.recipe.is_replayable``)."""
        op = HotOp(module=CORE, op="restore", cmd_id=f"restore-{self.session}-{uuid.uuid4().hex[:12]}",
                   source="kernel", actor="resume",
                   reason=f"knob values re-applied after a checkpoint load (from the {origin})")
        ctx = ApplyContext(self.step, self.epoch, ["resume"], dict(env or {}))
        self._record(op, ctx, "applied", payload={"knobs": knobs, "from": origin})

    def _callback_failed(self, cb: Any, event: str, step: int, tb: str) -> None:
        # Attributed to whoever put the callback there (source) and to the callback (actor).
        op = HotOp(module=CB, op="handle", id=cb.id, cmd_id=f"cb-error-{cb.id}-{uuid.uuid4().hex[:12]}",
                   source=self._cb_loaders.get(cb.id, "human"), actor=cb.id,
                   reason=f"callback raised during {event}; disabled")
        ctx = ApplyContext(step, self.epoch, [event], {})
        self._record(op, ctx, "failed", error=f"{cb.last_error}\n{tb}")
        self._publish_actuators()
        self.raise_alert("callback_error", f"callback {cb.id} raised and was disabled: {cb.last_error}")

    def raise_alert(self, kind: str, message: str, metric: str | None = None, value: Any = None) -> None:
        if self.is_writer:
            append_line(self.run.root / ALERTS, {
                "ts": time.time(), "step": self.step, "kind": kind, "metric": metric, "value": value,
                "message": message, "source": "kernel",
            })

    def _internal_error(self, e: Exception) -> None:
        self.internal_errors += 1
        self.last_internal_error = f"{type(e).__name__}: {str(e)[:500]}"
        now = time.monotonic()
        if now >= self._next_error_log:  # at most one traceback a minute: a full disk fails every step
            self._next_error_log = now + 60.0
            log.exception("hotcb: internal error in kernel.apply (training continues; %d so far)", self.internal_errors)
        try:
            self._write_status(force=True)
        except Exception:
            pass

    def _load_locks(self) -> dict[str, dict[str, Any]]:
        d = read_json(self.run.locks, {})
        return {k: v for k, v in d.items() if isinstance(v, dict)} if isinstance(d, dict) else {}

    def _save_locks(self) -> None:
        if self.is_writer:
            write_json_atomic(self.run.locks, self.locks)

    def _load_reschedules(self) -> dict[str, int]:
        out = {}
        for e in self.ledger.history:
            if e.get("op") == "reschedule":
                target = (e.get("payload") or {}).get("cmd_id")
                at = ((e.get("payload") or {}).get("at_step") or {}).get("new")
                if isinstance(target, str) and isinstance(at, int):
                    out[target] = at
        return out

    def _publish_schedule(self) -> None:
        if self.is_writer:
            pending = sorted((op.to_command() for op in self.scheduled.values()),
                             key=lambda c: (c.get("at_step") or 0, c.get("ts") or 0))
            write_json_atomic(self.run.schedule, {"step": self.step, "pending": pending})

    def _publish_actuators(self) -> None:
        if not self.is_writer:
            return
        write_json_atomic(self.run.actuators, {
            "step": self.step,
            "wall_time": time.time(),
            "actuators": self.state.describe_all(),
            "callbacks": self.cb.describe(),
            "locks": self.locks,
            "guard": self.guard.to_dict(),
            "code_policy": self.code.to_dict(),
            "modules": sorted(self.state.groups() | {CB, CORE, TUNE, RESCUE}),
        })

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "host": socket.gethostname(), "session": self.session,
            "step": self.step, "epoch": self.epoch, "wall_time": time.time(), "started_at": self._started,
            "paused": self.paused, "stop_requested": self.stop_requested, "closed": self.closed,
            "freeze_mode": self.freeze.mode, "freeze_source": self.freeze.source, "steps_per_s": self.steps_per_s,
            "replay": self.player.status() if self.player else None,
            "scheduled": len(self.scheduled), "commands_file_resets": self._commands.reset_count,
            "internal_errors": self.internal_errors, "last_internal_error": self.last_internal_error,
            "max_steps": self.max_steps, "snapshots": self.snapshots.steps(),
            "rank": self.dist.rank if self.dist else 0, "world_size": self.dist.world_size if self.dist else 1,
            "heartbeat_interval_s": self.status_interval_s,
            "rescue": self.modules[RESCUE].describe(),  # rescue (issue 13)
        }

    def _write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_status:
            return
        self._next_status = now + self.status_interval_s
        if self._rate_mark is not None and now > self._rate_mark[0]:
            dt = now - self._rate_mark[0]
            if dt >= 0.2:
                self.steps_per_s = round((self.step - self._rate_mark[1]) / dt, 3)
                self._rate_mark = (now, self.step)
        else:
            self._rate_mark = (now, self.step)
        if self.is_writer:
            write_json_atomic(self.run.status, self.status())


def _has_knobs(state: Any) -> bool:
    """Whether a checkpoint's hotcb state carries knob values (else the ledger supplies them)."""
    return isinstance(state, dict) and isinstance(state.get("knobs"), dict)


def _detect_distributed() -> Any:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from .distributed import DistributedSync

        return DistributedSync()
    return None
