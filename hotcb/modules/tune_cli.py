"""``hotcb tune ...`` commands (registered through the ``hotcb.cli`` entry point group)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the tune subcommands."""
