"""The one judge: who may do what to a run.

Every rule about who may do what is written here, once. The kernel applies ``judge`` to every op
from every source at the moment it would act (command lines, scheduled ops, recipe and overlay
entries, ``hotcb.yaml``, the freeze file, ops made inside the training process); the tool surface
asks the same function early, over the files the kernel publishes, so a caller gets an immediate
refusal with the same reason. Nothing else decides.

Who: an op's ``source`` is what its writer declared. A recipe entry acts for whoever started the
replay (``who``), so an agent cannot launder an op through a recipe. The kinds of source:

- ``human``, ``yaml``: a person (or a file a person wrote) -- the guard's bounds only.
- ``agent``, ``rule``, ``tune``: automation -- bounds, ratio limits, cooldowns, locks, no
  human-only core op, and (agent) a reason for every op. Automation's rollback (``rescue`` or
  ``core``) needs a run the divergence detector does not call healthy: the rescue acts on a
  blow-up itself, at its step, and a model that rolls back a healthy run throws away its
  progress and cuts its lr (a 1.5B model did, "no change needed", twice in one wake). An
  automated op that names its ``evidence`` (the metric reading it rested on) is refused unless
  the kernel recorded that reading itself: the metrics file is a run file anyone may append to.
- A model (``agent``: the built-in LLM autopilot or an external MCP client) that vetoes a
  protective change -- moves a knob back within ``VETO_WINDOW_STEPS`` of the rescue's cut or a
  protective rule's change -- or rolls the run back needs a reason in its own words
  (``hotcb.reasons``): at least four words, not copied from a text the run showed (its recent
  ledger reasons, refusals and alerts: ``hotcb.recent_record``). The rules and tune are exempt:
  their reasons are templates, the same words each time they act, and they are the floor.
- ``replay``: an entry of a recipe, judged as the source that started it.

Code: whatever the source, a callback is loaded only from the places the training process
declared (``CodePolicy``): the built-in ``hotcb.callbacks`` modules, the module names it lists,
and python files inside the run directory or the directories it lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actuators.actuator import ValueRefused, validate_value
from .codec import json_number
from .divergence import Verdict
from .freeze import freeze_decision
from .guard import GuardConfig, GuardRefusal, check_knob_change
from .ledger import Decision
from .ops import (
    CB,
    CB_OPS,
    CORE,
    CORE_OPS,
    RESCUE,
    RESCUE_OPS,
    SOURCES,
    TUNE,
    TUNE_OPS,
    TUNE_RECORDS,
    CallbackTarget,
    CommandError,
    HotOp,
    parse_command,
)
from .reasons import own_words_refusal
from .recent_record import KnobChange, RecentRecord
from .vocabulary import FreezeMode, Source

# The detector's verdicts on which an agent may not roll back.
HEALTHY_VERDICTS = (Verdict.HEALTHY.value, Verdict.WARMING.value)
# Sources that speak for a person; every other source is automation.
HUMAN_SOURCES = (Source.HUMAN.value, Source.YAML.value)
# Core ops only a person may send: they decide who controls the run (or end it).
HUMAN_ONLY_CORE = frozenset({"stop", "freeze", "unfreeze", "lock", "unlock"})
# Freeze modes automation may enter or leave by itself: a replay (never ``prod``).
AUTOMATION_FREEZE_MODES = (FreezeMode.REPLAY.value, FreezeMode.REPLAY_ADJUSTED.value)
# Callback code every run may load: the built-ins.
BUILTIN_CALLBACK_PACKAGE = "hotcb.callbacks"
MAX_REASON = 2000
# Sources whose reasons are a model's words (the built-in LLM, an external MCP client): the rules
# and tune write theirs from templates, so their second firing would read as a copy of the first.
MODEL_SOURCES = (Source.AGENT.value,)
# Steps after a protective change during which moving its knob back is a veto of it.
VETO_WINDOW_STEPS = 500


def is_human(source: str | None) -> bool:
    return source in HUMAN_SOURCES


@dataclass(frozen=True)
class Refusal:
    """The judge's no: the ledger decision to record and why."""

    decision: Decision
    reason: str
    forbidden: bool = False  # not this caller's to send at all (a person's op), whatever the state

    def __str__(self) -> str:
        return self.reason


