"""Two dashboards on one host, in one browser: a browser keeps cookies per host name, not per
port, so each server's token cookie must not replace the other's.

Headless Chromium against two ``hotcb serve`` processes (real uvicorn), each with the token it
generated, opened from the URL it printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.test_dashboard_browser import CHROMIUM_ARGS, WAIT_MS
from tests.dashboard.test_dashboard_proc import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_two_dashboards_on_one_host_keep_their_own_tokens(tmp_path: Path, chromium: str) -> None:
    """Seen: opening a second dashboard (another run, another port) set the one cookie name both
    use, so the first tab's next request sent the second server's token and got 401 (its
    reload showed 'unauthorized'; its live channel could not reconnect)."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ServeProcess(tmp_path / "a") as a, ServeProcess(tmp_path / "b") as b, sync_playwright() as pw:
        assert a.token and b.token and a.token != b.token
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            tab_a: Any = context.new_page()
            tab_a.set_default_timeout(WAIT_MS)
            tab_a.goto(a.page_url)
            tab_a.wait_for_selector("body[data-ready='1']")
            tab_b: Any = context.new_page()
            tab_b.set_default_timeout(WAIT_MS)
            tab_b.goto(b.page_url)
            tab_b.wait_for_selector("body[data-ready='1']")
            for tab, srv in ((tab_a, a), (tab_b, b)):
                resp = tab.goto(srv.url + "/")  # each tab reloads its own dashboard, no token in the URL
                assert resp is not None and resp.status == 200, (srv.url, resp and resp.status)
                tab.wait_for_selector("body[data-ready='1']")
                assert tab.evaluate("async () => (await fetch('api/config')).status") == 200
        finally:
            browser.close()
