"""The LLM edge's two boundaries: run data going in, secrets going out.

Run-controlled strings (metric names, alert messages, proposal and ledger reasons, tool results)
reach the model only inside a ``<run-data>`` fence that the system prompt declares untrusted
data; a string that tries to close the fence or fake a new one has its tag defused. Secrets
(the API key, ``Bearer``/``Authorization`` values, ``user:password@`` in URLs, ``sk-...`` keys)
are redacted from every text the autopilot writes to a run file, a log or a tool output.
"""

from __future__ import annotations

import re
from typing import Any

FENCE_OPEN = '<run-data untrusted="true">'
FENCE_CLOSE = "</run-data>"
_TAG = re.compile(r"<\s*(/?)\s*run-data", re.I)
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

REDACTED = "[redacted]"
_PATTERNS = (
    re.compile(r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*)([\"']?)[^\"',}\n]+"),
    re.compile(r"(?i)(\bbearer\s+)()[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)(\bbasic\s+)()(?=[A-Za-z0-9+/]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}"),
    re.compile(r"(?i)(api[-_]?key\s*[\"']?\s*[:=]\s*)([\"']?)[^\s\"',}]+"),
    re.compile(r"()()\bsk-[A-Za-z0-9_-]{8,}"),
)
_URL_CRED = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@")


def fence(text: str) -> str:
    """``text`` as untrusted run data: inside the fence, its own fence tags defused."""
    clean = _TAG.sub(lambda m: f"<{m.group(1)}run_data", _CTRL.sub(" ", text))
    return f"{FENCE_OPEN}\n{clean}\n{FENCE_CLOSE}"


def unechoed(text: str) -> str:
    """A model's note without the run data it echoed (a small model repeats the digest): what it
    wrote after the fence."""
    if FENCE_OPEN not in text:
        return text
    return text.split(FENCE_CLOSE)[-1] if FENCE_CLOSE in text else "(echoed the digest)"


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """``text`` with credentials removed: the given secrets verbatim, then the usual shapes."""
    out = str(text)
    for s in secrets:
        if s and len(s) >= 4:
            out = out.replace(s, REDACTED)
    out = _URL_CRED.sub(lambda m: f"{m.group(1)}{REDACTED}@", out)
    for p in _PATTERNS:
        out = p.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", out)
    return out


def redact_url(url: str | None) -> str | None:
    """A base URL as it may be stored or shown: credentials and key-like query values removed."""
    if url is None:
        return None
    out = _URL_CRED.sub(lambda m: f"{m.group(1)}{REDACTED}@", url)
    return re.sub(r"(?i)([?&](?:api[-_]?key|key|token|access_token)=)[^&\s]+", rf"\g<1>{REDACTED}", out)


def redact_tree(value: Any, secrets: tuple[str, ...] | list[str] = ()) -> Any:
    """Every string in a JSON-like value redacted (for the AI state before it is written)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v, secrets) for v in value]
    return value
