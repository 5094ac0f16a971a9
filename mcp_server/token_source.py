"""Where a server's or client's token comes from: ``--token-file FILE`` or the environment
(``$HOTCB_MCP_TOKEN``, ``$HOTCB_DASH_TOKEN``), or the ``--token`` flag, which still works but
warns: a process's argv is readable by every local user (``ps``, ``/proc/PID/cmdline``)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

MAX_TOKEN_FILE_BYTES = 4096


def read_token(prog: str, *, given: str | None, flag: str, file: str | None, env: str) -> str | None:
    """The token from ``flag`` (warned about), ``FILE`` (first line, whitespace stripped) or
    ``env``; None when none is set. Raises ValueError for a bad file or both a flag and a file."""
    if given and file:
        raise ValueError(f"{flag} and {flag}-file both given: use one")
    if given:
        print(f"{prog}: warning: {flag} puts the token in the process list, readable by every local user; "
              f"prefer ${env} or {flag}-file FILE", file=sys.stderr)
        return given
    if file:
        return _from_file(prog, file)
    return os.environ.get(env) or None


def _from_file(prog: str, file: str) -> str:
    try:
        with open(file, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as e:
        raise ValueError(f"cannot read the token file {file}: {e.strerror or e}") from e
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ValueError(f"the token file {file} is over {MAX_TOKEN_FILE_BYTES} bytes: not a token")
    lines = data.decode("utf-8", errors="strict").strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise ValueError(f"the token file {file} is empty")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"{prog}: warning: the token file {Path(file).name} is readable by other users (chmod 600 it)",
              file=sys.stderr)
    return token
