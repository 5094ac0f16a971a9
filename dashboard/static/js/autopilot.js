// Autopilot: mode switch, proposals to approve or reject, the LLM's recent reasoning and spend.
// Degrades to a note when the autopilot tools are not installed on this server.
import { h, $, fmt, replace, badge, ago, describeChange } from './dom.js';
import { state, on } from './store.js';
import { act, available } from './api.js';

const MODES = ['off', 'suggest', 'auto', 'ai_suggest', 'ai_auto'];
const MODE_HELP = { off: 'nothing acts', suggest: 'rules propose', auto: 'rules act', ai_suggest: 'LLM proposes', ai_auto: 'LLM acts' };

function modeSwitch(current) {
  return h('div', { class: 'seg', role: 'group', 'aria-label': 'autopilot mode' }, MODES.map((m) => h('button', {
    class: `seg-btn${m === current ? ' on' : ''}`, title: MODE_HELP[m], dataset: { mode: m },
    onclick: () => act('autopilot', { action: 'set', mode: m, reason: $('reason').value.trim() || null }, `autopilot: ${m}`),
  }, m)));
}

function proposalRow(p) {
  const op = { ...p.op, payload: null, params: p.op.params };
  const pending = p.status === 'pending';
  return h('li', { class: `proposal ${p.status}`, dataset: { id: p.proposal_id, status: p.status } },
    h('div', { class: 'cb-top' }, h('span', { class: 'change' }, describeChange(op)), badge(p.status, pending ? 'warn' : p.status === 'approved' ? 'good' : 'bad'),
      h('span', { class: 'spacer' }), h('span', { class: 'muted small' }, `${p.source}${p.actor ? ' / ' + p.actor : ''} · step ${fmt(p.step)}`)),
    h('div', { class: 'reason small' }, p.reason),
    pending ? h('div', { class: 'row-btns' },
      h('button', { class: 'btn small primary', onclick: () => act('decide_proposal', { proposal_id: p.proposal_id, decision: 'approve' }, 'approved') }, 'Approve'),
      h('button', { class: 'btn small', onclick: () => act('decide_proposal', { proposal_id: p.proposal_id, decision: 'reject', note: $('reason').value.trim() || null }, 'rejected') }, 'Reject'))
      : (p.error ? h('div', { class: 'err small' }, p.error) : null));
}

function aiBlock(ai) {
  if (!ai) return h('div', { class: 'muted small' }, 'LLM autopilot: no activity recorded.');
  const budget = ai.budget || {};
  const limit = budget.usd ?? budget.max_usd ?? budget.cost_usd;
  return h('div', { class: 'ai' },
    h('div', { class: 'kv' },
      h('span', {}, 'model'), h('b', {}, ai.model || '—'),
      h('span', {}, 'calls'), h('b', {}, fmt(ai.calls)),
      h('span', {}, 'tokens'), h('b', {}, fmt(ai.tokens)),
      h('span', {}, 'spent'), h('b', { class: ai.budget_exhausted ? 'err' : '' }, `$${ai.cost_usd.toFixed(4)}${limit ? ` of $${fmt(limit)}` : ''}`),
      h('span', {}, 'API'), h('b', {}, ai.api + (ai.fallback ? ` (fallback: ${ai.fallback})` : ''))),
    ai.api_error ? h('div', { class: 'err small' }, ai.api_error) : null,
    h('div', { class: 'sub' }, 'Recent reasoning'),
    ai.reasonings.length ? h('ul', { class: 'list reasonings' }, ai.reasonings.slice().reverse().map((r) => h('li', {},
      h('div', { class: 'muted small' }, [r.step !== undefined ? `step ${r.step}` : null, r.ts ? ago(r.ts) : null].filter(Boolean).join(' · ')),
      h('div', { class: 'small' }, typeof r === 'string' ? r : (r.text || r.summary || r.reasoning || JSON.stringify(r))))))
      : h('div', { class: 'muted small' }, 'none yet'));
}

function render() {
  const box = $('autopilot');
  if (!available.has('autopilot')) {
    replace(box, h('div', { class: 'empty' }, 'Autopilot tools are not installed on this server.'));
    return;
  }
  const ap = state.autopilot;
  const props = state.proposals;
  const list = props ? props.proposals.slice().reverse() : [];
  const pending = list.filter((p) => p.status === 'pending');
  const recent = list.filter((p) => p.status !== 'pending').slice(0, 5);
  replace(box,
    modeSwitch(ap ? ap.mode : 'off'),
    ap && ap.set_by ? h('div', { class: 'muted small' }, `set by ${ap.set_by}${ap.set_ts ? ' ' + ago(ap.set_ts) : ''}${ap.reason ? ': ' + ap.reason : ''}`) : null,
    h('div', { class: 'sub' }, `Proposals${props ? ` (${props.pending} pending)` : ''}`),
    available.has('list_proposals')
      ? (pending.length || recent.length ? h('ul', { class: 'list', id: 'proposals' }, pending.concat(recent).map(proposalRow)) : h('div', { class: 'muted small' }, 'none'))
      : h('div', { class: 'muted small' }, 'proposals are not available on this server'),
    ap ? aiBlock(ap.ai) : null);
}

export function initAutopilot() {
  on('autopilot', render);
  on('proposals', render);
  render();
}
