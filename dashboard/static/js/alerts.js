// Alerts: what fired (list_alerts) and the user's alert rules (set_alert_rules). Alerts notify;
// they never change the run.
import { h, $, fmt, replace, badge, ago } from './dom.js';
import { state, on } from './store.js';
import { act, available, callTool } from './api.js';

let rules = null;
let form = null;

async function loadRules() {
  try { rules = (await callTool('set_alert_rules', {})).rules; } catch { rules = []; }
  render();
}

function ruleText(r) {
  if (r.kind === 'threshold') return `${r.metric} ${r.above !== null && r.above !== undefined ? '> ' + fmt(r.above) : ''}${r.below !== null && r.below !== undefined ? ' < ' + fmt(r.below) : ''}`;
  if (r.kind === 'plateau') return `${r.metric} plateau (< ${fmt(r.plateau_rel * 100)}% over ${r.window})`;
  if (r.kind === 'spike') return `${r.metric} spike (> ${fmt(r.spike_factor)}× median of ${r.window})`;
  return `${r.metric} non-finite`;
}

function buildForm() {
  const metric = h('select', { 'aria-label': 'metric' });
  const kind = h('select', { 'aria-label': 'kind' }, ['threshold', 'plateau', 'spike', 'non_finite'].map((k) => h('option', { value: k }, k)));
  const above = h('input', { class: 'num', type: 'number', step: 'any', placeholder: 'above', 'aria-label': 'above' });
  const add = h('button', { class: 'btn small primary' }, 'Add rule');
  add.addEventListener('click', async () => {
    const id = `${kind.value}-${metric.value}`.replace(/[^A-Za-z0-9_.:-]/g, '_').slice(0, 80);
    const rule = { id, kind: kind.value, metric: metric.value };
    if (kind.value === 'threshold') rule.above = Number(above.value);
    const out = await act('set_alert_rules', { rules: [rule], replace: false }, `alert rule ${id} saved`);
    if (out) { rules = out.rules; render(); }
  });
  form = { metric, el: h('div', { class: 'form-row' }, metric, kind, above, add) };
}

function fillMetrics() {
  const names = Object.keys(state.series).sort((a, b) => a.includes('/') - b.includes('/') || a.localeCompare(b));
  if (form.metric.dataset.names === names.join(',')) return;
  form.metric.dataset.names = names.join(',');
  replace(form.metric, names.map((n) => h('option', { value: n }, n)));
}

function render() {
  const box = $('alerts');
  if (!available.has('list_alerts')) { replace(box, h('div', { class: 'empty' }, 'Alerts are not available on this server.')); return; }
  const alerts = state.alerts ? state.alerts.alerts.slice().reverse() : [];
  if (!form) buildForm();
  fillMetrics();
  replace(box,
    alerts.length ? h('ul', { class: 'list', id: 'alert-list' }, alerts.slice(0, 20).map((a) => h('li', { class: `alert ${a.severity}` },
      h('div', { class: 'cb-top' }, badge(a.severity, a.severity === 'critical' ? 'bad' : a.severity === 'warning' ? 'warn' : ''),
        h('span', { class: 'cb-id' }, a.metric || a.kind), h('span', { class: 'spacer' }),
        h('span', { class: 'muted small' }, `step ${fmt(a.step)} · ${ago(a.ts)}`)),
      h('div', { class: 'small' }, a.message))))
      : h('div', { class: 'muted small' }, 'No alerts.'),
    h('div', { class: 'sub' }, 'Rules'),
    rules && rules.length ? h('ul', { class: 'list' }, rules.map((r) => h('li', { class: 'rule' },
      h('div', { class: 'cb-top' }, h('span', { class: 'small' }, ruleText(r)), h('span', { class: 'spacer' }),
        h('button', { class: 'btn small', onclick: async () => {
          const out = await act('set_alert_rules', { rules: rules.filter((x) => x.id !== r.id), replace: true }, `rule ${r.id} removed`);
          if (out) { rules = out.rules; render(); }
        } }, 'Remove')))))
      : h('div', { class: 'muted small' }, 'No user rules.'),
    available.has('set_alert_rules') ? form.el : null);
}

export function initAlerts() {
  on('alerts', render);
  on('metrics', () => { if (form) fillMetrics(); });
  if (available.has('set_alert_rules')) loadRules(); else render();
}
