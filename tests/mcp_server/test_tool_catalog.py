"""The tool catalog: one ordered list, served by composition, with closed sets typed as enums."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

import anyio
import pytest
from hotcb.agent.mcp_client.backend import McpTools
from hotcb.mcp_server import catalog
from hotcb.mcp_server.catalog import TOOLS
from hotcb.mcp_server.registry import PROFILES, InvalidArguments, UnknownTool
from hotcb.mcp_server.schemas import OPS
from hotcb.mcp_server.server import build_server
from hotcb.mcp_server.tools import HotcbTools
from hotcb.mcp_server.tools_observe import LedgerInput
from hotcb.mcp_server.tools_protocol import AutopilotTools, Tools, tool_input
from mcp import Client
from mcp_types import Implementation
from pydantic import BaseModel


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


# The exact tools each `hotcb mcp --tools PROFILE` serves, to an agent and to a person: adding,
# removing or moving a tool between profiles is a change to this list, made on purpose.
SERVED = {
    ("observe", "agent"): ["describe_actuators", "get_status", "list_alerts", "list_proposals", "read_ledger",
                           "read_metrics", "read_trends", "tune_status"],
    ("control", "agent"): ["apply_op", "describe_actuators", "get_status", "list_alerts", "list_proposals",
                           "propose_op", "read_ledger", "read_metrics", "read_trends", "schedule_op", "tune_status"],
    ("all", "agent"): ["apply_op", "autopilot", "describe_actuators", "get_status", "list_alerts", "list_proposals",
                       "propose_op", "read_ledger", "read_metrics", "read_trends", "replay", "schedule_op",
                       "set_alert_rules", "tune_status"],
    ("all", "human"): ["apply_op", "autopilot", "decide_proposal", "describe_actuators", "get_status", "list_alerts",
                       "list_proposals", "lock_knobs", "propose_op", "read_ledger", "read_metrics", "read_trends",
                       "replay", "schedule_op", "set_alert_rules", "tune_status"],
}


def test_each_profile_serves_exactly_its_tools(tmp_path: Path) -> None:
    assert {p for p, _ in SERVED} == set(PROFILES)

    async def listed(profile: str, source: str) -> list[str]:
        async with Client(build_server(tmp_path, source=source, profile=profile),
                          client_info=Implementation(name="t", version="1")) as c:
            return sorted(t.name for t in (await c.list_tools()).tools)

    for (profile, source), names in SERVED.items():
        assert anyio.run(listed, profile, source) == names, (profile, source)


def _tool_methods(cls: type) -> dict[str, Any]:
    return {n: f for n, f in vars(cls).items() if inspect.isfunction(f) and not n.startswith("_") and n != "invoke"}


def test_the_tools_protocol_is_the_catalog() -> None:
    """One typed method per tool, named after it, taking its input model (and who asks, ``actor``)
    and returning its output model, and nothing else; each method runs its own tool with its actor
    (checked through a recording ``invoke``)."""
    methods = _tool_methods(Tools)
    assert sorted(methods) == sorted(TOOLS)
    calls: list[tuple[str, BaseModel, type, str | None]] = []

    class Recorder(Tools):
        def invoke(self, name: str, args: BaseModel, out: type[Any], *, actor: str | None = None) -> Any:
            calls.append((name, args, out, actor))
            return out.model_construct()

    for spec in catalog.CATALOG:
        hints = typing.get_type_hints(methods[spec.name])
        assert hints == {"args": spec.input_model, "actor": str | None, "return": spec.output_model}, spec.name
        args = spec.input_model.model_construct()
        assert isinstance(getattr(Recorder(), spec.name)(args, actor="someone"), spec.output_model)
        assert calls.pop() == (spec.name, args, spec.output_model, "someone")
    # The autopilot's seam adds only what is not a tool, and ``call``: a tool by the name the LLM
    # gave it (the one caller that learns the name at run time).
    assert set(_tool_methods(AutopilotTools)) == {"status_doc", "liveness", "record_alert", "load_ai_state",
                                                  "save_ai_state", "call"}
    assert AutopilotTools in HotcbTools.__mro__ and AutopilotTools in McpTools.__mro__


def test_typed_methods_and_call_run_the_same_tool(tmp_path: Path) -> None:
    tools = HotcbTools(tmp_path, source="rule", actor="r")
    tools.record_alert(rule="r", kind="k", message="m")
    typed = tools.list_alerts(catalog.TOOLS["list_alerts"].input_model())
    assert typed.model_dump(mode="json") == tools.call("list_alerts", {})
    assert tools.get_status().liveness == tools.call("get_status")["liveness"] == "absent"
    # a per-call actor names who asked, for that call only; the source stays the caller's
    propose = catalog.TOOLS["propose_op"].input_model.model_validate({"op": {"module": "core", "op": "pause"},
                                                                    "reason": "r"})
    assert tools.propose_op(propose, actor="rule-x").actor == "rule-x"
    assert tools.propose_op(propose).actor == "r"
    # caller data becomes an input model through the tool's own validation and refusal
    with pytest.raises(InvalidArguments) as by_call:
        tools.call("read_ledger", {"last": 0})
    with pytest.raises(InvalidArguments) as by_input:
        tool_input("read_ledger", LedgerInput, {"last": 0})
    assert str(by_input.value) == str(by_call.value) and "invalid arguments for read_ledger: last" in str(by_call.value)
    with pytest.raises(InvalidArguments, match="read_metrics takes MetricsInput, not LedgerInput"):
        tools.invoke("read_metrics", LedgerInput(), BaseModel)
    with pytest.raises(UnknownTool):
        tools.autopilot_process(catalog.TOOLS["autopilot_process"].input_model(action="whoami"))


def test_docs_describe_each_tool_in_the_generated_table_only() -> None:
    """docs/mcp.md's annotations come from the catalog (the generated table); a hand-written
    row about a tool elsewhere in the page would drift from it."""
    from hotcb.mcp_server import tool_docs

    doc = tool_docs.DOC.read_text()
    head, rest = doc.split(tool_docs.BEGIN, 1)
    outside = head + rest.split(tool_docs.END, 1)[1]
    rows = [line for line in outside.splitlines() if line.startswith("| `")]
    assert not [r for r in rows if any(f"`{name}`" in r.split("|")[1] for name in TOOLS)]


@pytest.mark.slow
def test_the_typed_methods_read_the_same_models_in_process_and_over_mcp(tmp_path: Path) -> None:
    """A real training process and a real ``hotcb mcp --for-autopilot`` server (stdio): each
    typed read returns the same output model either way; a refusal is a ToolError either way."""
    from hotcb.agent.mcp_client.backend import McpBackend, McpTarget
    from hotcb.mcp_server.registry import ToolError
    from hotcb.mcp_server.tools_knobs import ApplyOpInput

    from tests.support.proc import Trainer, wait_for

    run = tmp_path / "run"
    trainer = Trainer(run, steps=100000, sleep=0.01)
    backend = McpBackend(McpTarget.stdio(run), call_timeout_s=60).start()
    try:
        trainer.wait_step(5)
        local: AutopilotTools = HotcbTools(run, source="rule", actor="t", for_autopilot=True)
        remote: AutopilotTools = backend.tools("rule", "t")
        for tools in (local, remote):
            knobs = tools.describe_actuators()
            assert "lr" in {a.key for a in knobs.actuators}
            assert tools.get_status().liveness == "running"
            assert tools.autopilot_process(catalog.TOOLS["autopilot_process"].input_model(action="whoami")).source == "rule"
            with pytest.raises(ToolError, match="refused"):  # x100 is past the guard's per-op ratio
                lr = next(a.value for a in knobs.actuators if a.key == "lr")
                tools.apply_op(ApplyOpInput(module="opt", op="set_params", params={"lr": lr * 100}, reason="t"))
        rejected = LedgerInput(decision="rejected", source="rule")
        # the kernel records each refusal at its next safe point: wait for both
        refusals = wait_for(lambda: (r := local.read_ledger(rejected)).total == 2 and r, 60, what="two refusals")
        assert refusals == remote.read_ledger(rejected)
    finally:
        backend.close()
        trainer.stop()
