// The root page: every run under the root (list_runs), one metric overlaid across runs with
// knob changes marked, and the metric-space map (each run's metric vectors over steps, projected
// to 2-D by the server's PCA). Run names and labels only ever enter the page as text nodes or
// attribute values (dom.js); the browser names runs, never paths.
import { h, $, fmt, replace } from './dom.js';
import { seriesOf } from './store.js';

const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#4cc2ff', '#f5a524', '#3fb950', '#b392f0', '#f85149', '#2dd4bf', '#79c0ff', '#8bd17c', '#e3b341', '#ff7b72'];
let compare = null;

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

async function getJSON(path) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${path}: HTTP ${r.status}`);
  return data;
}

function color(i) { return COLORS[i % COLORS.length]; }

function renderRuns(data) {
  const rows = data.runs.map((r) => h('tr', { dataset: { run: r.name } },
    h('td', {}, h('a', { href: `runs/${encodeURIComponent(r.name)}/` }, r.name)),
    h('td', {}, r.status), h('td', {}, fmt(r.step)),
    h('td', {}, r.key_metric ? `${r.key_metric} ${fmt(r.key_value)}` : '—'),
    h('td', {}, r.last_change ? `step ${fmt(r.last_change.step)}: ${Object.entries(r.last_change.params || {})
      .map(([k, v]) => `${k} → ${fmt(v)}`).join(', ')} (${r.last_change.source || '?'})` : '—'),
    h('td', {}, r.idle_s === null ? '—' : `${fmt(r.idle_s)} s`)));
  replace($('runs'), h('table', { class: 'runs-table' },
    h('thead', {}, h('tr', {}, ['run', 'status', 'step', 'key metric', 'last change', 'idle'].map((c) => h('th', {}, c)))),
    h('tbody', {}, rows)));
  replace($('root-summary'), h('span', { class: 'pill' }, h('span', { class: 'pill-k' }, 'runs'),
    h('span', { class: 'pill-v' }, String(data.runs.length))));
}

// A plot frame: data ranges -> pixel scales, axes with min/max ticks.
function frame(xs, ys, w = 600, hgt = 320, pad = 36) {
  const fin = (a) => a.filter((v) => Number.isFinite(v));
  const [x0, x1] = [Math.min(...fin(xs)), Math.max(...fin(xs))];
  const [y0, y1] = [Math.min(...fin(ys)), Math.max(...fin(ys))];
  const sx = (x) => pad + (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5) * (w - 2 * pad);
  const sy = (y) => hgt - pad - (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5) * (hgt - 2 * pad);
  const svg = s('svg', { viewBox: `0 0 ${w} ${hgt}`, role: 'img' },
    s('line', { class: 'axis', x1: pad, y1: hgt - pad, x2: w - pad, y2: hgt - pad }),
    s('line', { class: 'axis', x1: pad, y1: pad, x2: pad, y2: hgt - pad }),
    s('text', { class: 'tick', x: pad, y: hgt - pad + 14 }, fmt(x0)),
    s('text', { class: 'tick', x: w - pad, y: hgt - pad + 14, 'text-anchor': 'end' }, fmt(x1)),
    s('text', { class: 'tick', x: 2, y: hgt - pad }, fmt(y0)),
    s('text', { class: 'tick', x: 2, y: pad }, fmt(y1)));
  return { svg, sx, sy };
}

function renderCompare() {
  const metric = $('compare-metric').value;
  const names = Object.keys(compare.runs);
  const xs = [], ys = [];
  for (const n of names) {
    const sr = seriesOf(compare.runs[n].series, metric);
    if (sr) sr.steps.forEach((st, i) => { if (typeof sr.values[i] === 'number') { xs.push(st); ys.push(sr.values[i]); } });
  }
  if (!xs.length) { replace($('compare-chart'), h('div', { class: 'hint' }, 'no points for this metric')); return; }
  const { svg, sx, sy } = frame(xs, ys);
  names.forEach((n, i) => {
    const sr = seriesOf(compare.runs[n].series, metric);
    if (!sr) return;
    const pts = sr.steps.map((st, k) => [st, sr.values[k]]).filter(([, v]) => typeof v === 'number' && Number.isFinite(v));
    svg.appendChild(s('polyline', { class: 'path', stroke: color(i),
      points: pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ') }));
    for (const c of compare.runs[n].changes) {  // a knob change: a ring on the run's line at that step
      const near = pts.reduce((b, p) => (Math.abs(p[0] - c.step) < Math.abs(b[0] - c.step) ? p : b), pts[0] || [0, 0]);
      if (!pts.length) continue;
      svg.appendChild(s('circle', { class: 'change compare-change', cx: sx(near[0]), cy: sy(near[1]), r: 4, stroke: color(i) },
        s('title', {}, `${n} step ${c.step}: ${c.label}`)));
    }
  });
  replace($('compare-chart'), svg);
  replace($('compare-legend'), names.map((n, i) => h('span', {}, h('span', { class: 'swatch', dataset: { c: String(i) } }), n)));
  $('compare-legend').querySelectorAll('.swatch').forEach((el) => { el.style.background = color(Number(el.dataset.c)); });
}

function renderMap() {
  const m = compare.map;
  if (!m.runs.length) { replace($('map'), h('div', { class: 'hint' }, m.note || 'no map')); $('map-note').textContent = ''; return; }
  $('map-note').textContent = `PCA of ${m.metrics.join(', ')} · axes ${m.explained.map((e) => Math.round(100 * e) + '%').join(' / ')}`;
  const xs = m.runs.flatMap((r) => r.xy.map((p) => p[0]));
  const ys = m.runs.flatMap((r) => r.xy.map((p) => p[1]));
  const { svg, sx, sy } = frame(xs, ys);
  const names = Object.keys(compare.runs);
  m.runs.forEach((r) => {
    const c = color(names.indexOf(r.name));
    const g = s('g', { class: 'map-run', 'data-run': r.name });
    g.appendChild(s('polyline', { class: 'path', stroke: c, points: r.xy.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ') },
      s('title', {}, r.name)));
    const [x0, y0] = r.xy[0];
    g.appendChild(s('circle', { class: 'start', cx: sx(x0), cy: sy(y0), r: 3, fill: c }, s('title', {}, `${r.name}: step ${fmt(r.steps[0])}`)));
    const [xe, ye] = r.xy[r.xy.length - 1];
    g.appendChild(s('text', { class: 'tick', x: sx(xe) + 4, y: sy(ye) }, r.name));
    for (const ch of r.changes) {
      const [x, y] = r.xy[ch.index];
      g.appendChild(s('rect', { class: 'change map-change', x: sx(x) - 4, y: sy(y) - 4, width: 8, height: 8, stroke: c },
        s('title', {}, `${r.name} step ${ch.step}: ${ch.label}`)));
    }
    svg.appendChild(g);
  });
  replace($('map'), svg);
}

async function refresh() {
  try {
    renderRuns(await getJSON('api/root/runs'));
    compare = await getJSON('api/root/compare');
    const sel = $('compare-metric');
    const metrics = [...new Set(Object.values(compare.runs).flatMap((r) => Object.keys(r.series)))].sort();
    const keep = sel.value;
    replace(sel, metrics.map((n) => h('option', { value: n, selected: n === keep }, n)));
    if (!keep && metrics.length) {
      sel.value = ['val_loss', 'train_loss', 'loss'].find((n) => metrics.includes(n))
        || metrics.find((n) => !n.includes('/') && n.includes('loss')) || metrics[0];
    }
    renderCompare();
    renderMap();
    document.body.dataset.ready = 'true';
  } catch (err) {
    replace($('runs'), h('div', { class: 'err small' }, err.message));
  }
}

async function main() {
  const cfg = await getJSON('api/config');
  $('root-name').textContent = cfg.root;
  document.title = `${cfg.title}: ${cfg.root}`;
  $('compare-metric').addEventListener('change', renderCompare);
  await refresh();
  setInterval(refresh, cfg.ui.compare_refresh_ms);
}

main();
