"""Core's errors as the tool surface's: the one place a ``HotcbError`` becomes a ``ToolError``."""

from __future__ import annotations

from hotcb.errors import HotcbError, InvalidInput, Rejected

from .registry import InvalidArguments, Refused, ToolError


def tool_error(error: HotcbError, prefix: str = "") -> ToolError:
    """The tool error a caller reads for a core error: malformed input is ``InvalidArguments``
    (422), a rule's refusal ``Refused`` (409), and a run-state conflict the base ``ToolError``
    (409). ``prefix`` says what was being done (``"invalid op: "``)."""
    message = f"{prefix}{error}"
    if isinstance(error, InvalidInput):
        return InvalidArguments(message)
    if isinstance(error, Rejected):
        return Refused(message)
    return ToolError(message)
