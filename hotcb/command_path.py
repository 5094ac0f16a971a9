"""``CommandPath``: the one way an op becomes a decision.

It reads new lines of ``hotcb.commands.jsonl``, parses each, holds scheduled ones, fires due
ones and recipe entries, judges every op through ``hotcb.judge.judge``, routes it to its module,
and writes exactly one ledger decision per command. A decision that cannot be written (a full
disk) stays pending in the ledger: nothing new is read until it is, and the lines after it are
read again then, so none is lost or decided twice. One bad line never wedges the stream.
"""

from __future__ import annotations

import errno
import logging
import uuid
from typing import TYPE_CHECKING, Any

from .actuators.actuator import ValueRefused
from .filewatch import RungWatch
from .jsonl import JsonlTail, UnsafeFile
from .judge import Refusal, is_human, judge
from .knob_ops import KnobOps
from .modules import ApplyContext
from .modules.callbacks import CallbackLoadError
from .ops import (
    CB,
    RESCUE,
    CommandError,
    HotOp,
    Source,
    auto_cmd_id,
    cmd_id_from_head,
    parse_command,
    valid_cmd_id,
)

if TYPE_CHECKING:
    from .kernel import HotKernel

log = logging.getLogger("hotcb")
Line = tuple[int, str, Any, "str | None"]  # offset, raw text, parsed value, parse error
# Write errors that pass (space freed, a disk remounted): a person's command waits them out.
TRANSIENT_ERRNOS = frozenset(
    c for c in (getattr(errno, n, None) for n in ("ENOSPC", "EROFS", "EDQUOT", "EAGAIN", "EINTR")) if c is not None)


