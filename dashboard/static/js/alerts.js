// Alerts: what fired (list_alerts) and the user's alert rules (set_alert_rules): threshold
// (above and/or below), plateau, spike and non-finite on any metric, added and removed here.
// Alerts notify; they never change the run. Rules set elsewhere (an agent, another tab) arrive
// through the live channel.
import { h, $, fmt, replace, badge, ago } from './dom.js';
import { state, on } from './store.js';
import { act, available } from './api.js';

const KINDS = ['threshold', 'plateau', 'spike', 'non_finite'];
const FIELDS = {  // which inputs each kind uses
  threshold: ['above', 'below'],
  plateau: ['window', 'plateau_rel'],
  spike: ['window', 'spike_factor'],
  non_finite: [],
};
let form = null;

function currentRules() {
  return (state.rules && state.rules.rules) || [];
}

function has(v) {
  return v !== null && v !== undefined;
}

export function ruleText(r) {
  if (r.kind === 'threshold') {
    return [has(r.above) ? `${r.metric} > ${fmt(r.above)}` : null, has(r.below) ? `${r.metric} < ${fmt(r.below)}` : null]
      .filter(Boolean).join(' or ');
  }
  if (r.kind === 'plateau') return `${r.metric} plateau (< ${fmt(r.plateau_rel * 100)}% better over ${r.window} points)`;
  if (r.kind === 'spike') return `${r.metric} spike (> ${fmt(r.spike_factor)}× the mean of ${r.window} points)`;
  return `${r.metric} non-finite`;
}

function numberInput(name, placeholder, attrs = {}) {
  return h('input', { class: 'num', type: 'number', step: 'any', id: `rule-${name}`, placeholder, 'aria-label': placeholder,
    title: placeholder, ...attrs });
}

function uniqueId(base) {
  const taken = new Set(currentRules().map((r) => r.id));
  const clean = base.replace(/[^A-Za-z0-9_.:-]/g, '_').slice(0, 72) || 'rule';
  if (!taken.has(clean)) return clean;
  for (let i = 2; ; i++) if (!taken.has(`${clean}-${i}`)) return `${clean}-${i}`;
}

function buildForm() {
  const metric = h('input', { type: 'text', id: 'rule-metric', class: 'num wide', list: 'rule-metrics', placeholder: 'metric',
    'aria-label': 'metric', maxlength: 200, autocomplete: 'off' });
  const names = h('datalist', { id: 'rule-metrics' });
  const kind = h('select', { id: 'rule-kind', 'aria-label': 'kind' }, KINDS.map((k) => h('option', { value: k }, k)));
  const inputs = {
    above: numberInput('above', 'above'),
    below: numberInput('below', 'below'),
    window: numberInput('window', 'window (points)', { min: 8, max: 20000, step: 1, value: '50' }),
    plateau_rel: numberInput('plateau_rel', 'min rel. improvement', { min: 0, max: 1, value: '0.01' }),
    spike_factor: numberInput('spike_factor', 'factor × mean', { min: 1, value: '3' }),
  };
  const severity = h('select', { id: 'rule-severity', 'aria-label': 'severity' },
    ['warning', 'info', 'critical'].map((s) => h('option', { value: s }, s)));
  const id = h('input', { type: 'text', id: 'rule-id', class: 'num', placeholder: 'id (optional)', 'aria-label': 'rule id', maxlength: 80 });
  const add = h('button', { class: 'btn small primary', id: 'rule-add' }, 'Add rule');
  const showFields = () => {
    for (const [name, el] of Object.entries(inputs)) el.hidden = !FIELDS[kind.value].includes(name);
  };
  kind.addEventListener('change', showFields);
  showFields();
  add.addEventListener('click', async () => {
    const m = metric.value.trim();
    if (!m) { metric.focus(); return; }
    const rule = { id: id.value.trim() || uniqueId(`${kind.value}-${m}`), kind: kind.value, metric: m, severity: severity.value };
    for (const name of FIELDS[kind.value]) {
      const raw = inputs[name].value.trim();
      if (raw === '') continue;  // left empty: the tool's default (or, for a threshold, no bound on that side)
      rule[name] = name === 'window' ? parseInt(raw, 10) : Number(raw);
    }
    add.disabled = true;
    const sent = { id: id.value, above: inputs.above.value, below: inputs.below.value };
    const out = await act('set_alert_rules', { rules: [rule], replace: false }, `alert rule ${rule.id} saved`);
    add.disabled = false;
    if (out) {
      state.rules = out;
      // Bounds belong to the rule just added, not to the next one; but whatever was typed while
      // this save was in flight belongs to the next rule and stays.
      if (id.value === sent.id) id.value = '';
      if (inputs.above.value === sent.above) inputs.above.value = '';
      if (inputs.below.value === sent.below) inputs.below.value = '';
      render();
    }
  });
  form = { metric, names, el: h('div', {},
    h('div', { class: 'form-row' }, metric, names, kind, ...Object.values(inputs)),
    h('div', { class: 'form-row' }, severity, id, add)) };
}

