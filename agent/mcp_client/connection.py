"""The autopilot's MCP connection: where the server is (``McpTarget``) and one session to it
(``McpConnection``), used from sync code.

The SDK is async; one daemon thread runs an event loop that owns the session, and the sync
autopilot submits calls to it. Every call has a timeout. A server that dies, hangs or refuses
the token raises ``McpUnavailable`` (a ``ConnectionError``, distinct from a tool's refusal,
which is ``ToolError``); the connection is then dropped and re-opened (a stdio server is
re-spawned) at most every ``retry_s`` seconds, so a dead server costs each call nothing but
the error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hotcb.mcp_server.registry import ToolError

log = logging.getLogger("hotcb.agent.mcp")

CLIENT_NAME = "hotcb-autopilot"
# Not passed to a spawned server: it needs neither the LLM key nor an HTTP token.
_ENV_DROP = ("HOTCB_AI_KEY", "HOTCB_MCP_TOKEN")


class McpUnavailable(ConnectionError):
    """The MCP server cannot be reached: not started, dead, hung, or it refused the token."""


@dataclass(frozen=True)
class McpTarget:
    """Where the server is: a run directory to serve over stdio, or an HTTP URL with its token."""

    run_dir: str | None = None
    url: str | None = None
    token: str | None = None
    server_args: tuple[str, ...] = ("--for-autopilot",)

    @classmethod
    def stdio(cls, run_dir: str | os.PathLike[str], *server_args: str) -> McpTarget:
        return cls(run_dir=os.path.abspath(os.fspath(run_dir)), server_args=server_args or ("--for-autopilot",))

    @classmethod
    def http(cls, url: str, token: str | None) -> McpTarget:
        return cls(url=url, token=token)

    def __post_init__(self) -> None:
        if (self.run_dir is None) == (self.url is None):
            raise ValueError("an MCP target is a run directory (stdio) or a URL (HTTP), not both")

    def describe(self) -> str:
        return self.url if self.url else f"hotcb mcp {self.run_dir} {' '.join(self.server_args)} (stdio)"

    def command(self) -> list[str]:
        """The stdio server's command line: this interpreter's hotcb, whatever PATH says."""
        return [sys.executable, "-m", "hotcb.cli", "mcp", str(self.run_dir), *self.server_args]


TIMEOUTS = (TimeoutError, concurrent.futures.TimeoutError, asyncio.TimeoutError)  # distinct types on 3.10


def _leaf(e: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(getattr(e, "exceptions", None), (list, tuple)) and e.exceptions:  # type: ignore[attr-defined]
        e = e.exceptions[0]  # type: ignore[attr-defined]
    return e


def _why(e: BaseException) -> str:
    e = _leaf(e)
    return f"{type(e).__name__}: {e}".strip().rstrip(":")[:500]


def _result_data(name: str, result: Any) -> dict[str, Any]:
    text = "".join(getattr(c, "text", "") for c in (result.content or []))
    if result.is_error:
        raise ToolError(text or f"{name} failed")
    if isinstance(result.structured_content, dict):
        return result.structured_content
    try:
        data = json.loads(text)
    except ValueError:
        raise ToolError(f"{name} returned no structured result: {text[:200]}") from None
    if not isinstance(data, dict):
        raise ToolError(f"{name} returned {type(data).__name__}, not an object")
    return data


class McpConnection:
    """One MCP session, owned by a background event loop, used from sync code.

    ``call_tool`` returns the tool's structured result, raises ``ToolError`` for a tool error
    and ``McpUnavailable`` when the server cannot answer. Thread-safe."""

    def __init__(self, target: McpTarget, *, client_name: str = CLIENT_NAME, connect_timeout_s: float = 60.0,
                 call_timeout_s: float = 60.0, retry_s: float = 5.0):
        self.target = target
        self.client_name = client_name
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s
        self.retry_s = retry_s
        self.tool_names: set[str] = set()
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._client: Any = None  # the live mcp.Client, set and cleared by the session task only
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self._last_attempt: float | None = None
        self._refused_token = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hotcb-mcp-client", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ sync API
    @property
    def connected(self) -> bool:
        return self._client is not None

    def start(self) -> McpConnection:
        """Connect now (a clear ``McpUnavailable`` if the server cannot be reached)."""
        with self._lock:
            self._check_open()
            if not self.connected:
                self._connect()
        return self

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *, meta: dict[str, Any] | None = None,
                  timeout_s: float | None = None) -> dict[str, Any]:
        self._ensure()
        timeout = float(timeout_s or self.call_timeout_s)
        fut = asyncio.run_coroutine_threadsafe(self._acall(name, arguments or {}, meta, timeout), self._loop)
        try:
            result = fut.result(timeout + 10)  # the loop's own timeout fires first; this is the backstop
        except concurrent.futures.CancelledError:
            raise McpUnavailable(f"{self.target.describe()}: the session ended during {name} "
                                 f"({self.last_error or 'closed'})") from None
        except TIMEOUTS:
            fut.cancel()
            self._drop(f"no answer to {name} within {timeout:g}s")
            raise McpUnavailable(f"{self.target.describe()}: no answer to {name} within {timeout:g}s") from None
        except (ToolError, McpUnavailable):
            raise
        except Exception as e:
            from mcp import MCPError
            from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

            if isinstance(e, MCPError) and e.code not in (CONNECTION_CLOSED, REQUEST_TIMEOUT):
                raise ToolError(f"{name}: {e}") from None  # the server answered, with a protocol error
            self._drop(f"{name}: {_why(e)}")
            raise McpUnavailable(f"{self.target.describe()}: {name} failed: {_why(e)}") from None
        return _result_data(name, result)

    def close(self) -> None:
        """End the session (a spawned server exits) and the loop thread. Idempotent; never hangs."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._end_session(), self._loop).result(30)
            except Exception as e:
                log.debug("closing the MCP session: %s", e)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> McpConnection:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ connection state
    def _check_open(self) -> None:
        if self._closed:
            raise McpUnavailable(f"{self.target.describe()}: the connection is closed")

    def _ensure(self) -> None:
        with self._lock:
            self._check_open()
            if self.connected:
                return
            if self._last_attempt is not None and time.monotonic() - self._last_attempt < self.retry_s:
                raise McpUnavailable(f"{self.target.describe()} is unreachable: {self.last_error} "
                                     f"(retrying every {self.retry_s:g}s)")
            self._connect()

    def _connect(self) -> None:
        """Open a session (caller holds the lock)."""
        self._last_attempt = time.monotonic()
        fut = asyncio.run_coroutine_threadsafe(self._open(), self._loop)
        try:
            self.tool_names = fut.result(self.connect_timeout_s + 30)
        except Exception as e:
            fut.cancel()
            why = str(e) if isinstance(e, McpUnavailable) else _why(e)
            if self._refused_token:
                why = "HTTP 401: the server refused the bearer token (check --mcp-token / $HOTCB_MCP_TOKEN)"
            self.last_error = why
            raise McpUnavailable(f"cannot reach the MCP server {self.target.describe()}: {why}") from None
        if self.last_error:
            log.warning("MCP server %s answers again", self.target.describe())
        self.last_error = None

    def _drop(self, why: str) -> None:
        """The session is broken: remember why and close it (a stdio server is terminated)."""
        if self.last_error is None:
            log.warning("MCP server %s unreachable: %s (retrying every %gs)", self.target.describe(), why,
                        self.retry_s)
        self.last_error = why
        self._last_attempt = time.monotonic()
        self._client = None  # no new call goes to it while it closes (a hung stdio server may take seconds)
        stop = self._stop
        if stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(stop.set)

    # ------------------------------------------------------------------ the loop's side
    @contextlib.asynccontextmanager
    async def _client_cm(self) -> AsyncIterator[Any]:
        from mcp import Client, StdioServerParameters
        from mcp_types import Implementation

        from hotcb import __version__

        info = Implementation(name=self.client_name, version=__version__)
        kw: dict[str, Any] = {"client_info": info, "read_timeout_seconds": self.call_timeout_s, "cache": None}
        if self.target.url is None:
            env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
            params = StdioServerParameters(command=self.target.command()[0], args=self.target.command()[1:], env=env)
            async with Client(params, **kw) as client:
                yield client
            return
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers = {"Authorization": f"Bearer {self.target.token}"} if self.target.token else {}

        async def on_response(response: Any) -> None:  # the SDK reports a 401 as a generic error response
            if response.status_code in (401, 403):
                self._refused_token = True

        self._refused_token = False
        # The SDK's defaults: 30 s to connect/write, a long read for response streams; calls have their own timeout.
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0),
                                      event_hooks={"response": [on_response]}) as http, \
                Client(streamable_http_client(self.target.url, http_client=http), **kw) as client:
            yield client

    async def _open(self) -> set[str]:
        await self._end_session()  # a broken session's leftovers first
        ready: asyncio.Future[set[str]] = self._loop.create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._session(ready, self._stop))
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout_s)
        except TIMEOUTS:
            await self._end_session()
            raise McpUnavailable(f"no MCP handshake within {self.connect_timeout_s:g}s") from None

    async def _session(self, ready: asyncio.Future[set[str]], stop: asyncio.Event) -> None:
        error: BaseException | None = None
        try:
            async with self._client_cm() as client:
                names = {t.name for t in (await client.list_tools()).tools}
                self._client = client
                if not ready.done():
                    ready.set_result(names)
                await stop.wait()
        except BaseException as e:
            error = e
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self._client = None
            for task in list(self._pending):  # calls waiting on a dead session fail now, not at their timeout
                task.cancel()
            if not ready.done():
                ready.set_exception(McpUnavailable(_why(error) if error else "the session closed during the handshake"))
            elif error is not None and not isinstance(error, asyncio.CancelledError) and not self._closed:
                self._drop(f"session ended: {_why(error)}")

    async def _end_session(self) -> None:
        task, stop = self._task, self._stop
        if task is None or task.done():
            return
        if stop is not None:
            stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 15)
        except Exception:
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 10)

    async def _acall(self, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None, timeout: float) -> Any:
        client = self._client
        if client is None:
            raise McpUnavailable(f"{self.target.describe()}: not connected ({self.last_error or 'session closed'})")
        task = asyncio.current_task()
        if task is not None:
            self._pending.add(task)
        try:
            return await asyncio.wait_for(client.call_tool(name, arguments, read_timeout_seconds=timeout, meta=meta),
                                          timeout)
        finally:
            if task is not None:
                self._pending.discard(task)
