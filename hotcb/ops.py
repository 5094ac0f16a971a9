"""Commands as data: ``HotOp`` (one normalized operation) and ``CallbackTarget``.

A command line in ``hotcb.commands.jsonl`` becomes a ``HotOp`` through ``parse_command``; a line
that cannot become one raises ``CommandError`` with the reason the ledger records.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInput
from .vocabulary import Source as Source  # public here too, where it was first defined

# The sources a command may claim (every one but the kernel's own).
SOURCES = tuple(s.value for s in Source if s is not Source.KERNEL)
# Modules with their own handler; any other identifier is a knob group (opt, loss, custom).
CB, TUNE, CORE, RESCUE = "cb", "tune", "core", "rescue"
KNOB_OPS = ("set_params",)
CB_OPS = ("load", "unload", "enable", "disable", "set_params")
CORE_OPS = (
    "freeze", "unfreeze", "pause", "resume", "stop", "checkpoint", "rollback",
    "lock", "unlock", "cancel", "reschedule",
)
TUNE_OPS = ("enable", "disable", "set_recipe")
TUNE_RECORDS = ("verdict",)  # written by tune itself: a trial's outcome, so the ledger alone tells its story
RESCUE_OPS = ("enable", "disable", "rollback")  # hotcb.rescue: the divergence watch and its rollback
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_KNOWN_KEYS = {
    "cmd_id", "ts", "source", "actor", "reason", "module", "op", "id", "params", "target",
    "at_step", "at_event", "lock", "enabled", "evidence",
}
NON_FINITE_TAGS = ("nan", "inf", "-inf")  # hotcb.codec's tags: a non-finite reading as JSON carries it


class CommandError(InvalidInput, ValueError):
    """A command line that cannot be turned into an operation."""


@dataclass
class CallbackTarget:
    """Where a callback's code lives: ``kind`` = ``module`` (import path) or ``python_file``."""

    kind: str
    path: str
    symbol: str

    @classmethod
    def from_dict(cls, d: Any) -> CallbackTarget:
        if not isinstance(d, dict):
            raise CommandError("target must be an object with kind, path, symbol")
        kind, path, symbol = d.get("kind"), d.get("path"), d.get("symbol")
        if kind not in ("module", "python_file"):
            raise CommandError(f"target.kind must be 'module' or 'python_file', got {kind!r}")
        if not isinstance(path, str) or not path or not isinstance(symbol, str) or not symbol:
            raise CommandError("target.path and target.symbol must be non-empty strings")
        if not symbol.isidentifier():
            raise CommandError(f"target.symbol is not an identifier: {symbol!r}")
        return cls(kind=kind, path=path, symbol=symbol)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "symbol": self.symbol}


@dataclass(frozen=True)
class Evidence:
    """The metric reading an automated op rested on (``{"metric", "step", "value"}``). The kernel
    checks it against the metrics it recorded itself (``hotcb.judge``): a reading it never
    recorded -- a line some other writer appended to the metrics file -- moves nothing."""

    metric: str
    step: int
    value: float | str  # a number, or a non-finite tag

    @classmethod
    def from_dict(cls, d: Any) -> Evidence:
        if not isinstance(d, dict):
            raise CommandError("evidence must be an object {metric, step, value}")
        metric, step, value = d.get("metric"), d.get("step"), d.get("value")
        if not isinstance(metric, str) or not 0 < len(metric) <= 200:
            raise CommandError("evidence.metric must be a metric name (at most 200 characters)")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise CommandError(f"evidence.step must be a non-negative integer, got {step!r}")
        if isinstance(value, bool) or not (isinstance(value, (int, float)) or value in NON_FINITE_TAGS):
            raise CommandError("evidence.value must be a number or one of " + ", ".join(NON_FINITE_TAGS))
        return cls(metric, step, float(value) if isinstance(value, int) else value)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "step": self.step, "value": self.value}

    def __str__(self) -> str:
        return f"{self.metric}={self.value!r} at step {self.step}"


@dataclass
class HotOp:
    """One operation, as the kernel routes it."""

    module: str
    op: str
    id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    target: CallbackTarget | None = None
    cmd_id: str = ""
    ts: float = 0.0
    source: Source = Source.HUMAN
    actor: str | None = None
    reason: str | None = None
    at_step: int | None = None
    at_event: str | None = None
    lock: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    evidence: Evidence | None = None  # the reading an automated op rested on (optional)

    def __post_init__(self) -> None:
        self.source = Source(self.source)  # a plain string from a file or a caller: typed here, once

    def to_command(self) -> dict[str, Any]:
        """The command-file record for this op (what tools and the CLI append)."""
        rec: dict[str, Any] = {
            "cmd_id": self.cmd_id or new_cmd_id(),
            "ts": self.ts or time.time(),
            "source": self.source,
            "actor": self.actor,
            "reason": self.reason,
            "module": self.module,
            "op": self.op,
        }
        if self.id is not None:
            rec["id"] = self.id
        if self.params:
            rec["params"] = self.params
        if self.target is not None:
            rec["target"] = self.target.to_dict()
        if self.at_step is not None:
            rec["at_step"] = self.at_step
        if self.at_event is not None:
            rec["at_event"] = self.at_event
        if self.lock:
            rec["lock"] = True
        if self.evidence is not None:
            rec["evidence"] = self.evidence.to_dict()
        rec.update(self.extra)
        return rec


def new_cmd_id() -> str:
    return uuid.uuid4().hex


# The characters that matter when walking a line's head by depth without parsing it.
_SPECIAL = re.compile(r'["{}\[\]]')
_COLON = re.compile(r'\s*:\s*"')
HEAD_SCAN = 64 << 10  # the bytes of a refused line searched for its writer's cmd_id


