"""The autopilot as an MCP client: the tool surface reached through a real MCP server.

``McpBackend(McpTarget.stdio(run_dir))`` spawns ``hotcb mcp RUN_DIR --for-autopilot`` and talks
to it over stdio; ``McpBackend(McpTarget.http(url, token))`` connects to a running
``hotcb mcp RUN_DIR --http --for-autopilot`` server. ``backend.tools(source, actor)`` is an
``AutopilotTools`` like ``HotcbTools`` (the typed tool methods, ``status_doc``, ``liveness``,
``record_alert``, ``load_ai_state``, ``save_ai_state``; and ``call`` by name), so the rules,
alert rules and the LLM autopilot run unchanged over it. Each structured result is validated
into the tool's own output model; a reply that does not fit is a ``ToolError``, said once here.

Identity: each call names its source (``rule`` / ``agent``) and actor (the rule id / the model
name) in the request's ``_meta``; only a ``--for-autopilot`` server honours it (and never for
``human``), and the guard applies in full to both. Alerts and the LLM's memory go through that
server's ``autopilot_process`` tool. An ordinary ``hotcb mcp`` server (what a desktop client
uses) offers neither, and ``start()`` says so instead of silently acting under the wrong label.

The session itself (a background event loop, timeouts, reconnects) is ``connection``.
"""

from __future__ import annotations

import json
from typing import Any

from hotcb.agent.mcp_client.connection import CLIENT_NAME, McpConnection, McpTarget, McpUnavailable
from hotcb.mcp_server.registry import InvalidArguments, ToolError
from hotcb.mcp_server.tools_alerts import Alert
from hotcb.mcp_server.tools_autopilot import (
    AUTOPILOT_PROCESS_SOURCES as AUTOPILOT_SOURCES,
)
from hotcb.mcp_server.tools_autopilot import (
    META_ACTOR,
    META_SOURCE,
    AutopilotProcessInput,
)
from hotcb.mcp_server.tools_protocol import AutopilotTools, Out
from pydantic import BaseModel, ValidationError

from hotcb.jsonl_write import dumps
from hotcb.vocabulary import Source

PROCESS_TOOL = "autopilot_process"


class McpTools(AutopilotTools):
    """``HotcbTools``'s interface, as far as the autopilot uses it, over an MCP connection, acting
    as one identity (``source``, ``actor``) of a ``--for-autopilot`` server."""

    def __init__(self, conn: McpConnection, *, source: str, actor: str | None):
        if source not in AUTOPILOT_SOURCES:
            raise ValueError(f"the autopilot acts as {' or '.join(AUTOPILOT_SOURCES)} over MCP, not {source!r}")
        self.conn = conn
        self.source = source
        self.actor = actor

    def call(self, name: str, arguments: dict[str, Any] | None = None, *, actor: str | None = None,
             timeout_s: float | None = None) -> dict[str, Any]:
        """Call a tool as this identity. Raises ToolError (a refusal) or McpUnavailable."""
        meta: dict[str, Any] = {META_SOURCE: self.source}
        who = actor or self.actor
        if who:
            meta[META_ACTOR] = who
        # JSON without NaN/inf: a model's `lr: NaN` reaches the guard as "nan" (refused there), not null.
        args = json.loads(dumps(arguments or {}))
        if timeout_s is None and isinstance(args.get("wait_s"), (int, float)):
            timeout_s = max(self.conn.call_timeout_s, float(args["wait_s"]) + 30)
        return self.conn.call_tool(name, args, meta=meta, timeout_s=timeout_s)

    def invoke(self, name: str, args: BaseModel, out: type[Out], *, actor: str | None = None) -> Out:
        """The ``Tools`` protocol's one hook: ``args`` sent as JSON, the structured result validated
        into ``out`` (a reply that does not fit is a ``ToolError``, never a half-read dict)."""
        data = self.call(name, args.model_dump(mode="json", exclude_unset=True), actor=actor)
        try:
            return out.model_validate(data)
        except ValidationError as e:
            raise ToolError(f"{name} returned a result that is not a {out.__name__}: "
                            f"{e.error_count()} problem(s), first: {e.errors()[0]['msg']}") from None

    def status_doc(self) -> dict[str, Any]:
        # over MCP the status file is read through get_status (the fields the autopilot reads)
        return self.get_status().model_dump(mode="json")

    def liveness(self) -> dict[str, Any]:
        st = self.get_status()
        return {"state": st.liveness, "reason": st.reason}

    def record_alert(self, *, rule: str, kind: str, message: str, metric: str | None = None,
                     severity: str = "warning", value: Any = None, step: int | None = None) -> Alert:
        if not (value is None or isinstance(value, (bool, int, float, str))):
            value = str(value)
        out = self.autopilot_process(_process_input({"action": "record_alert", "alert": {
            "rule": rule, "kind": kind, "message": message[:4000], "metric": metric, "severity": severity,
            "value": value, "step": step}}))
        if out.alert is None:
            raise ToolError("autopilot_process recorded no alert")
        return out.alert

    def load_ai_state(self) -> dict[str, Any]:
        return self.autopilot_process(AutopilotProcessInput(action="load_state")).state or {}

    def save_ai_state(self, state: dict[str, Any]) -> None:
        self.autopilot_process(_process_input({"action": "save_state", "state": state}))


