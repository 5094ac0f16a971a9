"""Read-only tools: get_status, read_trends, read_metrics, read_ledger."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field, model_validator

from hotcb import trend
from hotcb.codec import tag
from hotcb.jsonl import read_json
from hotcb.ledger import filter_entries
from hotcb.records import LedgerRecord, RescueStatus
from hotcb.rundir import AUTOPILOT
from hotcb.trend import Trend

from .metrics_cursor import PATTERN, MetricsCursor, read_after
from .metrics_store import MetricsStore
from .registry import StrictInput
from .schemas import Empty, LedgerEntry
from .tools_base import ToolGroup

KEY_METRIC_PREFERENCE = ("val_loss", "valid_loss", "eval_loss", "val_acc", "train_loss", "loss")
DEFAULT_TREND_METRICS = 10
# Series (metric names) one reply carries at most: a run that logs thousands of names (a
# per-sample metric) would otherwise send, hold and draw every one. The rest are counted and
# found by name (``match``).
MAX_SERIES = 200
BOUND_DOC = ("set when the run logs more names than the server holds in full (a memory bound): how many "
             "points each name keeps, and how many names are counted but not held")


def echo_metric(name: str, names: list[str]) -> str | None:
    """The metric a name means: itself if logged, else a knob's echo (``lr`` -> ``opt/lr``,
    ``aux_w`` -> ``loss/aux_w``: the kernel logs every knob as GROUP/KEY). None if neither."""
    if name in names:
        return name
    echoes = sorted(n for n in names if n.rpartition("/")[2] == name and "/" in n)
    return echoes[0] if len(echoes) == 1 else next((n for n in echoes if n.startswith("opt/")), None)


class StatusOutput(BaseModel):
    liveness: str = Field(description="running, paused, stopped, dead, stale or absent")
    reason: str | None = None
    step: int | None = None
    epoch: int | None = None
    max_steps: int | None = None
    steps_per_s: float | None = None
    paused: bool = False
    stop_requested: bool = False
    freeze_mode: str | None = None
    replay: dict[str, Any] | None = None
    scheduled: int = 0
    snapshots: list[int] = []
    metrics: list[str] = Field([], description=f"metric names, at most {MAX_SERIES}: losses and accuracies first")
    metrics_total: int = Field(0, description="how many metric names the run has logged")
    metrics_bound: str | None = Field(None, description=BOUND_DOC)
    last_metrics: dict[str, Any] = {}
    autopilot: dict[str, Any] | None = None
    internal_errors: int = 0
    rescue: RescueStatus | None = Field(None, description="the kernel's rescue: enabled, the detector's verdict, "
                                        "level and noise of the loss, rollbacks so far, the lr probe's state")
    status_problems: list[str] = Field([], description="fields of the status file that did not parse (left out), why")
    metrics_dropped_lines: int = Field(0, description="lines of the metrics file that are not records (not JSON, "
                                                      "an absurd step), skipped by the readers")


class TrendsInput(StrictInput):
    metrics: list[str] | None = Field(None, description="metric names; default: up to 10, losses first")
    window: int = Field(200, ge=8, le=20000, description="how many recent points per metric")
    key_metric: str | None = Field(None, description="metric to forecast; default val_loss, else train_loss")
    horizon_step: int | None = Field(None, ge=1, description="forecast at this step; default the run's max_steps")


class Forecast(BaseModel):
    metric: str
    at_step: int
    value: float | None
    low: float | None = Field(description="lower end of the 95% prediction band")
    high: float | None
    model: str
    fit_points: int
    extrapolation: float | None = Field(None, description="fitted spans between the last point and at_step; "
                                                          "beyond ~3 treat the value as a rough guide")
    reason: str | None = Field(None, description="why value/low/high are null (at_step too far past the data)")


class KnobChange(BaseModel):
    step: int | None
    key: str
    old: Any = None
    new: Any = None
    source: str | None = None
    actor: str | None = None


class TrendsOutput(BaseModel):
    step: int | None
    steps_per_s: float | None
    window: int
    step_range: list[int] | None = Field(None, description="first and last step of the window (shared by the metrics)")
    metrics: dict[str, dict[str, Any]]
    forecast: Forecast | None = None
    recent_changes: list[KnobChange] = []
    other_metrics: list[str] = []


class MetricsInput(StrictInput):
    metrics: list[str] | None = None
    match: str | None = Field(None, max_length=200, description="only metric names containing this text (any case)")
    max_series: int = Field(MAX_SERIES, ge=1, le=MAX_SERIES, description="metrics (series) in the reply at most: "
                            "losses and accuracies first, then by name; series_total counts them all")
    max_points: int = Field(200, ge=2, le=5000, description="points per metric; with since_cursor, records per call")
    since_step: int | None = Field(None, description="only points at or after this step (recent data)")
    last: int | None = Field(None, ge=1, le=5000, description="the last N points of each metric, exact (never thinned)")
    since_cursor: str | None = Field(None, pattern=PATTERN, description="the cursor of an earlier reply: exactly the "
                                     "points of the records appended after it, each once, never thinned")

    @model_validator(mode="after")
    def _one_window(self) -> MetricsInput:
        given = [k for k in ("since_step", "last", "since_cursor") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of since_step, last, since_cursor (got {', '.join(given)})")
        return self


class SeriesOut(BaseModel):
    steps: list[float]
    values: list[float | str | None]


class MetricsOutput(BaseModel):
    last_step: int | None
    records: int = Field(description="records before the cursor")
    series: dict[str, SeriesOut]
    series_total: int = Field(0, description="metric names that matched; the reply carries at most max_series of them")
    metrics_bound: str | None = Field(None, description=BOUND_DOC)
    cursor: str = Field(description="names the record after these: pass it as since_cursor for exactly what follows")
    reset: bool = Field(False, description="the file was replaced or truncated since since_cursor: "
                                           "these points start the run over (drop what you hold)")
    more: bool = Field(False, description="max_points records were returned and more wait after cursor")


class LedgerInput(StrictInput):
    last: int = Field(20, ge=1, le=5000)
    since_seq: int | None = None
    source: str | None = None
    decision: str | None = None
    module: str | None = None
    cmd_id: str | None = None
    since_step: int | None = Field(None, ge=0, description="only entries at this training step or later")
    until_step: int | None = Field(None, ge=0, description="only entries at this training step or earlier")

    @model_validator(mode="after")
    def _step_range(self) -> LedgerInput:
        if self.since_step is not None and self.until_step is not None and self.since_step > self.until_step:
            raise ValueError(f"since_step ({self.since_step}) is after until_step ({self.until_step})")
        return self


class LedgerOutput(BaseModel):
    total: int
    entries: list[LedgerEntry]


def metric_rank(n: str) -> tuple[int, str]:
    """Where a metric name comes when names are cut: losses and accuracies first, knob echoes
    (``opt/lr``) last, then by name."""
    if "/" in n:
        return (3, n)
    if "loss" in n.lower():
        return (0, n)
    if trend.maximize(n):
        return (1, n)
    return (2, n)


def pick_metrics(names: list[str], limit: int = DEFAULT_TREND_METRICS) -> list[str]:
    """Losses and accuracies first, knob echoes (``opt/lr``) last."""
    return sorted(names, key=metric_rank)[:limit]


def choose_series(names: Iterable[str], args: MetricsInput) -> tuple[list[str], int]:
    """The metric names a ``read_metrics`` reply carries (those asked for, containing ``match``,
    at most ``max_series`` by ``metric_rank``) and how many matched."""
    pool = list(names)
    if args.metrics:  # an empty list asks for every name, as before the bound
        asked = set(args.metrics)
        pool = [n for n in pool if n in asked]
    if args.match:
        text = args.match.lower()
        pool = [n for n in pool if text in n.lower()]
    return sorted(pool, key=metric_rank)[:args.max_series], len(pool)


def unheld_matches(store: MetricsStore, args: MetricsInput) -> int:
    """Names a ``read_metrics`` reply counts in ``series_total`` though the store did not hold
    them (``point_budget``): all of them unless the names are filtered, those asked for by name.
    A ``match`` text cannot be tried on them (only their hashes are kept)."""
    if args.match:
        return 0
    if args.metrics:
        return sum(1 for n in set(args.metrics) if n not in store.series and n in store.unheld)
    return len(store.unheld)


def logged_values(tools: Any, status: StatusOutput, names: list[str]) -> dict[str, Any]:
    """The last value of each of ``names`` the run logs. ``status`` lists at most
    ``MAX_SERIES`` names (losses and accuracies first); where it left names out, those asked for
    are read by name, so a low-ranked one (``grad_norm``, a knob echo) is not lost among them."""
    if status.metrics_total <= len(status.metrics):
        listed = set(status.metrics)
        return {n: status.last_metrics.get(n) for n in names if n in listed}
    if not names:
        return {}
    out = tools.read_metrics(MetricsInput(metrics=names, last=1))
    return {n: s.values[-1] if s.values else None for n, s in out.series.items()}


class ObserveTools(ToolGroup):
    def get_status(self, args: Empty) -> StatusOutput:
        """Is training alive (running/paused/stopped/dead)? Step, steps/s, freeze mode, replay,
        scheduled ops, snapshots, the last metric values ("nan"/"inf"/"-inf" when not finite; at most
        200 metrics, losses first, metrics_total counts all; metrics_bound says where a memory bound
        shortened or left out series) and the autopilot mode; status_problems names status fields
        that did not parse."""
        st = self.status()
        live = self.liveness()
        self.metrics.refresh()
        names = self.metrics.names()
        shown = pick_metrics(names, MAX_SERIES)
        last = {}
        for name in shown:
            s = self.metrics.get(name)
            if s is not None and s.values:
                last[name] = trend.sig_or_tag(s.values[-1])
        autopilot = read_json(self.run.root / AUTOPILOT)
        return StatusOutput(
            liveness=live["state"], reason=live.get("reason"), step=st.step, epoch=st.epoch, max_steps=st.max_steps,
            steps_per_s=st.steps_per_s, freeze_mode=st.freeze_mode, replay=st.replay, paused=st.paused,
            stop_requested=st.stop_requested, scheduled=st.scheduled, snapshots=st.snapshots,
            metrics=shown, metrics_total=self.metrics.names_total(), metrics_bound=self.metrics.bound(),
            last_metrics=last,
            autopilot=autopilot if isinstance(autopilot, dict) else None, internal_errors=st.internal_errors,
            rescue=st.rescue, status_problems=st.problems, metrics_dropped_lines=self.metrics.dropped,
        )

    def read_trends(self, args: TrendsInput) -> TrendsOutput:
        """Compact trends of chosen metrics over the recent window (default: up to 10, losses first):
        last, min, max, mean, slope per step, EMA, volatility, trend (improving/worsening/flat/volatile/diverging/non_finite;
        rising/falling for metrics with no goal such as lr; constant), flags (plateau, diverging,
        non_finite:N) when raised; the window's step range; steps/s; the knob changes inside the window;
        and a forecast of the key metric at the run's end with an uncertainty band."""
        self.metrics.refresh()
        names = self.metrics.names()
        chosen = args.metrics or pick_metrics(names)
        sources = {n: echo_metric(n, names) for n in chosen}  # a knob's plain name reads its echo
        key = (echo_metric(args.key_metric, names) or args.key_metric) if args.key_metric else None
        key = key or next((m for m in KEY_METRIC_PREFERENCE if m in names), None)
        wanted = [src for src in sources.values() if src] + ([key] if key else [])
        self.metrics.extend(wanted, points=args.window)  # a long file read by seek
        out: dict[str, dict[str, Any]] = {}
        ranges: dict[str, list[int]] = {}
        counts: dict[str, int] = {}
        first_step = None
        for name in chosen:
            source = sources[name]
            s = self.metrics.get(source) if source else None
            if s is None:
                out[name] = {"n": 0, "trend": Trend.NO_DATA}
                continue
            steps, values = s.window(args.window)
            summary = trend.summarize(name, steps, values)
            out[name] = trend.compact(summary)
            if source != name:
                out[name]["metric"] = source  # the knob's echo (lr -> opt/lr)
            if steps:
                ranges[name], counts[name] = summary["step_range"], summary["n"]
                first_step = steps[0] if first_step is None else min(first_step, steps[0])
        # One shared step range at the top; a metric logged on another cadence carries its own.
        common = max((tuple(r) for r in ranges.values()), key=list(map(tuple, ranges.values())).count, default=None)
        for name, r in ranges.items():
            if tuple(r) != common:
                out[name]["steps"] = r
                out[name]["n"] = counts[name]
        st = self.status()
        fc = None
        horizon = args.horizon_step or st.max_steps
        if key and horizon and self.metrics.get(key) is not None:
            steps, values = self.metrics.get(key).window(args.window)
            f = trend.forecast(steps, values, horizon)
            fc = Forecast(metric=key, **f) if f else None
        changes = []
        for e in filter(None, map(LedgerRecord.from_json, self.ledger_entries()[-200:])):
            if first_step is not None and (e.step or 0) < first_step:
                continue
            for k, (old, new) in e.knob_changes().items():
                changes.append(KnobChange(step=e.step, key=k, old=old, new=new, source=e.source, actor=e.actor))
        return TrendsOutput(step=self.metrics.last_step, steps_per_s=st.steps_per_s, window=args.window,
                            step_range=list(common) if common else None, metrics=out, forecast=fc, recent_changes=changes[-10:],
                            other_metrics=[n for n in names if n not in chosen][:30])

    def read_metrics(self, args: MetricsInput) -> MetricsOutput:
        """Metric series: the whole run downsampled to at most max_points per metric, the points
        since a step, the last N points exact, or exactly what was logged after a cursor. Every
        reply carries a cursor; since_cursor=it returns each later point once (reset: true when
        the file was replaced since). At most max_series metrics (200), losses and accuracies
        first; series_total counts the names that matched; match picks names containing a text;
        metrics_bound says where a memory bound shortened or left out series."""
        if args.since_cursor is not None:
            return self._metrics_after(args)
        self.metrics.refresh()
        names, total = choose_series(self.metrics.names(), args)
        total += unheld_matches(self.metrics, args)
        if args.since_step is not None or args.last is not None:
            self.metrics.extend(names, points=args.last, since_step=args.since_step)  # a long file read by seek
        series = {}
        for name in names:
            s = self.metrics.get(name)
            if s is None:
                continue
            if args.last is not None:
                steps, values = s.window(last_n=args.last)
            elif args.since_step is not None:
                steps, values = s.window(since_step=args.since_step)
                if len(steps) > args.max_points:
                    k = -(-len(steps) // args.max_points)
                    steps, values = steps[::k], values[::k]
            else:
                steps, values = s.downsampled(args.max_points)
            series[name] = SeriesOut(steps=steps, values=[tag(v) for v in values])
        cursor = self.metrics.cursor()
        return MetricsOutput(last_step=self.metrics.last_step, records=cursor.index, series=series,
                             series_total=total, metrics_bound=self.metrics.bound(), cursor=cursor.token())

    def _metrics_after(self, args: MetricsInput) -> MetricsOutput:
        batch = read_after(self.run.metrics, MetricsCursor.parse(args.since_cursor or ""), args.max_points)
        chosen, total = choose_series(dict.fromkeys(n for rec in batch.records for n in rec.metrics), args)
        series: dict[str, SeriesOut] = {name: SeriesOut(steps=[], values=[]) for name in chosen}
        for rec in batch.records:
            for name, v in rec.metrics.items():
                s = series.get(name)
                if s is not None:
                    s.steps.append(float(rec.step))
                    s.values.append(tag(v))
        last = max((int(r.step) for r in batch.records), default=None)
        return MetricsOutput(last_step=last, records=batch.cursor.index, series=series, series_total=total,
                             cursor=batch.cursor.token(), reset=batch.reset, more=batch.more)

    def read_ledger(self, args: LedgerInput) -> LedgerOutput:
        """The ledger: every command's decision (applied/rejected/failed/ignored_*), with step, source,
        actor, reason, old -> new values and errors. Filter by source, decision, module, cmd_id, or a
        training-step range (since_step..until_step, inclusive)."""
        rows = self.ledger_entries()
        total = len(rows)
        rows = filter_entries(rows, source=args.source, decision=args.decision, module=args.module,
                              cmd_id=args.cmd_id, since_step=args.since_step, until_step=args.until_step,
                              since_seq=args.since_seq)
        rows = rows[-args.last:]
        records = filter(None, map(LedgerRecord.from_json, rows))
        return LedgerOutput(total=total, entries=[LedgerEntry(**{k: getattr(r, k) for k in LedgerEntry.model_fields})
                                                  for r in records])
