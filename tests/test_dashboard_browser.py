"""The dashboard in headless Chromium, against ``hotcb serve`` (real uvicorn) attached to a real
training process, with a second finished run to compare against.

The tests share one page and run in file order (each builds on the run's ledger so far); the
last one saves ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hotcb.mcp_server.tools import HotcbTools

from tests.conftest import need
from tests.support.proc import Trainer, wait_for
from tests.test_dashboard_proc import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
XSS = "<img src=x onerror=alert(1)>"
WAIT_MS = 60_000
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class Page:
    """The page plus everything it complained about."""

    def __init__(self, page: Any, trainer: Trainer, url: str):
        self.page, self.trainer, self.url = page, trainer, url
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))


@pytest.fixture(scope="module")
def chromium_path() -> str:
    """conftest's ``chromium`` check, at module scope (one browser for the whole file)."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    need(os.path.exists(path), "chromium")
    return path


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, chromium_path: str) -> Iterator[Page]:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    base = tmp_path_factory.mktemp("dash_ui")
    other = Trainer(base / "baseline", "--seed", "1", steps=150, sleep=0.0)
    trainer = Trainer(base / "run", steps=100000, sleep=0.01)
    try:
        trainer.wait_step(20)
        other.proc.wait(120)
        with ServeProcess(trainer.run_dir, "--compare", str(other.run_dir), "--set", "live.poll_ms=100",
                          "--set", "live.panels_ms=500") as srv, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1250})
            page.set_default_timeout(WAIT_MS)
            ui = Page(page, trainer, srv.url)
            page.goto(srv.url + "/")
            page.wait_for_selector("body[data-ready='1']")
            yield ui
            browser.close()
    finally:
        trainer.stop()
        other.stop()


def ledger_entry(trainer: Trainer, **match: Any) -> dict[str, Any] | None:
    return next((e for e in reversed(trainer.ledger()) if all(e.get(k) == v for k, v in match.items())), None)