class CommandPath:
    def __init__(self, kernel: HotKernel) -> None:
        self.kernel = kernel
        self.tail = JsonlTail(kernel.run.commands)
        # Whether the file may have changed, known without a system call (a ring from a writer in
        # this process, the kernel's cadence); None: a stat on every step (``command_check_s`` 0).
        self.watch = RungWatch(kernel.run.commands) if kernel.config.command_check_s > 0 else None
        self.knobs = KnobOps(kernel.state, kernel.locks)
        # Who loaded each callback by command (its failures are attributed to them); a callback
        # added in code was put there by the script's author, a human.
        self.cb_loaders: dict[str, str] = {}
        self.held: str | None = None  # why a person's command line waits for a transient write error
        self._line_op = False  # the op being processed came from a commands-file line
        self._handlers = 0  # handlers running now (one may submit an op of its own)

    # ------------------------------------------------------------------ reading
    def poll(self, ctx: ApplyContext, force: bool = False) -> None:
        """Single process: decide the new lines. With the watch, nothing is looked at unless it
        was rung (no system call); else (or ``force``: a paused run) one ``stat``."""
        watch, pending = self.watch, self.kernel.ledger.pending
        if watch is not None and not force:
            if not watch.dirty and not pending and self.held is None:
                return
            watch.dirty = False  # cleared before the file is read: a change made meanwhile raises it again
        if not self.tail.changed() and not pending and self.held is None:
            return
        self.decide_lines(self.read_lines(), ctx, rewind=True)
        if watch is not None and self.tail.size_seen == -1:
            watch.dirty = True  # lines left to read again (a capped read, a held or pending decision)

    def look(self) -> None:
        """The kernel's cadence (``command_check_s``): this step looks at the file (one ``stat``)."""
        if self.watch is not None:
            self.watch.dirty = True

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()

    def read_lines(self) -> list[Line]:
        ledger = self.kernel.ledger
        if ledger.pending and not ledger.flush():
            return []  # decisions still held: read nothing new until they are written
        self.held = None  # a held command line is read (and tried) again now
        resets = self.tail.reset_count
        try:
            lines = self.tail.read_new()
        except UnsafeFile as e:  # a FIFO, a link, a directory: recorded once, looked at again when replaced
            self.kernel.files.refuse(self.tail.path, e)
            return []
        self.kernel.files.clear(self.tail.path)
        if self.tail.reset_count != resets:
            log.warning("hotcb: %s was truncated or replaced; re-reading it from the start", self.tail.path)
            self.kernel.publish_status()
        return [(ln.offset, ln.raw, ln.value, ln.error) for ln in lines]

    def decide_lines(self, lines: list[Line], ctx: ApplyContext, rewind: bool) -> None:
        """``rewind``: this process read the lines, so a held decision re-reads those after it."""
        for i, (offset, raw, value, error) in enumerate(lines):
            try:
                self._line_op = True
                self._handle_line(offset, raw, value, error, ctx)
            except Exception as e:  # one line never wedges the stream: it gets a decision
                self._handle_line_error(offset, raw, value, e, ctx)
            finally:
                self._line_op = False
            if self.held is not None:  # this very line is read again at the next poll
                if rewind:
                    self.tail.offset = offset
                    self.tail.size_seen = -1
                break
            if self.kernel.ledger.pending:
                # Its decision could not be written (a full disk): it stays held and is retried
                # first; the lines after it are read again then, none is lost or decided twice.
                if rewind and i + 1 < len(lines):
                    self.tail.offset = lines[i + 1][0]
                    self.tail.size_seen = -1
                break

    def _handle_line_error(self, offset: int, raw: str, value: Any, e: Exception, ctx: ApplyContext) -> None:
        given = value.get("cmd_id") if isinstance(value, dict) else cmd_id_from_head(raw)
        cmd_id = given if valid_cmd_id(given) else auto_cmd_id(raw, offset)
        if not self.kernel.ledger.has(cmd_id):
            self.record_refusal(cmd_id, None, f"could not be handled: {type(e).__name__}: {str(e)[:300]}", ctx, raw=raw)

    def _handle_line(self, offset: int, raw: str, value: Any, error: str | None, ctx: ApplyContext) -> None:
        ledger, schedule = self.kernel.ledger, self.kernel.schedule
        fallback = auto_cmd_id(raw, offset)
        if error is not None:
            # Too long, too deep or not JSON: the writer waiting on its cmd_id hears it under that id.
            cmd_id = cmd_id_from_head(raw) or fallback
            if not ledger.has(cmd_id):
                self.record_refusal(cmd_id, None, error, ctx, raw=raw)
            return
        try:
            op = parse_command(value)
        except CommandError as e:
            given = value.get("cmd_id") if isinstance(value, dict) else None
            # A usable id of its own keeps one refusal per command; anything else gets the line's id
            # (the refusal then says the id is malformed).
            cmd_id = given if valid_cmd_id(given) else fallback
            if not ledger.has(cmd_id):
                self.record_refusal(cmd_id, value if isinstance(value, dict) else None, str(e), ctx, raw=raw)
            return
        if ledger.has(op.cmd_id) or op.cmd_id in schedule:
            return
        if schedule.hold(op, self.kernel.step, ctx.events):
            self.kernel.publish_schedule()
            return
        self.process(op, ctx)

    # ------------------------------------------------------------------ ops whose time came
    def fire_scheduled(self, ctx: ApplyContext) -> None:
        due = self.kernel.schedule.take_due(self.kernel.step, ctx.events)
        if not due:
            return
        for op in due:
            self.process(op, ctx)
        self.kernel.publish_schedule()

    def fire_replay(self, ctx: ApplyContext) -> None:
        k = self.kernel
        player = k.freeze_switch.player
        if player is None:
            return
        for entry in player.due(k.step, ctx.events):
            rec = {
                "cmd_id": f"replay-{entry.get('cmd_id') or uuid.uuid4().hex}-{entry.get('step')}",
                "source": Source.REPLAY.value, "actor": "recipe", "reason": entry.get("reason"),
                "module": entry.get("module"), "op": entry.get("op"), "id": entry.get("id"),
                "params": entry.get("params") or {}, "target": entry.get("target"),
            }
            if entry.get("late"):
                rec["late"] = True
            if entry.get("overlay"):
                rec["overlay"] = True
            if k.ledger.has(rec["cmd_id"]):
                continue
            try:
                op = parse_command(rec)
            except CommandError as e:
                self.record_refusal(rec["cmd_id"], rec, str(e), ctx)
                continue
            # A recipe entry acts for whoever started the replay: an agent's recipe is an agent's op.
            op.extra["acting_for"] = k.freeze.source
            self.process(op, ctx, who=k.freeze.source)
        if player.done:
            k.publish_status()

    # ------------------------------------------------------------------ deciding one op
    def process(self, op: HotOp, ctx: ApplyContext, who: str | None = None) -> dict[str, Any]:
        """Judge, then apply: the one path every op takes, whatever wrote it."""
        refused = op.extra.get("refused")
        if refused:  # the tool surface already refused it: recorded, never applied
            return self.record(op, ctx, "rejected", error=str(refused))
        who = who or op.source
        if who == Source.REPLAY:
            who = Source.HUMAN  # a recipe line written by hand into the commands file: its writer's
        k = self.kernel
        view = k.view(ctx.step)
        verdict: Refusal | None = judge(op, who, view)
        if verdict is not None:
            return self.record(op, ctx, verdict.decision.value, error=verdict.reason)
        try:
            if op.op == "set_params" and op.module in k.state.groups():  # the rescue: a pre-change snapshot
                k.modules[RESCUE].before_change(op, ctx)
            module = k.module_for(op.module)
            if k.is_writer:
                self._begin(op, ctx)  # durable before the handler: a crash from here is "interrupted"
            self._handlers += 1
            try:
                payload = module.handle(op, ctx) if module is not None else self.knobs.handle(op, ctx, view, k.is_writer)
            finally:
                self._handlers -= 1
        except ValueRefused as e:  # refused before it changed anything: nothing to publish
            return self.record(op, ctx, "rejected", error=str(e))
        except CallbackLoadError as e:
            return self._decided(op, ctx, "failed", error=str(e))
        except OSError as e:
            if self._hold(op, who, e):
                return {"cmd_id": op.cmd_id, "decision": "held", "error": self.held}
            return self._decided(op, ctx, "failed", error=f"{type(e).__name__}: {str(e)[:500]}")
        except BaseException as e:  # user code (callbacks) may raise even SystemExit
            return self._decided(op, ctx, "failed", error=f"{type(e).__name__}: {str(e)[:500]}")
        if op.module == CB and op.op == "load" and op.id:
            self.cb_loaders[op.id] = op.source
        return self._decided(op, ctx, "applied", payload=payload)

    def _begin(self, op: HotOp, ctx: ApplyContext) -> None:
        """The op's intent on file. An intents file that is not a regular file (put there while
        the run goes on) is refused once like any run file, and each op fails until a regular
        file is back; the first intent written then clears the refusal."""
        k = self.kernel
        try:
            k.intents.begin(op, ctx)
        except UnsafeFile as e:
            k.files.refuse(k.intents.path, e)
            raise
        k.files.clear(k.intents.path)

    def _decided(self, op: HotOp, ctx: ApplyContext, decision: str, *, payload: dict[str, Any] | None = None,
                 error: str | None = None) -> dict[str, Any]:
        """The handler ran: its decision goes to the ledger first, then the files it changed are
        published (a crash between handler and ledger is then as short as it can be)."""
        entry = self.record(op, ctx, decision, payload=payload, error=error)
        if self.kernel.is_writer and not self.kernel.ledger.pending and not self._handlers:
            self.kernel.intents.compact()  # every intent on file is decided now (no handler is running)
        try:
            self.kernel.publish_actuators()
        except OSError as e:  # decided and recorded; the file is written again at the next change
            self.kernel.report_error(e)
        return entry

    def _hold(self, op: HotOp, who: str, e: OSError) -> bool:
        """A person's command from the commands file that met a transient write error (a full or
        read-only disk): no decision now; its line is read again at the next poll, as the
        ledger's own held writes are retried."""
        if not (self._line_op and is_human(who) and e.errno in TRANSIENT_ERRNOS and self.kernel.dist is None):
            return False
        self.held = f"{type(e).__name__}: {e}"
        self.kernel.note_error(f"command {op.cmd_id} held: {self.held}; retried at the next poll")
        return True

    # ------------------------------------------------------------------ the ledger
    def record(self, op: HotOp, ctx: ApplyContext, decision: str, *, payload: dict[str, Any] | None = None,
               error: str | None = None) -> dict[str, Any]:
        """``op``'s one decision, in the ledger (a non-writing rank only notes its id)."""
        extra = dict(op.extra)
        if op.target is not None:
            extra["target"] = op.target.to_dict()
        if op.at_step is not None:
            extra["at_step"] = op.at_step
        if op.lock:
            extra["lock"] = True
        if op.evidence is not None:
            extra["evidence"] = op.evidence.to_dict()  # what an automated decision rested on
        entry = {
            "cmd_id": op.cmd_id, "module": op.module, "op": op.op, "decision": decision, "step": ctx.step,
            "epoch": ctx.epoch, "event": ctx.event, "id": op.id, "source": str(op.source), "actor": op.actor,
            "reason": op.reason, "params": op.params, "payload": payload, "error": error,
        }
        ledger = self.kernel.ledger
        if not self.kernel.is_writer:
            ledger.cmd_ids.add(op.cmd_id)
            return entry
        self.kernel.flush_metrics()  # a reader of this decision finds the metrics that led to it
        return ledger.record(**entry, extra=extra)

    def record_refusal(self, cmd_id: str, rec: dict[str, Any] | None, reason: str, ctx: ApplyContext,
                       raw: str | None = None) -> None:
        """A refusal for a line that never became an op (its fields as given, made safe)."""
        rec = rec or {}

        def s(k: str) -> Any:
            v = rec.get(k)
            return v if isinstance(v, (str, type(None))) else repr(v)

        extra = {"raw": raw[:500]} if raw is not None and not rec else None
        ledger = self.kernel.ledger
        if not self.kernel.is_writer:
            ledger.cmd_ids.add(cmd_id)
            return
        self.kernel.flush_metrics()
        ledger.record(
            cmd_id=cmd_id, module=s("module"), op=s("op"), decision="rejected", step=ctx.step,
            epoch=ctx.epoch, event=ctx.event, id=s("id"), source=s("source"), actor=s("actor"),
            reason=s("reason"), params=rec.get("params") if isinstance(rec.get("params"), dict) else None,
            error=reason, extra=extra,
        )

    def callback_failed(self, cb: Any, event: str, step: int, tb: str) -> None:
        """A callback raised (or ran late) and was disabled: a ``failed`` decision and an alert,
        attributed to whoever put the callback there (source) and to the callback (actor)."""
        k = self.kernel
        op = HotOp(module=CB, op="handle", id=cb.id, cmd_id=f"cb-error-{cb.id}-{uuid.uuid4().hex[:12]}",
                   source=self.cb_loaders.get(cb.id, Source.HUMAN), actor=cb.id,
                   reason=f"callback raised during {event}; disabled")
        self.record(op, ApplyContext(step, k.epoch, [event], {}), "failed", error=f"{cb.last_error}\n{tb}")
        k.publish_actuators()
        k.raise_alert("callback_error", f"callback {cb.id} raised and was disabled: {cb.last_error}")
