"""Tool calls as models really write them.

A server that returns ``tool_calls`` gives native calls. Many local models (Qwen2.5-Coder behind
llama.cpp with its own chat template) write the call as JSON text instead, bare or in a code
fence, or inside ``<tool_call>`` tags; the server then returns plain content. ``parse_reply``
finds such calls so they are validated and run like native ones, and says how each was had
(``native`` / ``text``). Text that plainly tries to be a call but does not parse is a
``TextCallError``: a model error, answered with a corrective message, never filed as a note.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

FENCE = re.compile(r"```(?:json|tool_call|tool)?\s*\n?(.*?)```", re.S | re.I)
TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S | re.I)
NAME_KEYS = ("name", "tool", "function")
ARG_KEYS = ("arguments", "parameters", "args", "input")


@dataclass(frozen=True)
class ParsedCall:
    id: str
    name: str
    arguments: str  # a JSON object as text, as the native API gives it
    via: str        # "native" | "text"


class TextCallError(ValueError):
    """The reply tries to call a tool in text and the call cannot be read."""


def _as_call(obj: Any) -> tuple[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # {"type":"function","function":{"name":..,"arguments":..}}
        obj = obj["function"]
    name = next((obj[k] for k in NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is None:
        return None
    args: Any = next((obj[k] for k in ARG_KEYS if k in obj), {})
    if isinstance(args, str):  # arguments given as a JSON string, as the native API does
        try:
            args = json.loads(args)
        except (ValueError, RecursionError) as e:  # nested past the parser's depth: unreadable too
            raise TextCallError(f"the arguments of {name!r} are not JSON: {e}") from e
    return name, args


_START = re.compile(r"[{\[]")
# A bracket where no JSON value starts costs a decode attempt, and one attempt may read far (a
# value nested a thousand deep, or unterminated): a reply of brackets alone ('[[[[...', a model
# repeating itself) would cost one such attempt per character. Past this many, the rest of the
# text is not searched (prose with a call in it has a few stray brackets, not hundreds).
MAX_FAILED_STARTS = 256


def _objects(text: str) -> list[Any]:
    """Every top-level JSON value in ``text`` (objects or lists), in order, up to
    ``MAX_FAILED_STARTS`` brackets that start none."""
    dec = json.JSONDecoder()
    out: list[Any] = []
    i = failed = 0
    while (m := _START.search(text, i)) is not None and failed < MAX_FAILED_STARTS:
        j = m.start()
        try:
            val, end = dec.raw_decode(text, j)
        except (ValueError, RecursionError):
            i, failed = j + 1, failed + 1
            continue
        out.append(val)
        i = end
    return out


def _looks_like_call(chunk: str) -> bool:
    return bool(re.search(r'"(name|tool|function)"\s*:', chunk)) and bool(re.search(r'"(arguments|parameters|args)"', chunk))


def text_calls(content: str, known: set[str]) -> list[tuple[str, Any]]:
    """(name, arguments) for each tool call written in ``content``; raises TextCallError when a
    chunk that names a known tool (or looks like a call) does not parse."""
    chunks = [m.group(1) for m in TAGGED.finditer(content)] or [m.group(1) for m in FENCE.finditer(content)] \
        or [content]
    calls: list[tuple[str, Any]] = []
    for chunk in chunks:
        found = []
        for val in _objects(chunk):
            for item in val if isinstance(val, list) else [val]:
                c = _as_call(item)
                if c is not None:
                    found.append(c)
        if not found and (_looks_like_call(chunk) or any(f'"{k}"' in chunk for k in known)):
            raise TextCallError("a tool call written as text could not be read as JSON")
        calls += found
    return calls


def parse_reply(msg: Any, known: set[str]) -> tuple[list[ParsedCall], str]:
    """The calls of one assistant message and its remaining text. Raises TextCallError."""
    native = list(getattr(msg, "tool_calls", None) or [])
    content = getattr(msg, "content", None) or ""
    if native:
        return [ParsedCall(tc.id, tc.function.name, tc.function.arguments or "", "native") for tc in native], content
    calls = text_calls(content, known) if content.strip() else []
    parsed = [ParsedCall(f"text_{i}", name, json.dumps(args), "text") for i, (name, args) in enumerate(calls)]
    return parsed, ("" if parsed else content)
