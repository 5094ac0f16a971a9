// Replay: a recipe drives the knobs step for step (the replay tool: start / status / stop).
// The recipe is this run's own export (the tool builds it) or a file the person picks: the
// browser reads the file's *content* and sends it as JSON entries; no path leaves the page and
// nothing is written by it (the tool stores what it replays in the run directory). An optional
// overlay of patches makes it replay_adjusted. Entries from a file are shown as text only.
import { h, $, fmt, replace, badge, describeChange } from './dom.js';
import { state, on } from './store.js';
import { act, available } from './api.js';
import { notify } from './toast.js';

const REPLAYING = ['replay', 'replay_adjusted'];
const MAX_FILE = 900_000;  // the API takes request bodies up to 1 MB
let ui = null;
let picked = null;  // {name, entries} from the chosen file
let pendingMode = null;  // the mode asked for, until the training process reports it

// JSONL (as exported), a JSON array, or the export tool's answer ({"recipe": [...]}).
export function parseEntries(text) {
  const t = text.trim();
  if (!t) return [];
  if (t.startsWith('[') || (t.startsWith('{') && !t.includes('\n'))) {
    let v;
    try { v = JSON.parse(t); } catch (err) { throw new Error(`not JSON: ${err.message}`); }
    if (v && !Array.isArray(v) && Array.isArray(v.recipe)) v = v.recipe;
    if (!Array.isArray(v)) v = [v];
    return v.map((e, i) => { if (!e || typeof e !== 'object' || Array.isArray(e)) throw new Error(`entry ${i + 1} is not an object`); return e; });
  }
  return t.split('\n').map((line, i) => [line.trim(), i]).filter(([line]) => line).map(([line, i]) => {
    let e;
    try { e = JSON.parse(line); } catch { throw new Error(`line ${i + 1} is not JSON`); }
    if (!e || typeof e !== 'object' || Array.isArray(e)) throw new Error(`line ${i + 1} is not an object`);
    return e;
  });
}

async function readFile(input) {
  const f = input.files && input.files[0];
  if (!f) return null;
  if (f.size > MAX_FILE) throw new Error(`${f.name} is too large (${f.size} bytes; at most ${MAX_FILE})`);
  return { name: f.name, text: await f.text() };
}

function entryLine(e) {
  const step = e.step === undefined ? '?' : fmt(e.step);
  return `step ${step} · ${describeChange(e)}${e.reason ? ' · ' + e.reason : ''}`;
}

function showPicked() {
  const box = ui.fileInfo;
  if (!picked) { replace(box); return; }
  const steps = picked.entries.map((e) => e.step).filter((s) => typeof s === 'number');
  const range = steps.length ? `, steps ${fmt(Math.min(...steps))}–${fmt(Math.max(...steps))}` : '';
  replace(box,
    h('div', { class: 'small', id: 'replay-file-info', dataset: { entries: String(picked.entries.length) } },
      `${picked.name}: ${picked.entries.length} entries${range}`),
    h('ul', { class: 'list compact', id: 'replay-preview' },
      picked.entries.slice(0, 8).map((e) => h('li', { class: 'small mono' }, entryLine(e))),
      picked.entries.length > 8 ? h('li', { class: 'small muted' }, `… ${picked.entries.length - 8} more`) : null));
}

