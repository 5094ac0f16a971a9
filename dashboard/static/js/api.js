// The page's only way to act: POST /api/tools/{name}. The server runs the same tool an MCP
// client or the agent would, as source "human"; a refusal comes back as 4xx + the reason.
import { notify } from './toast.js';

export const available = new Set();

export async function getJSON(path) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${path}: HTTP ${r.status}`);
  return data;
}

export async function callTool(name, args = {}) {
  if (!available.has(name)) throw new Error(`the ${name} tool is not available on this server`);
  const r = await fetch(`api/tools/${encodeURIComponent(name)}`, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(args),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${name}: HTTP ${r.status}`);
  return data;
}

// Run an action from a button: report success or the refusal, never throw into the UI.
export async function act(name, args, okText) {
  try {
    const out = await callTool(name, args);
    // A typed reason belongs to the one change it was written for, not to every later click.
    const reason = document.getElementById('reason');
    if (reason && args && args.reason && reason.value.trim() === args.reason) reason.value = '';
    if (okText) notify(typeof okText === 'function' ? okText(out) : okText, 'ok');
    return out;
  } catch (err) {
    notify(err.message, 'error');
    return null;
  }
}

export async function loadTools() {
  const data = await getJSON('api/tools');
  available.clear();
  for (const t of data.tools) available.add(t.name);
  return available;
}
