"""``hotcb tune ...`` commands (registered through the ``hotcb.cli`` entry point group).

    hotcb --dir RUN tune enable --mode active [--recipe tune.yaml] [--set horizon=80 ...]
    hotcb --dir RUN tune disable
    hotcb --dir RUN tune set-recipe tune.yaml
    hotcb --dir RUN tune status [--json]

Commands travel like every other command (``module: tune``); the kernel applies them and the
ledger records them. A recipe is validated here first with the same function the kernel uses,
so a bad file is refused before anything is written. No optuna import here: status and
validation work without ``hotcb[tune]`` installed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..actuators.actuator import ValueRefused
from ..jsonl import read_json
from ..rundir import TUNE as TUNE_FILE
from ..rundir import RunDir
from .recipe import MODES, load_recipe_file, parse_recipe


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the tune subcommands."""
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument("--reason", default=None, help="why (recorded in the ledger)")
    writes.add_argument("--actor", default=None, help="who (recorded in the ledger)")
    writes.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the decision (0: don't)")
    recipe = argparse.ArgumentParser(add_help=False)
    recipe.add_argument("--recipe", default=None, help="tune recipe file (YAML or JSON)")
    recipe.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="key=value",
                        help="recipe keys on top of the file, e.g. horizon=80 sampler=random")

    t = sub.add_parser("tune", parents=[common], help="online hyperparameter search (Optuna; hotcb[tune])")
    ts = t.add_subparsers(dest="tune_op", required=True)
    p = ts.add_parser("enable", parents=[common, writes, recipe], help="start tuning (default: --mode active)")
    p.add_argument("--mode", choices=[m for m in MODES if m != "off"], default="active")
    p.set_defaults(func=cmd_tune)
    p = ts.add_parser("disable", parents=[common, writes], help="stop tuning (a trial in flight is rolled back)")
    p.set_defaults(func=cmd_tune)
    p = ts.add_parser("set-recipe", parents=[common, writes], help="replace the recipe of a running tuner")
    p.add_argument("path", nargs="?", default=None)
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="key=value")
    p.set_defaults(func=cmd_tune)
    p = ts.add_parser("status", parents=[common], help="trials, accepted/rolled-back changes, the current best")
    p.add_argument("--json", action="store_true")
    p.add_argument("--last", type=int, default=10, help="how many recent trials to list")
    p.set_defaults(func=cmd_tune)


def _recipe(path: str | None, overrides: list[str]) -> dict[str, Any] | None:
    from ..cli import parse_assignments

    if path is None and not overrides:
        return None
    raw = load_recipe_file(path) if path else {}
    raw.update(parse_assignments(overrides))
    parse_recipe(raw)
    return raw


def cmd_tune(args: argparse.Namespace) -> int:
    from ..cli import _cmd, _submit

    if args.tune_op == "status":
        return _status(args)
    try:
        if args.tune_op == "enable":
            params: dict[str, Any] = {"mode": args.mode}
            recipe = _recipe(args.recipe, args.overrides)
            if recipe is not None:
                params["recipe"] = recipe
            return _submit(args, _cmd(args, "tune", "enable", params))
        if args.tune_op == "disable":
            return _submit(args, _cmd(args, "tune", "disable", {}))
        recipe = _recipe(args.path, args.overrides)
        return _submit(args, _cmd(args, "tune", "set_recipe", {"recipe": recipe or {}}))
    except ValueRefused as e:
        raise SystemExit(f"hotcb tune: {e}") from None


def _status(args: argparse.Namespace) -> int:
    run = RunDir(args.dir, create=False)
    state = read_json(run.root / TUNE_FILE)
    if not isinstance(state, dict):
        if args.json:
            print(json.dumps({"mode": "off", "trials": []}))
        else:
            print("tune: never enabled in this run directory")
        return 0
    if args.json:
        print(json.dumps(state, indent=1))
        return 0
    print(f"tune: mode {state.get('mode')}  objective {state.get('objective') or '(auto)'} "
          f"({state.get('direction')})  sampler {state.get('sampler')}  study {state.get('study_name')}")
    trials = state.get("trials") or []
    print(f"status: {state.get('status')}")
    print(f"trials {sum(1 for t in trials if t.get('kind') != 'baseline')}  accepted {state.get('accepted')}  "
          f"rolled back {state.get('rolled_back')}")
    best = state.get("best")
    if best:
        print(f"best: trial {best.get('number')} {_params(best.get('params'))}  value {_num(best.get('value'))}")
    act = state.get("active_trial")
    if act:
        print(f"in flight: trial {act.get('number')} ({act.get('kind')}) {_params(act.get('params'))} "
              f"until step {act.get('due_step')}")
    for t in trials[-args.last:] if args.last > 0 else []:
        undo = f"  undo {t['undo']}" if t.get("undo") else ""
        print(f"  #{t.get('number'):<4} {t.get('kind'):<9} {str(t.get('outcome') or t.get('state')):<16} "
              f"{_params(t.get('params'))}  improvement {_num(t.get('improvement'))}  "
              f"steps {t.get('step_start')}..{t.get('step_end')}{undo}")
    if state.get("pending_undo"):
        print(f"waiting to roll back trial(s) {', '.join(str(n) for n in state['pending_undo'])}")
    for why in state.get("skipped") or []:
        print(f"not searched: {why}")
    for s in [s for s in state.get("suggestions") or [] if s.get("status") == "pending"]:
        print(f"  suggestion (trial {s.get('trial')}, {s.get('kind')}): {_params(s.get('params'))}")
    if state.get("last_error"):
        print(f"last error: {state['last_error']}")
    return 0


def _params(p: Any) -> str:
    if not isinstance(p, dict):
        return "-"
    return " ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in p.items())


def _num(v: Any) -> str:
    return f"{v:+.4g}" if isinstance(v, (int, float)) else "-"