function build() {
  const srcRun = h('input', { type: 'radio', name: 'replay-src', id: 'replay-src-run', value: 'run', checked: true });
  const srcFile = h('input', { type: 'radio', name: 'replay-src', id: 'replay-src-file', value: 'file' });
  const file = h('input', { type: 'file', id: 'replay-file', accept: '.jsonl,.json,.ndjson,application/json,application/x-ndjson' });
  const fileInfo = h('div', { class: 'file-info' });
  const overlay = h('textarea', { id: 'replay-overlay', class: 'code', rows: 3, spellcheck: 'false',
    placeholder: 'optional overlay (replay_adjusted), one JSON object per line, e.g.\n{"step": 500, "module": "opt", "op": "set_params", "params": {"lr": 0.002}}\n{"step": 800, "module": "opt", "op": "set_params", "params": {"lr": 0}, "drop": true}' });
  const overlayFile = h('input', { type: 'file', id: 'replay-overlay-file', accept: '.jsonl,.json,.ndjson', 'aria-label': 'overlay file' });
  const start = h('button', { class: 'btn small primary', id: 'replay-start' }, 'Start replay');
  const stop = h('button', { class: 'btn small danger', id: 'replay-stop' }, 'Stop replay');
  const status = h('div', { id: 'replay-status', class: 'replay-status' });

  file.addEventListener('change', async () => {
    picked = null;
    try {
      const got = await readFile(file);
      if (got) picked = { name: got.name, entries: parseEntries(got.text) };
      if (picked) srcFile.checked = true;
    } catch (err) {
      notify(`recipe file: ${err.message}`, 'error');
      file.value = '';
    }
    showPicked();
  });
  overlayFile.addEventListener('change', async () => {
    try {
      const got = await readFile(overlayFile);
      if (got) overlay.value = got.text.trim();
    } catch (err) {
      notify(`overlay file: ${err.message}`, 'error');
    }
    overlayFile.value = '';
  });
  start.addEventListener('click', async () => {
    const args = { action: 'start', reason: $('reason').value.trim() || 'replay started from the dashboard' };
    if (srcFile.checked) {
      if (!picked) { notify('choose a recipe file first (or replay this run\'s recipe)', 'error'); return; }
      args.recipe = picked.entries;
    }
    try {
      const patches = parseEntries(overlay.value);
      if (patches.length) args.overlay = patches;
    } catch (err) {
      notify(`overlay: ${err.message}`, 'error');
      return;
    }
    start.disabled = true;
    const out = await act('replay', args, (o) => `${o.freeze_mode}: ${o.entries} entries; ${o.message || ''}`);
    start.disabled = false;
    if (out) pendingMode = out.freeze_mode;
    render();
  });
  stop.addEventListener('click', async () => {
    const out = await act('replay', { action: 'stop', reason: $('reason').value.trim() || 'replay stopped from the dashboard' },
      (o) => o.message || 'replay stopped');
    if (out) pendingMode = out.freeze_mode;
    render();
  });
  ui = { srcRun, srcFile, file, fileInfo, overlay, overlayFile, start, stop, status,
    el: h('div', {},
      status,
      h('div', { class: 'form-row' },
        h('label', { class: 'opt' }, srcRun, "this run's recipe (its applied changes)"),
        h('label', { class: 'opt' }, srcFile, 'a recipe file:'), file),
      fileInfo,
      h('label', { class: 'sub', for: 'replay-overlay' }, 'Overlay'),
      h('div', { class: 'form-row' }, overlay),
      h('div', { class: 'form-row' }, h('span', { class: 'muted small' }, 'overlay from a file:'), overlayFile),
      h('div', { class: 'row-btns end' }, start, stop)) };
}

function render() {
  const box = $('replay');
  if (!available.has('replay')) { replace(box, h('div', { class: 'empty' }, 'Replay is not available on this server.')); return; }
  if (!ui) { build(); replace(box, ui.el); }
  const r = state.replay || {};
  const mode = r.freeze_mode || (state.status && state.status.freeze_mode) || 'off';
  const st = r.status || null;
  const replaying = REPLAYING.includes(mode);
  if (pendingMode === mode) pendingMode = null;
  ui.status.dataset.mode = mode;  // what the training process reports, not what was asked
  ui.status.dataset.pending = pendingMode || '';
  ui.status.dataset.fired = st ? String(st.fired) : '';
  ui.status.dataset.total = st ? String(st.total) : '';
  ui.status.dataset.done = st ? String(Boolean(st.done)) : '';
  const pct = st && st.total ? Math.round((100 * st.fired) / st.total) : 0;
  const bar = h('div', { class: 'progress' }, h('div', { class: 'progress-fill', dataset: { w: `${pct}%` } }));
  replace(ui.status,
    h('div', { class: 'cb-top' }, h('span', { class: 'muted small' }, 'mode'),
      badge(mode, replaying ? 'warn' : mode === 'prod' ? 'bad' : ''),
      pendingMode ? h('span', { class: 'muted small' }, `→ ${pendingMode} at the next safe point`) : null),
    st ? h('div', { class: 'small' },
      `${st.fired} / ${st.total} entries fired${st.late ? ` (${st.late} late)` : ''}` +
      (st.done ? ' · done' : st.next_step !== null && st.next_step !== undefined ? ` · next at step ${fmt(st.next_step)}` : '')) : null,
    st ? bar : null,
    mode === 'prod' ? h('div', { class: 'muted small' }, 'The run is frozen (prod): starting a replay replaces that freeze.') : null,
    replaying ? h('div', { class: 'muted small' }, 'While replaying, knob changes from people, agents, rules and tune are ignored; pause/resume/stop still work.') : null);
  for (const el of ui.status.querySelectorAll('[data-w]')) el.style.width = el.dataset.w;  // CSP: no inline style attributes
  ui.stop.disabled = !replaying;
}

export function initReplay() {
  on('replay', render);
  on('status', () => { if (!state.replay) render(); });
  render();
}
