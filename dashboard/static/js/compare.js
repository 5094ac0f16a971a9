// Compare view: the second run the server was started with (--compare), overlaid on the charts
// (dashed) with its knob changes. The browser never names a path: /api/compare takes none.
import { h, $, fmt, replace, describeChange } from './dom.js';
import { state, emit, knobChanges, mergeSeries, seriesMap } from './store.js';
import { getJSON } from './api.js';

function render() {
  const c = state.compare;
  const changes = knobChanges(c.ledger.entries);
  replace($('compare'),
    h('div', { class: 'kv' }, h('span', {}, 'run'), h('b', {}, c.label), h('span', {}, 'last step'), h('b', {}, fmt(c.metrics.last_step)),
      h('span', {}, 'knob changes'), h('b', {}, String(changes.length))),
    changes.length ? h('ul', { class: 'list' }, changes.slice(-12).reverse().map((e) => h('li', { class: 'small' },
      `step ${e.step}: ${describeChange(e)} · ${e.source}${e.actor ? ' / ' + e.actor : ''}${e.reason ? ' · ' + e.reason : ''}`))) : null);
}

async function refresh() {
  try {
    const data = await getJSON('api/compare');
    data.metrics.series = mergeSeries(seriesMap(), data.metrics.series);  // ordered by step, numbers
    state.compare = data;
    render();
    emit('compare');
  } catch (err) {
    replace($('compare'), h('div', { class: 'err small' }, err.message));
  }
}

export function initCompare() {
  if (!state.compareLabel) return;
  $('compare-card').hidden = false;
  refresh();
  setInterval(refresh, state.config.ui.compare_refresh_ms);
}
