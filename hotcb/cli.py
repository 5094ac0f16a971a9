"""The ``hotcb`` command line.

Core commands live here; the layers above core add theirs (``mcp``, ``serve``, ``demo``,
``launch``, ``eval``, ...) through the ``hotcb.cli`` entry-point group, so core never imports
them and a missing extra is reported in one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import entry_points
from typing import Any

from .client import liveness, read_status, send_command, wait_decision
from .freeze import MODES, FreezeState
from .jsonl import read_all, read_json
from .ledger import filter_entries
from .ops import make_command, new_cmd_id
from .recipe import export_recipe, load_recipe, write_recipe
from .rundir import NO_TRAINING_YET, RunDir, open_for_controller
from .terminal import printable
from .vocabulary import Source

OPT_KEYS = ("lr", "weight_decay", "betas", "momentum", "eps")


def parse_value(text: str) -> Any:
    """Parse a value as a user means it: numbers, true/false, null, JSON lists/objects, else text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"hotcb: expected key=value, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def route_knob(key: str, actuators: list[dict[str, Any]]) -> str:
    """The module a bare knob key belongs to (``set lr=...``). Once training has published its
    knobs, a key that is not one of them is refused with the list; before that (no training
    process yet) the usual names are routed by convention and queued."""
    for a in actuators:
        if a.get("key") == key:
            return a.get("module", "opt")
    if actuators:
        known = ", ".join(sorted(str(a.get("key", "?")) for a in actuators))
        raise SystemExit(f"hotcb: unknown knob {key!r}; known knobs: {known}")
    if key in OPT_KEYS or key.split(".g")[0] in OPT_KEYS:
        return "opt"
    if key.endswith("_w"):
        return "loss"
    raise SystemExit(f"hotcb: unknown knob {key!r}; {NO_TRAINING_YET}, so no knobs are published: "
                     f"name the group explicitly (hotcb knob GROUP set_params {key}=...)")


# ---------------------------------------------------------------------------- command helpers
def _submit(args: argparse.Namespace, rec: dict[str, Any]) -> int:
    try:
        run, note = open_for_controller(args.dir)
    except ValueError as e:
        raise SystemExit(f"hotcb: {e}") from None
    send_command(run, rec)
    if note:
        print(f"queued {rec['module']} {rec['op']} cmd_id={rec['cmd_id']} ({note})")
        return 0
    if args.wait <= 0:
        print(f"queued {rec['module']} {rec['op']} cmd_id={rec['cmd_id']}")
        return 0
    entry, live = wait_decision(run, rec["cmd_id"], args.wait)
    if entry is None:
        why = live.get("reason") or f"no decision within {args.wait:g}s"
        print(f"queued {rec['module']} {rec['op']} cmd_id={rec['cmd_id']} ({why}; it applies when training reads it)")
        return 0
    print(_fmt_entry(entry))
    return 0 if entry["decision"] == "applied" else 2


