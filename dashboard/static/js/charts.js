// Metric charts (uPlot, vendored) with a marker wherever a knob changed.
// Markers are DOM elements over the plot (not canvas paint) so they can be hovered, carry
// data-* attributes tests can find, and show who/why as text in the tooltip.
import uPlot from '../vendor/uplot/uPlot.esm.js';
import { h, $, fmt, replace, describeChange } from './dom.js';
import { state, on, knobChanges, seriesOf, appendSeries } from './store.js';
import { available, callTool } from './api.js';

// Charts drawn at most: a run logging thousands of metric names (a per-sample metric) would
// draw one each and hang the page. The filter box finds the others (asking the server for names
// the snapshot did not carry: it sends the first few hundred, losses first).
export const MAX_CHARTS = 48;
const filter = { text: '', total: 0, asked: 0, next: 0, busy: false };  // total: the server's count of names matching text
// The live stream carries the first few hundred names only: while a filter is on, the charts'
// new points are asked for this often (from the oldest last step they hold).
const FILTER_REFRESH_MS = 2000;

const COLORS = ['#4cc2ff', '#f5a524', '#8bd17c', '#e879f9', '#f87171', '#2dd4bf', '#a78bfa', '#facc15'];
const charts = new Map();   // metric -> {u, card, value, markers: [], dirty}
let order = [];

