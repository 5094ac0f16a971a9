"""A number for the LLM autopilot from the environment (``HOTCB_AI_*``).

Unset or empty gives the default; a value that is not a number is ignored with a warning rather
than stopping the autopilot over a typo.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("hotcb.agent.llm.env_number")


def env_number(name: str, default: float, kind: type = float) -> Any:
    raw = os.environ.get(name)
    try:
        return kind(raw) if raw not in (None, "") else default
    except ValueError:
        log.warning("ignoring %s=%r (not a number)", name, raw)
        return default
