"""Dashboard security: binding, token, path traversal, foreign Origin, DNS rebinding."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hotcb.dashboard.app import create_app
from hotcb.dashboard.security import cookie_name, cookie_value

from tests.dashboard.test_dashboard_proc import ServeProcess

BASE = "http://127.0.0.1:8421"
COOKIE = cookie_name(8421)  # the cookie of the server at BASE
TOKEN = "s3cret-token_for-tests"


def test_non_loopback_without_token_is_refused(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "hotcb.cli", "serve", "--dir", str(tmp_path), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "without a token" in out.stderr
    with pytest.raises(ValueError, match="token"):
        create_app(tmp_path, host="0.0.0.0")
    create_app(tmp_path, host="0.0.0.0", token=TOKEN)  # with a token it may


def test_token_on_every_request(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path, token=TOKEN), base_url=BASE, follow_redirects=False) as c:
        for path in ("/", "/api/config", "/api/live", "/static/js/main.js"):
            assert c.get(path).status_code == 401, path
        assert c.post("/api/tools/get_status", json={}).status_code == 401
        assert c.get("/api/config", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/config", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.post("/api/tools/get_status", json={}, headers={"X-Hotcb-Token": TOKEN}).status_code == 200
        assert c.get("/?token=wrong").status_code == 401
        # first load with ?token= sets an HttpOnly cookie and drops the token from the address
        r = c.get("/?token=" + TOKEN)
        assert r.status_code == 303 and r.headers["location"] == "/"
        set_cookie = r.headers["set-cookie"]
        assert set_cookie.startswith(f"{COOKIE}=") and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
        c.cookies.set(COOKIE, TOKEN)
        assert c.get("/").status_code == 200
        assert c.get("/api/config").status_code == 200
        # the token is never part of what the page is served
        assert TOKEN not in c.get("/api/config").text


def raw_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send the path byte for byte (httpx would normalize '..' segments away)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", f"127.0.0.1:{port}")
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


TRAVERSALS = [
    "/static/../../etc/passwd", "/static/../../../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static//etc/passwd", "/static/../app.py", "/static/%2e%2e/app.py",
    "/static/..\\..\\app.py", "/../../etc/passwd", "/api/tools/..%2f..%2fetc%2fpasswd", "/static/js/../../api.py",
]


def test_path_traversal_is_refused(tmp_path: Path) -> None:
    with ServeProcess(tmp_path) as srv:
        for path in TRAVERSALS:
            status, body = raw_get(srv.port, path, srv.auth())
            assert status in (400, 404, 405), (path, status)
            assert b"root:" not in body and b"import " not in body, path
        status, _ = raw_get(srv.port, "/static/js/main.js", srv.auth())
        assert status == 200  # the same route serves what is shipped


def test_no_endpoint_takes_a_path(tmp_path: Path) -> None:
    """Routes take a tool name or an asset name (a whitelist key), nothing else; tool arguments that
    name files are judged by the tool surface, which keeps them inside the run directory."""
    app = create_app(tmp_path)
    params = {p for route in app.routes for p in getattr(route, "param_convertors", {})}
    assert params <= {"name"}
    with TestClient(app, base_url=BASE) as c:
        r = c.post("/api/tools/apply_op", json={"module": "cb", "op": "load", "id": "x",
                                                "target": {"kind": "python_file", "path": "../../etc/passwd", "symbol": "X"}})
        assert r.status_code == 409 and "outside the run directory" in r.json()["error"]
        r = c.post("/api/tools/apply_op", json={"module": "cb", "op": "load", "id": "x",
                                                "target": {"kind": "python_file", "path": "/etc/passwd", "symbol": "X"}})
        assert r.status_code == 409
        # the compare run is fixed at start-up: a query parameter cannot point it anywhere
        r = c.get("/api/compare", params={"dir": "/etc", "path": "/etc"})
        assert r.status_code == 404 and "root:" not in r.text


def test_foreign_origin_and_rebinding_are_refused(tmp_path: Path) -> None:
    with ServeProcess(tmp_path) as srv:
        own = f"http://127.0.0.1:{srv.port}"
        r = srv.get("/api/live", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        r = srv.post("/api/tools/apply_op", {"module": "core", "op": "pause"}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        assert srv.get("/api/live", headers={"Origin": "null"}).status_code == 403
        # a page on another site whose name resolves to 127.0.0.1 (DNS rebinding)
        r = httpx.get(own + "/api/config", headers={"Host": "evil.example"}, timeout=30)
        assert r.status_code == 403
        # the page's own origin is fine, on the live channel too
        with httpx.stream("GET", own + "/api/live", headers=srv.auth({"Origin": own}), timeout=30) as resp:
            assert resp.status_code == 200
            first = next(line for line in resp.iter_lines() if line.startswith("data: "))
            assert '"type":"snapshot"' in first


def test_token_guards_live_channel_on_real_server(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, "--token", TOKEN) as srv:
        assert srv.get("/api/live", auth=False).status_code == 401
        with httpx.stream("GET", srv.url + "/api/live", cookies={cookie_name(srv.port): TOKEN}, timeout=30) as resp:
            assert resp.status_code == 200


# Every character a cookie or a URL would have to quote: ; , space " = \\ % + / and non-ASCII.
ODD_TOKEN = 'p@ss w;rd,"q"=\\é+%/ü'


def test_token_with_characters_that_need_quoting(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path, token=ODD_TOKEN), base_url=BASE, follow_redirects=False) as c:
        r = c.get("/?token=" + quote(ODD_TOKEN, safe="") + "&keep=1")
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/?keep=1"  # the token leaves the address bar, the rest stays
        assert r.headers["cache-control"] == "no-store"
        name, _, rest = r.headers["set-cookie"].partition("=")
        value, *attrs = [a.strip() for a in rest.split(";")]
        assert name == COOKIE and value == cookie_value(ODD_TOKEN)
        assert all(ch.isalnum() or ch in "%-._~" for ch in value)  # RFC 6265 cookie-octets only
        assert set(attrs) == {"Path=/", "HttpOnly", "SameSite=Lax"}  # no Secure over plain http
        # the browser sends it back as it got it, beside other cookies, even malformed ones
        for header in (f"{COOKIE}={value}", f'theme="dark mode; x=1; {COOKIE}={value}', f'{COOKIE}="{value}"'):
            assert c.get("/api/config", headers={"Cookie": header}).status_code == 200, header
        assert c.get("/api/config", headers={"Cookie": f"{COOKIE}={value}x"}).status_code == 401
        # the raw token as a header (UTF-8 bytes), and a token typed unencoded with + in it
        assert c.get("/api/config", headers={"X-Hotcb-Token": ODD_TOKEN.encode()}).status_code == 200
        assert c.get("/api/config", headers={"Authorization": b"Bearer " + ODD_TOKEN.encode()}).status_code == 200
        assert c.get("/?token=" + quote(ODD_TOKEN[:-3], safe="")).status_code == 401
    with TestClient(create_app(tmp_path, token="a+b"), base_url=BASE, follow_redirects=False) as c:
        assert c.get("/?token=a+b").status_code == 303
        assert c.get("/?token=a%2Bb").status_code == 303
    # a client's cookie jar completes the round trip: redirect, then the page with the cookie
    with TestClient(create_app(tmp_path, token=ODD_TOKEN), base_url=BASE) as c:
        r = c.get("/?token=" + quote(ODD_TOKEN, safe=""))
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert c.get("/api/config").status_code == 200


def test_cookie_is_secure_over_https_and_control_characters_are_refused(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path, token=TOKEN), base_url="https://127.0.0.1:8421", follow_redirects=False) as c:
        r = c.get("/?token=" + TOKEN)
        assert r.status_code == 303 and "; Secure" in r.headers["set-cookie"]
    for bad in ("line\nbreak", "tab\there", "nul\x00"):
        with pytest.raises(ValueError, match="control characters"):
            create_app(tmp_path, token=bad)


def test_odd_token_cookie_opens_the_live_channel(tmp_path: Path) -> None:
    with ServeProcess(tmp_path, "--token", ODD_TOKEN) as srv:
        r = srv.get("/?token=" + quote(ODD_TOKEN, safe=""), follow_redirects=False)
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].split(";", 1)[0]
        assert srv.get("/api/live?token=" + quote(ODD_TOKEN, safe=""), auth=False).status_code == 401  # the API takes no ?token=
        with httpx.stream("GET", srv.url + "/api/live", headers={"Cookie": cookie}, timeout=30) as resp:
            assert resp.status_code == 200
            first = next(line for line in resp.iter_lines() if line.startswith("data: "))
            assert json.loads(first[6:])["type"] == "snapshot"
