// Every backup instance: readiness, policy, protection, last and next backup, size.
import { INSTANCES, listAll } from '../api.js';
import { badge, fmtBytes, fmtRelative, fmtTime, h, link, mount, table } from '../dom.js';

function lastBackup(last) {
  if (!last) return h('span', { class: 'muted' }, 'never');
  return h('span', null, badge(last.status), ' ', link(fmtTime(last.time), 'jobs', last.jobId));
}

function nextBackup(next) {
  if (!next) return h('span', { class: 'muted' }, 'not scheduled');
  return h('span', { title: next }, fmtTime(next), h('small', { class: 'muted' }, ` (${fmtRelative(next)})`));
}

/** The newest point's size, and all points together (the API's storage: one read for the whole list). */
function size(storage) {
  if (!storage) return h('span', { class: 'muted' }, '—');
  if (!storage.recoveryPoints) return h('span', { class: 'muted' }, 'no points');
  const n = storage.recoveryPoints;
  return h('span', { title: `newest point ${storage.latestPointSizeInBytes} bytes; all ${storage.totalSizeInBytes} bytes` },
    fmtBytes(storage.latestPointSizeInBytes),
    h('small', { class: 'muted' }, ` · ${fmtBytes(storage.totalSizeInBytes)} in ${n} point${n === 1 ? '' : 's'}`));
}

export async function renderInstances(main, _arg, _params, ctx) {
  const instances = await listAll(INSTANCES);
  if (!ctx.alive()) return;
  const rows = instances.map((i) => {
    const readiness = i.backupReadiness || {};
    return h('tr', { 'data-instance': i.name },
      h('td', null, link(i.name, 'instances', i.name)),
      h('td', null, h('div', null, i.database), h('small', { class: 'muted' }, `${i.server}:${i.port}`)),
      h('td', null, badge(readiness.status),
        readiness.error ? h('div', { class: 'small bad-text' }, readiness.error.code) : null),
      h('td', null, link(i.policyName, 'policies', i.policyName)),
      h('td', null, badge(i.protectionStatus), i.deletionInfo
        ? h('div', { class: 'small muted' }, `purged ${fmtTime(i.deletionInfo.scheduledPurgeTime)}`) : null),
      h('td', null, lastBackup(i.lastBackup)),
      h('td', null, nextBackup(i.nextScheduledBackup)),
      h('td', { class: 'size' }, size(i.storage)));
  });
  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Backup instances'),
      h('span', { class: 'muted' }, `${instances.length} protected database${instances.length === 1 ? '' : 's'}`),
      h('a', { class: 'button primary', href: '#/configure?new=1', id: 'configure-open' }, 'Configure backup')),
    h('section', { class: 'card' },
      table(['Name', 'Database', 'Readiness', 'Policy', 'Protection', 'Last backup', 'Next scheduled', 'Size (newest · all)'],
        rows, 'No backup instances yet: "Configure backup" protects the first databases.', { stack: true })));
  if (instances.some((i) => (i.backupReadiness || {}).status === 'Validating')) {
    const timer = setTimeout(() => { if (ctx.alive()) renderInstances(main, _arg, _params, ctx).catch(() => {}); },
      3000);
    ctx.onLeave(() => clearTimeout(timer));
  }
}