// log_scale entries are names or simple globs ("*loss*"): losses span decades early on.
function isLog(name) {
  return state.config.chart.log_scale.some((p) =>
    new RegExp('^' + p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$').test(name));
}

function wanted(names) {
  const c = state.config.chart;
  let list = c.metrics.length ? c.metrics.filter((n) => names.includes(n)) : names.slice();
  list = list.filter((n) => !c.hidden.includes(n) && (c.knob_echoes || !n.includes('/')));
  const rank = (n) => (/loss/i.test(n) ? 0 : /acc|f1|auc|score/i.test(n) ? 1 : 2);
  if (!c.metrics.length) list.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return list;
}

function clean(values, log) {
  return values.map((v) => (Number.isFinite(v) && (!log || v > 0) ? v : null));
}

function dataFor(name) {
  const s = state.series[name] || { steps: [], values: [] };
  const log = isLog(name);
  const own = [s.steps, clean(s.values, log)];
  if (!state.compare) return own;
  const other = seriesOf(state.compare.metrics.series, name);
  // A metric the compare run does not have still needs its (empty) third column.
  if (!other) return [own[0], own[1], own[0].map(() => null)];
  const theirs = [other.steps, clean(other.values, log)];
  return uPlot.join([own, theirs]);
}

function widthOf(card) {
  return Math.max(240, card.clientWidth - 24);
}

function makeChart(name, idx) {
  const value = h('span', { class: 'chart-value' }, '—');
  const nonfinite = h('span', { class: 'badge bad', hidden: true }, 'non-finite');
  const plot = h('div', { class: 'plot' });
  const card = h('div', { class: 'chart-card', dataset: { metric: name, points: '0' } },
    h('div', { class: 'chart-head' }, h('span', { class: 'chart-name' }, name), nonfinite, value), plot);
  $('charts').appendChild(card);
  const color = COLORS[idx % COLORS.length];
  const series = [{}, { label: state.run || 'run', stroke: color, width: 1.5, spanGaps: false, points: { show: false } }];
  if (state.compare) {
    series.push({ label: state.compare.label, stroke: '#9aa4b2', width: 1.2, dash: [5, 4], spanGaps: true, points: { show: false } });
  }
  const axis = { stroke: '#8b95a5', grid: { stroke: '#232a35', width: 1 }, ticks: { stroke: '#2b3340', width: 1 }, font: '11px system-ui, sans-serif' };
  const opts = {
    width: widthOf(card), height: state.config.chart.height,
    legend: { show: false },
    cursor: { drag: { x: true, y: false }, points: { size: 6 } },
    scales: { x: { time: false }, y: { distr: isLog(name) ? 3 : 1 } },
    axes: [{ ...axis }, { ...axis, size: 56, values: (u, ticks) => ticks.map((v) => (v === null || v === undefined ? '' : fmt(v))) }],
    series,
    hooks: { draw: [(u) => placeMarkers(name, u)], setCursor: [(u) => showCursor(name, u)] },
  };
  const u = new uPlot(opts, dataFor(name), plot);
  const entry = { u, card, value, nonfinite, markers: [], dirty: false, withCompare: Boolean(state.compare) };
  charts.set(name, entry);
  buildMarkers(name);
  return entry;
}

function showCursor(name, u) {
  const c = charts.get(name);
  if (!c) return;
  const i = u.cursor.idx;
  if (i === null || i === undefined) { c.value.textContent = latestText(name); return; }
  c.value.textContent = `step ${fmt(u.data[0][i])}: ${fmt(u.data[1][i])}`;
}

function latestText(name) {
  const s = state.series[name];
  if (!s || !s.values.length) return '—';
  return fmt(s.values[s.values.length - 1]);
}

// ---------------------------------------------------------------------------------- markers
function markerLines(e) {
  return [
    `step ${e.step} · ${describeChange(e)}`,
    `by ${e.source || '?'}${e.actor ? ' / ' + e.actor : ''}`,
    e.reason ? `why: ${e.reason}` : 'why: (no reason given)',
  ];
}

function buildMarkers(name) {
  const c = charts.get(name);
  if (!c) return;
  for (const m of c.markers) m.el.remove();
  c.markers = [];
  if (!state.config.chart.markers) return;
  const add = (e, cls) => {
    const el = h('div', {
      class: `marker ${cls} src-${e.source || 'unknown'}`,
      dataset: { step: String(e.step), source: e.source || '', cmd: e.cmd_id || '' },
      onmouseenter: (ev) => showTip(ev, markerLines(e)),
      onmouseleave: hideTip,
    });
    c.u.over.appendChild(el);
    c.markers.push({ el, step: e.step });
  };
  for (const e of knobChanges(state.ledger)) add(e, 'own');
  if (state.compare) for (const e of knobChanges(state.compare.ledger.entries)) add(e, 'other');
  placeMarkers(name, c.u);
}

function placeMarkers(name, u) {
  const c = charts.get(name);
  if (!c) return;
  const [lo, hi] = [u.scales.x.min, u.scales.x.max];
  for (const m of c.markers) {
    const inside = lo !== null && m.step >= lo && m.step <= hi;
    m.el.style.display = inside ? '' : 'none';
    if (inside) m.el.style.left = `${u.valToPos(m.step, 'x')}px`;
  }
}

function showTip(ev, lines) {
  const tip = $('tooltip');
  replace(tip, ...lines.map((l) => h('div', {}, l)));
  tip.hidden = false;
  const r = ev.target.getBoundingClientRect();
  tip.style.left = `${Math.min(window.innerWidth - 340, r.left + 10)}px`;
  tip.style.top = `${r.top + 8}px`;
}

function hideTip() {
  $('tooltip').hidden = true;
}

// ---------------------------------------------------------------------------------- updates
function sync() {
  const all = wanted(Object.keys(state.series));
  const text = filter.text.toLowerCase();
  const matched = text ? all.filter((n) => n.toLowerCase().includes(text)) : all;
  const names = matched.slice(0, MAX_CHARTS);
  showCount(names.length, text ? Math.max(matched.length, filter.total)
    : all.length + Math.max(0, (state.metricsTotal || 0) - Object.keys(state.series).length));
  if (names.join('|') !== order.join('|') || [...charts.values()].some((c) => c.withCompare !== Boolean(state.compare))) {
    for (const c of charts.values()) { c.u.destroy(); c.card.remove(); }
    charts.clear();
    order = names;
    names.forEach((n, i) => makeChart(n, i));
    if (!names.length) {
      $('charts').appendChild(h('div', { class: 'empty' },
        text ? 'No metric name contains that text.' : 'No metrics yet: waiting for the training process to log.'));
    }
    else for (const el of $('charts').querySelectorAll('.empty')) el.remove();
  }
  for (const c of charts.values()) c.dirty = true;
}

function showCount(shown, total) {
  const el = $('chart-count');
  el.textContent = filter.text ? `showing ${shown} of ${total} metrics matching “${filter.text}”`
    : `showing ${shown} of ${total} metrics`;
  el.dataset.shown = String(shown);
  el.dataset.total = String(total);
}

// The filter: names this page holds are matched at once; the server is asked for the names
// containing the text too (the snapshot carried only the first ones), and those are merged in.
async function setFilter(text) {
  filter.text = text.trim();
  filter.total = 0;
  const asked = ++filter.asked;
  sync();
  if (!filter.text || !available.has('read_metrics')) return;
  try {
    const out = await callTool('read_metrics', { match: filter.text, max_series: MAX_CHARTS,
      max_points: state.config.history.initial_points });
    if (asked !== filter.asked) return;  // the text changed meanwhile: a later reply answers it
    appendSeries(out.series);
    filter.total = out.series_total || 0;
    sync();
  } catch (err) {
    console.warn('metric filter failed', err);
  }
}

async function refreshFiltered() {
  if (!filter.text || filter.busy || Date.now() < filter.next || !order.length || !available.has('read_metrics')) return;
  filter.next = Date.now() + FILTER_REFRESH_MS;
  const lasts = order.map((n) => { const s = state.series[n]; return s && s.steps.length ? s.steps[s.steps.length - 1] : 0; });
  const asked = filter.asked;
  filter.busy = true;
  try {
    const out = await callTool('read_metrics', { match: filter.text, max_series: MAX_CHARTS, since_step: Math.min(...lasts) });
    if (asked !== filter.asked) return;
    appendSeries(out.series);
    sync();
  } catch (err) {
    console.warn('metric filter refresh failed', err);
  } finally {
    filter.busy = false;
  }
}

function redraw() {
  for (const [name, c] of charts) {
    if (!c.dirty) continue;
    c.dirty = false;
    const data = dataFor(name);
    c.u.setData(data);
    c.card.dataset.points = String(data[0].length);
    c.value.textContent = latestText(name);
    const s = state.series[name];
    c.nonfinite.hidden = !(s && s.values.some((v) => !Number.isFinite(v)));
  }
}

export function initCharts() {
  on('metrics', () => { sync(); refreshFiltered(); });
  let typing = 0;
  $('metric-filter').addEventListener('input', (ev) => {
    clearTimeout(typing);
    typing = setTimeout(() => setFilter(ev.target.value), 200);
  });
  on('ledger', () => { for (const name of charts.keys()) buildMarkers(name); });
  on('compare', () => { sync(); for (const name of charts.keys()) buildMarkers(name); });
  setInterval(redraw, state.config.ui.redraw_ms);
  // uPlot has a fixed pixel size: follow the card's width.
  const ro = new ResizeObserver(() => {
    for (const c of charts.values()) {
      const w = widthOf(c.card);
      if (Math.abs(w - c.u.width) > 2) c.u.setSize({ width: w, height: state.config.chart.height });
    }
  });
  ro.observe($('charts'));
  const legend = $('chart-legend');
  replace(legend,
    h('span', { class: 'lg own' }, state.run || 'this run'),
    state.compareLabel ? h('span', { class: 'lg other' }, `compare: ${state.compareLabel}`) : null,
    h('span', { class: 'lg mk' }, 'knob change (hover for who/why)'));
}
