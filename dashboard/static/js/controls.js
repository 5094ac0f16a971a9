// Knob controls generated from describe_actuators: the input follows the knob's type and
// bounds; the live value is always shown beside it; an optional lock keeps agents, rules and
// tune off the knob (apply_op lock=true / lock_knobs) until a person unlocks it.
import { h, $, fmt, replace, badge } from './dom.js';
import { state, on } from './store.js';
import { act } from './api.js';

const rows = new Map();  // "module.key" -> {a, liveEl, input, lock, ...}

function reasonText() {
  return $('reason').value.trim() || null;
}

function parseValue(a, raw) {
  const t = (a.type || '').toLowerCase();
  if (t === 'bool') return Boolean(raw);
  if (t === 'int') return parseInt(raw, 10);
  if (t === 'float' || t === 'log_float') return Number(raw);
  if (t === 'tuple') return JSON.parse(raw);
  if (t === 'choice') {
    const hit = (a.choices || []).find((c) => String(c) === raw);
    return hit === undefined ? raw : hit;
  }
  return raw;
}

// How a slider maps to a knob's value. Knobs that span decades move by decades: log_float (lr);
// a float range above 0 covering 3+ decades; a range from 0 whose top is 50x the value or more
// (a loss weight of 1 in 0..100 would sit pinned at the far left of a linear slider, while
// momentum 0.9 in 0..1 stays linear). A range from 0 is logarithmic from max/1e4 up, with the
// far left exactly 0.
export function sliderScale(a) {
  const t = (a.type || '').toLowerCase();
  if (t === 'log_float' && a.min > 0) return { log: true, floor: a.min, zero: false };
  if (t === 'float' && a.min >= 0 && a.max > 0) {
    const floor = a.min > 0 ? a.min : a.max * 1e-4;
    const v = Math.abs(Number(a.value));
    const decades = a.min > 0 ? a.max / a.min >= 1000 : Number.isFinite(v) && a.max / Math.max(v, floor) >= 50;
    if (decades) return { log: true, floor, zero: a.min === 0 };
  }
  return { log: false };
}

function sliderFor(a, number) {
  const sc = sliderScale(a);
  const slider = h('input', { type: 'range', min: 0, max: 1000, step: 1, class: 'slider', 'aria-label': `${a.key} slider`,
                              'data-scale': sc.log ? 'log' : 'linear' });
  let toPos, fromPos;
  if (sc.log) {
    const lo = Math.log10(sc.floor), hi = Math.log10(a.max), first = sc.zero ? 1 : 0, n = 1000 - first;
    toPos = (v) => (sc.zero && v < sc.floor ? 0
      : first + Math.round((Math.log10(Math.max(v, sc.floor)) - lo) / (hi - lo) * n));
    fromPos = (p) => (sc.zero && p === 0 ? 0 : 10 ** (lo + (hi - lo) * (p - first) / n));
  } else {
    toPos = (v) => Math.round((v - a.min) / (a.max - a.min) * 1000);
    fromPos = (p) => a.min + (a.max - a.min) * p / 1000;
  }
  slider.addEventListener('input', () => { number.value = String(Number(fromPos(Number(slider.value)).toPrecision(4))); number.dataset.dirty = '1'; });
  number.addEventListener('input', () => { if (Number.isFinite(Number(number.value))) slider.value = String(toPos(Number(number.value))); });
  return { slider, sync: (v) => { if (Number.isFinite(v)) slider.value = String(toPos(v)); } };
}

function makeInput(a) {
  const t = (a.type || '').toLowerCase();
  const id = `knob-${a.module}-${a.key}`;
  if (t === 'bool') {
    const input = h('input', { type: 'checkbox', id, class: 'toggle', checked: Boolean(a.value) });
    return { input, get: () => input.checked, set: (v) => { input.checked = Boolean(v); } };
  }
  if (t === 'choice') {
    const input = h('select', { id }, (a.choices || []).map((c) => h('option', { value: String(c) }, String(c))));
    input.value = String(a.value);
    return { input, get: () => parseValue(a, input.value), set: (v) => { input.value = String(v); } };
  }
  if (t === 'tuple') {
    const input = h('input', { type: 'text', id, class: 'num', value: JSON.stringify(a.value) });
    return { input, get: () => parseValue(a, input.value), set: (v) => { input.value = JSON.stringify(v); } };
  }
  const input = h('input', { type: 'number', id, class: 'num', step: 'any', value: String(a.value ?? ''),
    min: a.min ?? undefined, max: a.max ?? undefined, 'aria-label': a.key });
  const bounded = a.min !== null && a.min !== undefined && a.max !== null && a.max !== undefined && t !== 'int';
  const sl = bounded ? sliderFor(a, input) : null;
  if (sl) sl.sync(Number(a.value));
  return {
    input, slider: sl && sl.slider,
    get: () => parseValue(a, input.value),
    set: (v) => { input.value = String(v); if (sl) sl.sync(Number(v)); },
  };
}

