// The page's state, filled by the live channel; views subscribe to the parts they draw.

// Metric names are run data: `constructor`, `__proto__` or `toString` name a metric like any other.
// A plain {} answers those names itself (Object's own properties), so every map keyed by metric
// name is made without a prototype, and a lookup in a map that came from JSON asks for own keys.
export function seriesMap() {
  return Object.create(null);
}

export function seriesOf(map, name) {
  return map && Object.hasOwn(map, name) ? map[name] : undefined;
}

export const state = {
  config: null,
  run: '',
  compareLabel: null,
  series: seriesMap(),  // metric -> {steps: [], values: []}
  metricsTotal: 0,   // metric names in the run (the snapshot carries at most the server's bound of them)
  ledger: [],        // ledger rows, oldest first, at most config.history.ledger_rows
  status: null,
  actuators: null,
  autopilot: null,
  proposals: null,
  alerts: null,
  schedule: null,
  replay: null,      // replay status: {freeze_mode, status: {total, fired, late, next_step, done}}
  rules: null,       // the user's alert rules (set_alert_rules read)
  compare: null,     // {label, metrics, ledger} from /api/compare
  connected: false,
};

const listeners = {};

export function on(topic, fn) {
  (listeners[topic] ||= []).push(fn);
}

export function emit(topic) {
  for (const fn of listeners[topic] || []) {
    try { fn(state); } catch (err) { console.warn(`view for ${topic} failed`, err); }
  }
}

// "nan"/"inf" strings from the run are kept as non-finite markers; the chart draws a gap.
export function toNumber(v) {
  if (typeof v === 'number') return v;
  if (v === 'inf') return Infinity;
  if (v === '-inf') return -Infinity;
  return NaN;
}

export function resetSeries(series) {
  state.series = seriesMap();
  appendSeries(series);
}

// First index whose step is >= step (steps are kept sorted).
function lowerBound(steps, step) {
  let lo = 0;
  let hi = steps.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < step) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Merge points into each metric's series, ordered by step. Points usually arrive in order (a
// push); a late one (a val_loss logged for a step already passed) is inserted where it belongs,
// and a step already held takes the new value (a resent point is not drawn twice).
export function appendSeries(series) {
  mergeSeries(state.series, series, state.config ? state.config.history.max_points : 20000);
}

// The same merge into any target (the compare run's series are ordered this way too).
// ``target`` is a ``seriesMap()``.
export function mergeSeries(target, series, cap = Infinity) {
  for (const [name, s] of Object.entries(series || {})) {
    const cur = seriesOf(target, name) || (target[name] = { steps: [], values: [] });
    for (let i = 0; i < s.steps.length; i++) {
      const step = s.steps[i];
      const value = toNumber(s.values[i]);
      if (typeof step !== 'number' || !Number.isFinite(step)) continue;
      const n = cur.steps.length;
      if (!n || step > cur.steps[n - 1]) {
        cur.steps.push(step);
        cur.values.push(value);
        continue;
      }
      const at = lowerBound(cur.steps, step);
      if (cur.steps[at] === step) cur.values[at] = value;
      else { cur.steps.splice(at, 0, step); cur.values.splice(at, 0, value); }
    }
    if (cur.steps.length > cap * 1.2) {  // trim in batches: appends stay O(1) amortized
      cur.steps.splice(0, cur.steps.length - cap);
      cur.values.splice(0, cur.values.length - cap);
    }
  }
  return target;
}

export function addLedger(entries, reset = false) {
  if (reset) state.ledger = [];
  const seen = new Set(state.ledger.map((e) => e.cmd_id + ':' + e.seq));
  for (const e of entries || []) if (!seen.has(e.cmd_id + ':' + e.seq)) state.ledger.push(e);
  const cap = state.config ? state.config.history.ledger_rows : 500;
  if (state.ledger.length > cap) state.ledger.splice(0, state.ledger.length - cap);
}

// Knob changes that the charts mark: applied set_params on knob groups (the groups that are not
// knobs come from /api/config, core's hotcb.records.NOT_KNOBS), one per key.
export function knobChanges(ledger) {
  const out = [];
  const notKnobs = (state.enums && state.enums.not_knobs) || [];
  for (const e of ledger || []) {
    if (e.decision !== 'applied' || e.op !== 'set_params' || notKnobs.includes(e.module)) continue;
    if (e.step === null || e.step === undefined) continue;
    out.push(e);
  }
  return out;
}
