// The ledger: every decision the kernel made, newest first, with who and why; filterable.
import { h, $, fmt, replace, badge, describeChange } from './dom.js';
import { state, on } from './store.js';

// The sets of sources and decisions come from the server (/api/config: core's enums).
const filter = { source: 'all', decision: 'all' };
const DECISION_KIND = { applied: 'good', rejected: 'bad', failed: 'bad' };  // any other decision: 'warn'
const kindOf = (d) => DECISION_KIND[d] || 'warn';

function select(name, options) {
  const el = h('select', { id: `ledger-${name}`, 'aria-label': `filter by ${name}` },
    options.map((o) => h('option', { value: o }, o === 'all' ? `${name}: all` : o)));
  el.addEventListener('change', () => { filter[name] = el.value; render(); });
  return el;
}

function render() {
  const rows = state.ledger.filter((e) =>
    (filter.source === 'all' || e.source === filter.source) && (filter.decision === 'all' || e.decision === filter.decision));
  const body = h('tbody', {}, rows.slice().reverse().map((e) => h('tr', {
    class: `row-${e.decision}`, dataset: { source: e.source || '', decision: e.decision || '', cmd: e.cmd_id || '' },
  },
    h('td', { class: 'num' }, fmt(e.seq)),
    h('td', { class: 'num' }, fmt(e.step)),
    h('td', {}, badge(e.decision || '?', kindOf(e.decision))),
    h('td', {}, badge(e.source || '?', `src src-${e.source}`)),
    h('td', { class: 'actor' }, e.actor || ''),
    h('td', { class: 'change' }, describeChange(e)),
    h('td', { class: 'why' }, e.error ? h('span', { class: 'err' }, e.error) : null, e.error && e.reason ? ' · ' : null,
      h('span', { class: 'reason' }, e.reason || '')))));
  const table = h('table', { class: 'grid' },
    h('thead', {}, h('tr', {}, ['#', 'step', 'decision', 'source', 'actor', 'change (old → new)', 'reason / error'].map((t) => h('th', {}, t)))),
    body);
  replace($('ledger'), rows.length ? table : h('div', { class: 'empty' }, state.ledger.length ? 'No entries match the filter.' : 'No changes yet.'));
}

export function initLedger() {
  replace($('ledger-filters'), select('source', ['all', ...state.enums.sources]),
    select('decision', ['all', ...state.enums.decisions]));
  on('ledger', render);
  render();
}
