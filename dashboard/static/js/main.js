// Boot: read the config once, learn which tools this server has, draw the views, go live.
import { $, h, replace } from './dom.js';
import { state } from './store.js';
import { getJSON, loadTools } from './api.js';
import { setToastTime } from './toast.js';
import { connect } from './live.js';
import { initCharts } from './charts.js';
import { initStatus } from './status.js';
import { initControls } from './controls.js';
import { initLedger } from './ledger.js';
import { initCallbacks } from './callbacks.js';
import { initAutopilot } from './autopilot.js';
import { initRecipe } from './recipe.js';
import { initReplay } from './replay.js';
import { initAlerts } from './alerts.js';
import { initCompare } from './compare.js';

async function boot() {
  const cfg = await getJSON('api/config');
  state.config = cfg.config;
  state.run = cfg.run;
  state.compareLabel = cfg.compare;
  state.enums = cfg.enums;
  document.title = `${cfg.run} · ${cfg.config.title}`;
  $('run-name').textContent = cfg.run;
  document.documentElement.style.setProperty('--chart-cols', String(cfg.config.chart.columns));
  setToastTime(cfg.config.ui.toast_ms);
  await loadTools();
  initStatus();
  initCharts();
  initControls();
  initCallbacks();
  initLedger();
  initAutopilot();
  initRecipe();
  initReplay();
  initAlerts();
  initCompare();
  connect();
  document.body.dataset.ready = '1';
}

boot().catch((err) => {
  replace($('charts'), h('div', { class: 'err' }, `dashboard failed to start: ${err.message}`));
});
