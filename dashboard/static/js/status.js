// The top bar: is training alive, where is it, how fast, who steers; pause/resume/stop/export.
import { h, $, fmt, replace } from './dom.js';
import { state, on } from './store.js';
import { act, callTool } from './api.js';
import { notify } from './toast.js';

function pill(label, value, cls = '') {
  return h('span', { class: `pill ${cls}`.trim() }, h('span', { class: 'pill-k' }, label), h('span', { class: 'pill-v' }, value));
}

function render() {
  const s = state.status;
  const box = $('status');
  if (!s) { replace(box, pill('training', 'connecting…', 'muted')); return; }
  const live = s.liveness || 'absent';
  const mode = (state.autopilot && state.autopilot.mode) || (s.autopilot && s.autopilot.mode) || 'off';
  const step = s.max_steps ? `${fmt(s.step)} / ${fmt(s.max_steps)}` : fmt(s.step);
  replace(box,
    h('span', { id: 'liveness', class: `live live-${live}`, title: s.reason || '', dataset: { state: live } },
      h('span', { class: 'dot' }), live),
    pill('step', step),
    pill('steps/s', fmt(s.steps_per_s)),
    pill('paused', s.paused ? 'yes' : 'no', s.paused ? 'warn' : ''),
    pill('freeze', s.freeze_mode || 'off', s.freeze_mode && s.freeze_mode !== 'off' ? 'warn' : ''),
    pill('autopilot', mode, mode !== 'off' ? 'accent' : ''),
    s.scheduled ? pill('scheduled', String(s.scheduled)) : null,
    state.connected ? null : pill('live', 'reconnecting', 'bad'));
  $('btn-pause').disabled = Boolean(s.paused) || !['running'].includes(live);
  $('btn-resume').disabled = !s.paused;
  $('btn-stop').disabled = ['stopped', 'dead', 'absent'].includes(live);
}

function reason(fallback) {
  return $('reason').value.trim() || fallback;
}

// Download the exported recipe as JSONL, built from the tool's answer (no file path involved).
export async function exportRecipe() {
  try {
    const out = await callTool('replay', { action: 'export', reason: reason('exported from the dashboard') });
    const lines = (out.recipe || []).map((e) => JSON.stringify(e)).join('\n') + '\n';
    const url = URL.createObjectURL(new Blob([lines], { type: 'application/x-ndjson' }));
    const a = h('a', { href: url, download: `${state.run || 'run'}.recipe.jsonl` });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
    notify(`recipe exported: ${out.entries} entries${out.truncated ? ' (truncated in the download; the run directory has all)' : ''}`, 'ok');
  } catch (err) {
    notify(err.message, 'error');
  }
}

export function initStatus() {
  on('status', render);
  on('autopilot', render);
  on('connection', render);
  render();
  const core = (op, text) => act('apply_op', { module: 'core', op, reason: reason(`${op} from the dashboard`) }, text);
  $('btn-pause').addEventListener('click', () => core('pause', 'paused'));
  $('btn-resume').addEventListener('click', () => core('resume', 'resumed'));
  $('btn-stop').addEventListener('click', () => {
    // A stop ends the training process: ask once.
    if (window.confirm('Stop training? The process saves and exits at its next safe point.')) core('stop', 'stop requested');
  });
  $('btn-export').addEventListener('click', exportRecipe);
}