def valid_cmd_id(value: Any) -> bool:
    """The one rule for a command id: a non-empty string of at most 128 characters."""
    return isinstance(value, str) and bool(value.strip()) and len(value) <= 128


def _string_end(text: str, start: int) -> int:
    """The index of the quote closing the JSON string opened at ``start`` (-1: none). Linear: each
    backslash is counted once, by the quote that follows it."""
    j = start + 1
    while True:
        j = text.find('"', j)
        if j < 0:
            return -1
        k = j - 1
        while k > start and text[k] == "\\":
            k -= 1
        if (j - 1 - k) % 2 == 0:  # an even run of backslashes: this quote is not escaped
            return j
        j += 1


def cmd_id_from_head(raw: str) -> str | None:
    """The top-level ``cmd_id`` of a line refused before it became a command (too long, nested
    too deep, not JSON), read from its first ``HEAD_SCAN`` characters without parsing the rest,
    so the writer waiting on that id gets its refusal under it. None: no valid id there.
    Linear in the head, whatever it holds."""
    head = raw[:HEAD_SCAN]
    depth, i = 0, 0
    while (m := _SPECIAL.search(head, i)) is not None:
        i = m.start()
        if head[i] != '"':
            depth += 1 if head[i] in "{[" else -1
            i += 1
            continue
        end = _string_end(head, i)
        if end < 0:
            return None
        if depth == 1 and head[i:end + 1] == '"cmd_id"':
            colon = _COLON.match(head, end + 1)
            if colon is None:
                return None
            value_end = _string_end(head, colon.end() - 1)
            if value_end < 0 or value_end - colon.end() > 1024:
                return None
            try:
                text = json.loads(head[colon.end() - 1:value_end + 1])
            except ValueError:
                return None
            return text if valid_cmd_id(text) else None
        i = end + 1
    return None


def auto_cmd_id(raw: str, offset: int) -> str:
    """A stable id for a line that carries none (or cannot be parsed): same line, same id."""
    return "auto-" + hashlib.sha1(f"{offset}:{raw}".encode()).hexdigest()[:20]


# complexity: a command's fields validated in order, each with its own refusal
def parse_command(rec: Any, fallback_id: str | None = None) -> HotOp:  # noqa: C901
    """Normalize one command record; raise ``CommandError`` with a reason otherwise."""
    if not isinstance(rec, dict):
        raise CommandError(f"command must be a JSON object, got {type(rec).__name__}")
    cmd_id = rec.get("cmd_id", fallback_id)
    if cmd_id is None:
        # Exactly once needs an id of the writer's own: one derived from the line's position
        # would change if the file were rewritten, and the command would apply twice.
        raise CommandError("cmd_id is required (a unique string per command)")
    if not valid_cmd_id(cmd_id):
        raise CommandError("cmd_id must be a non-empty string of at most 128 characters")
    module, op = rec.get("module"), rec.get("op")
    if not isinstance(module, str) or not _MODULE_RE.match(module):
        raise CommandError(f"missing or invalid 'module': {module!r}")
    if not isinstance(op, str) or not op:
        raise CommandError(f"missing or invalid 'op': {op!r}")
    source = rec.get("source", Source.HUMAN)
    if source not in SOURCES:
        raise CommandError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    params = rec.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise CommandError("params must be an object")
    target = CallbackTarget.from_dict(rec["target"]) if rec.get("target") is not None else None
    at_step = rec.get("at_step")
    if at_step is not None and (isinstance(at_step, bool) or not isinstance(at_step, int) or at_step < 0):
        raise CommandError(f"at_step must be a non-negative integer, got {at_step!r}")
    at_event = rec.get("at_event")
    if at_event is not None and not isinstance(at_event, str):
        raise CommandError("at_event must be a string")
    op_id = rec.get("id")
    if op_id is not None and not isinstance(op_id, str):
        raise CommandError("id must be a string")
    for key in ("actor", "reason"):
        if rec.get(key) is not None and not isinstance(rec.get(key), str):
            raise CommandError(f"{key} must be a string")
    ts = rec.get("ts", 0.0)
    evidence = Evidence.from_dict(rec["evidence"]) if rec.get("evidence") is not None else None
    return HotOp(
        module=module,
        op=op,
        id=op_id,
        params=params,
        target=target,
        cmd_id=cmd_id,
        ts=float(ts) if isinstance(ts, (int, float)) else 0.0,
        source=source,
        actor=rec.get("actor"),
        reason=rec.get("reason"),
        at_step=at_step,
        at_event=at_event,
        lock=bool(rec.get("lock", False)),
        extra={k: v for k, v in rec.items() if k not in _KNOWN_KEYS},
        evidence=evidence,
    )


# complexity: one keyword per command field, all optional but module and op
def make_command(  # noqa: PLR0913
    module: str,
    op: str,
    params: dict[str, Any] | None = None,
    *,
    id: str | None = None,
    source: str = Source.HUMAN,
    actor: str | None = None,
    reason: str | None = None,
    target: CallbackTarget | dict[str, Any] | None = None,
    at_step: int | None = None,
    lock: bool = False,
    cmd_id: str | None = None,
) -> dict[str, Any]:
    """Build a well-formed command record (validated by parsing it back)."""
    if isinstance(target, dict):
        target = CallbackTarget.from_dict(target)
    hop = HotOp(
        module=module, op=op, id=id, params=dict(params or {}), target=target,
        cmd_id=cmd_id or new_cmd_id(), ts=time.time(), source=source, actor=actor,
        reason=reason, at_step=at_step, lock=lock,
    )
    rec = hop.to_command()
    parse_command(rec)
    return rec
