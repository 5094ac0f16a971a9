"""The dashboard in headless Chromium, against ``hotcb serve`` (real uvicorn) attached to a real
training process, with a second finished run to compare against.

The tests share one page and run in file order (each builds on the run's ledger so far); the
last one saves ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hotcb.dashboard.security import cookie_name
from hotcb.mcp_server.tools import HotcbTools

from hotcb.jsonl_write import append_line
from hotcb.recipe import export_recipe
from tests.conftest import need
from tests.dashboard.test_dashboard_proc import ServeProcess
from tests.support.proc import Trainer, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
XSS = "<img src=x onerror=alert(1)>"
WAIT_MS = 60_000
STEPS_WAIT_S = 240  # waits for the trainer to reach a step: generous, a loaded machine trains slowly
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class Page:
    """The page plus everything it complained about."""

    def expected_refusal(self) -> None:
        """The browser logs a refused call (4xx) as a console error; a test that provoked one clears it."""
        self.errors[:] = [e for e in self.errors if "the server responded with a status of 409" not in e]

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
            page.goto(srv.page_url)
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


def test_weight_knobs_that_span_decades_have_log_sliders(ui: Page) -> None:
    """A loss weight of 1 in 0..100 sits mid-slider (a decade scale), not pinned at the left."""
    page = ui.page
    weight = page.wait_for_selector(".knob[data-key='mse_w'] input[type=range]")
    assert weight.get_attribute("data-scale") == "log"
    assert 490 <= int(weight.input_value()) <= 510  # log10(1) is the middle of 0.01..100
    assert page.get_attribute(".knob[data-key='lr'] input[type=range]", "data-scale") == "log"


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


def pending(trainer: Trainer) -> dict[str, int | None]:
    out = HotcbTools(trainer.run_dir, source="human").call("schedule_op", {"action": "list"})
    return {o["cmd_id"]: o.get("at_step") for o in out["pending"]}


def test_recipe_editor_adds_an_op_that_fires_at_its_step(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    at = int(trainer.status()["step"]) + 200  # far enough ahead for the op to arrive first
    page.fill("#reason", "scheduled from the browser")
    page.select_option("#sched-knob", "opt|lr")
    page.fill("#sched-value", "0.0045")
    page.fill("#sched-step", str(at))
    page.click("#sched-add")
    row = page.wait_for_selector(f"#schedule tbody tr[data-step='{at}']")
    cmd = row.get_attribute("data-cmd")
    assert "lr" in row.text_content() and "0.0045" in row.text_content()
    assert "scheduled from the browser" in row.query_selector(".reason").text_content()
    page.wait_for_selector(f"#recipe .tl-op[data-cmd='{cmd}']")  # on the timeline too
    assert pending(trainer).get(cmd) == at
    # it fires at its step, recorded as the person's change
    entry = wait_for(lambda: ledger_entry(trainer, cmd_id=cmd, decision="applied"), STEPS_WAIT_S,
                     what="the scheduled op applied")
    assert (entry["source"], entry["actor"], entry["step"]) == ("human", "dashboard", at)
    assert entry["payload"]["lr"]["new"] == 0.0045
    page.wait_for_selector(f"#schedule tr[data-cmd='{cmd}']", state="detached")
    page.wait_for_selector(".knob[data-key='lr'] .knob-live:text-is('0.0045')")


def test_recipe_editor_moves_an_op(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    page.select_option("#sched-knob", "opt|lr")
    page.fill("#sched-value", "0.004")
    page.fill("#sched-step", "90000")
    page.click("#sched-add")
    row = page.wait_for_selector("#schedule tbody tr[data-step='90000']")
    cmd = row.get_attribute("data-cmd")
    row.query_selector("input").fill("95000")
    row.query_selector("button:has-text('Move')").click()
    page.wait_for_selector(f"#schedule tr[data-cmd='{cmd}'][data-step='95000'] td:first-child:has-text('95000')")
    wait_for(lambda: pending(trainer).get(cmd) == 95000, 60, what="the move saved in the schedule")  # on state
    move = wait_for(lambda: ledger_entry(trainer, module="core", op="reschedule", decision="applied"), 60, what="move")
    assert move["source"] == "human" and move["params"] == {"cmd_id": cmd, "at_step": 95000}


def test_recipe_editor_cancels_an_op(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    row = page.wait_for_selector("#schedule tbody tr[data-step='95000']")
    cmd = row.get_attribute("data-cmd")
    row.query_selector("button:has-text('Cancel')").click()
    page.wait_for_selector(f"#schedule tr[data-cmd='{cmd}']", state="detached")
    page.wait_for_selector(f"#recipe .tl-op[data-cmd='{cmd}']", state="detached")
    wait_for(lambda: cmd not in pending(trainer), 60, what="the cancel saved in the schedule")
    cancel = wait_for(lambda: ledger_entry(trainer, module="core", op="cancel", decision="applied"), 60, what="cancel")
    assert cancel["source"] == "human" and cancel["params"] == {"cmd_id": cmd}


def rules_of(trainer: Trainer) -> dict[str, dict[str, Any]]:
    out = HotcbTools(trainer.run_dir, source="human").call("set_alert_rules", {})
    return {r["id"]: r for r in out["rules"]}


def add_rule(page: Any, metric: str, kind: str, **fields: str) -> None:
    page.fill("#rule-metric", metric)
    page.select_option("#rule-kind", kind)
    for name, value in fields.items():
        if name == "severity":
            page.select_option("#rule-severity", value)
        else:
            page.fill(f"#rule-{name}", value)
    page.click("#rule-add")


def test_alert_rules_are_added_and_removed_from_the_page(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    add_rule(page, "train_loss", "threshold", above="1000000", below="-1", severity="critical")
    page.wait_for_selector("#rule-list li[data-id='threshold-train_loss']")
    add_rule(page, "val_loss", "plateau", window="20", plateau_rel="0.05", severity="info")
    page.wait_for_selector("#rule-list li[data-id='plateau-val_loss']")
    add_rule(page, "mse", "spike", window="30", spike_factor="4", severity="warning")
    page.wait_for_selector("#rule-list li[data-id='spike-mse']")
    add_rule(page, "grad_norm", "non_finite")  # any metric, even one not logged (yet)
    page.wait_for_selector("#rule-list li[data-id='non_finite-grad_norm']")
    add_rule(page, "train_loss", "threshold", above="5")  # a second rule on one metric gets its own id
    page.wait_for_selector("#rule-list li[data-id='threshold-train_loss-2']")
    rules = rules_of(trainer)
    assert rules["threshold-train_loss"].items() >= {"kind": "threshold", "metric": "train_loss", "above": 1e6,
                                                     "below": -1.0, "severity": "critical"}.items()
    assert rules["plateau-val_loss"].items() >= {"kind": "plateau", "window": 20, "plateau_rel": 0.05,
                                                 "severity": "info"}.items()
    assert rules["spike-mse"].items() >= {"kind": "spike", "window": 30, "spike_factor": 4.0}.items()
    assert rules["non_finite-grad_norm"]["kind"] == "non_finite"
    assert rules["threshold-train_loss-2"]["above"] == 5 and rules["threshold-train_loss-2"]["below"] is None
    text = page.text_content("#rule-list")
    assert "train_loss > 1.00e+6 or train_loss < -1" in text and "val_loss plateau" in text and "grad_norm non-finite" in text
    # the tool's refusal is shown, nothing saved
    add_rule(page, "mse", "threshold", above="", below="")
    page.wait_for_selector(".toast.error:has-text('needs above or below')")
    assert "threshold-mse" not in rules_of(trainer)
    ui.expected_refusal()
    # remove one; a rule an agent added meanwhile survives and shows up through the live channel
    agent = HotcbTools(trainer.run_dir, source="agent", actor="watcher")
    agent.call("set_alert_rules", {"rules": [{"id": "agent-rule", "kind": "non_finite", "metric": "val_loss"}], "replace": False})
    page.wait_for_selector("#rule-list li[data-id='agent-rule']")
    page.click("#rule-list li[data-id='plateau-val_loss'] button:has-text('Remove')")
    page.wait_for_selector("#rule-list li[data-id='plateau-val_loss']", state="detached")
    assert set(rules_of(trainer)) == {"threshold-train_loss", "spike-mse", "non_finite-grad_norm", "threshold-train_loss-2",
                                      "agent-rule"}
    # an alert that fired (the autopilot process records them) is listed, its message as text
    HotcbTools(trainer.run_dir, source="rule", actor="alerts").record_alert(
        rule="threshold-train_loss", kind="threshold", metric="train_loss", severity="critical", message=XSS)
    item = page.wait_for_selector("#alert-list li[data-rule='threshold-train_loss']")
    assert item.query_selector(".alert-msg").text_content() == XSS
    assert page.query_selector_all("#alerts img") == []
    for rid in ("threshold-train_loss", "spike-mse", "non_finite-grad_norm", "threshold-train_loss-2", "agent-rule"):
        page.click(f"#rule-list li[data-id='{rid}'] button:has-text('Remove')")
        page.wait_for_selector(f"#rule-list li[data-id='{rid}']", state="detached")
    assert rules_of(trainer) == {}
    assert not ui.dialogs and not ui.errors, (ui.dialogs, ui.errors)


def recipe_line(step: int, reason: str | None = None, **params: Any) -> dict[str, Any]:
    return {"step": step, "module": "opt", "op": "set_params", "params": params, "reason": reason}


def test_replay_an_uploaded_recipe_with_an_overlay_then_stop(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    now = int(trainer.status()["step"])
    recipe = [recipe_line(now + 150, XSS, lr=0.003), recipe_line(now + 200, weight_decay=0.0002)]
    content = "".join(json.dumps(e) + "\n" for e in recipe).encode()
    # the file's content goes to the page (never a path): exactly what a person's file picker gives
    page.set_input_files("#replay-file", files=[{"name": "other.recipe.jsonl", "mimeType": "application/x-ndjson",
                                                 "buffer": content}])
    info = page.wait_for_selector("#replay-file-info[data-entries='2']")
    assert f"steps {now + 150}–{now + 200}" in info.text_content()
    assert XSS in page.text_content("#replay-preview") and page.query_selector_all("#replay-card img") == []
    assert page.is_checked("#replay-src-file")
    page.fill("#replay-overlay", json.dumps(recipe_line(now + 150, lr=0.002)))
    page.fill("#reason", "replay the other run, lr patched")
    page.click("#replay-start")
    page.wait_for_selector("#replay-status[data-mode='replay_adjusted'][data-total='2']")
    page.wait_for_selector("#status .pill:has-text('replay_adjusted')")
    # the overlay replaced the recipe's lr change; both fire at their steps, as source replay
    lr = wait_for(lambda: ledger_entry(trainer, source="replay", decision="applied", params={"lr": 0.002}), STEPS_WAIT_S,
                  what="replayed lr")
    assert lr["payload"]["lr"]["new"] == 0.002 and lr["step"] >= now + 150
    page.wait_for_selector("#replay-status[data-fired='2'][data-done='true']", timeout=STEPS_WAIT_S * 1000)
    wd = ledger_entry(trainer, source="replay", decision="applied", params={"weight_decay": 0.0002})
    assert wd is not None and wd["payload"]["weight_decay"]["new"] == 0.0002 and wd["step"] >= now + 200
    page.click("#replay-stop")
    page.wait_for_selector("#replay-status[data-mode='off']")
    status = HotcbTools(trainer.run_dir, source="human").call("replay", {"action": "status"})
    assert status["freeze_mode"] == "off"
    assert page.is_disabled("#replay-stop")
    assert not ui.errors, ui.errors


def test_replay_this_runs_recipe_and_a_refused_recipe(ui: Page) -> None:
    page, trainer = ui.page, ui.trainer
    # a recipe the tool refuses (steps go backwards): the reason is shown, nothing starts
    bad = [recipe_line(500, lr=0.003), recipe_line(100, lr=0.004)]
    page.set_input_files("#replay-file", files=[{"name": "bad.json", "mimeType": "application/json",
                                                 "buffer": json.dumps(bad).encode()}])
    page.wait_for_selector("#replay-file-info[data-entries='2']")
    page.click("#replay-start")
    page.wait_for_selector(".toast.error:has-text('steps must not decrease')")
    ui.expected_refusal()
    assert HotcbTools(trainer.run_dir, source="human").call("replay", {"action": "status"})["freeze_mode"] == "off"
    # this run's own recipe: the tool exports the applied changes and replays them
    page.check("#replay-src-run")
    page.fill("#replay-overlay", "")
    total = len(export_recipe(trainer.ledger()))
    assert total >= 5
    page.click("#replay-start")
    page.wait_for_selector(f"#replay-status[data-mode='replay'][data-total='{total}']")
    page.wait_for_selector(f"#replay-status[data-fired='{total}'][data-done='true']")
    page.click("#replay-stop")
    page.wait_for_selector("#replay-status[data-mode='off']")
    assert not ui.errors, ui.errors


def test_points_logged_late_reach_the_charts(ui: Page) -> None:
    """An evaluation job logs for steps the live channel already passed; the charts get them, in
    step order per metric."""
    page, trainer = ui.page, ui.trainer
    now = int(trainer.status()["step"])
    path = trainer.run_dir / "hotcb.metrics.jsonl"
    for step, value in ((now - 30, 0.5), (now - 10, 0.75), (now - 20, 0.625)):
        append_line(path, {"step": step, "wall_time": time.time(), "metrics": {"eval_acc": value}})
    append_line(path, {"step": now - 15, "wall_time": time.time(), "metrics": {"val_loss": 42.5}})
    card = page.wait_for_selector(".chart-card[data-metric='eval_acc'][data-points='3']")
    assert card.query_selector(".chart-value").text_content() == "0.75"  # the latest step's value
    held = page.evaluate("""async (step) => {
        const { state } = await import('/static/js/store.js');
        const s = state.series; const i = s.val_loss.steps.indexOf(step);
        return { steps: s.eval_acc.steps, values: s.eval_acc.values, val: i < 0 ? null : s.val_loss.values[i],
                 sorted: s.val_loss.steps.every((x, k, a) => k === 0 || a[k - 1] < x) }; }""", now - 15)
    assert held["steps"] == [now - 30, now - 20, now - 10] and held["values"] == [0.5, 0.625, 0.75]
    assert held["val"] == 42.5 and held["sorted"]
    assert not ui.errors, ui.errors


class LinkSite:
    """A page on another site (http://localhost:PORT, while the dashboard is 127.0.0.1) that
    links to the dashboard, as a chat message or an e-mail would."""

    def __init__(self, html: str):
        body = f"<!doctype html><title>elsewhere</title>{html}".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> LinkSite:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_token_cookie_from_a_link_on_another_site(ui: Page) -> None:
    """Opened from a link elsewhere (chat, e-mail) with ?token=: the HttpOnly cookie is set, the
    token leaves the address bar, and the page and its live channel work with the cookie."""
    trainer = ui.trainer
    token = 'tok;en "with" spaces,=é'
    with ServeProcess(trainer.run_dir, "--token", token, "--set", "live.poll_ms=100") as srv:
        ctx = ui.page.context.browser.new_context(viewport={"width": 1200, "height": 900})
        try:
            page = ctx.new_page()
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(srv.url + "/")
            assert "unauthorized" in page.text_content("body")
            with LinkSite(f'<a id="go" href="{srv.url}/?token={quote(token, safe="")}">dashboard</a>') as other:
                page.goto(other.url)  # another site: localhost is not 127.0.0.1
                page.click("#go")
                page.wait_for_url(srv.url + "/")
            page.wait_for_selector("body[data-ready='1']")
            assert page.url == srv.url + "/"
            page.wait_for_selector("#liveness[data-state='running']")  # status came over the live channel
            card = page.wait_for_selector(".chart-card[data-metric='train_loss']")
            first = int(card.get_attribute("data-points"))
            wait_for(lambda: int(card.get_attribute("data-points")) > first, 60, what="live points")
            cookies = {c["name"]: c for c in ctx.cookies()}
            mine = cookies[cookie_name(srv.port)]
            assert mine["httpOnly"] and mine["sameSite"] == "Lax"
            assert page.evaluate("document.cookie") == ""  # no script can read the token
            page.reload()
            page.wait_for_selector("body[data-ready='1']")
            assert not errors, errors
        finally:
            ctx.close()


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
