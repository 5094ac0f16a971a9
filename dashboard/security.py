"""Who may talk to the dashboard, and what the browser may do with what it gets.

- Loopback by default; a non-loopback bind needs a token (``check_bind`` refuses otherwise).
- With a token, every request (page, assets, API, live channel) must carry it: an
  ``Authorization: Bearer`` / ``X-Hotcb-Token`` header, or the cookie that ``/?token=T`` sets
  on first load (the redirect then drops the token from the address bar and history). The
  cookie is ``HttpOnly`` (page scripts never see it), ``SameSite=Lax`` and ``Secure`` over
  HTTPS; its name carries the server's port (a browser keeps cookies per host, not per port:
  two dashboards on one host would replace each other's); its value is the token
  percent-encoded, so any token (``;``, spaces, quotes, commas, non-ASCII) survives the trip,
  and it is parsed here by hand rather than by ``SimpleCookie``, which drops every cookie of a
  header after one it cannot parse.
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
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode, urlsplit

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
    """Refuse a non-loopback bind without a token: anyone who can reach it could steer training.
    A token with control characters is refused too: no header can carry it."""
    if not is_loopback(host) and not token:
        raise ValueError(f"refusing to serve on non-loopback host {host!r} without a token "
                         "(--token or $HOTCB_DASH_TOKEN): anyone who can reach it could steer training")
    if token and any(ord(c) < 32 or ord(c) == 127 for c in token):
        raise ValueError("the token must not contain control characters (newlines, tabs, ...)")


def cookie_name(port: int | None) -> str:
    """Our cookie's name for the server listening on ``port``. A browser keeps cookies per host
    name, not per port: two dashboards on one host (two runs on 8421 and 8422) would each replace
    the other's token under one name, so the name carries the port."""
    return f"{COOKIE}_{port}" if port else COOKIE


def _port(scope: Scope) -> int | None:
    server = scope.get("server")
    return server[1] if server and len(server) > 1 and isinstance(server[1], int) else None


def cookie_value(token: str) -> str:
    """The token as a cookie value: percent-encoded UTF-8, only RFC 6265 cookie-octets."""
    return quote(token, safe="")


def cookie_tokens(header: str, cookie: str = COOKIE) -> list[bytes]:
    """Every value of the cookie named ``cookie`` in a ``Cookie`` header, decoded to the token's
    bytes. Other cookies, however malformed, are skipped one by one (SimpleCookie gives up on all
    of them)."""
    out = []
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name.strip() == cookie:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out.append(unquote_to_bytes(value))
    return out


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
            raw_query = scope.get("query_string", b"").decode("utf-8", "replace")
            query = dict(parse_qsl(raw_query, keep_blank_values=True))
            given = query.get("token")
            if given is not None and scope["method"] == "GET" and not scope["path"].startswith("/api/"):
                if not _query_token_ok(raw_query, self.token):
                    await _plain(send, 401, "unauthorized: wrong token")
                    return
                await _redirect_with_cookie(send, scope, query, self.token)
                return
            if not self._authorized(headers, cookie_name(_port(scope))):
                await _plain(send, 401, "unauthorized: this dashboard needs its token "
                                        "(open it once as /?token=... or send Authorization: Bearer ...)")
                return
        await self.app(scope, receive, _with_headers(send))

    def _authorized(self, headers: dict[str, str], cookie: str) -> bool:
        assert self.token is not None
        want = self.token.encode()
        # Headers were decoded as latin-1: encoding back gives the bytes sent, compared as bytes
        # with the token's UTF-8 (a non-ASCII token is sent as its UTF-8 bytes).
        auth = headers.get("authorization", "")
        candidates = [headers.get("x-hotcb-token", "").encode("latin-1")]
        if auth[:7].lower() == "bearer ":
            candidates.append(auth[7:].lstrip(" ").encode("latin-1"))
        candidates += cookie_tokens(headers.get("cookie", ""), cookie)
        # compare_digest on every candidate: no early exit that leaks which one was close
        return any([hmac.compare_digest(c, want) for c in candidates if c])


def _token_name(raw_name: str, *, any_case: bool = False) -> bool:
    """Whether a query parameter's name, as sent, reads ``token`` the way the server reads names
    (percent-decoded, ``+`` as a space): ``tok%65n`` is ``token`` too."""
    name = unquote_to_bytes(raw_name.replace("+", " "))
    return (name.lower() if any_case else name) == b"token"


def _query_token_ok(raw_query: str, token: str) -> bool:
    """``?token=`` as sent: percent-decoded, with ``+`` read both as a space (form encoding) and
    as itself (a token pasted unencoded); either reading must equal the token exactly."""
    want = token.encode()
    candidates = []
    for part in raw_query.split("&"):
        name, eq, value = part.partition("=")
        if eq and _token_name(name):
            candidates += [unquote_to_bytes(value.replace("+", " ")), unquote_to_bytes(value)]
    return any([hmac.compare_digest(c, want) for c in candidates])


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
    location = quote(scope["path"], safe="/") + (f"?{rest}" if rest else "")
    # HttpOnly: no script of the page can read it. SameSite=Lax, not Strict: Strict withholds the
    # cookie from a navigation that started on another site (the link to the dashboard clicked
    # in a chat or an email, and this redirect after it), which would answer 401. Lax still keeps
    # it off every cross-site POST, fetch and frame; every action here is a same-origin JSON POST.
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    cookie = f"{cookie_name(_port(scope))}={cookie_value(token)}; Path=/; HttpOnly; SameSite=Lax{secure}"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("ascii")), (b"set-cookie", cookie.encode("ascii")),
                            (b"cache-control", b"no-store"), (b"content-length", b"0"), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": b""})


_QUERY_PARAM = re.compile(r"((?:^|[?&;])([^=&;#?\s\"]+)=)([^&;#\s\"]*)")


def redact_query(text: str) -> str:
    """``text`` with the value of every query parameter whose name reads ``token`` (any case,
    percent-encoded or not: the server decodes names) replaced by ``<redacted>``."""
    return _QUERY_PARAM.sub(lambda m: f"{m.group(1)}<redacted>" if _token_name(m.group(2), any_case=True)
                            else m.group(0), text)


class RedactTokens(logging.Filter):
    """Keeps the first-load ``/?token=T`` out of the access log (uvicorn logs the full path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact_query(str(record.msg)) if isinstance(record.msg, str) else record.msg
        return True


def redact_access_log() -> None:
    """Install ``RedactTokens`` on uvicorn's access and error loggers (once)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
