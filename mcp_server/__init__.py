"""The tool surface: every way to read or change a run, as typed tools (see ``HotcbTools``)."""

from __future__ import annotations

try:
    from .catalog import TOOLS
    from .registry import ToolError, ToolSpec
    from .tools import HotcbTools
except ImportError as e:  # pydantic/numpy come with the extra
    raise ImportError(f"hotcb.mcp_server needs the 'mcp' extra: pip install 'hotcb[mcp]' ({e})") from e

__all__ = ["TOOLS", "HotcbTools", "ToolError", "ToolSpec"]
