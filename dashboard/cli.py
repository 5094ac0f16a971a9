"""``hotcb serve``: the web dashboard for one run directory (registered through the
``hotcb.cli`` entry point group; FastAPI and uvicorn are imported inside the handler)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any
from urllib.parse import quote


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``hotcb serve``. Heavy imports happen inside the handler."""
    p = sub.add_parser(
        "serve", parents=[common], help="web dashboard: live charts, knobs, ledger, autopilot, recipes",
        description="Serve the dashboard for a run directory (--dir). Every action goes through the "
                    "tool surface as source 'human'. Loopback only unless --host and --token are given.",
    )
    p.add_argument("--port", type=int, default=8421, help="port (default 8421; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1); others need --token")
    p.add_argument("--token", default=None, help="access token (or $HOTCB_DASH_TOKEN; default: a fresh one, "
                                                 "printed in the URL); open the page once as /?token=T, or send "
                                                 "Authorization: Bearer T")
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="read the access token from FILE (--token is visible to other local users in ps)")
    p.add_argument("--no-token", action="store_true",
                   help="serve without a token (loopback only): then any local process may steer training")
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


class _Refused(Exception):
    """A reason ``hotcb serve`` will not start, said in one line (exit code 2)."""


def cmd_serve(args: argparse.Namespace) -> int:
    from hotcb.parent_watch import watch_parent

    watch_parent()  # started by demo/launch: the server ends with its parent
    run_dir = args.root or getattr(args, "dir", None) or "."
    try:
        token, generated = _token(args)
        _check_run(args, run_dir)
        app = _app(args, run_dir, _config(args), token)
        return _serve(app, args, run_dir, token, generated)
    except _Refused as e:
        print(f"hotcb serve: {e}", file=sys.stderr)
        return 2


def _token(args: argparse.Namespace) -> tuple[str | None, bool]:
    """The access token, and whether it was made here (then it is printed: the only way to learn it)."""
    from hotcb.mcp_server.token_source import read_token

    from .config import TOKEN_ENV
    from .security import check_bind

    try:
        token = read_token("hotcb serve", given=args.token, flag="--token", file=args.token_file, env=TOKEN_ENV)
    except ValueError as e:
        raise _Refused(e) from None
    if args.no_token and token:
        raise _Refused("--no-token and a token (--token or $HOTCB_DASH_TOKEN) contradict each other")
    try:
        check_bind(args.host, token)  # before any import or file access: refuse early and clearly
    except ValueError as e:
        raise _Refused(e) from None
    if token or args.no_token:
        return token, False
    # As notebook servers do: even on loopback every local process (and user) is a caller,
    # and the dashboard acts as a human, so it needs a secret by default.
    import secrets

    return secrets.token_urlsafe(24), True


def _check_run(args: argparse.Namespace, run_dir: str) -> None:
    from hotcb.rundir import open_for_controller

    if args.root and args.compare:
        raise _Refused("--root compares every run under the root; --compare is for one run")
    if args.root:
        if not os.path.isdir(run_dir):
            raise _Refused(f"--root {run_dir} is not a directory")
        return
    try:
        _, note = open_for_controller(run_dir)
    except ValueError as e:
        raise _Refused(e) from None
    if note:
        print(f"hotcb serve: {note}", file=sys.stderr)


def _config(args: argparse.Namespace) -> Any:
    from .config import cli_overrides, load_config

    try:
        cli = cli_overrides(args.overrides)
        if args.poll_ms is not None:
            cli.setdefault("live", {})["poll_ms"] = args.poll_ms
        if args.actor:
            cli["actor"] = args.actor
        return load_config(args.config, cli=cli)
    except (OSError, ValueError) as e:
        raise _Refused(f"bad configuration: {e}") from None


def _app(args: argparse.Namespace, run_dir: str, cfg: Any, token: str | None) -> Any:
    try:
        import uvicorn  # noqa: F401 - checked with the extra's other imports; _serve uses it

        from .app import create_app
        from .root_app import create_root_app
    except ImportError as e:
        raise _Refused(f"needs the 'dashboard' extra: pip install 'hotcb[dashboard]' ({e})") from None
    try:
        if args.root:
            return create_root_app(run_dir, config=cfg, token=token, host=args.host)
        return create_app(run_dir, config=cfg, token=token, host=args.host, compare_dir=args.compare)
    except ValueError as e:
        raise _Refused(e) from None


def _serve(app: Any, args: argparse.Namespace, run_dir: str, token: str | None, generated: bool) -> int:
    import uvicorn

    from .security import redact_access_log

    shown = f"[{args.host}]" if ":" in args.host else args.host
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            access_log=args.log_level in ("info", "debug"), timeout_graceful_shutdown=2)
    redact_access_log()  # after uvicorn.Config, which configures its loggers
    server = uvicorn.Server(config)
    # Print the real URL once bound (port 0 picks a free port; tests read this line).
    original = server.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets=sockets)
        for s in server.servers:
            for sock in s.sockets:
                port = sock.getsockname()[1]
                # A generated token is printed (the only way to learn it); a given one is not
                # echoed into logs (launch writes this line to the run's serve.log).
                hint = "/" if not token else (f"/?token={quote(token, safe='')}" if generated
                                               else "/?token=<your token>")
                print(f"hotcb serve: dashboard for {os.path.abspath(run_dir)} at http://{shown}:{port}{hint}",
                      file=sys.stderr, flush=True)
                return

    server.startup = startup  # type: ignore[method-assign]
    try:
        sock = _bind(args.host, args.port)
    except OSError as e:
        raise _Refused(f"cannot listen on {shown}:{args.port} ({e.strerror or e}); pick another with "
                       "--port P, or --port 0 for a free one") from None
    server.run(sockets=[sock])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a port in use is a clear error before anything is
    printed (uvicorn would log a traceback-like error and the caller might show a wrong URL)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock
