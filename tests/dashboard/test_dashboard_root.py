"""``hotcb serve --root ROOT`` (real uvicorn) over runs written by real trainers: the runs API, the
compare data and the metric-space map, each run's own dashboard under /runs/NAME/, names looked
up never used as paths; then the root page in headless Chromium (the map drawn, knob changes
marked, a run named like HTML shown as text)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from hotcb.dashboard.metric_map import build_map
from hotcb.mcp_server.tools import HotcbTools
from hotcb.mcp_server.tools_observe import SeriesOut

from tests.conftest import need
from tests.dashboard.test_dashboard_proc import ServeProcess
from tests.support.proc import Trainer, wait_for

XSS = "<img src=x onerror=alert(1)>"
RUNS = ("a", "b", XSS)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three finished runs; run a got an lr change from a person at step >= 60."""
    root = tmp_path_factory.mktemp("root")
    trainers = {name: Trainer(root / name, "--seed", str(i), steps=160, sleep=0.005) for i, name in enumerate(RUNS)}
    try:
        trainers["a"].wait_step(60, timeout=240)
        out = HotcbTools(root / "a", source="human", actor="pytest").call(
            "apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.003}, "reason": "root map"})
        assert out["decision"] == "applied", out
        for t in trainers.values():
            wait_for(lambda t=t: t.proc.poll() is not None, 240, what="the trainer to finish")
    finally:
        for t in trainers.values():
            t.stop()
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServeProcess]:
    with ServeProcess(root, "--root", str(root)) as srv:
        yield srv


def test_root_api_lists_runs_and_serves_each_runs_dashboard(server: ServeProcess) -> None:
    runs = server.get("/api/root/runs").json()["runs"]
    assert sorted(r["name"] for r in runs) == sorted(RUNS)
    a = next(r for r in runs if r["name"] == "a")
    assert a["last_change"]["params"] == {"lr": 0.003} and a["last_change"]["source"] == "human"
    assert a["step"] == 160 and a["key_metric"] == "val_loss"
    status = server.post("/runs/a/api/tools/get_status", json={}).json()
    assert status["step"] == 160
    xss_status = server.post(f"/runs/{quote(XSS, safe='')}/api/tools/get_status", json={})
    assert xss_status.status_code == 200 and xss_status.json()["step"] == 160
    assert server.get("/runs/a/").text.count("main.js") == 1  # the run's own page
    assert server.get("/runs/a", follow_redirects=False).headers["location"] == "a/"
    assert server.get("/runs/nope/api/tools").status_code == 404
    assert server.get("/runs/..%2F..%2Fetc/api/tools").status_code == 404  # a name, never a path


def test_compare_data_and_the_map(server: ServeProcess) -> None:
    data = server.get("/api/root/compare").json()
    assert sorted(data["runs"]) == sorted(RUNS)
    assert [c["label"] for c in data["runs"]["a"]["changes"]] == ["lr -> 0.003"]
    m = data["map"]
    assert {"train_loss", "val_loss", "mse"} == set(m["metrics"])  # quality metrics; lr is a knob, not a coordinate
    assert sorted(r["name"] for r in m["runs"]) == sorted(RUNS)
    path_a = next(r for r in m["runs"] if r["name"] == "a")
    assert all(len(p) == 2 for p in path_a["xy"]) and len(path_a["xy"]) == len(path_a["steps"]) > 10
    (change,) = path_a["changes"]
    assert change["label"] == "lr -> 0.003" and abs(path_a["steps"][change["index"]] - change["step"]) <= 5
    assert 0 < sum(m["explained"]) <= 1.0 + 1e-9


def test_the_map_is_pca_of_standardized_metrics() -> None:
    steps = list(range(1, 51))
    runs = {f"r{i}": {"loss": SeriesOut(steps=steps, values=[1.0 / (s + i) for s in steps]),
                      "acc": SeriesOut(steps=steps, values=[1 - 1.0 / (s + i) for s in steps]),
                      "opt/lr": SeriesOut(steps=steps, values=[0.1] * 50),
                      "lr": SeriesOut(steps=steps, values=[0.1 * i] * 50)} for i in range(3)}
    m = build_map(runs, {"r1": [(25, "lr -> 0.05")]})
    assert m.metrics == ["acc", "loss"]  # knob echoes are not coordinates
    assert m.explained[0] == pytest.approx(1.0, abs=1e-9)  # acc = 1 - loss: one dimension
    r1 = next(r for r in m.runs if r.name == "r1")
    assert r1.changes[0].index == 24
    xy = np.asarray(r1.xy)
    assert np.allclose(xy[:, 1], 0, atol=1e-6)
    assert build_map({"x": {"loss": runs["r0"]["loss"]}}, {}).note


@pytest.mark.browser
@pytest.mark.slow
def test_root_page_draws_runs_compare_and_map(server: ServeProcess) -> None:
    need(os.path.exists("/usr/bin/chromium"), "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            dialogs: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(server.page_url)  # the URL it printed, with its token, as a user opens it
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            rows = page.locator(".runs-table tbody tr")
            assert rows.count() == 3
            assert page.locator(".runs-table a", has_text=XSS).count() == 1  # the name as text
            assert page.locator(".runs-table img").count() == 0 and not dialogs
            assert page.locator("#map .map-run").count() == 3
            assert page.locator("#map .map-change").count() == 1
            assert page.locator("#compare-chart polyline").count() == 3
            assert page.locator("#compare-chart .compare-change").count() == 1
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-root.png"), full_page=True)
            page.get_by_role("link", name="a", exact=True).click()  # into run a's own dashboard
            page.wait_for_url("**/runs/a/")
            wait_for(lambda: "a" in (page.locator("#run-name").text_content() or ""), 60, what="run a's page")
            assert not errors, errors
        finally:
            browser.close()