def _process_input(data: dict[str, Any]) -> AutopilotProcessInput:
    """The channel's input, checked here as the server would: an invalid alert or an oversized
    state is the same ``InvalidArguments`` a server's refusal would be, not a pydantic error."""
    try:
        return AutopilotProcessInput.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        raise InvalidArguments(f"invalid arguments for {PROCESS_TOOL}: {'.'.join(map(str, first['loc']))}: "
                               f"{first['msg']}") from None


class McpBackend:
    """The autopilot's tools over one MCP connection: one ``McpTools`` view per identity."""

    def __init__(self, target: McpTarget, *, connect_timeout_s: float = 60.0, call_timeout_s: float = 60.0,
                 retry_s: float = 5.0):
        self.target = target
        self.conn = McpConnection(target, connect_timeout_s=connect_timeout_s, call_timeout_s=call_timeout_s,
                                  retry_s=retry_s)
        self._timeouts = (connect_timeout_s, call_timeout_s)

    def describe(self) -> str:
        return f"MCP {self.target.describe()}"

    def start(self) -> McpBackend:
        """Connect and check the server serves the autopilot (``--for-autopilot``): McpUnavailable if not.
        On failure the connection is closed (nothing is left running)."""
        try:
            self._check()
        except BaseException:
            self.conn.close()
            raise
        return self

    def _check(self) -> None:
        self.conn.start()
        if PROCESS_TOOL not in self.conn.tool_names:
            raise McpUnavailable(
                f"{self.target.describe()} does not serve the autopilot: start it with "
                f"`hotcb mcp RUN_DIR --for-autopilot` (with --http/--token for a URL). An ordinary server "
                f"fixes one source for every call and offers no alerts or AI memory to its clients.")
        who = McpTools(self.conn, source="rule", actor=None).autopilot_process(AutopilotProcessInput(action="whoami"))
        if who.source != "rule":
            raise McpUnavailable(f"{self.target.describe()} did not act as 'rule' when asked (got {who.source!r})")

    def tools(self, source: str, actor: str | None) -> McpTools:
        return McpTools(self.conn, source=source, actor=actor)

    def set_mode(self, mode: str, reason: str) -> None:
        """Set the run's mode as the person who started this autopilot. Only a human-source server
        may: over stdio a short-lived ``hotcb mcp RUN --source human`` session; over HTTP the
        mode is left to a person (dashboard, ``hotcb autopilot --mode`` where the run lives)."""
        if self.target.run_dir is None:
            raise ToolError("over --mcp-url the autopilot cannot set the mode (the server never acts as a human); "
                            "set it with the dashboard or `hotcb autopilot --dir RUN --mode MODE --once`")
        human = McpTarget.stdio(self.target.run_dir, "--source", Source.HUMAN.value, "--actor", CLIENT_NAME)
        with McpConnection(human, connect_timeout_s=self._timeouts[0], call_timeout_s=self._timeouts[1]) as conn:
            conn.call_tool("autopilot", {"action": "set", "mode": mode, "reason": reason})

    def close(self) -> None:
        self.conn.close()
