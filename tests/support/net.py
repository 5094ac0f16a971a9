"""Loopback addresses for tests: a port nothing listens on (yet)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port that was free a moment ago (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_url() -> str:
    """An OpenAI-style base URL where nothing listens: connection refused."""
    return f"http://127.0.0.1:{free_port()}/v1"
