// Short-lived notices for action results and refusals (text only).
import { h, $ } from './dom.js';

let lifetime = 5000;
export function setToastTime(ms) { lifetime = ms; }

export function notify(text, kind = 'info') {
  const box = $('toasts');
  if (!box) return;
  const el = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.appendChild(el);
  while (box.children.length > 4) box.firstChild.remove();  // a burst of actions must not bury the page
  setTimeout(() => el.remove(), kind === 'error' ? lifetime * 2 : lifetime);
}
