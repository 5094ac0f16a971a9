"""Metric names are hostile input for the page too: a name that is also a property every
JavaScript object has (``constructor``, ``__proto__``, ``toString``) is a metric like any other.

Headless Chromium against ``hotcb serve`` (real uvicorn) over a run whose metrics file someone
else wrote, with a compare run that lacks those names.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hotcb.jsonl_write import append_line
from tests.dashboard.test_dashboard_browser import CHROMIUM_ARGS, WAIT_MS
from tests.dashboard.test_dashboard_proc import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]
OBJECT_NAMES = ("constructor", "__proto__", "toString", "hasOwnProperty")


def write_metrics(run: Path, names: tuple[str, ...], steps: range) -> None:
    run.mkdir()
    for step in steps:
        append_line(run / "hotcb.metrics.jsonl", {"step": step, "wall_time": time.time(),
                                                  "metrics": {n: 1.0 / (step + 1 + i) for i, n in enumerate(names)}})


@contextmanager
def opened(url: str, chromium: str, ready: str, errors: list[str]) -> Iterator[Any]:
    """Headless Chromium on ``url`` until ``ready`` shows; what the page complains of in ``errors``."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.goto(url)
            page.wait_for_selector(ready)
            yield page
        finally:
            browser.close()


def test_metrics_named_like_object_properties_are_charted(tmp_path: Path, chromium: str) -> None:
    """Seen: a metric named ``constructor`` (or ``__proto__``) threw in the page's series merge
    (``target[name] ||= ...`` found ``Object``'s own property), so the snapshot handler stopped:
    no chart, no ledger, no status, for every metric of the run."""
    run, other = tmp_path / "run", tmp_path / "other"
    write_metrics(run, ("loss", *OBJECT_NAMES), range(5))
    write_metrics(other, ("loss",), range(5))
    errors: list[str] = []
    with ServeProcess(run, "--compare", str(other), "--set", "live.poll_ms=100") as srv, \
            opened(srv.page_url, chromium, "body[data-ready='1']", errors) as page:
        for name in ("loss", *OBJECT_NAMES):
            page.wait_for_selector(f".chart-card[data-metric='{name}'][data-points='5']")
        # the live channel goes on: a point logged now reaches its chart
        append_line(run / "hotcb.metrics.jsonl", {"step": 5, "wall_time": time.time(),
                                                  "metrics": {"constructor": 9.0, "loss": 0.1}})
        page.wait_for_selector(".chart-card[data-metric='constructor'][data-points='6']")
        page.wait_for_selector(".chart-card[data-metric='loss'][data-points='6']")
        assert page.evaluate("() => ({}).steps === undefined && Object.prototype.steps === undefined")
    assert not errors, errors


def test_the_root_compare_view_takes_a_metric_named_constructor(tmp_path: Path, chromium: str) -> None:
    """Seen: on ``serve --root``, choosing ``constructor`` (logged by run a only) in the compare
    view threw (run b's ``series.constructor`` is ``Object``), and the next rescan replaced the
    runs table with the error."""
    root = tmp_path / "root"
    root.mkdir()
    write_metrics(root / "a", ("acc", "constructor"), range(5))
    write_metrics(root / "b", ("acc",), range(5))
    errors: list[str] = []
    with ServeProcess(root, "--root", str(root), "--set", "ui.compare_refresh_ms=1000") as srv, \
            opened(srv.page_url, chromium, "body[data-ready=true]", errors) as page:
        page.select_option("#compare-metric", "constructor")
        page.wait_for_function("() => document.querySelectorAll('#compare-chart polyline').length === 1")
        # rescans go on drawing the table and the chosen metric
        page.evaluate("() => { document.body.dataset.ready = 'again'; }")
        page.wait_for_selector("body[data-ready=true]")
        assert page.locator(".runs-table tbody tr").count() == 2
        assert page.locator("#compare-chart polyline").count() == 1
    assert not errors, errors
