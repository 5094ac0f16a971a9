"""CLI commands of this layer (registered through the ``hotcb.cli`` entry point group):
``hotcb launch``, ``hotcb demo``, ``hotcb autopilot``, ``hotcb proposals``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from hotcb.terminal import printable
from hotcb.vocabulary import AutopilotMode, Source

if TYPE_CHECKING:
    from hotcb.mcp_server.tools_protocol import Tools

MODES = AutopilotMode.values()


def _ai_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", default=None, metavar="rules.yaml", help="rule thresholds/cooldowns/actions (YAML or JSON)")
    p.add_argument("--model", default=None, help="LLM model (default $HOTCB_AI_MODEL or gpt-4o-mini)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible base URL (default $HOTCB_AI_BASE_URL)")
    p.add_argument("--cadence-steps", type=int, default=None,
                   help="LLM wakes at least every N steps (default $HOTCB_AI_CADENCE_STEPS or 200)")
    p.add_argument("--min-wake-gap", type=int, default=None, metavar="N",
                   help="steps between two LLM wakes at least, alerts included (default $HOTCB_AI_MIN_GAP_STEPS or 0)")
    p.add_argument("--max-tool-calls", type=int, default=6, help="tool calls per LLM wake (default 6)")
    p.add_argument("--max-rounds", type=int, default=None,
                   help="LLM requests per wake (default $HOTCB_AI_MAX_ROUNDS or 4)")
    p.add_argument("--ai-timeout", type=float, default=None, metavar="S",
                   help="seconds per LLM request (default $HOTCB_AI_TIMEOUT or 60; local CPU models need more)")
    p.add_argument("--wake-deadline", type=float, default=None, metavar="S",
                   help="seconds for a whole LLM wake, every request included (default $HOTCB_AI_WAKE_DEADLINE or "
                        "300); past it the model counts as out and the rules act")
    p.add_argument("--max-completion", type=int, default=None, metavar="N",
                   help="max tokens the model may write per request (default $HOTCB_AI_MAX_COMPLETION or the server's)")
    p.add_argument("--max-tokens", type=int, default=None, help="token budget for the run's LLM calls")
    p.add_argument("--max-cost", type=float, default=None, help="USD budget for the run's LLM calls")


def _ai_options(args: argparse.Namespace) -> Any:
    from hotcb.agent.pilot.autopilot import AIOptions

    ai = AIOptions(max_tool_calls=args.max_tool_calls, max_tokens=args.max_tokens, max_cost_usd=args.max_cost)
    for name, value in (("cadence_steps", args.cadence_steps), ("min_gap_steps", args.min_wake_gap),
                        ("max_rounds", args.max_rounds),
                        ("timeout_s", args.ai_timeout), ("max_completion_tokens", args.max_completion),
                        ("wake_deadline_s", args.wake_deadline)):
        if value is not None:
            setattr(ai, name, value)
    if args.model:
        ai.model = args.model
    if args.base_url:
        ai.base_url = args.base_url
    return ai


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add this layer's subcommands. Heavy imports happen inside the handlers."""
    p = sub.add_parser("launch", parents=[common], help="train a function in its own process with the autopilot")
    p.add_argument("--train-fn", required=True, help="pkg.mod:fn or file.py:fn, called as fn(run_dir=, max_steps=)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--autopilot", choices=MODES, default="off")
    p.add_argument("--serve", action="store_true", help="also start the dashboard (hotcb serve)")
    p.add_argument("--port", type=int, default=8421)
    _ai_args(p)
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("demo", parents=[common], help="a real model on an offline dataset, autopilot and dashboard")
    p.add_argument("--golden", action="store_true", help="multi-task model with weighted loss terms as knobs")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--autopilot", choices=MODES, default=None,
                   help="default: ai_auto when HOTCB_AI_KEY is set, else auto (rules)")
    p.add_argument("--no-serve", action="store_true", help="no dashboard")
    p.add_argument("--port", type=int, default=8421, help="dashboard port (default 8421; a free one if taken)")
    p.add_argument("--no-mishap", action="store_true", help="no scheduled lr mishap for the autopilot to rescue")
    p.add_argument("--exit-when-done", action="store_true",
                   help="end when training ends (default: the dashboard stays up until Ctrl-C)")
    _ai_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "autopilot", parents=[common], help="run the autopilot against a run directory",
        description="Run the autopilot (rules or LLM, per the run's mode) on a run. By default it calls the "
                    "tools in-process; with --mcp stdio it spawns `hotcb mcp RUN --for-autopilot` and acts "
                    "only through it, with --mcp-url through a running `hotcb mcp RUN --http --for-autopilot`.")
    p.add_argument("--mode", choices=MODES, default=None, help="set the run's mode (default: keep the stored one)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between passes (default 1)")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--keep-running", action="store_true", help="do not exit when training ends")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--mcp", choices=["stdio"], default=None,
                   help="act as an MCP client of a `hotcb mcp RUN --for-autopilot` subprocess (stdio)")
    g.add_argument("--mcp-url", default=None, metavar="URL",
                   help="act as an MCP client of a running `hotcb mcp RUN --http --for-autopilot` server, "
                        "e.g. http://127.0.0.1:8765/mcp (the mode is then the run's own: --mode is refused)")
    p.add_argument("--mcp-token", default=None, metavar="T",
                   help="bearer token for --mcp-url (visible in ps: prefer $HOTCB_MCP_TOKEN or --mcp-token-file)")
    p.add_argument("--mcp-token-file", default=None, metavar="FILE", help="read the --mcp-url token from FILE")
    p.add_argument("--mcp-timeout", type=float, default=60.0, metavar="S", help="seconds per MCP call (default 60)")
    p.add_argument("--root", default=None, metavar="ROOT",
                   help="a directory of run directories: one autopilot per run you own (--mode required), "
                        "runs started later included")
    p.add_argument("--run", action="append", default=None, metavar="NAME", dest="runs",
                   help="with --root: manage exactly these runs (repeatable), whoever owns them")
    _ai_args(p)
    p.set_defaults(func=cmd_autopilot)

    p = sub.add_parser("proposals", parents=[common], help="list, approve or reject autopilot proposals")
    p.add_argument("action", nargs="?", choices=["list", "approve", "reject"], default="list")
    p.add_argument("proposal_id", nargs="?")
    p.add_argument("--note", default=None)
    p.add_argument("--all", action="store_true", help="list decided proposals too")
    p.add_argument("--actor", default=None, help="who decides (default $USER)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_proposals)


def _run_dir(args: argparse.Namespace) -> str:
    return getattr(args, "dir", None) or "."


def _wait_handle(h: Any, keep_dashboard: bool = False) -> int:
    """Wait for training; Ctrl-C / SIGTERM asks it to stop cleanly."""
    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        rc = h.wait(keep_dashboard=keep_dashboard)
    except KeyboardInterrupt:
        print("hotcb: stopping training at its next safe point...", file=sys.stderr)
        rc = h.stop(keep_dashboard=keep_dashboard)
    finally:
        signal.signal(signal.SIGTERM, old)
    return int(rc or 0)


def mode_note(mode: str, ai: Any) -> str | None:
    """Why the mode that will really run differs from the one asked for (None when it does not)."""
    if mode in ("ai_auto", "ai_suggest") and not ai.api_key and not ai.base_url:
        rules = "auto" if mode == "ai_auto" else "suggest"
        return (f"{mode} needs an LLM (HOTCB_AI_KEY, or --base-url / HOTCB_AI_BASE_URL for a local server) "
                f"and has none: the rules run instead ({rules})")
    return None


def _print_mode(prefix: str, mode: str, ai: Any) -> None:
    note = mode_note(mode, ai)
    running = mode if note is None else f"{mode} (running: rules; {note})"
    print(f"{prefix}: autopilot {running}", file=sys.stderr, flush=True)


def _summary(prefix: str, tools: Tools) -> None:
    from hotcb.agent.launcher.progress import RunProgress

    for line in RunProgress(tools).summary() + llm_summary(tools):
        print(f"{prefix}: {line}", file=sys.stderr)


def llm_summary(tools: Tools) -> list[str]:
    """The LLM's wakes, from its state in the run (nothing when no LLM ran)."""
    from hotcb.agent.llm.wake_stats import summary_line
    from hotcb.mcp_server.tools_autopilot_mode import AutopilotInput

    try:
        ai = tools.autopilot(AutopilotInput()).ai
    except Exception:
        return []
    if not ai or not ai.stats.get("wakes"):
        return []
    lines = [f"LLM {ai.model}: {summary_line(ai.stats)}"]
    if ai.api == "down":
        lines.append(f"LLM outage: {ai.api_error} (the rules acted meanwhile)")
    return lines


def cmd_launch(args: argparse.Namespace) -> int:
    from hotcb.agent.launcher.launch import launch

    ai = _ai_options(args)
    h = launch(args.train_fn, _run_dir(args), max_steps=args.max_steps, autopilot=args.autopilot, rules=args.rules,
               ai=ai, serve=args.serve, port=args.port)
    print(f"hotcb: training {args.train_fn} in {h.run_dir} (pid {h.train.pid})"
          + (f", dashboard {h.url}" if h.url else ""), file=sys.stderr)
    _print_mode("hotcb", args.autopilot, ai)
    rc = _wait_handle(h)
    _summary("hotcb", h.tools)
    if rc:
        print(f"hotcb: training exited with {rc}; see {h.run_dir / 'train.log'}", file=sys.stderr)
    return rc


def cmd_demo(args: argparse.Namespace) -> int:
    from hotcb.agent.launcher.demo import run_demo

    ai = _ai_options(args)
    mode = args.autopilot or ("ai_auto" if ai.api_key or ai.base_url else "auto")
    return run_demo(args, mode, mode_note(mode, ai), ai, _wait_handle)


def _backend(args: argparse.Namespace) -> Any:
    """None (in-process tools) or a connected MCP backend; raises McpUnavailable with the reason."""
    if not args.mcp and not args.mcp_url:
        return None
    from hotcb.agent.mcp_client.backend import McpBackend
    from hotcb.agent.mcp_client.connection import McpTarget

    if args.mcp_url:
        from hotcb.mcp_server.token_source import read_token

        try:
            token = read_token("hotcb autopilot", given=args.mcp_token, flag="--mcp-token",
                               file=args.mcp_token_file, env="HOTCB_MCP_TOKEN")
        except ValueError as e:
            raise ConnectionError(str(e)) from e
        target = McpTarget.http(args.mcp_url, token)
    else:
        target = McpTarget.stdio(_run_dir(args))
    return McpBackend(target, call_timeout_s=args.mcp_timeout).start()


def cmd_autopilot(args: argparse.Namespace) -> int:
    from hotcb.agent.pilot.autopilot import Autopilot
    from hotcb.agent.rules.config import RulesConfig
    from hotcb.mcp_server.registry import ToolError

    from hotcb.rundir import NO_TRAINING_YET, open_for_controller

    if args.mcp_url and args.mode:
        print("hotcb autopilot: --mode cannot be set through --mcp-url (that server never acts as a person); "
              "set it with the dashboard or `hotcb autopilot --dir RUN --mode MODE --once` where the run lives",
              file=sys.stderr)
        return 2
    if args.mcp_url and not args.mcp_url.startswith(("http://", "https://")):
        print(f"hotcb autopilot: --mcp-url must be an http(s) URL, got {args.mcp_url!r}", file=sys.stderr)
        return 2
    rules = RulesConfig.load(args.rules)
    if args.root:
        return _autopilot_root(args, rules)
    if not args.mcp_url:  # the same rule for every controller: the run directory may come first
        try:
            open_for_controller(_run_dir(args))
        except ValueError as e:
            print(f"hotcb autopilot: {e}", file=sys.stderr)
            return 2
    try:
        backend = _backend(args)
    except ConnectionError as e:
        print(f"hotcb autopilot: {e}", file=sys.stderr)
        return 1
    try:
        pilot = Autopilot(_run_dir(args), mode=args.mode, rules=rules, ai=_ai_options(args),
                          interval_s=args.interval, exit_when_done=not args.keep_running, backend=backend)
        if args.once:
            print(json.dumps(pilot.once(), default=str))
            return 0
        print(f"hotcb autopilot: acting on {pilot.backend.describe()}", file=sys.stderr)
        _print_mode("hotcb autopilot", pilot.mode(), pilot.ai)
        if pilot.reader.status_doc().get("step") is None:
            print(f"hotcb autopilot: {NO_TRAINING_YET}; waiting for one", file=sys.stderr, flush=True)
        try:
            pilot.run()
        except KeyboardInterrupt:
            pass
        _summary("hotcb autopilot", pilot.reader)
        return 0
    except (ConnectionError, ToolError) as e:
        print(f"hotcb autopilot: {e}", file=sys.stderr)
        return 1
    finally:
        if backend is not None:
            backend.close()


def _autopilot_root(args: argparse.Namespace, rules: Any) -> int:
    from hotcb.agent.pilot.root import RootAutopilot

    if args.mcp or args.mcp_url:
        print("hotcb autopilot: --root acts on each run in-process; --mcp/--mcp-url serve one run", file=sys.stderr)
        return 2
    if not os.path.isdir(args.root):
        print(f"hotcb autopilot: {args.root} is not a directory", file=sys.stderr)
        return 2
    if args.mode is None:  # a run's own mode file is written by whoever owns the run, not the operator
        print("hotcb autopilot: --root needs --mode (a run's own mode file is not trusted under a root)",
              file=sys.stderr)
        return 2
    pilot = RootAutopilot(args.root, mode=args.mode, rules=rules, ai=_ai_options(args), interval_s=args.interval,
                          exit_when_done=not args.keep_running, runs=args.runs)
    if args.once:
        print(json.dumps(pilot.tick(), default=str))
        return 0
    print(f"hotcb autopilot: {pilot.describe()}", file=sys.stderr)
    try:
        pilot.run()
    except KeyboardInterrupt:
        pilot.stop()
    return 0


def cmd_proposals(args: argparse.Namespace) -> int:
    from hotcb.mcp_server.registry import ToolError
    from hotcb.mcp_server.tools import HotcbTools
    from hotcb.mcp_server.tools_proposals import DecideInput, ListProposalsInput
    from hotcb.mcp_server.tools_protocol import tool_input

    tools = HotcbTools(_run_dir(args), source=Source.HUMAN, actor=args.actor or os.environ.get("USER") or "cli")
    try:
        if args.action == "list":
            listed = tools.list_proposals(ListProposalsInput(status="all" if args.all else "pending", last=100))
            if args.json:
                print(json.dumps(listed.model_dump(mode="json"), indent=1))
            for p in [] if args.json else listed.proposals:
                op = p.op
                print(printable(f"{p.proposal_id}  {p.status:<8} step {p.step}  {p.source}/{p.actor}  "
                                f"{op.module}.{op.op} {json.dumps(op.model_dump(mode='json')['params'])}  -- {p.reason}"))
            if not args.json and not listed.proposals:
                print("no pending proposals" if not args.all else "no proposals")
            return 0
        if not args.proposal_id:
            print(f"hotcb proposals {args.action}: give a proposal id", file=sys.stderr)
            return 2
        out = tools.decide_proposal(tool_input("decide_proposal", DecideInput, {
            "proposal_id": args.proposal_id, "decision": args.action, "note": args.note}))
    except ToolError as e:
        print(f"hotcb proposals: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out.model_dump(mode="json"), indent=1) if args.json else
          f"{args.proposal_id}: {out.proposal.status}" + (f" ({out.applied['decision']})" if out.applied else ""))
    return 0
