// Alerts of the last days: what was raised (failed jobs, corrupted points, missed backups, privilege
// drift) and whether the webhook got it.
import { listAll, query } from '../api.js';
import { badge, fmtTime, h, link, mount, table } from '../dom.js';

const DAYS = 7;
const SEVERITY = { Error: 'Failed', Warning: 'CompletedWithWarnings' };
const DELIVERY = { Delivered: 'Completed', Pending: 'InProgress', Abandoned: 'Failed', NotConfigured: 'Cancelled' };

function delivery(d) {
  const label = d.state === 'Pending' && d.attempts ? `Pending (${d.attempts} tries)` : d.state;
  return h('span', { title: d.lastError || d.state }, badge(DELIVERY[d.state] || d.state, label),
    d.lastError ? h('div', { class: 'small muted' }, d.lastError) : null);
}

export async function renderAlerts(main, _arg, _params, ctx) {
  const alerts = await listAll(`alerts${query({ days: DAYS })}`);
  if (!ctx.alive()) return;
  const rows = alerts.map((a) => h('tr', { 'data-alert-id': a.alertId, 'data-kind': a.kind },
    h('td', null, fmtTime(a.time)),
    h('td', null, badge(SEVERITY[a.severity] || a.severity, a.kind)),
    h('td', null, link(a.instance, 'instances', a.instance)),
    h('td', null, a.errorCode ? h('div', { class: 'small mono' }, a.errorCode) : null, h('div', null, a.message),
      a.recommendedAction ? h('div', { class: 'small muted' }, a.recommendedAction) : null),
    h('td', null, a.jobId ? link(a.operation || 'job', 'jobs', a.jobId) : '—'),
    h('td', null, delivery(a.delivery))));
  const undelivered = alerts.filter((a) => a.delivery.state === 'Pending' || a.delivery.state === 'Abandoned').length;
  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Alerts'),
      h('span', { class: 'muted' }, `${alerts.length} in the last ${DAYS} days`
        + (undelivered ? ` · ${undelivered} not delivered to the webhook` : ''))),
    h('section', { class: 'card' },
      table(['Time', 'Kind', 'Instance', 'What happened', 'Job', 'Webhook'], rows,
        'No alerts in the last 7 days: no job failed, no point was corrupted, no scheduled backup was missed.')));
}
