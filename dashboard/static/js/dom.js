// DOM helpers. The one rule of this UI: strings from the run (metric names, reasons, actors,
// errors) only ever enter the page as text nodes or attribute values, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'selected') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export const $ = (id) => document.getElementById(id);

// Numbers the way an ML engineer reads them: 3 significant digits, exponent when tiny/huge.
export function fmt(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }
  if (Array.isArray(v)) return '[' + v.map(fmt).join(', ') + ']';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function ago(ts) {
  if (!ts) return '';
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind || ''}`.trim(), dataset: { v: String(text) } }, text);
}

// One-line description of a ledger change: "lr 0.01 → 0.005", or the op and its params.
export function describeChange(e) {
  const payload = e.payload || {};
  const parts = [];
  for (const [k, v] of Object.entries(payload)) {
    if (v && typeof v === 'object' && 'old' in v && 'new' in v) parts.push(`${k} ${fmt(v.old)} → ${fmt(v.new)}`);
  }
  if (parts.length) return parts.join(', ');
  const params = e.params && Object.keys(e.params).length ? ' ' + fmt(e.params) : '';
  return `${e.module || '?'} ${e.op || '?'}${e.id ? ' ' + e.id : ''}${params}`;
}