def _rejected(reason: str, forbidden: bool = False) -> Refusal:
    return Refusal(Decision.REJECTED, reason, forbidden)


@dataclass(frozen=True)
class CodePolicy:
    """Where callback code and recipes may come from, as the training process declared it."""

    root: Path
    modules: tuple[str, ...] = ()  # module names; "pkg." (trailing dot) allows a package's modules
    dirs: tuple[Path, ...] = ()

    @classmethod
    def build(cls, root: str | Path, modules: list[str] | tuple[str, ...] = (),
              dirs: list[Any] | tuple[Any, ...] = ()) -> CodePolicy:
        return cls(Path(root).resolve(), tuple(str(m) for m in modules), tuple(Path(d).resolve() for d in dirs))

    def module_allowed(self, name: str) -> bool:
        if name == BUILTIN_CALLBACK_PACKAGE or name.startswith(BUILTIN_CALLBACK_PACKAGE + "."):
            return not any(part.startswith("_") for part in name.split(".")[2:])
        return any(name == m or (m.endswith(".") and name.startswith(m)) for m in self.modules)

    def place(self, path: str) -> Path | None:
        """``path`` resolved inside the run directory or an allowed directory, else None."""
        p = Path(path)
        bases = [self.root, *self.dirs]
        candidates = [p] if p.is_absolute() else [b / p for b in bases]
        for c in candidates:
            c = c.resolve()
            if any(c == b or b in c.parents for b in bases):
                return c
        return None

    def check_target(self, target: CallbackTarget | None) -> str | None:
        if target is None:
            return "cb load needs a target {kind, path, symbol}"
        if target.symbol.startswith("_"):
            return f"target.symbol {target.symbol!r} is private"
        if target.kind == "module":
            if not self.module_allowed(target.path):
                allowed = [f"{BUILTIN_CALLBACK_PACKAGE}.*", *self.modules]
                return (f"module {target.path!r} is not an allowed callback module (allowed: "
                        f"{', '.join(allowed)}); the training process declares more with "
                        "HotKernel(allowed_callback_modules=[...])")
            return None
        if self.place(target.path) is None:
            return (f"callback file {target.path!r} is outside the run directory and the allowed "
                    "directories (HotKernel(allowed_callback_dirs=[...]))")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"modules": [f"{BUILTIN_CALLBACK_PACKAGE}.", *self.modules], "dirs": [str(d) for d in self.dirs]}

    @classmethod
    def from_dict(cls, root: str | Path, d: dict[str, Any] | None) -> CodePolicy:
        d = d or {}
        modules = [m for m in d.get("modules", []) if isinstance(m, str) and m != f"{BUILTIN_CALLBACK_PACKAGE}."]
        dirs = [x for x in d.get("dirs", []) if isinstance(x, str)]
        return cls.build(root, modules, dirs)


@dataclass
class View:
    """What the judge may look at: the run as the kernel sees it (or as its files say).

    ``knob(module, key)`` gives a knob's live description (``None``: unknown), ``knob_keys(module)``
    the keys of a group; ``groups`` the knob groups (``None``: no training process has published them yet, so knob ops are left for
    the kernel to judge); ``scheduled_source(cmd_id)`` the source of a scheduled op.
    """

    code: CodePolicy | None  # None: not published yet (the kernel judges code when the op lands)
    guard: GuardConfig = field(default_factory=GuardConfig)
    freeze_mode: str = "off"
    freeze_source: str = Source.HUMAN  # who set the freeze mode (a replay acts for its starter)
    step: int | None = None
    locks: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: frozenset[str] | None = None
    knob: Callable[[str, str], dict[str, Any] | None] = lambda module, key: None
    knob_keys: Callable[[str], list[str]] = lambda module: []
    scheduled_source: Callable[[str], str | None] = lambda cmd_id: None
    # The rescue's divergence verdict on the loss (None: unknown, no rescue, or a distributed run,
    # where each rank sees its own loss and every rank must judge alike).
    run_verdict: str | None = None
    # Why a reading is not among the metrics the kernel recorded itself (None: it is); the view
    # has no checker (None) where the kernel's in-process metrics are not at hand (the tool
    # surface's early look, a distributed run whose ranks must judge alike).
    evidence: Callable[[str, int, Any], str | None] | None = None
    # The run's recent record (texts it showed, knob changes it made), read only when an op the
    # reason rule covers is judged; None where it is not at hand (a view built by hand, or a
    # distributed run, where ranks read the files at different moments and must judge alike).
    recent: Callable[[], RecentRecord] | None = None