def test_page_loads_and_a_chart_draws(ui: Page) -> None:
    page = ui.page
    page.wait_for_selector("#liveness[data-state='running']")
    card = page.wait_for_selector(".chart-card[data-metric='train_loss']")
    wait_for(lambda: int(card.get_attribute("data-points")) > 5, 60, what="points on the chart")
    # the canvas has real pixels drawn on it (not just a blank element)
    painted = page.evaluate("""() => {
        const c = document.querySelector(".chart-card[data-metric='train_loss'] canvas");
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert painted > 500
    assert card.query_selector(".chart-value").text_content() not in ("", "—")
    # the status bar tells the step and the speed
    assert re.search(r"\d+ / 100000", page.text_content("#status"))
    assert not ui.errors, ui.errors


def test_lr_control_shows_live_value_and_a_change_lands_as_human(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    live = page.wait_for_selector(".knob[data-key='lr'] .knob-live")
    assert float(live.text_content()) == 0.01  # the trainer's lr
    page.fill("#reason", "halve lr from the browser")
    page.fill("#knob-opt-lr", "0.005")
    page.click(".knob[data-key='lr'] button:has-text('Set')")
    page.wait_for_selector(".knob[data-key='lr'] .knob-live:text-is('0.005')")
    entry = wait_for(lambda: ledger_entry(trainer, reason="halve lr from the browser"), 60, what="ledger entry")
    assert (entry["source"], entry["actor"], entry["decision"]) == ("human", "dashboard", "applied")
    assert entry["payload"]["lr"] == {"old": 0.01, "new": 0.005}
    row = page.wait_for_selector(f"#ledger tr[data-cmd='{entry['cmd_id']}']")
    assert row.get_attribute("data-source") == "human"
    assert "lr 0.01 → 0.005" in row.text_content()
    # the chart marks the change at its step; hovering says who and why
    marker = page.wait_for_selector(
        f".chart-card[data-metric='train_loss'] .marker.own[data-step='{entry['step']}'][data-source='human']")
    marker.hover(force=True)
    tip = page.wait_for_selector("#tooltip:not([hidden])")
    assert "human / dashboard" in tip.text_content() and "halve lr from the browser" in tip.text_content()
    # the source filter keeps human rows and hides others
    page.select_option("#ledger-source", "agent")
    page.wait_for_selector(f"#ledger tr[data-cmd='{entry['cmd_id']}']", state="detached")
    page.select_option("#ledger-source", "all")


def test_html_in_a_reason_is_shown_as_text(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    agent = HotcbTools(trainer.run_dir, source="agent", actor="xss-bot")
    out = agent.call("apply_op", {"module": "opt", "op": "set_params", "params": {"momentum": 0.85}, "reason": XSS})
    row = page.wait_for_selector(f"#ledger tr[data-cmd='{out['cmd_id']}']")
    assert row.query_selector(".reason").text_content() == XSS
    assert page.query_selector_all("#ledger img, #charts img, #tooltip img") == []
    marker = page.wait_for_selector(f".chart-card[data-metric='val_loss'] .marker[data-cmd='{out['cmd_id']}']")
    marker.hover(force=True)
    page.wait_for_selector("#tooltip:not([hidden]):has-text('onerror=alert(1)')")
    assert page.query_selector_all("#tooltip img") == []
    assert not ui.dialogs and not ui.errors, (ui.dialogs, ui.errors)


def test_lock_checkbox_keeps_agents_off(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    page.check(".knob[data-key='weight_decay'] input.lock")
    page.wait_for_selector(".knob[data-key='weight_decay'] .locked-by:has-text('locked by dashboard')")
    agent = HotcbTools(trainer.run_dir, source="agent", actor="bot")
    with pytest.raises(Exception, match="lock"):
        agent.call("apply_op", {"module": "opt", "op": "set_params", "params": {"weight_decay": 0.001}, "reason": "x"})
    page.uncheck(".knob[data-key='weight_decay'] input.lock")
    page.wait_for_selector(".knob[data-key='weight_decay'] .locked-by:has-text('locked by')", state="detached")


def test_a_proposal_is_approved_from_the_page(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    agent = HotcbTools(trainer.run_dir, source="agent", actor="planner")
    p = agent.call("propose_op", {"op": {"module": "loss", "op": "set_params", "params": {"l1_w": 0.0005}},
                                  "reason": "a touch of L1"})
    item = page.wait_for_selector(f"#proposals li[data-id='{p['proposal_id']}']")
    assert "a touch of L1" in item.text_content()
    item.query_selector("button:has-text('Approve')").click()
    page.wait_for_selector(f"#proposals li[data-id='{p['proposal_id']}'][data-status='approved']")
    entry = wait_for(lambda: ledger_entry(trainer, proposal_id=p["proposal_id"]), 60, what="approved op")
    assert (entry["source"], entry["actor"], entry["approved_by"], entry["decision"]) == ("agent", "planner", "dashboard", "applied")
    page.click("#autopilot .seg-btn[data-mode='suggest']")
    page.wait_for_selector("#status:has-text('suggest')")
    page.click("#autopilot .seg-btn[data-mode='off']")


def test_recipe_editor_adds_moves_and_cancels(ui: Page) -> None:
    page = ui.page
    page.select_option("#sched-knob", "opt|lr")
    page.fill("#sched-value", "0.004")
    page.fill("#sched-step", "90000")
    page.click("#sched-add")
    row = page.wait_for_selector("#schedule tbody tr")
    cmd = row.get_attribute("data-cmd")
    assert "90000" in row.text_content() and "lr" in row.text_content()
    row.query_selector("input").fill("95000")
    row.query_selector("button:has-text('Move')").click()
    page.wait_for_selector(f"#schedule tr[data-cmd='{cmd}'] td:first-child:has-text('95000')")
    page.click(f"#schedule tr[data-cmd='{cmd}'] button:has-text('Cancel')")
    page.wait_for_selector(f"#schedule tr[data-cmd='{cmd}']", state="detached")


def test_pause_resume_and_compare_overlay(ui: Page) -> None:
    page = ui.page
    page.click("#btn-pause")
    page.wait_for_selector("#liveness[data-state='paused']")
    page.click("#btn-resume")
    page.wait_for_selector("#liveness[data-state='running']")
    page.wait_for_selector("#compare-card:not([hidden]) :text('baseline')")
    # two series on the chart: this run and the baseline (dashed)
    assert page.text_content("#chart-legend").count("baseline") == 1
    assert not ui.errors, ui.errors


def test_screenshot(ui: Page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    ui.page.wait_for_timeout(1500)  # let the last redraw land (not an assertion)
    path = ARTIFACTS / "dashboard.png"
    ui.page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000
    assert not ui.errors, ui.errors