function bounds(a) {
  if (a.choices) return `one of ${a.choices.map(String).join(', ')}`;
  if (a.min === null && a.max === null) return 'unbounded';
  return `[${fmt(a.min)}, ${fmt(a.max)}]`;
}

function buildRow(a) {
  const ctl = makeInput(a);
  const live = h('span', { class: 'knob-live', dataset: { key: a.key } }, fmt(a.value));
  const lock = h('input', { type: 'checkbox', class: 'lock', 'aria-label': `lock ${a.key}`, checked: Boolean(a.locked_by) });
  const lockedBy = h('span', { class: 'locked-by' });
  const state_ = h('span', { class: 'knob-state' });
  const apply = h('button', { class: 'btn small primary' }, 'Set');
  const row = h('div', { class: 'knob', dataset: { key: a.key, module: a.module } },
    h('div', { class: 'knob-top' },
      h('label', { class: 'knob-name', for: ctl.input.id, title: a.description || '' }, a.label || a.key),
      h('span', { class: 'knob-mod' }, a.module), state_, h('span', { class: 'spacer' }), live),
    h('div', { class: 'knob-ctl' }, ctl.slider || null, ctl.input,
      h('label', { class: 'lock-wrap', title: 'lock against agents, rules and tune' }, lock, 'lock'), apply),
    h('div', { class: 'knob-meta' }, h('span', { class: 'bounds' }, bounds(a)), lockedBy));
  const entry = { a, row, ctl, live, lock, lockedBy, stateEl: state_ };
  ctl.input.addEventListener('input', () => { ctl.input.dataset.dirty = '1'; });
  ctl.input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') apply.click(); });
  apply.addEventListener('click', async () => {
    let value;
    try { value = ctl.get(); } catch { value = undefined; }
    if (value === undefined || (typeof value === 'number' && !Number.isFinite(value))) {
      act('apply_op', { module: a.module, op: 'set_params', params: { [a.key]: String(ctl.input.value) } });
      return;  // the tool explains what is wrong with the value
    }
    apply.disabled = true;
    const out = await act('apply_op', { module: a.module, op: 'set_params', params: { [a.key]: value },
      reason: reasonText(), lock: lock.checked },
      (o) => { const c = o.changes[a.key]; return c ? `${a.key}: ${fmt(c.old)} → ${fmt(c.new)} (step ${o.step})` : `${a.key}: ${o.decision}`; });
    apply.disabled = false;
    if (out) delete ctl.input.dataset.dirty;
  });
  lock.addEventListener('change', async () => {
    const out = await act('lock_knobs', { keys: [a.key], lock: lock.checked, reason: reasonText() },
      lock.checked ? `${a.key} locked` : `${a.key} unlocked`);
    if (!out) lock.checked = !lock.checked;
  });
  return entry;
}

function update(entry, a) {
  entry.a = a;
  entry.live.textContent = fmt(a.value);
  replace(entry.stateEl, badge(a.state, a.state === 'verified' ? 'good' : a.state === 'disabled' ? 'bad' : ''));
  entry.lockedBy.textContent = a.locked_by ? `locked by ${a.locked_by}` : (a.cooldown_until_step ? `agent cooldown until step ${a.cooldown_until_step}` : '');
  if (document.activeElement !== entry.lock) entry.lock.checked = Boolean(a.locked_by);
  // Never overwrite what a person is typing; otherwise follow the live value.
  if (document.activeElement !== entry.ctl.input && !entry.ctl.input.dataset.dirty) entry.ctl.set(a.value);
}

function render() {
  const doc = state.actuators;
  const box = $('knobs');
  if (!doc) return;
  const seen = new Set();
  for (const a of doc.actuators) {
    const k = `${a.module}.${a.key}`;
    seen.add(k);
    let entry = rows.get(k);
    if (!entry) { entry = buildRow(a); rows.set(k, entry); box.appendChild(entry.row); }
    update(entry, a);
  }
  for (const [k, entry] of rows) if (!seen.has(k)) { entry.row.remove(); rows.delete(k); }
  const empty = box.querySelector('.empty');
  if (!doc.actuators.length && !empty) box.appendChild(h('div', { class: 'empty' }, 'No knobs published yet (is training running?)'));
  if (doc.actuators.length && empty) empty.remove();
}

export function initControls() {
  on('actuators', render);
}
