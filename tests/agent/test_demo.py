"""``hotcb demo``: a real model on the embedded synthetic images, with the rules autopilot, to the end."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hotcb.demos import synthetic_images
from tests.support.proc import read_jsonl


def run_demo(tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if k != "HOTCB_AI_KEY"}
    r = subprocess.run([sys.executable, "-m", "hotcb.cli", "demo", "--no-serve", "--dir", str(tmp_path), *extra],
                       capture_output=True, text=True, timeout=300, env=env)
    return r, json.loads((tmp_path / "hotcb.status.json").read_text())


def test_demo_exits_zero_when_done(tmp_path):
    r, status = run_demo(tmp_path, "--max-steps", "40")
    assert r.returncode == 0, r.stderr
    assert status["step"] == 40
    names = {k for m in read_jsonl(tmp_path / "hotcb.metrics.jsonl") for k in m["metrics"]}
    assert {"train_loss", "val_loss", "val_acc", "grad_norm", "lr"} <= names
    assert json.loads((tmp_path / "hotcb.autopilot.json").read_text())["mode"] == "auto"


def test_golden_demo_has_loss_weight_knobs_and_rich_metrics(tmp_path):
    r, status = run_demo(tmp_path, "--golden", "--max-steps", "30")
    assert r.returncode == 0, r.stderr
    knobs = {a["key"] for a in json.loads((tmp_path / "hotcb.actuators.json").read_text())["actuators"]}
    assert {"lr", "cls_w", "recon_w", "aux_w"} <= knobs
    names = {k for m in read_jsonl(tmp_path / "hotcb.metrics.jsonl") for k in m["metrics"]}
    assert {"loss_cls", "loss_recon", "loss_aux", "grad_norm_encoder", "val_acc"} <= names


def test_synthetic_images_are_deterministic_and_offline():
    a, ya, _ = synthetic_images(50, seed=3)
    b, yb, _ = synthetic_images(50, seed=3)
    assert a.shape == (50, 1, 16, 16) and (a == b).all() and (ya == yb).all()
    assert len(set(ya.tolist())) > 3
    with pytest.raises(AssertionError):
        assert (synthetic_images(50, seed=4)[0] == a).all()


def test_demo_without_dir_uses_a_fresh_run_directory_not_the_cwd(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HOTCB_AI_KEY"}
    r = subprocess.run([sys.executable, "-m", "hotcb.cli", "demo", "--no-serve", "--max-steps", "5"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not list(tmp_path.glob("hotcb.*"))
    run_dir = r.stderr.split("run dir ", 1)[1].split(",", 1)[0]
    assert json.loads((Path(run_dir) / "hotcb.status.json").read_text())["step"] == 5


def _lines_until(proc: subprocess.Popen, pattern: str, seen: list[str]) -> re.Match:
    """Read the demo's stdout line by line until one matches (the wait is on its output)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"demo ended before {pattern!r}:\n" + "".join(seen[-40:]))


def test_demo_with_a_busy_port_serves_the_url_it_prints_and_stays_up(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTCB_AI_")}
    proc = subprocess.Popen([sys.executable, "-m", "hotcb.cli", "demo", "--dir", str(tmp_path), "--max-steps", "480",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # its own group: a failed test kills the dashboard too
    seen: list[str] = []
    try:
        url = _lines_until(proc, r"dashboard at (http://\S+)", seen).group(1)
        assert f":{port}/" not in url and "?token=" in url
        with httpx.Client(timeout=60, follow_redirects=True) as c:  # the URL as printed logs the browser in (cookie)
            assert c.get(url).status_code == 200
            assert c.get(url.split("/?", 1)[0] + "/api/config").json()["run"] == tmp_path.name
        # a live line, then the summary; the dashboard stays up after training ends
        at = int(_lines_until(proc, r"at step (\d+) a scheduled mishap sets lr to ", seen).group(1))
        _lines_until(proc, r"step \d+/480 \| loss", seen)
        _lines_until(proc, r"press Ctrl-C to quit", seen)
        out = "".join(seen)
        assert "final: step 480/480" in out and "None" not in out
        with httpx.Client(timeout=60, follow_redirects=True) as c:
            assert c.get(url).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=10)
    finally:
        busy.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the demo and what it started (trainer, dashboard)
            proc.wait()
    # the story in the ledger: the scheduled mishap, by the demo's "teammate", with its reason
    mishap = [e for e in read_jsonl(tmp_path / "hotcb.applied.jsonl") if e.get("actor") == "demo-mishap"]
    assert mishap and mishap[0]["decision"] == "applied" and mishap[0]["step"] == at
    assert "scheduled mishap" in mishap[0]["reason"]
    # ...and the autopilot's answer after it (the kernel's rescue, enabled by the rules in auto)
    rescued = [e for e in read_jsonl(tmp_path / "hotcb.applied.jsonl")
               if e.get("source") == "rule" and e.get("decision") == "applied" and (e.get("step") or 0) >= at
               and e.get("op") == "rollback"]
    assert rescued and rescued[0]["payload"]["lr"]["new"] < mishap[0]["payload"]["lr"]["new"]
    assert "what happened:" in out
