"""The tool catalog: one ordered list, served by composition, with closed sets typed as enums."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hotcb.mcp_server import catalog
from hotcb.mcp_server.catalog import TOOLS
from hotcb.mcp_server.registry import InvalidArguments, UnknownTool
from hotcb.mcp_server.schemas import OPS
from hotcb.mcp_server.server import build_server
from hotcb.mcp_server.tools import HotcbTools
from mcp import Client
from mcp_types import Implementation


def test_the_catalog_is_the_registry_and_each_tool_has_one_group_method() -> None:
    assert list(TOOLS) == [s.name for s in catalog.CATALOG]
    for spec in catalog.CATALOG:
        assert callable(getattr(spec.group, spec.name)) and spec.description
        assert (spec.profile == "observe") == spec.read_only


def test_served_tools_follow_the_audience(tmp_path: Path) -> None:
    agent = {s.name for s in HotcbTools(tmp_path, source="agent").specs()}
    human = {s.name for s in HotcbTools(tmp_path, source="human").specs()}
    pilot = {s.name for s in HotcbTools(tmp_path, source="rule", for_autopilot=True).specs()}
    assert {"lock_knobs", "decide_proposal"} <= human - agent
    assert "autopilot_process" not in agent | human and "autopilot_process" in pilot
    with pytest.raises(UnknownTool):
        HotcbTools(tmp_path, source="agent").call("autopilot_process", {"action": "whoami"})
    # The groups share one context: an alert recorded through the facade is listed by the tool.
    tools = HotcbTools(tmp_path, source="rule", actor="r")
    tools.record_alert(rule="r", kind="k", message="m")
    assert tools.call("list_alerts", {})["total"] == 1


def test_op_is_a_closed_enum_and_an_unknown_op_is_refused_by_name(tmp_path: Path) -> None:
    tools = HotcbTools(tmp_path, source="agent")
    with pytest.raises(InvalidArguments, match="unknown rescue op 'explode'; known: enable, disable, rollback"):
        tools.call("apply_op", {"module": "rescue", "op": "explode"})

    async def main() -> None:
        async with Client(build_server(tmp_path), client_info=Implementation(name="t", version="1")) as c:
            listed = {t.name: t for t in (await c.list_tools()).tools}
        schema = listed["apply_op"].input_schema["properties"]
        assert schema["op"]["enum"] == list(OPS)
        assert {"cb", "tune", "core", "rescue"} <= set(schema["module"]["anyOf"][0]["enum"])
        assert listed["apply_op"].annotations.destructive_hint and listed["read_ledger"].annotations.read_only_hint

    anyio.run(main)