def judge(op: HotOp, who: str, view: View, *, static: bool = False) -> Refusal | None:
    """The decision for ``op`` acting for ``who``: ``None`` to proceed, else a ``Refusal``.

    ``static`` judges what can be known before the op's time comes (a recipe at replay start):
    structure, code, human-only ops and value bounds, not ratios, cooldowns, locks or freeze.
    """
    if who not in SOURCES or who == "replay":
        return _rejected(f"unknown source {who!r}")
    if not static:
        ignored = freeze_decision(view.freeze_mode, op.module, op.op, op.source, owner=view.freeze_source)
        if ignored is not None:
            return Refusal(Decision(ignored), f"freeze mode is {view.freeze_mode!r}")
    if op.evidence is not None and not is_human(who) and not static and view.evidence is not None:
        unseen = view.evidence(op.evidence.metric, op.evidence.step, op.evidence.value)
        if unseen is not None:
            return _rejected(f"evidence not in the kernel's metrics: {op.evidence} ({unseen}); "
                             "automation acts only on readings the training process recorded itself")
    refusal = _by_module(op, who, view, static)
    if refusal is None and op.source == "agent" and not static and not (op.reason and op.reason.strip()):
        # Checked last, so an op refused anyway hears its real reason first.
        return _rejected("agent ops need a reason (say why, in a sentence)")
    if refusal is None and not static:
        return _own_reason(op, who, view)
    return refusal


def _approved(op: HotOp) -> bool:
    """A person approved this automated proposal (``decide_proposal``, a human-only tool)."""
    return isinstance(op.extra.get("approved_by"), str) and bool(op.extra["approved_by"])


def _own_reason(op: HotOp, who: str, view: View) -> Refusal | None:
    """A model's veto of a protective change, or its rollback, needs a reason in its own words
    (judged for whom the op acts: a recipe entry of a replay a model started is the model's). A
    person may say what they like, and so may a model whose proposal a person approved."""
    if who not in MODEL_SOURCES or view.recent is None or _approved(op):
        return None
    if op.op == "rollback" and op.module in (CORE, RESCUE):
        record = view.recent()
        act = f"a rollback by {who}"
    elif op.op == "set_params":
        record = view.recent()
        undone = vetoed(record, op, view)
        if not undone:
            return None
        act = f"a veto of {undone[-1].describe()}"
    else:
        return None
    problem = own_words_refusal(op.reason, record.shown_to(op.source, op.actor), act)
    return _rejected(problem) if problem else None


def vetoed(record: RecentRecord, op: HotOp, view: View) -> list[KnobChange]:
    """The recent protective changes ``op`` moves back, oldest first: a knob it sets against the
    direction the change moved it (from the live value), within ``VETO_WINDOW_STEPS`` steps of
    the change, with no person's change of that knob since (a person has decided it then)."""
    out = []
    for key, value in op.params.items():
        desc = view.knob(op.module, key)
        new, live = json_number(value), json_number(desc.get("value")) if desc else None
        if new is None or live is None or new == live:
            continue
        move = (new > live) - (new < live)
        for ch in record.changes:
            if not ch.protective or ch.key != key or ch.module not in (op.module, RESCUE) or ch.direction != -move:
                continue
            if view.step is not None and ch.step is not None and view.step - ch.step > VETO_WINDOW_STEPS:
                continue
            if any(c.key == key and c.seq > ch.seq and is_human(c.source) for c in record.changes):
                continue
            out.append(ch)
    return out