function fillMetrics() {
  const names = Object.keys(state.series).sort((a, b) => a.includes('/') - b.includes('/') || a.localeCompare(b));
  if (form.names.dataset.names === names.join(',')) return;
  form.names.dataset.names = names.join(',');
  replace(form.names, names.map((n) => h('option', { value: n })));
}

async function removeRule(ruleId) {
  // By id, so a rule someone else added since this page last heard survives.
  const out = await act('set_alert_rules', { remove: [ruleId], replace: false }, `rule ${ruleId} removed`);
  if (out) { state.rules = out; render(); }
}

function ruleItem(r) {
  return h('li', { class: 'rule', dataset: { id: r.id, kind: r.kind } },
    h('div', { class: 'cb-top' },
      badge(r.severity || 'warning', r.severity === 'critical' ? 'bad' : r.severity === 'warning' ? 'warn' : ''),
      h('span', { class: 'small rule-text' }, ruleText(r)), h('span', { class: 'spacer' }),
      h('span', { class: 'muted small cb-id' }, r.id),
      h('button', { class: 'btn small', onclick: () => removeRule(r.id) }, 'Remove')));
}

function render() {
  const box = $('alerts');
  if (!available.has('list_alerts')) { replace(box, h('div', { class: 'empty' }, 'Alerts are not available on this server.')); return; }
  const alerts = state.alerts ? state.alerts.alerts.slice().reverse() : [];
  const canEdit = available.has('set_alert_rules');
  if (canEdit && !form) buildForm();
  if (form) fillMetrics();
  const rules = currentRules();
  replace(box,
    alerts.length ? h('ul', { class: 'list', id: 'alert-list' }, alerts.slice(0, 20).map((a) => h('li', { class: `alert ${a.severity}`, dataset: { rule: a.rule || '' } },
      h('div', { class: 'cb-top' }, badge(a.severity, a.severity === 'critical' ? 'bad' : a.severity === 'warning' ? 'warn' : ''),
        h('span', { class: 'cb-id' }, a.metric || a.kind), h('span', { class: 'spacer' }),
        h('span', { class: 'muted small' }, `step ${fmt(a.step)} · ${ago(a.ts)}`)),
      h('div', { class: 'small alert-msg' }, a.message))))
      : h('div', { class: 'muted small' }, 'No alerts.'),
    h('div', { class: 'sub' }, 'Your alert rules'),
    rules.length ? h('ul', { class: 'list', id: 'rule-list' }, rules.map(ruleItem))
      : h('div', { class: 'muted small', id: 'rule-list-empty' }, 'No user rules.'),
    canEdit ? form.el : null);
}

export function initAlerts() {
  on('alerts', render);
  on('rules', render);
  on('metrics', () => { if (form) fillMetrics(); });
  render();
}
