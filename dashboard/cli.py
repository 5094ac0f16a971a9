"""``hotcb serve``: the web dashboard for one run directory (registered through the
``hotcb.cli`` entry point group; FastAPI and uvicorn are imported inside the handler)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``hotcb serve``. Heavy imports happen inside the handler."""
    p = sub.add_parser(
        "serve", parents=[common], help="web dashboard: live charts, knobs, ledger, autopilot, recipes",
        description="Serve the dashboard for a run directory (--dir). Every action goes through the "
                    "tool surface as source 'human'. Loopback only unless --host and --token are given.",
    )
    p.add_argument("--port", type=int, default=8421, help="port (default 8421; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1); others need --token")
    p.add_argument("--token", default=None, help="access token (or $HOTCB_DASH_TOKEN); open the page once "
                                                 "as /?token=T, or send Authorization: Bearer T")
    p.add_argument("--root", default=None, metavar="ROOT",
                   help="a directory of run directories: the runs, a compare view with a metric-space map, "
                        "and each run's own dashboard at /runs/NAME/ (instead of --dir)")
    p.add_argument("--compare", default=None, metavar="OTHER_RUN_DIR",
                   help="a second run directory to overlay (fixed here; the browser cannot name paths)")
    p.add_argument("--config", default=None, metavar="dashboard.yaml", help="DashboardConfig YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set live.poll_ms=100 (repeatable)")
    p.add_argument("--poll-ms", type=int, default=None, help="shorthand for --set live.poll_ms=N")
    p.add_argument("--actor", default=None, help="actor recorded for changes (default 'dashboard')")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from .config import TOKEN_ENV, cli_overrides, load_config
    from .security import check_bind

    run_dir = args.root or getattr(args, "dir", None) or "."
    token = args.token or os.environ.get(TOKEN_ENV) or None
    try:
        check_bind(args.host, token)  # before any import or file access: refuse early and clearly
    except ValueError as e:
        print(f"hotcb serve: {e}", file=sys.stderr)
        return 2
    if not os.path.isdir(run_dir):
        print(f"hotcb serve: {run_dir} is not a directory", file=sys.stderr)
        return 2
    if args.root and args.compare:
        print("hotcb serve: --root compares every run under the root; --compare is for one run", file=sys.stderr)
        return 2
    try:
        cli = cli_overrides(args.overrides)
        if args.poll_ms is not None:
            cli.setdefault("live", {})["poll_ms"] = args.poll_ms
        if args.actor:
            cli["actor"] = args.actor
        cfg = load_config(args.config, cli=cli)
    except (OSError, ValueError) as e:
        print(f"hotcb serve: bad configuration: {e}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from .app import create_app
        from .root_app import create_root_app
    except ImportError as e:
        print(f"hotcb serve: needs the 'dashboard' extra: pip install 'hotcb[dashboard]' ({e})", file=sys.stderr)
        return 2
    try:
        if args.root:
            app = create_root_app(run_dir, config=cfg, token=token, host=args.host)
        else:
            app = create_app(run_dir, config=cfg, token=token, host=args.host, compare_dir=args.compare)
    except ValueError as e:
        print(f"hotcb serve: {e}", file=sys.stderr)
        return 2
    shown = f"[{args.host}]" if ":" in args.host else args.host
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            access_log=args.log_level in ("info", "debug"), timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    # Print the real URL once bound (port 0 picks a free port; tests read this line).
    original = server.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets=sockets)
        for s in server.servers:
            for sock in s.sockets:
                port = sock.getsockname()[1]
                hint = "/?token=<your token>" if token else "/"
                print(f"hotcb serve: dashboard for {os.path.abspath(run_dir)} at http://{shown}:{port}{hint}",
                      file=sys.stderr, flush=True)
                return

    server.startup = startup  # type: ignore[method-assign]
    server.run()
    return 0
