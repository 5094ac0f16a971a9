"""Who may talk to the dashboard, and what the browser may do with what it gets.

- Loopback by default; a non-loopback bind needs a token (``check_bind`` refuses otherwise).
- With a token, every request (page, assets, API, live channel) must carry it: an
  ``Authorization: Bearer`` / ``X-Hotcb-Token`` header, or the cookie that ``/?token=T`` sets
  on first load (the redirect then drops the token from the address bar and history).
- A request with a foreign ``Origin`` is refused (403): a page on another site cannot drive
  training through a person's browser, nor read the live channel.
- On a loopback bind the ``Host`` header must be a loopback name, which defeats DNS rebinding
  (a foreign site's name resolving to 127.0.0.1 would otherwise count as same-origin).
- Every response carries a strict Content-Security-Policy (scripts only from this server, no
  inline script, no eval), so even a rendering bug cannot run a string from the run.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

COOKIE = "hotcb_dash_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token: anyone who can reach it could steer training."""
    if not is_loopback(host) and not token:
        raise ValueError(f"refusing to serve on non-loopback host {host!r} without a token "
                         "(--token or $HOTCB_DASH_TOKEN): anyone who can reach it could steer training")


def _split_host(value: str) -> str:
    """The host part of a Host header (``[::1]:8421`` -> ``::1``, ``a:80`` -> ``a``)."""
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SecurityMiddleware:
    """A plain ASGI middleware (not BaseHTTPMiddleware): it must not buffer the SSE stream."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool):
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.loopback_only and host and not is_loopback(_split_host(host)):
            await _plain(send, 403, "forbidden: this dashboard answers to loopback host names only")
            return
        origin = headers.get("origin")
        if origin is not None and not _same_origin(origin, host):
            await _plain(send, 403, "forbidden: foreign origin")
            return
        if self.token:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.get("token")
            if given is not None and scope["method"] == "GET" and not scope["path"].startswith("/api/"):
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    await _plain(send, 401, "unauthorized: wrong token")
                    return
                await _redirect_with_cookie(send, scope, query, self.token)
                return
            if not self._authorized(headers):
                await _plain(send, 401, "unauthorized: this dashboard needs its token "
                                        "(open it once as /?token=... or send Authorization: Bearer ...)")
                return
        await self.app(scope, receive, _with_headers(send))

    def _authorized(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        want = self.token.encode()
        auth = headers.get("authorization", "")
        candidates = [headers.get("x-hotcb-token", "")]
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:].strip())
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is just "no cookie"
            pass
        if COOKIE in cookie:
            candidates.append(cookie[COOKIE].value)
        # compare_digest on every candidate: no early exit that leaks which one was close
        return any([hmac.compare_digest(c.encode(), want) for c in candidates if c])


def _same_origin(origin: str, host: str) -> bool:
    if origin == "null" or not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def _with_headers(send: Send) -> Send:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            existing = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = list(message.get("headers", [])) + [
                (k, v) for k, v in SECURITY_HEADERS if k not in existing]
        await send(message)

    return wrapped


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def _redirect_with_cookie(send: Send, scope: Scope, query: dict[str, str], token: str) -> None:
    rest = urlencode({k: v for k, v in query.items() if k != "token"})
    location = scope["path"] + (f"?{rest}" if rest else "")
    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1")),
                            (b"content-length", b"0"), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": b""})
