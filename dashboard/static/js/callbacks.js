// Callbacks loaded in the run (from describe_actuators), with enable/disable through apply_op.
import { h, $, replace, badge } from './dom.js';
import { state, on } from './store.js';
import { act } from './api.js';

function render() {
  const cbs = (state.actuators && state.actuators.callbacks) || [];
  if (!cbs.length) { replace($('callbacks'), h('div', { class: 'empty' }, 'No callbacks loaded.')); return; }
  replace($('callbacks'), h('ul', { class: 'list' }, cbs.map((c) => {
    const target = c.target ? `${c.target.path || ''}${c.target.symbol ? ':' + c.target.symbol : ''}` : (c.type || '');
    const op = c.enabled ? 'disable' : 'enable';
    return h('li', { class: 'cb', dataset: { id: c.id } },
      h('div', { class: 'cb-top' }, h('span', { class: 'cb-id' }, c.id), badge(c.enabled ? 'enabled' : 'disabled', c.enabled ? 'good' : 'warn'),
        c.errors ? badge(`${c.errors} errors`, 'bad') : null, h('span', { class: 'spacer' }),
        h('button', { class: 'btn small', onclick: () => act('apply_op', { module: 'cb', op, id: c.id, reason: $('reason').value.trim() || null }, `${c.id}: ${op}d`) },
          c.enabled ? 'Disable' : 'Enable')),
      h('div', { class: 'muted small' }, target),
      c.last_error ? h('div', { class: 'err small' }, c.last_error) : null);
  })));
}

export function initCallbacks() {
  on('actuators', render);
}
