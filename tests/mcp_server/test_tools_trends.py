"""read_trends and its maths on real metrics files: size for an LLM, flags, forecast, incremental reads."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
from hotcb.mcp_server import HotcbTools

from hotcb import trend
from hotcb.jsonl_write import append_lines

# About how a BPE tokenizer (cl100k-like) splits compact JSON: words, digit runs of up to 3,
# punctuation in pairs (`":`, `,"`, `{"` are single tokens there).
_TOKEN = re.compile(r"[A-Za-z_]+|\d{1,3}|[^\sA-Za-z_\d]{1,2}")


def approx_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


TEN = ["train_loss", "val_loss", "val_acc", "aux_loss", "grad_norm", "lr", "opt/lr", "opt/weight_decay",
       "loss/aux_w", "throughput"]


def records(start: int, n: int, nan_from: int | None = None) -> list[dict]:
    rng = np.random.default_rng(start)
    out = []
    for step in range(start, start + n):
        loss = 2.0 * (step + 10) ** -0.3 * (1 + 0.05 * rng.standard_normal())
        m = {"train_loss": loss, "val_loss": loss * 1.1, "val_acc": 1 - loss / 3, "aux_loss": 0.5 + 0.01 * math.sin(step),
             "grad_norm": 1 + 0.3 * rng.random(), "lr": 0.01, "opt/lr": 0.01, "opt/weight_decay": 0.0,
             "loss/aux_w": 0.3, "throughput": 900 + 50 * rng.random()}
        if nan_from is not None and step >= nan_from:
            m["train_loss"] = float("nan")
        out.append({"step": step, "epoch": 0, "wall_time": 1e9 + step, "metrics": m})
    return out


def test_read_trends_fits_an_llm_context_for_ten_metrics(run_dir: Path) -> None:
    append_lines(run_dir / "hotcb.metrics.jsonl", records(1, 5000))
    out = HotcbTools(run_dir).call("read_trends", {})
    assert set(out["metrics"]) == set(TEN)
    text = json.dumps(out, separators=(",", ":"))
    assert approx_tokens(text) < 500, (approx_tokens(text), text)  # "a few hundred tokens"
    vl = out["metrics"]["val_loss"]
    assert {"last", "min", "max", "mean", "slope", "ema", "volatility", "trend"} <= set(vl)
    assert out["step_range"] == [4801, 5000] and out["metrics"]["lr"] == {"last": 0.01, "trend": "constant"}
    assert out["metrics"]["val_acc"]["goal"] == "max"


def test_flags_non_finite_plateau_and_divergence(run_dir: Path) -> None:
    append_lines(run_dir / "hotcb.metrics.jsonl", records(1, 300, nan_from=290))
    out = HotcbTools(run_dir).call("read_trends", {"metrics": ["train_loss", "aux_loss"], "window": 100})
    tl = out["metrics"]["train_loss"]
    assert tl["trend"] == "non_finite" and "non_finite:11" in tl["flags"] and "diverging" in tl["flags"]
    assert tl["last"] == "nan"  # recorded, never dropped
    assert "plateau" in out["metrics"]["aux_loss"]["flags"]
    steps = list(range(1, 101))
    blowup = [1.0 / s for s in steps[:60]] + [0.02 * 1.15 ** k for k in range(40)]
    s = trend.summarize("val_loss", steps, blowup)
    assert s["diverging"] and s["trend"] == "diverging"
    rising_lr = trend.summarize("lr", steps, [0.01] * 50 + [0.02] * 50)
    assert rising_lr["trend"] == "rising" and not rising_lr["diverging"]  # a knob choice, not a divergence


def test_forecast_brackets_a_power_law_and_stays_positive() -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(200, 2001)
    truth = lambda s: 3.0 * s ** -0.4  # noqa: E731
    y = truth(steps) * (1 + 0.03 * rng.standard_normal(len(steps)))
    near = trend.forecast(steps, y, 2500)
    assert near["low"] <= truth(2500) <= near["high"] and abs(near["value"] / truth(2500) - 1) < 0.05
    far = trend.forecast(steps, y, 9_000)  # 3.9 window spans out: still a number, a wide band
    assert 0 < far["low"] <= truth(9_000) <= far["high"] and far["extrapolation"] > 7
    assert far["high"] >= float(np.median(y[-50:])) * 0.99  # far out, "stays where it is" is in the band
    beyond = trend.forecast(steps, y, 100_000)  # 55 spans out: no number, a reason
    assert beyond["value"] is None and "too far" in beyond["reason"]
    assert trend.forecast(steps[:5], y[:5], 3000) is None


def test_read_trends_forecasts_the_key_metric_at_max_steps(run_dir: Path) -> None:
    append_lines(run_dir / "hotcb.metrics.jsonl", records(1, 400))
    out = HotcbTools(run_dir).call("read_trends", {"horizon_step": 1000})
    fc = out["forecast"]
    assert fc["metric"] == "val_loss" and fc["at_step"] == 1000
    expected = 1.1 * 2.0 * 1010 ** -0.3
    assert fc["low"] <= expected <= fc["high"] and fc["low"] > 0


def test_metrics_store_reads_only_new_bytes_and_detects_replacement(run_dir: Path) -> None:
    path = run_dir / "hotcb.metrics.jsonl"
    append_lines(path, records(1, 1000))
    tools = HotcbTools(run_dir)
    tools.call("read_trends", {})
    before = tools.metrics.tail.offset
    assert before == path.stat().st_size and tools.metrics.records == 1000
    append_lines(path, records(1001, 100))
    assert tools.metrics.refresh() == 100
    assert tools.metrics.tail.offset - before == path.stat().st_size - before  # just the appended bytes
    with open(path, "ab") as f:  # a half-written line is left for the next read
        f.write(b'{"step": 1101, "metrics": {"val_')
    assert tools.metrics.refresh() == 0
    path.unlink()  # replaced (a new run in the same directory): read again from the start
    append_lines(path, records(1, 50))
    assert tools.call("read_trends", {"metrics": ["val_loss"]})["step_range"] == [1, 50]
    assert tools.metrics.records == 50


def test_a_late_record_for_an_earlier_step_does_not_move_last_step_back(run_dir: Path) -> None:
    path = run_dir / "hotcb.metrics.jsonl"
    append_lines(path, records(1, 100))
    append_lines(path, [{"step": 40, "metrics": {"val_loss": 0.5}}])  # e.g. an eval logged late
    out = HotcbTools(run_dir).call("read_metrics", {"metrics": ["val_loss"]})
    assert out["last_step"] == 100


def test_read_trends_finds_a_knob_by_its_plain_name(run_dir: Path) -> None:
    """A plain loop logs no `lr`; the kernel echoes the knob as `opt/lr`: asking for `lr` finds it."""
    append_lines(run_dir / "hotcb.metrics.jsonl", [
        {"step": s, "wall_time": 1.7e9 + s, "metrics": {"train_loss": 1.0 / s, "opt/lr": 0.01, "loss/aux_w": 0.5}}
        for s in range(1, 60)])
    out = HotcbTools(run_dir).call("read_trends", {"metrics": ["lr", "aux_w", "nope"]})
    assert out["metrics"]["lr"]["metric"] == "opt/lr" and out["metrics"]["lr"]["last"] == 0.01
    assert out["metrics"]["aux_w"]["metric"] == "loss/aux_w"
    assert out["metrics"]["nope"]["trend"] == "no_data"


def test_forecast_far_past_the_data_is_null_with_the_reason(run_dir: Path) -> None:
    append_lines(run_dir / "hotcb.metrics.jsonl", records(1, 200))
    out = HotcbTools(run_dir).call("read_trends", {"horizon_step": 800_000})
    fc = out["forecast"]
    assert fc["value"] is None and fc["low"] is None and fc["high"] is None
    assert "too far" in fc["reason"] and "horizon_step <=" in fc["reason"]
    limit = int(fc["reason"].rsplit("<= ", 1)[1])
    near = HotcbTools(run_dir).call("read_trends", {"horizon_step": limit})["forecast"]
    assert near["value"] is not None and near.get("reason") is None
