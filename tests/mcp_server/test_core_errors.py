"""The tool surface maps core's errors to its own in one function, by kind."""

from __future__ import annotations

import os

import pytest
from hotcb.mcp_server.core_errors import tool_error
from hotcb.mcp_server.registry import InvalidArguments, Refused, ToolError

from hotcb.actuators.actuator import ValueRefused
from hotcb.desired import DesiredStateError
from hotcb.errors import HotcbError, RunLocked
from hotcb.guard import GuardRefusal
from hotcb.jsonl import UnsafeFile, open_nofollow
from hotcb.modules.callbacks import CallbackLoadError
from hotcb.ops import CommandError, parse_command


@pytest.mark.parametrize(("error", "tool_kind", "http_status"), [
    (CommandError("no module"), InvalidArguments, 422),
    (DesiredStateError("not a mapping"), InvalidArguments, 422),
    (ValueRefused("lr must be > 0"), Refused, 409),
    (GuardRefusal("lr is locked by human"), Refused, 409),
    (CallbackLoadError("no such module"), ToolError, 409),
    (RunLocked("/runs/a", {"pid": 7}), ToolError, 409),
    (HotcbError("anything else"), ToolError, 409),
])
def test_each_core_error_becomes_its_tool_error(error, tool_kind, http_status):
    mapped = tool_error(error, "while testing: ")
    assert type(mapped) is tool_kind
    assert mapped.http_status == http_status
    assert str(mapped) == f"while testing: {error}"


def test_a_real_unsafe_file_maps_to_a_conflict(tmp_path):
    (tmp_path / "real").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeFile) as caught:
        open_nofollow(tmp_path / "link", os.O_RDONLY)
    mapped = tool_error(caught.value)
    assert type(mapped) is ToolError and "symlink" in str(mapped)


def test_a_real_malformed_command_maps_to_invalid_arguments():
    with pytest.raises(CommandError) as caught:
        parse_command({"module": "opt"})
    assert type(tool_error(caught.value)) is InvalidArguments


def test_a_core_error_inside_a_tool_reaches_the_caller_as_a_tool_error(tmp_path):
    from hotcb.mcp_server.tools import HotcbTools

    run = tmp_path / "run"
    run.mkdir()
    (run / "hotcb.commands.jsonl").symlink_to(tmp_path / "elsewhere")  # a hostile run dir
    tools = HotcbTools(run, source="human", wait_s=0)
    with pytest.raises(ToolError) as caught:
        tools.call("apply_op", {"module": "core", "op": "pause", "reason": "test"})
    assert type(caught.value) is ToolError and "symlink" in str(caught.value)
    assert not (tmp_path / "elsewhere").exists()  # nothing written through the link
