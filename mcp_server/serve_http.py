"""Streamable HTTP for ``hotcb mcp --http``: the SDK's app behind a bearer-token gate.

The gate is a plain ASGI wrapper in front of everything (including the SDK's routes), so no
request reaches the MCP session without ``Authorization: Bearer <token>``: a missing or wrong
token is a 401. Tokens are compared in constant time. Browser clients on this machine get
their CORS preflight answered (see ``BearerGate``).
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

import anyio
from mcp.server import Server
from mcp.server.transport_security import TransportSecuritySettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(32)


CORS_ALLOW_HEADERS = b"authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id"
CORS_EXPOSE_HEADERS = b"mcp-session-id, mcp-protocol-version"


def loopback_origin(origin: str) -> bool:
    """``http(s)://localhost|127.0.0.1|[::1][:port]``: a page served from this machine."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK


class BearerGate:
    """ASGI middleware: HTTP requests need the bearer token; lifespan events pass through.

    The scheme name is case-insensitive (RFC 7235: ``bearer`` and ``Bearer`` alike). A CORS
    preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from a loopback origin is
    answered without the token (browsers never send credentials on a preflight), so a browser
    client on this machine can connect; its real requests still need the token, and their
    responses carry ``Access-Control-Allow-Origin`` for that origin only."""

    def __init__(self, app: Any, token: str):
        if not token:
            raise ValueError("a bearer token is required")
        self.app = app
        self.expected = token.encode()

    def authorized(self, header: bytes) -> bool:
        scheme, _, given = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(b" "), self.expected)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1")
        cors = origin if origin and loopback_origin(origin) else None
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await _preflight(send, cors)
            return
        if not self.authorized(headers.get(b"authorization", b"")):
            body = json.dumps({"error": "unauthorized", "detail": "send Authorization: Bearer <token>"}).encode()
            extra = _cors_headers(cors)
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="hotcb"'),
                (b"content-length", str(len(body)).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})
            return
        if cors is None:
            await self.app(scope, receive, send)
            return

        async def with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_cors_headers(cors)]
            await send(message)

        await self.app(scope, receive, with_cors)


def _cors_headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    if origin is None:
        return []
    return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
            (b"access-control-expose-headers", CORS_EXPOSE_HEADERS)]


async def _preflight(send: Any, origin: str | None) -> None:
    """204 with the CORS grants for a loopback origin; 403 (no grants) for any other."""
    if origin is None:
        await send({"type": "http.response.start", "status": 403, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 204, "headers": [
        *_cors_headers(origin), (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
        (b"access-control-allow-headers", CORS_ALLOW_HEADERS), (b"access-control-max-age", b"600"),
        (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def http_app(server: Server[Any], token: str, host: str = "127.0.0.1") -> BearerGate:
    # On loopback the SDK also checks Host/Origin (DNS rebinding); beyond it the token is the gate.
    security = None if host in LOOPBACK else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return BearerGate(server.streamable_http_app(host=host, transport_security=security), token)


def serve_http(server: Server[Any], *, host: str, port: int, token: str) -> None:
    import uvicorn

    config = uvicorn.Config(http_app(server, token, host), host=host, port=port, log_level="warning")
    anyio.run(uvicorn.Server(config).serve)