def _by_module(op: HotOp, who: str, view: View, static: bool) -> Refusal | None:
    if op.module == CORE:
        return _core(op, who, view, static)
    if op.module == CB:
        if op.op not in CB_OPS:
            return _rejected(f"unknown cb op {op.op!r}; known: {', '.join(CB_OPS)}")
        if not op.id:
            return _rejected(f"cb {op.op} needs an id")
        problem = view.code.check_target(op.target) if op.op == "load" and view.code is not None else None
        return _rejected(problem) if problem else None
    if op.module == TUNE:
        return _tune(op, who)
    if op.module == RESCUE:
        if op.op not in RESCUE_OPS:
            return _rejected(f"unknown rescue op {op.op!r}; known: {', '.join(RESCUE_OPS)}")
        return _automated_rollback(op, who, view, static) if op.op == "rollback" else None
    return _knobs(op, who, view, static)


def _tune(op: HotOp, who: str) -> Refusal | None:
    """Tune's ops; its records (a trial's verdict) and its distributed sync command (an ``enable``
    naming ``sync``: every rank starts syncing on it) are tune's own to write."""
    if op.op in TUNE_RECORDS:
        return None if who == Source.TUNE else _rejected(f"tune {op.op}s are recorded by tune itself", forbidden=True)
    if op.op == "enable" and (op.params or {}).get("sync") and who != Source.TUNE:
        return _rejected("tune's sync command is written by tune itself", forbidden=True)
    return None if op.op in TUNE_OPS else _rejected(f"unknown tune op {op.op!r}; known: {', '.join(TUNE_OPS)}")


def _automated_rollback(op: HotOp, who: str, view: View, static: bool) -> Refusal | None:
    """Automation (agent, rule, tune) rolls back only a run the rescue does not call healthy (its
    detector's verdict, or ``overshot`` for an overshot warmup);
    a person may roll back any run, and so may an automated proposal a person approved
    (``decide_proposal``, a human-only tool, marks it ``approved_by``)."""
    if is_human(who) or _approved(op) or static or view.run_verdict not in HEALTHY_VERDICTS:
        return None
    return _rejected(f"{op.module} rollback: the divergence detector says the run is {view.run_verdict} "
                     "(the rescue rolls back a blow-up, a non-finite loss or a dead run itself, at its step); "
                     f"a rollback by {who} needs a run that is not healthy")


def _core(op: HotOp, who: str, view: View, static: bool) -> Refusal | None:
    if op.op not in CORE_OPS:
        return _rejected(f"unknown core op {op.op!r}; known: {', '.join(CORE_OPS)}")
    if is_human(who):
        return None
    if op.op in ("freeze", "unfreeze"):
        return _automation_freeze(op, who, view)
    if op.op in HUMAN_ONLY_CORE:
        return _rejected(f"core {op.op} is reserved to humans (this op acts for {who!r})", forbidden=True)
    if op.op == "rollback":
        return _automated_rollback(op, who, view, static)
    if op.op in ("cancel", "reschedule"):
        target = op.params.get("cmd_id")
        owner = view.scheduled_source(target) if isinstance(target, str) else None
        if is_human(owner):
            return _rejected(f"core {op.op}: the scheduled op {target} is a human's; only a human can change it",
                             forbidden=True)
    return None


def _automation_freeze(op: HotOp, who: str, view: View) -> Refusal | None:
    """Automation may start a replay (its entries then act for it) and end a replay it started."""
    mode = "off" if op.op == "unfreeze" else op.params.get("mode", "prod")
    current, owner = view.freeze_mode, view.freeze_source
    if mode in AUTOMATION_FREEZE_MODES and (current == "off" or (current in AUTOMATION_FREEZE_MODES and not is_human(owner))):
        return None
    if mode == "off" and current in AUTOMATION_FREEZE_MODES and not is_human(owner):
        return None
    return _rejected(f"core {op.op} to {mode!r} (now {current!r}) is reserved to humans (this op acts for {who!r}); "
                     "automation may only start a replay, or stop one that automation started", forbidden=True)


