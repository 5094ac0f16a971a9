"""``hotcb mcp RUN_DIR``: serve a run's tools over MCP (stdio, or streamable HTTP with a token).

Registered through the ``hotcb.cli`` entry point group; the SDK is imported inside the handler
so ``hotcb --help`` stays fast. On stdio, stdout carries the protocol only: everything else
(logs, the generated token) goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from hotcb.vocabulary import Source

from .token_source import read_token

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "HOTCB_MCP_TOKEN"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``hotcb mcp``. Heavy imports happen inside the handler."""
    p = sub.add_parser(
        "mcp", parents=[common], help="serve the run's tools over MCP (stdio; --http for streamable HTTP)",
        description="Serve hotcb's tools, resources and prompts for one run directory over MCP. "
                    "Calls act as source 'agent' (the guard's limits apply; --source rule alike) unless --source human.",
    )
    p.add_argument("run_dir", nargs="?", default=None,
                   help="the run directory (default: --dir or .), or a root of run directories (see --root)")
    p.add_argument("--root", action="store_true",
                   help="RUN_DIR is a directory of run directories: list_runs, and every tool takes run=NAME "
                        "(implied when RUN_DIR is no run itself but holds runs)")
    p.add_argument("--source", choices=[Source.AGENT.value, Source.RULE.value, Source.HUMAN.value], default="agent",
                   help="who the calls act as. 'agent' (a model; the default) and 'rule' get the guard's full "
                        "limits; a model's veto of a protective change must also be in its own words, which "
                        "'rule' (fixed-template reasons) is not asked: never give 'rule' to a model's client. "
                        "'human' lifts the guard's rate limits and locks and allows human-only tools: use it "
                        "only for a client a person drives directly")
    p.add_argument("--for-autopilot", action="store_true",
                   help="serve the hotcb autopilot process (hotcb autopilot --mcp/--mcp-url): adds the "
                        "autopilot_process tool (alerts, the LLM's memory) and lets each call act as "
                        "'rule' or 'agent' (never 'human'). Not for other clients")
    p.add_argument("--actor", default=None,
                   help="name recorded as the actor of every change (default: the client's name)")
    p.add_argument("--tools", dest="profile", choices=["core", "observe", "control", "all"], default="all",
                   help="which tools to serve: core (get_status, read_trends, describe_actuators, apply_op, "
                        "read_ledger; no output schemas: for small local models), observe (read-only), control "
                        "(observe + apply_op, propose_op, schedule_op) or all (default); fewer tools, less context")
    p.add_argument("--no-output-schemas", action="store_true",
                   help="leave output schemas out of tools/list (results still carry structured content)")
    p.add_argument("--wait", type=float, default=10.0, help="seconds apply_op waits for a decision (default 10)")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    p.add_argument("--token", default=None,
                   help=f"HTTP bearer token (visible in ps: prefer ${TOKEN_ENV} or --token-file); generated "
                        "and printed to stderr if absent")
    p.add_argument("--token-file", default=None, metavar="FILE", help="read the HTTP bearer token from FILE")
    p.set_defaults(func=cmd_mcp)


def _token(args: argparse.Namespace) -> str | None:
    """The HTTP token (file, environment or flag); ValueError when it cannot be read, or when a
    non-loopback bind has none."""
    token = read_token("hotcb mcp", given=args.token, flag="--token", file=args.token_file, env=TOKEN_ENV)
    if args.http and args.host not in LOOPBACK and not token:
        raise ValueError(f"refusing to serve on non-loopback host {args.host} without --token-file "
                         f"(or ${TOKEN_ENV}); anyone who can reach it could steer training")
    return token


def cmd_mcp(args: argparse.Namespace) -> int:
    # Logs go to stderr: on stdio, stdout is the protocol channel.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="hotcb mcp: %(message)s")
    run_dir = args.run_dir or getattr(args, "dir", None) or "."
    from hotcb.rundir import open_for_controller

    from .run_root import looks_like_root

    if not (args.root or looks_like_root(run_dir)):  # a root's runs each say so in list_runs
        try:
            _, note = open_for_controller(run_dir)
        except ValueError as e:
            print(f"hotcb mcp: {e}", file=sys.stderr)
            return 2
        if note:  # stderr: on stdio, stdout is the protocol channel
            print(f"hotcb mcp: {note}", file=sys.stderr)
    if args.for_autopilot and args.source == Source.HUMAN:
        print("hotcb mcp: --for-autopilot serves the autopilot, which never acts as 'human'", file=sys.stderr)
        return 2
    try:
        token = _token(args)
    except ValueError as e:
        print(f"hotcb mcp: {e}", file=sys.stderr)
        return 2
    try:
        from .server import build_server
    except ImportError as e:
        print(f"hotcb mcp: needs the 'mcp' extra: pip install 'hotcb[mcp]' ({e})", file=sys.stderr)
        return 2
    if args.for_autopilot and args.profile != "all":
        print("hotcb mcp: --for-autopilot serves every tool (--tools all)", file=sys.stderr)
        return 2
    from .run_root import looks_like_root  # a root of runs: its own layer (run_root.py, server_root.py)

    if args.root or looks_like_root(run_dir):
        if args.for_autopilot:
            print("hotcb mcp: --for-autopilot serves one run; for a root use hotcb autopilot --root", file=sys.stderr)
            return 2
        from .server_root import build_root_server

        server = build_root_server(run_dir, source=args.source, actor=args.actor, wait_s=args.wait,
                                   profile=args.profile)
    else:
        server = build_server(run_dir, source=args.source, actor=args.actor, wait_s=args.wait,
                              for_autopilot=args.for_autopilot, profile=args.profile,
                              output_schemas=False if args.no_output_schemas else None)
    if not args.http:
        server.run("stdio")
        return 0
    from .serve_http import new_token, serve_http

    if not token:
        token = new_token()
        print(f"hotcb mcp: bearer token (send 'Authorization: Bearer <token>'): {token}", file=sys.stderr)
    print(f"hotcb mcp: serving {os.path.abspath(run_dir)} on http://{args.host}:{args.port}/mcp", file=sys.stderr)
    serve_http(server, host=args.host, port=args.port, token=token)
    return 0
