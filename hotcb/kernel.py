"""``HotKernel``: the control plane's half that lives inside the training process.

Call ``kernel.apply(env=..., events=[...])`` at each safe point (after ``optimizer.step()``).
With nothing new it costs one ``stat`` of the commands file. New command lines are parsed,
checked against freeze mode and the guard, applied, and each gets exactly one ledger decision.
Nothing in here may raise into the training loop: every failure becomes a recorded decision.

The kernel coordinates objects that own their parts: the command path (reading, judging,
deciding, ledgering: ``command_path.py``), the watched files (``hotcb.freeze.json``,
``hotcb.yaml``: ``watched.py``), the freeze switch, the schedule, the locks, what it publishes
for readers (status and knobs: ``run_publisher.py``), the errors it caught
(``internal_errors.py``), its part of a framework checkpoint (``knob_resume.py``), and its
modules -- ``core`` (``core_ops.py``), ``cb``, ``rescue`` and, once enabled, ``tune``
(``tune/loader.py``) -- each a handler of its ops, reached through ``module_for``. The judge sees
the run through ``live_view.py``.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from .actuators.state import MutableState
from .checkpoint import Snapshots, live_knob_values
from .collector import MetricsCollector
from .command_path import CommandPath, Line
from .core_ops import CoreOps
from .distributed import launched_as_other_rank, rank_unknown_yet, running_distributed
from .freeze import FreezeState
from .freeze_switch import FreezeSwitch
from .intents import Intents
from .internal_errors import InternalErrors
from .jsonl_write import append_line
from .judge import CodePolicy, View
from .kernel_config import KernelConfig
from .knob_resume import KnobResume
from .ledger import Ledger
from .live_view import live_view
from .locks import KnobLocks
from .modules import ApplyContext
from .modules.callbacks import CallbackModule
from .ops import CB, CORE, TUNE, HotOp, Source
from .recent_record import RecentRecordReader
from .recipe import RecipePlayer
from .refused_files import RefusedFiles
from .rescue import RESCUE, Rescue
from .run_publisher import RunPublisher
from .rundir import ALERTS, CHECKPOINTS, RunDir
from .runlock import RunLock
from .schedule import Schedule
from .tune.loader import load_tune, resume_tune
from .watched import WatchedFiles


class HotKernel:
    # complexity: HotKernel's public keyword arguments (README); the rest live in KernelConfig
    def __init__(  # noqa: PLR0913
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
    ) -> None:
        """``options`` are ``KernelConfig`` fields (guard, allowed_callback_modules, checkpoint_every,
        max_steps, ...), applied over ``config``; the rest are the loop's collaborators."""
        self.config = cfg = KernelConfig.build(config, options)
        self.run = RunDir(run_dir)
        self.state = mutable_state if mutable_state is not None else MutableState()
        self.debounce_steps = max(1, int(debounce_steps))
        self.guard = cfg.guard
        self.collector = metrics_collector or MetricsCollector(self.run.metrics, flush_s=cfg.metrics_flush_s)
        self._metrics_error = getattr(self.collector, "take_error", None)  # a collector of the script's may lack it
        self.features = features
        self.max_steps = cfg.max_steps
        self.session = uuid.uuid4().hex[:8]
        self.dist = distributed if distributed is not None else running_distributed()
        # Built before the process group (Lightning/HF start it in fit/train): the launcher's
        # environment tells a non-zero rank not to write until ``distributed.attach`` runs.
        self.is_writer = self.dist.rank == 0 if self.dist is not None else not launched_as_other_rank()
        # One kernel per run: the rank that owns the run's files holds it for the kernel's life
        # (raises RunLocked, naming the live holder, before anything is read or written).
        self.run_lock = RunLock(self.run.root)
        if self.is_writer:
            self.run_lock.acquire(self.session, defer=self.dist is None and rank_unknown_yet())

        self.step = 0
        self.epoch: int | None = None
        self.closed = False
        self.errors = InternalErrors()
        # apply() calls so far, and the wall-clock times of the next file watch, commands check,
        # knob check
        self._calls, self._next_watch, self._next_command_check = 0, 0.0, 0.0
        self._next_knob_check = 0.0

        self.intents = Intents(self.run.intents)
        started = self.intents.read()  # before the ledger: a rank that only reads sees both
        self.ledger = Ledger(self.run.ledger)
        if self.run_lock.held:  # the lock holder: nothing else writes here now
            self.run.remove_stale_tmp()
            self.intents.recover(self.ledger, started)
        else:
            self.ledger.cmd_ids.update(i.cmd_id for i in started)
        self.locks = KnobLocks(self.run.locks)
        self.schedule = Schedule(self.run.schedule, self.ledger.history)
        # Where callback code (and recipes) may come from, for every source: the judge's policy.
        self.code = CodePolicy.build(self.run.root, cfg.allowed_callback_modules, cfg.allowed_callback_dirs)
        # What the run showed and changed lately, for the judge's reason rule: read from the ledger's
        # and alerts' tails only when an op that rule covers is judged, kept until they change.
        self.recent = RecentRecordReader(self.run.root)
        self.freeze_switch = FreezeSwitch(self.code, self.ledger, self.view, self.publish_status)
        self.files = RefusedFiles(self)  # run files that are not regular files: recorded once each
        self.commands = CommandPath(self)
        self.watched = WatchedFiles(self)
        self.cb = CallbackModule(self.run.root, [Path(d) for d in self.code.dirs], on_error=self.commands.callback_failed,
                                 timeout_s=cfg.callback_timeout_s)
        for cb_id, obj in (callbacks or {}).items():
            self.cb.add(cb_id, obj)
        self.snapshots = Snapshots(
            keep=cfg.keep_checkpoints, directory=self.run.root / CHECKPOINTS if cfg.checkpoint_on_disk else None,
            rank=self.dist.rank if self.dist is not None else None,
        )
        self.snapshots.follow(self.state)  # a knob's scheduler is rolled back with the registered state
        self.knob_resume = KnobResume(self)
        self.core = CoreOps(self)
        self.modules: dict[str, Any] = {CB: self.cb, CORE: self.core}
        self.modules[RESCUE] = Rescue(self)  # divergence watch + rollback, off until enabled
        self._hooks: list[Any] = []  # the modules' per-step hooks, found once (the callbacks are dispatched apart)
        self._hooked = 0  # how many modules ``_hooks`` was found from

        self.publisher = RunPublisher(self, cfg.status_interval_s)  # before anything below may write status
        self.state.initialize()
        if isinstance(freeze, str):
            freeze = FreezeState(mode=freeze)
        if freeze is not None:
            self.freeze_switch.set(freeze, from_code=True)
        self.publish_actuators()
        self._write_status(force=True)
        if self.is_writer:  # read once above: one that is not a regular file was read as empty
            for path in (self.run.locks, self.run.intents):
                self.files.check(path)
        resume_tune(self)

    # ------------------------------------------------------------------ state others read
    @property
    def should_stop(self) -> bool:
        """True once a ``core stop`` was applied (or ``max_steps`` reached): end the loop cleanly."""
        return self.core.stop_requested

    @property
    def stop_requested(self) -> bool:
        return self.core.stop_requested

    @property
    def paused(self) -> bool:
        return self.core.paused

    @property
    def internal_errors(self) -> int:
        """Errors caught inside hotcb so far (the training run went on)."""
        return self.errors.count

    @property
    def last_internal_error(self) -> str | None:
        return self.errors.last

    @property
    def freeze(self) -> FreezeState:
        return self.freeze_switch.freeze

    @property
    def player(self) -> RecipePlayer | None:
        return self.freeze_switch.player

    @property
    def scheduled(self) -> dict[str, HotOp]:
        """The ops held for a later step or event, by cmd_id."""
        return self.schedule.ops

    # ------------------------------------------------------------------ public API
    def register_state(self, name: str, obj: Any) -> None:
        """Register an object with ``state_dict``/``load_state_dict`` for checkpoint/rollback."""
        self.snapshots.register(name, obj)

    def publish_status(self) -> None:
        """Write ``hotcb.status.json`` now, whatever ``status_interval_s`` (evals edit: a harness
        that ticks its controller at fixed steps publishes the step the controller reads), and
        the knobs if a scheduler moved them since they were last published, and the metrics
        recorded so far: whoever reads the status finds the metrics up to its step."""
        self.flush_metrics()
        self._publish_moved_knobs()
        try:
            self._write_status(force=True)
        except OSError as e:  # a full disk: the decision stands; the heartbeat writes it again later
            self.report_error(e)

    def flush_metrics(self) -> None:
        """Write the metric lines recorded so far now (they are written in batches, off the step)."""
        flush = getattr(self.collector, "flush", None)
        if callable(flush):
            try:
                flush()
            except OSError as e:  # a full disk: the lines are kept and written at a later flush
                self.report_error(e)

    def _publish_moved_knobs(self) -> None:
        """Republish the knobs when a live value moved (a scheduler): tools and rules read them."""
        if self.is_writer and self.state.moved():
            self.publish_actuators()

    def add_actuators(self, actuators: list[Any]) -> None:
        """Add knobs after start-up (adapters discover optimizers at fit start). A key that
        exists is re-bound to the new object (a second ``fit`` builds new optimizers)."""
        self.state.bind(actuators)
        self.publish_actuators()

    def state_dict(self) -> dict[str, Any]:
        """Knob values (live) and step, to save inside a framework checkpoint."""
        return self.knob_resume.save()

    def load_state_dict(self, state: dict[str, Any] | None, env: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call after a framework checkpoint load: re-applies knob values (the state's, else the
        ledger's), since loading optimizer state would otherwise silently reset lr. The values
        re-applied are recorded as one ``core restore`` ledger entry (source ``kernel``)."""
        return self.knob_resume.load(state, env)

    def add_callback(self, cb_id: str, obj: Any, enabled: bool = True) -> None:
        self.cb.add(cb_id, obj, enabled)
        self.commands.cb_loaders.pop(cb_id, None)  # put there in code: the script author's
        self.publish_actuators()

    def register_module(self, name: str, module: Any) -> None:
        """Route ops of ``module == name`` to ``module.handle(op, ctx)`` (e.g. tune)."""
        self.modules[name] = module
        self._hooked = -1  # its per-step hook (if any) is found at the next step

    def module_for(self, name: str) -> Any:
        """The handler of ops for module ``name`` (tune loaded on first use); ``None``: a knob group."""
        module = self.modules.get(name)
        if module is None and name == TUNE:
            module = load_tune(self)
        return module

    def submit(self, op: HotOp, env: dict[str, Any] | None = None) -> dict[str, Any]:
        """Apply an op produced inside the training process (e.g. by tune) now, with a ledger
        entry; it passes the judge like any command from its source."""
        if not op.cmd_id:
            op.cmd_id = f"{op.source}-{uuid.uuid4().hex}"
        ctx = ApplyContext(self.step, self.epoch, ["internal"], env or {})
        return self.commands.process(op, ctx)

    def apply(self, env: dict[str, Any] | None = None, events: list[str] | None = None, **kw: Any) -> None:
        """The safe point. Never raises into the training loop."""
        try:
            env = dict(env) if env else {}
            if kw:
                env.update(kw)
            self._apply(env, list(events) if events else ["train_step_end"])
        except Exception as e:  # the run matters more than this call
            self.report_error(e)

    def view(self, step: int | None = None) -> View:
        """The run as the judge sees it now (live knob values, locks, freeze, schedule)."""
        return live_view(self, step)

    def raise_alert(self, kind: str, message: str, metric: str | None = None, value: Any = None) -> None:
        if self.is_writer:
            append_line(self.run.root / ALERTS, {
                "ts": time.time(), "step": self.step, "kind": kind, "metric": metric, "value": value,
                "message": message, "source": Source.KERNEL,
            })

    def note_error(self, reason: str | None) -> None:
        """The last thing that went wrong inside the kernel, for the status file (None: it was put right)."""
        self.errors.last = reason

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.commands.close()
            self.cb.close()
            for m in self.modules.values():
                closer = getattr(m, "close", None)
                if callable(closer) and m is not self.cb:
                    closer()
            if self.features is not None:
                self.features.close()
        finally:
            self.closed = True
            try:
                closer = getattr(self.collector, "close", None)  # its queued lines, its open metrics file
                if callable(closer):
                    try:
                        closer()
                    except OSError as e:  # a full disk: the lines stay queued for the exit's last try
                        self.report_error(e)
                self.publisher.close()
                self._write_status(force=True)
            finally:
                self.run_lock.release()

    def __enter__(self) -> HotKernel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop
    # complexity: the step's phases in order (step, epoch, metrics, commands, modules, publish): the loop read top to bottom
    def _apply(self, env: dict[str, Any], events: list[str]) -> None:  # noqa: C901, PLR0912
        step = env.get("step")
        self.step = int(step) if step is not None else self.step + 1
        if env.get("epoch") is not None:
            self.epoch = int(env["epoch"])
        env.setdefault("kernel", self)
        # Callbacks may add metrics; they go into a copy so the caller's dict is left alone.
        metrics_in = env.get("metrics")
        own = env["metrics"] = dict(metrics_in) if isinstance(metrics_in, dict) else {}
        ctx = ApplyContext(self.step, self.epoch, events, env)
        self._calls += 1

        now = time.monotonic()
        if now >= self._next_watch:
            self._next_watch = now + self.config.watch_interval_s
            self.watched.watch(ctx)
        if now >= self._next_command_check:  # another process's command: seen within command_check_s
            self._next_command_check = now + self.config.command_check_s
            self.commands.look()
        if now >= self._next_knob_check:
            self._next_knob_check = now + self.config.knob_publish_s
            self._publish_moved_knobs()
        if self._calls % self.debounce_steps == 0:
            if self.dist is None:  # ``_poll``'s single-process case, a call fewer on every step
                self.commands.poll(ctx)
            else:
                self._poll(ctx)
        if self.schedule.ops:
            self.commands.fire_scheduled(ctx)
        if self.freeze_switch.player is not None:
            self.commands.fire_replay(ctx)
        if self._hooked != len(self.modules):
            self._find_hooks()
        for hook in self._hooks:
            hook(ctx)
        if self.cb.callbacks:
            self.cb.dispatch(events, env, self.step)
        metrics = env.get("metrics")
        if metrics:
            self._record_metrics(metrics, own=metrics is own)
        if self.features is not None:
            self.features.on_step(self.step + 1)
        every = self.config.checkpoint_every
        if every and self.snapshots.objects and self.step % every == 0:
            self.snapshots.take(self.step, live_knob_values(self.state), "periodic")
        if self.max_steps is not None and self.step >= self.max_steps:
            self.core.request_stop()
        if self.core.paused and not self.core.stop_requested:
            # Paused: this step's metrics first, then the status that says so; a reader that sees
            # the pause finds every step it took in the metrics file (the pause op is decided
            # before the step's metrics are recorded, so it does not publish itself).
            self.publish_status()
        elif now >= self.publisher.heartbeat.due_at:  # the heartbeat's own test, without its three calls a step
            self._write_status()
        while self.core.paused and not self.core.stop_requested:
            time.sleep(self.config.pause_poll_s)
            self.watched.watch(ctx)
            self._poll(ctx, force=True)
            self._write_status()

    def _poll(self, ctx: ApplyContext, force: bool = False) -> None:
        if self.dist is None:
            self.commands.poll(ctx, force)
            return
        # One collective per poll, entered by every rank at the same step: rank 0's new command
        # lines and watched-file changes, so all ranks apply the same ops.
        lines, watched = self.dist.broadcast(self._read_batch if self.is_writer else None) or ([], {})
        self.watched.apply(watched, ctx)
        self.commands.decide_lines(lines, ctx, rewind=False)

    def _read_batch(self) -> tuple[list[Line], dict[str, Any]]:
        watched = self.watched.take_pending()
        return self.commands.read_lines(), watched

    def _find_hooks(self) -> None:
        self._hooked = len(self.modules)
        self._hooks = [hook for m in self.modules.values() if m is not self.cb
                       and (hook := getattr(m, "on_step", None)) is not None]

    def _record_metrics(self, metrics: dict[str, Any], own: bool = False) -> None:
        """``own``: ``metrics`` is the step's copy (``_apply``), so the knob echoes go into it."""
        if not self.is_writer:
            return
        waiting = True  # a knob may wait for its verification (the echo tells)
        if self.config.record_knobs:
            if not own:  # a callback put its own dict there: left as it is
                metrics = dict(metrics)
            waiting = self.state.echo(metrics)
        rec = self.collector.record(self.step, metrics, self.epoch)
        if rec is not None and waiting:
            self.state.verify(metrics)
        err = self._metrics_error() if self._metrics_error is not None else None
        if err is not None:  # a batch written off the step failed; its lines wait for the next write
            self.report_error(err)

    # ------------------------------------------------------------------ errors and published files
    def report_error(self, e: Exception) -> None:
        """Count, log (at most once a minute) and publish an error caught inside hotcb: the
        training run goes on. For the kernel and the trainer adapters."""
        self.errors.caught(e)
        try:
            self._write_status(force=True)
        except Exception:
            pass

    def publish_schedule(self) -> None:
        """Write ``hotcb.schedule.json`` (the ops held for later)."""
        self.schedule.publish(self.step, self.is_writer)

    def publish_actuators(self) -> None:
        """Write ``hotcb.actuators.json``: the knobs, callbacks, locks and policies in force."""
        self.publisher.publish_actuators()

    def status(self) -> dict[str, Any]:
        """The heartbeat as ``hotcb.status.json`` holds it (a ``StatusRecord``)."""
        return self.publisher.status()

    def _write_status(self, force: bool = False) -> None:
        self.publisher.write_status(force)

