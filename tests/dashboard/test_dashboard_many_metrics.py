"""A run whose metrics file holds thousands of metric names (a per-sample metric, careless or
hostile): the page draws a bounded number of charts, losses first, says "showing N of M
metrics", and its filter box finds any other one by name. Names stay text.

Headless Chromium against ``hotcb serve`` (real uvicorn), logged in with the printed token.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import hotcb.dashboard
import pytest

from tests.dashboard.test_dashboard_browser_names import opened
from tests.dashboard.test_dashboard_proc import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]
NAMES = 3000
CHARTS_JS = Path(hotcb.dashboard.__file__).parent / "static" / "js" / "charts.js"
MAX_CHARTS = int(re.search(r"export const MAX_CHARTS = (\d+);", CHARTS_JS.read_text()).group(1))  # the page's one bound
EVIL = '<img src=x onerror="window.__pwned=1">_loss'


def write_run(run: Path) -> list[str]:
    run.mkdir()
    names = [f"sample_{i:05d}" for i in range(NAMES)] + ["train_loss", "val_acc", EVIL]
    with open(run / "hotcb.metrics.jsonl", "w") as f:
        for step in range(1, 4):
            f.write(json.dumps({"step": step, "wall_time": time.time(),
                                "metrics": {n: i / step for i, n in enumerate(names)}}) + "\n")
    return names


def test_thousands_of_metric_names_draw_a_bounded_page(tmp_path: Path, chromium: str) -> None:
    names = write_run(tmp_path / "run")
    errors: list[str] = []
    with ServeProcess(tmp_path / "run", "--set", "live.poll_ms=100") as srv, \
            opened(srv.page_url, chromium, "body[data-ready='1']", errors) as page:
        page.wait_for_selector(f"#chart-count[data-shown='{MAX_CHARTS}']")
        assert page.locator(".chart-card").count() == MAX_CHARTS
        assert page.locator("#chart-count").text_content() == f"showing {MAX_CHARTS} of {len(names)} metrics"
        drawn = page.eval_on_selector_all(".chart-card", "cards => cards.map((c) => c.dataset.metric)")
        assert drawn[:3] == sorted(["train_loss", EVIL]) + ["val_acc"]  # losses, then accuracies, then by name
        assert drawn[3:] == [f"sample_{i:05d}" for i in range(MAX_CHARTS - 3)]

        # a name that is HTML is shown as its text, and nothing of it runs
        shown = page.eval_on_selector_all(".chart-name", "els => els.map((e) => e.textContent)")
        assert EVIL in shown
        assert page.evaluate("() => window.__pwned === undefined && document.querySelectorAll('#charts img').length === 0")

        # the filter finds a metric the snapshot did not carry, and draws it with its points
        page.fill("#metric-filter", "SAMPLE_02718")
        page.wait_for_selector(".chart-card[data-metric='sample_02718'][data-points='3']")
        assert page.locator(".chart-card").count() == 1
        assert page.locator("#chart-count").text_content() == "showing 1 of 1 metrics matching “SAMPLE_02718”"
        # its new points reach it live, though the live stream carries only the first names
        with open(tmp_path / "run" / "hotcb.metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": 4, "wall_time": time.time(),
                                "metrics": {n: 0.25 * i for i, n in enumerate(names)}}) + "\n")
        page.wait_for_selector(".chart-card[data-metric='sample_02718'][data-points='4']")
        page.fill("#metric-filter", "sample_027")
        page.wait_for_selector("#chart-count[data-total='100']")
        assert page.locator(".chart-card").count() == MAX_CHARTS
        page.fill("#metric-filter", "<img")
        page.wait_for_selector("#chart-count[data-shown='1']")
        assert page.locator(".chart-name").text_content() == EVIL
        page.fill("#metric-filter", "")
        page.wait_for_selector(f"#chart-count[data-shown='{MAX_CHARTS}']")
        assert page.evaluate("() => window.__pwned === undefined")
    assert not errors, errors
