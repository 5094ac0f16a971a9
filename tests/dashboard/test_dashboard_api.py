"""The dashboard's API through the real app (Starlette TestClient) on a real training process,
and its live channel through a real uvicorn (``hotcb serve``) read by an SSE client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hotcb.dashboard.app import create_app
from hotcb.dashboard.config import DashboardConfig
from hotcb.mcp_server.tools import HotcbTools

from hotcb.jsonl_write import append_line
from tests.dashboard.test_dashboard_proc import ServeProcess
from tests.support.proc import Trainer, wait_for

BASE = "http://127.0.0.1:8421"  # the app answers to loopback Host names only


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Trainer, TestClient]]:
    run = tmp_path_factory.mktemp("dash_api") / "run"
    trainer = Trainer(run, steps=100000, sleep=0.01)
    try:
        trainer.wait_step(15)
        with TestClient(create_app(run), base_url=BASE) as client:
            yield trainer, client
    finally:
        trainer.stop()


def call(client: TestClient, name: str, args: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post(f"/api/tools/{name}", json=args, headers=headers)


def test_config_and_tool_list(trained: tuple[Trainer, TestClient]) -> None:
    _, client = trained
    cfg = client.get("/api/config").json()
    assert cfg["config"] == DashboardConfig().model_dump(mode="json")
    names = {t["name"] for t in client.get("/api/tools").json()["tools"]}
    # the dashboard is a human caller: it sees human-only tools too
    assert {"describe_actuators", "apply_op", "lock_knobs", "read_ledger", "schedule_op", "replay"} <= names


def test_set_knob_is_human_and_recorded(trained: tuple[Trainer, TestClient]) -> None:
    trainer, client = trained
    r = call(client, "apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.006}, "reason": "api test"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["decision"] == "applied" and out["changes"]["lr"]["new"] == 0.006
    entry = next(e for e in trainer.ledger() if e["cmd_id"] == out["cmd_id"])
    assert (entry["source"], entry["actor"], entry["reason"]) == ("human", "dashboard", "api test")
    # a person may name themselves; the source stays human whatever the header says
    r = call(client, "apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.007}}, **{"X-Hotcb-User": "alice"})
    entry = next(e for e in trainer.ledger() if e["cmd_id"] == r.json()["cmd_id"])
    assert (entry["source"], entry["actor"]) == ("human", "alice")
    desc = call(client, "describe_actuators", {}).json()
    assert next(a for a in desc["actuators"] if a["key"] == "lr")["value"] == 0.007


def test_refusals_are_4xx_with_the_tool_message(trained: tuple[Trainer, TestClient]) -> None:
    _, client = trained
    r = call(client, "apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 50.0}})
    assert r.status_code == 409 and "lr" in r.json()["error"] and "refused" in r.json()["error"]
    r = call(client, "apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.01}, "bogus": 1})
    assert r.status_code == 422 and "bogus" in r.json()["error"]
    r = call(client, "no_such_tool", {})
    assert r.status_code == 404 and "unknown tool" in r.json()["error"]
    r = client.post("/api/tools/get_status", content=b"module=core&op=stop",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415  # what a cross-site <form> could send is never a tool call
    r = client.post("/api/tools/get_status", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_lock_keeps_agents_off_until_unlocked(trained: tuple[Trainer, TestClient]) -> None:
    trainer, client = trained
    r = call(client, "apply_op", {"module": "loss", "op": "set_params", "params": {"mse_w": 1.0}, "lock": True,
                                  "reason": "hands off"})
    assert r.status_code == 200, r.text
    desc = call(client, "describe_actuators", {}).json()
    assert next(a for a in desc["actuators"] if a["key"] == "mse_w")["locked_by"] == "dashboard"
    agent = HotcbTools(trainer.run_dir, source="agent", actor="test-agent")
    with pytest.raises(Exception, match="lock"):
        agent.call("apply_op", {"module": "loss", "op": "set_params", "params": {"mse_w": 1.2}, "reason": "try"})
    r = call(client, "lock_knobs", {"keys": ["mse_w"], "lock": False, "reason": "done"})
    assert r.status_code == 200, r.text
    desc = call(client, "describe_actuators", {}).json()
    assert next(a for a in desc["actuators"] if a["key"] == "mse_w")["locked_by"] is None


def test_static_assets_and_headers(trained: tuple[Trainer, TestClient]) -> None:
    _, client = trained
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "unsafe-eval" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    r = client.get("/static/vendor/uplot/uPlot.esm.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert client.get("/static/vendor/uplot/LICENSE").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    assert "cdn" not in client.get("/").text.lower()  # every asset is local


def test_compare_needs_a_compare_run_given_at_startup(trained: tuple[Trainer, TestClient], tmp_path: Path) -> None:
    trainer, client = trained
    r = client.get("/api/compare")
    assert r.status_code == 404 and "--compare" in r.json()["error"]
    with TestClient(create_app(tmp_path, compare_dir=trainer.run_dir), base_url=BASE) as other:
        data = other.get("/api/compare").json()
        assert data["label"] == trainer.run_dir.name
        assert "train_loss" in data["metrics"]["series"]
        assert all(e["decision"] == "applied" for e in data["ledger"]["entries"])
        assert other.get("/api/config").json()["compare"] == trainer.run_dir.name


def test_autopilot_panel_tools(trained: tuple[Trainer, TestClient]) -> None:
    """Proposals made by an agent are listed and decided here; the mode is set as a human."""
    trainer, client = trained
    names = {t["name"] for t in client.get("/api/tools").json()["tools"]}
    if "decide_proposal" not in names:  # degrade: the page hides the panel; the API says why
        r = call(client, "decide_proposal", {})
        assert r.status_code == 404
        return
    r = call(client, "autopilot", {"action": "set", "mode": "suggest", "reason": "try it"})
    assert r.status_code == 200 and r.json()["mode"] == "suggest" and r.json()["set_by"] == "dashboard"
    agent = HotcbTools(trainer.run_dir, source="agent", actor="test-agent")
    p = agent.call("propose_op", {"op": {"module": "loss", "op": "set_params", "params": {"l1_w": 0.001}},
                                  "reason": "regularize a little"})
    listed = call(client, "list_proposals", {}).json()
    assert p["proposal_id"] in [x["proposal_id"] for x in listed["proposals"]]
    r = call(client, "decide_proposal", {"proposal_id": p["proposal_id"], "decision": "reject", "note": "not now"})
    assert r.status_code == 200 and r.json()["proposal"]["status"] == "rejected"
    r = call(client, "decide_proposal", {"proposal_id": p["proposal_id"], "decision": "approve"})
    assert r.status_code == 409 and "already rejected" in r.json()["error"]
    call(client, "autopilot", {"action": "set", "mode": "off"})


# ------------------------------------------------------------------------------ live channel
def sse_events(resp: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in resp.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])


WAKES = {  # file-change wake-ups alone (every timer far off: only a notification can deliver), and the poll
    "watch": ["--set", "live.wake=watch", "--set", "live.fallback_poll_ms=60000", "--set", "live.status_ms=60000",
              "--set", "live.panels_ms=600000"],
    "poll": ["--set", "live.wake=poll", "--set", "live.poll_ms=50"],
}


@pytest.mark.parametrize("wake", sorted(WAKES))
def test_live_channel_sends_a_snapshot_then_only_new_points(tmp_path: Path, wake: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for step in range(1, 51):  # a finished run's history...
        append_line(run / "hotcb.metrics.jsonl", {"step": step, "wall_time": time.time(), "metrics": {"loss": 1.0 / step}})
    with ServeProcess(run, *WAKES[wake]) as srv, \
            httpx.stream("GET", srv.url + "/api/live", headers=srv.auth(), timeout=60) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp)
        snap = next(events)
        assert snap["type"] == "snapshot"
        assert snap["metrics"]["series"]["loss"]["steps"][-1] == 50 and snap["status"]["liveness"] == "absent"
        for step in (51, 52, 53):  # ...then appends: the channel carries exactly these, once
            append_line(run / "hotcb.metrics.jsonl", {"step": step, "wall_time": time.time(),
                                                      "metrics": {"loss": 1.0 / step, "nan_metric": "nan"}})
        got: list[float] = []
        nan_seen = []
        for ev in events:
            if ev["type"] == "metrics":
                got += ev["series"]["loss"]["steps"]
                nan_seen += ev["series"].get("nan_metric", {}).get("values", [])
            if len(got) >= 3:
                break
        assert got == [51, 52, 53]
        assert nan_seen and all(v == "nan" for v in nan_seen)  # divergence is shown, not dropped


def test_live_channel_pushes_ledger_rows_of_actions(trained: tuple[Trainer, TestClient]) -> None:
    trainer, _ = trained
    with ServeProcess(trainer.run_dir, "--set", "live.poll_ms=50") as srv, \
            httpx.stream("GET", srv.url + "/api/live", headers=srv.auth(), timeout=60) as resp:
        events = sse_events(resp)
        snap = next(events)
        before = {e["cmd_id"] for e in snap["ledger"]["entries"]}
        r = srv.post("/api/tools/apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.008},
                                              "reason": "live"})
        assert r.status_code == 200, r.text
        cmd = r.json()["cmd_id"]
        assert cmd not in before
        seen_metrics = False
        for ev in events:
            seen_metrics |= ev["type"] == "metrics"
            if ev["type"] == "ledger" and any(e["cmd_id"] == cmd for e in ev["entries"]):
                row = next(e for e in ev["entries"] if e["cmd_id"] == cmd)
                assert (row["source"], row["actor"], row["reason"]) == ("human", "dashboard", "live")
                assert all(e["cmd_id"] not in before for e in ev["entries"])
                break
        assert seen_metrics  # the trainer kept streaming points meanwhile
    wait_for(lambda: trainer.alive(), 5, what="trainer still alive")


def test_live_channel_sends_points_that_arrive_late(trained: tuple[Trainer, TestClient]) -> None:
    """Points for steps the channel already passed still reach the page: a val_loss an evaluation
    job logs for an old step, a metric that first appears at early steps, and points of one metric
    out of step order. Each is sent once (the page orders them by step)."""
    trainer, _ = trained
    metrics_file = trainer.run_dir / "hotcb.metrics.jsonl"
    with ServeProcess(trainer.run_dir, "--set", "live.poll_ms=50") as srv, \
            httpx.stream("GET", srv.url + "/api/live", headers=srv.auth(), timeout=60) as resp:
        events = sse_events(resp)
        snap = next(events)
        assert snap["type"] == "snapshot"
        first = next(ev for ev in events if ev["type"] == "metrics")  # the channel is past the snapshot
        now = int(first["last_step"])
        assert now > 20
        # an evaluation process appends beside the trainer (append_line takes the file lock)
        late = [(now - 15, {"val_loss": 123.25}), (now - 20, {"eval_acc": 0.5}), (now - 5, {"eval_acc": 0.75}),
                (now - 10, {"eval_acc": 0.625})]
        for step, metrics in late:
            append_line(metrics_file, {"step": step, "wall_time": time.time(), "metrics": metrics})
        got: dict[str, list[tuple[float, Any]]] = {"val_loss": [], "eval_acc": []}
        train_steps: list[float] = []
        for n, ev in enumerate(events):
            assert n < 5000, "late points never arrived"
            if ev["type"] != "metrics":
                continue
            for name in got:
                s = ev["series"].get(name, {"steps": [], "values": []})
                got[name] += list(zip(s["steps"], s["values"], strict=True))
            train_steps += ev["series"].get("train_loss", {}).get("steps", [])
            # Wait on state: every late point, and the trainer's own points since (on a loaded
            # machine the late points can come in an event before the trainer logs again).
            if len(got["eval_acc"]) >= 3 and (now - 15, 123.25) in got["val_loss"] and train_steps:
                break
        assert got["eval_acc"] == [(now - 20, 0.5), (now - 5, 0.75), (now - 10, 0.625)]  # arrival order, once each
        assert got["val_loss"].count((now - 15, 123.25)) == 1
        assert train_steps and min(train_steps) > now - 15  # the trainer's points are not resent from the past
        assert len(train_steps) == len(set(train_steps))


def test_replay_through_the_api_takes_recipe_content_not_paths(trained: tuple[Trainer, TestClient]) -> None:
    """What the page's replay panel sends: start with recipe entries (a file's content, read by
    the browser) and an overlay, status, stop. The live channel carries the replay's status and
    the user's alert rules."""
    trainer, client = trained
    for bad in ({"action": "start", "recipe_path": "/etc/passwd"}, {"action": "start", "recipe": "/etc/passwd"},
                {"action": "start", "overlay_path": "x.jsonl"}):
        r = call(client, "replay", bad)
        assert r.status_code == 422, (bad, r.text)
    r = call(client, "replay", {"action": "start", "recipe": [{"step": 5, "module": "opt", "op": "set_params"},
                                                              {"step": 1, "module": "opt", "op": "set_params"}]})
    assert r.status_code == 409 and "steps must not decrease" in r.json()["error"]
    far = int(trainer.status()["step"]) + 10**6  # never reached: nothing fires, the test only steers
    recipe = [{"step": far, "module": "opt", "op": "set_params", "params": {"lr": 0.003}, "reason": "<b>x</b>"}]
    overlay = [{"step": far, "module": "opt", "op": "set_params", "params": {"lr": 0.002}}]
    r = call(client, "replay", {"action": "start", "recipe": recipe, "overlay": overlay, "reason": "from the page"})
    assert r.status_code == 200, r.text
    assert (r.json()["freeze_mode"], r.json()["entries"]) == ("replay_adjusted", 1)

    def replay_status() -> dict[str, Any]:
        return call(client, "replay", {"action": "status"}).json()

    st = wait_for(lambda: (s := replay_status())["freeze_mode"] == "replay_adjusted" and s, 60, what="replay on")
    assert st["status"] == {"total": 1, "fired": 0, "late": 0, "next_step": far, "done": False}
    with ServeProcess(trainer.run_dir) as srv, httpx.stream("GET", srv.url + "/api/live", headers=srv.auth(), timeout=60) as resp:
        snap = next(sse_events(resp))
        assert snap["replay"]["freeze_mode"] == "replay_adjusted" and snap["replay"]["status"]["next_step"] == far
        assert snap["rules"]["rules"] == []
    r = call(client, "replay", {"action": "stop", "reason": "done"})
    assert r.status_code == 200 and r.json()["freeze_mode"] == "off"
    wait_for(lambda: replay_status()["freeze_mode"] == "off", 60, what="replay off")
