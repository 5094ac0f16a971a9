// Recipe editor: the timeline of scheduled ops (schedule_op add / move / cancel), plus export.
import { h, $, fmt, replace, describeChange } from './dom.js';
import { state, on } from './store.js';
import { act, available } from './api.js';
import { exportRecipe } from './status.js';

let form = null;

function pendingOps() {
  return ((state.schedule && state.schedule.pending) || []).slice().sort((a, b) => (a.at_step ?? 0) - (b.at_step ?? 0));
}

function timeline(ops) {
  const now = (state.status && state.status.step) || 0;
  const last = Math.max(now + 1, ...ops.map((o) => o.at_step ?? 0));
  const end = Math.max(last * 1.05, (state.status && state.status.max_steps) ? Math.min(state.status.max_steps, last * 1.5) : last * 1.2);
  const pos = (s) => `${Math.max(0, Math.min(100, (s / end) * 100))}%`;
  return h('div', { class: 'timeline', 'aria-label': 'scheduled ops timeline' },
    h('div', { class: 'tl-done', dataset: { w: pos(now) } }),
    h('div', { class: 'tl-now', dataset: { left: pos(now) }, title: `now: step ${now}` }),
    ops.map((o) => h('div', { class: 'tl-op', dataset: { left: pos(o.at_step ?? 0), cmd: o.cmd_id }, title: `step ${o.at_step}: ${describeChange(o)}` })),
    h('span', { class: 'tl-lab l' }, '0'), h('span', { class: 'tl-lab r' }, fmt(Math.round(end))));
}

// CSP forbids inline style attributes; positions are applied through the CSSOM instead.
function placeTimeline(root) {
  for (const el of root.querySelectorAll('[data-left]')) el.style.left = el.dataset.left;
  for (const el of root.querySelectorAll('[data-w]')) el.style.width = el.dataset.w;
}

const drafts = new Map();  // cmd_id -> the step being typed in its "move to" field (survives re-renders)

function opRow(o) {
  const at = h('input', { type: 'number', class: 'num small-num', min: 0, step: 1, value: drafts.get(o.cmd_id) ?? String(o.at_step ?? ''),
    'aria-label': 'move to step' });
  at.addEventListener('input', () => drafts.set(o.cmd_id, at.value));
  const move = async () => {
    const to = parseInt(at.value, 10);
    const out = await act('schedule_op', { action: 'move', cmd_id: o.cmd_id, at_step: Number.isFinite(to) ? to : null }, `moved to step ${at.value}`);
    if (out) drafts.delete(o.cmd_id);
  };
  at.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') move(); });
  return h('tr', { dataset: { cmd: o.cmd_id, step: String(o.at_step ?? '') } },
    h('td', { class: 'num' }, fmt(o.at_step)),
    h('td', { class: 'change' }, describeChange(o)),
    h('td', { class: 'actor' }, `${o.source || ''}${o.actor ? ' / ' + o.actor : ''}`),
    h('td', { class: 'reason' }, o.reason || ''),
    h('td', { class: 'row-btns' }, at,
      h('button', { class: 'btn small', onclick: move }, 'Move'),
      h('button', { class: 'btn small danger', onclick: () => act('schedule_op', { action: 'cancel', cmd_id: o.cmd_id }, 'cancelled') }, 'Cancel')));
}

function buildForm() {
  const knob = h('select', { id: 'sched-knob', 'aria-label': 'knob' });
  const value = h('input', { id: 'sched-value', class: 'num', placeholder: 'value', 'aria-label': 'value' });
  const step = h('input', { id: 'sched-step', class: 'num', type: 'number', min: 0, step: 1, placeholder: 'at step', 'aria-label': 'at step' });
  const add = h('button', { class: 'btn small primary', id: 'sched-add' }, 'Schedule');
  add.addEventListener('click', () => {
    const [module, key] = knob.value.split('|');
    let v = value.value.trim();
    try { v = JSON.parse(v); } catch { /* a plain string is a valid choice value */ }
    act('schedule_op', { action: 'add', at_step: parseInt(step.value, 10),
      op: { module, op: 'set_params', params: { [key]: v }, reason: $('reason').value.trim() || null } },
      (o) => `scheduled at step ${o.at_step}`);
  });
  form = { knob, value, step, el: h('div', { class: 'form-row' }, knob, value, step, add) };
}

function fillKnobs() {
  const acts = (state.actuators && state.actuators.actuators) || [];
  const want = acts.map((a) => `${a.module}|${a.key}`).join(',');
  if (form.knob.dataset.keys === want) return;
  form.knob.dataset.keys = want;
  replace(form.knob, acts.map((a) => h('option', { value: `${a.module}|${a.key}` }, `${a.module}.${a.key}`)));
}

function render() {
  const box = $('recipe');
  if (!available.has('schedule_op')) { replace(box, h('div', { class: 'empty' }, 'Scheduling is not available on this server.')); return; }
  if (!form) buildForm();
  fillKnobs();
  const ops = pendingOps();
  for (const id of drafts.keys()) if (!ops.some((o) => o.cmd_id === id)) drafts.delete(id);
  const tl = h('div', { class: 'tl-box' });
  replace(box, tl, form.el,
    ops.length ? h('table', { class: 'grid', id: 'schedule' }, h('thead', {}, h('tr', {}, ['at step', 'op', 'by', 'reason', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, ops.map(opRow))) : h('div', { class: 'muted small' }, 'No scheduled ops.'),
    h('div', { class: 'row-btns end' }, h('button', { class: 'btn small', onclick: exportRecipe }, 'Export applied changes as recipe')));
  drawTimeline();
}

// The timeline follows the current step; the table (and any step being typed) is left alone.
function drawTimeline() {
  const box = $('recipe').querySelector('.tl-box');
  if (!box) return;
  replace(box, timeline(pendingOps()));
  placeTimeline(box);
}

export function initRecipe() {
  on('schedule', render);
  on('actuators', () => { if (form) fillKnobs(); else render(); });
  on('status', drawTimeline);
  render();
}
