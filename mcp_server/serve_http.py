"""Streamable HTTP for ``hotcb mcp --http``: the SDK's app behind a bearer-token gate.

The gate is a plain ASGI wrapper in front of everything (including the SDK's routes), so no
request reaches the MCP session without ``Authorization: Bearer <token>``: a missing or wrong
token is a 401. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(32)


class BearerGate:
    """ASGI middleware: HTTP requests need the bearer token; lifespan events pass through."""

    def __init__(self, app: Any, token: str):
        if not token:
            raise ValueError("a bearer token is required")
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            got = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(got, self.expected):
                body = json.dumps({"error": "unauthorized", "detail": "send Authorization: Bearer <token>"}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="hotcb"'),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(server: MCPServer, token: str, host: str = "127.0.0.1") -> BearerGate:
    # On loopback the SDK also checks Host/Origin (DNS rebinding); beyond it the token is the gate.
    security = None if host in LOOPBACK else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return BearerGate(server.streamable_http_app(host=host, transport_security=security), token)


def serve_http(server: MCPServer, *, host: str, port: int, token: str) -> None:
    import uvicorn

    config = uvicorn.Config(http_app(server, token, host), host=host, port=port, log_level="warning")
    anyio.run(uvicorn.Server(config).serve)