def _cmd(args: argparse.Namespace, module: str, op: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return make_command(module, op, params, source=Source.HUMAN, actor=args.actor, reason=args.reason, **kw)


def _fmt_change(payload: dict[str, Any]) -> str:
    parts = []
    for k, v in (payload or {}).items():
        if isinstance(v, dict) and "old" in v and "new" in v:
            parts.append(f"{k}: {v['old']} -> {v['new']}")
        elif k == "knobs" and isinstance(v, dict):  # rollback / restore: {key: {old, new}}: what changed only
            moved = {key: c for key, c in v.items() if not (isinstance(c, dict) and c.get("old") == c.get("new"))}
            parts.append(_fmt_change(moved) or "no knob changed")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def _fmt_entry(e: dict[str, Any]) -> str:
    what = f"{e.get('module')}.{e.get('op')}" + (f"[{e['id']}]" if e.get("id") else "")
    detail = _fmt_change(e.get("payload") or {}) or json.dumps(e.get("params") or {})
    who = f"{e.get('source')}/{e.get('actor') or '-'}"
    step = e.get("step") if e.get("step") is not None else "-"
    line = f"#{e.get('seq'):<4} step {step!s:>6}  {e.get('decision'):<14} {what:<22} {who:<20} {detail}"
    if e.get("error"):
        line += f"  !! {str(e['error']).splitlines()[0]}"
    if e.get("reason"):
        line += f"  ({e['reason']})"
    return printable(line)


# ---------------------------------------------------------------------------- subcommands
def cmd_init(args: argparse.Namespace) -> int:
    run = RunDir(args.dir)
    print(f"run directory ready: {run.root}")
    return 0


def _fields(pairs: list[tuple[str, Any]]) -> str:
    """``name value`` pairs, leaving out what is unknown (no ``None`` in a person's terminal)."""
    return "  ".join(f"{k} {v}" for k, v in pairs if v is not None)


def cmd_status(args: argparse.Namespace) -> int:
    run = RunDir(args.dir, create=False)
    status = read_status(run) if run.root.is_dir() else None
    live = liveness(run, status)
    acts = (read_json(run.actuators, {}) or {}) if run.root.is_dir() else {}
    if args.json:
        print(json.dumps({"liveness": live, "status": status.to_json() if status else None, "actuators": acts}, indent=1))
        return 0
    print(f"run: {run.root}\nstate: {live['state']}" + (f" ({live['reason']})" if live.get("reason") else ""))
    if status:
        print(_fields([("step", status.step), ("epoch", status.epoch), ("steps/s", status.steps_per_s),
                       ("paused", status.paused), ("freeze", status.freeze_mode)]))
    for a in acts.get("actuators", []):
        lock = "  [locked]" if a["key"] in (acts.get("locks") or {}) else ""
        bounds = f"{a['min']}..{a['max']}" if a.get("min") is not None or a.get("max") is not None else None
        what = ", ".join(str(x) for x in (a.get("type"), bounds, a.get("state")) if x is not None)
        print(printable(f"  {a['module']}.{a['key']} = {a['value']}" + (f"  ({what})" if what else "") + lock))
    for cb in acts.get("callbacks", []):
        print(printable(f"  cb {cb['id']}: {cb['state']}"))
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    run = RunDir(args.dir, create=False)
    acts = (read_json(run.actuators, {}) or {}).get("actuators", []) if run.root.is_dir() else []
    by_module: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(args.pairs).items():
        by_module.setdefault(route_knob(key, acts), {})[key] = value
    rc = 0
    for module, params in by_module.items():
        rc = max(rc, _submit(args, _cmd(args, module, "set_params", params, lock=args.lock)))
    return rc


def cmd_group_set(args: argparse.Namespace) -> int:
    return _submit(args, _cmd(args, args.group, "set_params", parse_assignments(args.pairs), lock=args.lock))


def cmd_cb(args: argparse.Namespace) -> int:
    if args.cb_op == "load":
        if bool(args.module) == bool(args.file):
            raise SystemExit("hotcb: cb load needs exactly one of --module PKG.MOD:Symbol or --file PATH:Symbol")
        spec = args.module or args.file
        path, _, symbol = spec.rpartition(":")
        if not path or not symbol:
            raise SystemExit(f"hotcb: expected PATH:Symbol, got {spec!r}")
        target = {"kind": "module" if args.module else "python_file", "path": path, "symbol": symbol}
        rec = _cmd(args, "cb", "load", parse_assignments(args.pairs), id=args.id, target=target)
    elif args.cb_op == "set_params":
        rec = _cmd(args, "cb", "set_params", parse_assignments(args.pairs), id=args.id)
    else:
        rec = _cmd(args, "cb", args.cb_op, id=args.id)
    return _submit(args, rec)


def cmd_core(args: argparse.Namespace) -> int:
    params = {"step": args.step} if getattr(args, "step", None) is not None else {}
    return _submit(args, _cmd(args, "core", args.core_op, params))


def cmd_freeze(args: argparse.Namespace) -> int:
    from .published_view import published_view
    from .replay_check import check_recipe_file, place_recipe

    run = RunDir(args.dir)
    overlay = load_recipe(args.overlay) if args.overlay and args.overlay.endswith(".jsonl") else []
    recipe = args.recipe
    try:
        state = FreezeState(mode=args.mode, recipe_path=recipe, overlay_path=None if overlay else args.overlay,
                            overlay=overlay, cmd_id=new_cmd_id(), source=Source.HUMAN, actor=args.actor,
                            reason=args.reason)
        if state.replaying:
            # The kernel opens only a recipe in the run directory (or a directory the script
            # allowed) and refuses a replay whose entries the judge refuses: ask the same now.
            view = published_view(run)
            state.recipe_path = place_recipe(run, recipe, view.code)
            problems = check_recipe_file(recipe, view, Source.HUMAN, overlay=overlay, mode=args.mode)
            if problems:
                raise ValueError(f"recipe {recipe} refused, nothing changed:\n  " + "\n  ".join(problems))
    except ValueError as e:
        raise SystemExit(f"hotcb: {e}") from None
    state.save(run.freeze)
    if state.replaying and state.recipe_path != recipe:
        print(f"recipe copied into the run directory: {state.recipe_path}")
    print(f"freeze mode -> {args.mode} (cmd_id={state.cmd_id})")
    return 0


def cmd_recipe(args: argparse.Namespace) -> int:
    run = RunDir(args.dir)
    if args.recipe_op == "export":
        entries = export_recipe(read_all(run.ledger))
        out = args.out or str(run.recipe)
        write_recipe(out, entries)
        print(f"exported {len(entries)} changes to {out}")
        return 0
    return _validate_recipe(run, args.path, args.who)


def _validate_recipe(run: RunDir, path: str, who: str) -> int:
    """Each line as the kernel will judge it when ``who`` starts its replay in ``run``."""
    from .published_view import published_view
    from .replay_check import check_recipe_file

    view = published_view(run)
    problems = check_recipe_file(path, view, who)
    for p in problems:
        print(p)
    if view.groups is None:
        print(f"note: knob modules, types and bounds not checked: no training process has published its knobs "
              f"in {run.root} (pass --dir RUN)", file=sys.stderr)
    print("recipe is valid" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 2


def cmd_ledger(args: argparse.Namespace) -> int:
    run = RunDir(args.dir, create=False)
    try:
        rows = filter_entries(read_all(run.ledger), source=args.source, decision=args.decision, module=args.module,
                              since_step=args.since_step, until_step=args.until_step)
    except ValueError as e:
        raise SystemExit(f"hotcb: {e}") from None
    if args.last:
        rows = rows[-args.last:]
    for e in rows:
        print(json.dumps(e) if args.json else _fmt_entry(e))
    if not rows and not args.json:
        print("no entries" + (" match the filters" if any(
            x is not None for x in (args.source, args.decision, args.module, args.since_step, args.until_step))
            else " yet"))
    return 0


# ---------------------------------------------------------------------------- parser
# complexity: the whole argparse tree in one place, so the CLI is read in one screenful per command
def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS, help="run directory (default: .)")
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument("--reason", default=None, help="why (recorded in the ledger)")
    writes.add_argument("--actor", default=None, help="who (recorded in the ledger)")
    writes.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the decision (0: don't)")

    ap = argparse.ArgumentParser(prog="hotcb", description="Live control of PyTorch training runs.")
    ap.add_argument("--dir", default=".", help="run directory (default: .)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", parents=[common], help="create a run directory")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("status", parents=[common], help="training state and knobs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("set", parents=[common, writes], help="set knobs: hotcb set lr=1e-4 aux_w=0.5")
    p.add_argument("pairs", nargs="+", metavar="key=value")
    p.add_argument("--lock", action="store_true", help="lock the knobs against agents, rules and tune")
    p.set_defaults(func=cmd_set)
    for group in ("opt", "loss", "knob"):
        g = sub.add_parser(group, parents=[common], help=f"{group} set_params k=v ...")
        gs = g.add_subparsers(dest="group_op", required=True)
        p = gs.add_parser("set_params", parents=[common, writes])
        if group == "knob":
            p.add_argument("group", help="custom knob group")
        p.add_argument("pairs", nargs="+", metavar="key=value")
        p.add_argument("--lock", action="store_true")
        p.set_defaults(func=cmd_group_set, **({} if group == "knob" else {"group": group}))

    cb = sub.add_parser("cb", parents=[common], help="load, unload, enable, disable, set_params callbacks")
    cbs = cb.add_subparsers(dest="cb_op", required=True)
    p = cbs.add_parser("load", parents=[common, writes])
    p.add_argument("id")
    p.add_argument("--module", help="import path and symbol, e.g. hotcb.callbacks.timing:TimingCallback")
    p.add_argument("--file", help="python file and symbol, e.g. cbs/my_cb.py:MyCallback")
    p.add_argument("pairs", nargs="*", metavar="key=value", help="constructor params")
    p.set_defaults(func=cmd_cb)
    for op in ("unload", "enable", "disable"):
        p = cbs.add_parser(op, parents=[common, writes])
        p.add_argument("id")
        p.set_defaults(func=cmd_cb)
    p = cbs.add_parser("set_params", parents=[common, writes])
    p.add_argument("id")
    p.add_argument("pairs", nargs="+", metavar="key=value")
    p.set_defaults(func=cmd_cb)

    for op, text in (("pause", "hold the loop at its safe point"), ("resume", "continue a paused run"),
                     ("stop", "tell the loop to end cleanly"), ("checkpoint", "snapshot registered state"),
                     ("rollback", "restore the last snapshot (or one at/before --step)")):
        p = sub.add_parser(op, parents=[common, writes], help=text)
        if op == "rollback":
            p.add_argument("--step", type=int, default=None)
        p.set_defaults(func=cmd_core, core_op=op)
    for op in ("lock", "unlock"):
        p = sub.add_parser(op, parents=[common, writes], help=f"{op} knobs against agents/rules/tune")
        p.add_argument("keys", nargs="+")
        p.set_defaults(func=lambda a: _submit(a, _cmd(a, "core", a.lock_op, {"keys": a.keys})), lock_op=op)

    p = sub.add_parser("freeze", parents=[common, writes], help="set the freeze mode")
    p.add_argument("--mode", choices=MODES, default="prod")
    p.add_argument("--recipe", default=None, help="recipe for replay modes")
    p.add_argument("--overlay", default=None, help="patches for replay_adjusted (a recipe-format .jsonl)")
    p.set_defaults(func=cmd_freeze)
    p = sub.add_parser("unfreeze", parents=[common, writes], help="set the freeze mode to off (= freeze --mode off)")
    p.set_defaults(func=cmd_freeze, mode="off", recipe=None, overlay=None)

    r = sub.add_parser("recipe", parents=[common], help="export or validate recipes")
    rs = r.add_subparsers(dest="recipe_op", required=True)
    p = rs.add_parser("export", parents=[common])
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_recipe)
    p = rs.add_parser("validate", parents=[common],
                      help="check each line as the kernel will when a replay of it starts in --dir RUN")
    p.add_argument("path")
    p.add_argument("--as", dest="who", default=Source.HUMAN.value, choices=[s.value for s in (Source.HUMAN, Source.AGENT, Source.RULE, Source.TUNE)],
                   help="who would start the replay (the judge decides for them; default human)")
    p.set_defaults(func=cmd_recipe)

    p = sub.add_parser("ledger", parents=[common], help="show the ledger")
    p.add_argument("--source")
    p.add_argument("--decision")
    p.add_argument("--module")
    p.add_argument("--since-step", type=int, default=None, metavar="N", help="only entries at step N or later")
    p.add_argument("--until-step", type=int, default=None, metavar="M", help="only entries at step M or earlier")
    p.add_argument("--last", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ledger)

    _add_plugins(sub, common)
    return ap


def _add_plugins(sub: Any, common: argparse.ArgumentParser) -> None:
    """Commands from the layers above core, registered as ``hotcb.cli`` entry points."""
    for ep in sorted(entry_points(group="hotcb.cli"), key=lambda e: e.name):
        try:
            register = ep.load()
        except Exception as e:  # a broken layer must not take the core commands down with it
            extra = ep.name  # entry points are named after the extra they need
            if isinstance(e, ImportError):
                msg = f"needs extras that are not installed ({e.name or e}); pip install 'hotcb[{extra}]'"
            else:
                msg = f"failed to load ({type(e).__name__}: {e})"
            p = sub.add_parser(ep.name, help=f"(unavailable: {msg})")
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(func=lambda a, m=msg, n=ep.name: sys.exit(f"hotcb {n}: {m}"))
            continue
        try:
            register(sub, common)
        except Exception as e:  # same reason: report it, keep the rest of the CLI usable
            print(f"hotcb: the {ep.name!r} commands failed to register: {type(e).__name__}: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse ends a positional list at the first option, so `cb load t --module m:S every=5`
    # leaves `every=5` over; key=value leftovers belong to the command's pairs.
    if extra and hasattr(args, "pairs") and all("=" in x and not x.startswith("-") for x in extra):
        args.pairs = list(args.pairs or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # here, so a closed pipe is caught below and not at interpreter exit
        return rc
    except BrokenPipeError:
        # `hotcb status | head -3`: the reader left; that is not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout at exit; let that go nowhere
        return 0


if __name__ == "__main__":
    sys.exit(main())