def _knobs(op: HotOp, who: str, view: View, static: bool) -> Refusal | None:
    if op.op != "set_params":
        return _rejected(f"unknown op {op.op!r} for knob group {op.module!r} (use set_params)")
    if not op.params:
        return _rejected("set_params needs at least one key in params")
    if view.groups is None:
        return None  # no training process has published its knobs yet: the kernel will judge
    if op.module not in view.groups:
        return _rejected(f"unknown module {op.module!r} (known: {', '.join(sorted(view.groups | {CB, CORE, TUNE}))})")
    unchanged = []
    for key, value in op.params.items():
        desc = view.knob(op.module, key)
        if desc is None:
            known = sorted(view.knob_keys(op.module))
            return _rejected(f"unknown knob {op.module}.{key}; known in {op.module!r}: {', '.join(known) or 'none'}")
        try:
            if static:
                validate_value(desc, value)
                continue
            new = check_knob_change(desc, value, source=who, step=view.step, lock=view.locks.get(key),
                                    config=view.guard)
        except (GuardRefusal, ValueRefused) as e:
            return _rejected(str(e)[:MAX_REASON])
        if _same(new, desc.get("value")):
            unchanged.append(key)
    if unchanged and len(unchanged) == len(op.params) and not op.lock:
        values = ", ".join(f"{k}={(view.knob(op.module, k) or {}).get('value')!r}" for k in unchanged)
        return Refusal(Decision.UNCHANGED, f"already in force: {values}; nothing applied, no cooldown started")
    return None


def _same(new: Any, old: Any) -> bool:
    if isinstance(new, tuple):
        new = list(new)
    if isinstance(new, bool) or isinstance(old, bool):
        return new is old
    if isinstance(new, (int, float)) and isinstance(old, (int, float)):
        return float(new) == float(old)
    return new == old


def unchanged_keys(view: View, op: HotOp) -> list[str]:
    """Keys of a knob op whose value is already in force (the kernel leaves them out)."""
    out = []
    for key, value in op.params.items():
        desc = view.knob(op.module, key)
        if desc is None:
            continue
        try:
            new = validate_value(desc, value)
        except ValueRefused:
            continue
        if _same(new, desc.get("value")):
            out.append(key)
    return out


def judge_rescue_cut(desc: dict[str, Any], base: float, value: Any, *, source: str, step: int | None,
                     config: GuardConfig) -> Any:
    """The rescue's lr cut, made with its rollback: judged by the guard as a change from ``base``
    (the lower of the lr in use and the snapshot's: a raise since the snapshot is undone by the
    rollback itself), with its ratio limit and bounds, but not held back by the knob's cooldown,
    since the rollback has just undone the change that cooldown protects. Locks are the caller's
    (a locked knob is left as it is). Returns the coerced value or raises ``GuardRefusal`` /
    ``ValueRefused``."""
    return check_knob_change(dict(desc, value=base, last_change_step=None), value, source=source, step=step,
                             lock=None, config=config)


def judge_recipe(entries: list[Any], who: str, view: View) -> list[str]:
    """What the judge would refuse in a recipe (or overlay) started by ``who``, whatever the step:
    structure, code, human-only ops, bounds. Ratios and cooldowns are judged as each entry fires."""
    problems = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            continue  # validate_recipe reports it
        fields = {k: e.get(k) for k in ("module", "op", "id", "params", "target") if e.get(k) is not None}
        try:
            op = parse_command({**fields, "cmd_id": f"recipe-{i}", "source": "replay"})
        except CommandError as err:
            problems.append(f"entry {i}: {err}")
            continue
        refusal = judge(op, who, view, static=True)
        if refusal is not None:
            problems.append(f"entry {i} ({op.module} {op.op}): {refusal.reason}")
    return problems
