// The live channel (Server-Sent Events): one snapshot, then only what is new.
import { state, emit, resetSeries, appendSeries, addLedger } from './store.js';

const PANELS = ['status', 'actuators', 'replay', 'autopilot', 'proposals', 'alerts', 'schedule', 'rules'];

// A panel read the server made before a write this page has since seen the reply of can arrive
// after it (under load the event queues behind the reply): the alert rules carry their write
// time, and an older copy never replaces a newer one (a rule just added would vanish from the page).
function stale(key, value) {
  const have = state[key];
  return key === 'rules' && have && value && have.set_ts != null && value.set_ts != null && value.set_ts < have.set_ts;
}

function applyState(ev) {
  for (const key of PANELS) {
    if (key in ev && !stale(key, ev[key])) {
      state[key] = ev[key];
      emit(key);
    }
  }
}

function handle(ev) {
  if (ev.type === 'snapshot') {
    resetSeries(ev.metrics.series);
    state.metricsTotal = ev.metrics.series_total || 0;  // names in the run; the snapshot carries the first ones
    addLedger(ev.ledger.entries, true);
    emit('metrics');
    emit('ledger');
    applyState(ev);
  } else if (ev.type === 'metrics') {
    appendSeries(ev.series);
    state.lastMetricsTs = ev.ts;
    emit('metrics');
  } else if (ev.type === 'ledger') {
    addLedger(ev.entries);
    emit('ledger');
  } else if (ev.type === 'state') {
    applyState(ev);
  }
}

export function connect() {
  // EventSource reconnects by itself (the server sends `retry:`); the next snapshot resyncs.
  const es = new EventSource('api/live');
  es.onopen = () => { state.connected = true; emit('connection'); };
  es.onerror = () => { state.connected = false; emit('connection'); };
  es.onmessage = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch { return; }
    handle(ev);
  };
  return es;
}
