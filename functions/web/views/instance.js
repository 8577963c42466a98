// One backup instance: details, recovery points on a timeline, backup now, validate, restore.
import { ApiError, AuthNeeded, call, listAll, query } from '../api.js';
import { timeline } from '../chart.js';
import { asError, badge, details, errorBox, fmtBytes, fmtRelative, fmtTime, h, link, mount, table } from '../dom.js';
import { durationLabel, ruleLifecycles } from '../policy-model.js';
import { JOB_HEADERS, jobRow } from './jobs.js';

const STORES = ['VaultStore', 'ArchiveStore'];
const ep = encodeURIComponent;

function outcome(el) {
  return {
    started: (jobId, ctx) => ctx.go(`#/jobs/${ep(jobId)}`),
    failed: (err) => {
      const error = err instanceof ApiError ? err.error : { code: 'Error', message: String(err.message || err) };
      el.replaceChildren(errorBox(error, 'Refused'));
    },
    clear: () => el.replaceChildren(),
  };
}

async function post(path, body, out, ctx, button) {
  out.clear();
  button.disabled = true;
  try {
    const answer = await call(path, { method: 'POST', body });
    out.started(answer.jobId, ctx);
  } catch (err) {
    out.failed(err instanceof AuthNeeded ? new Error('the function key was refused; reload the page and enter it again')
      : err);
  } finally {
    button.disabled = false;
  }
}

function ruleLabel(rule) {
  const [vault, archive] = ruleLifecycles(rule);
  return `${rule.name}: ${durationLabel(vault && vault.duration)} in Vault-standard`
    + (archive ? `, then ${durationLabel(archive.duration)} in Vault-archive` : '');
}

function backupForm(instance, policy, ctx) {
  const rules = ((policy && policy.properties && policy.properties.policyRules) || (policy && policy.policyRules) || []);
  const backupRule = rules.find((r) => r.objectType === 'AzureBackupRule');
  const retention = rules.filter((r) => r.objectType === 'AzureRetentionRule');
  const tagSelect = h('select', { name: 'retentionTag', id: 'backup-tag' },
    retention.map((r) => h('option', { value: r.name, selected: r.name === 'Default' }, ruleLabel(r))));
  const result = h('div', { class: 'result', id: 'backup-result' });
  const stopped = instance.protectionStatus !== 'ProtectionConfigured';
  const button = h('button', { type: 'submit', class: 'primary', id: 'backup-now', disabled: stopped }, 'Backup Now');
  const form = h('form', { class: 'action-form', id: 'backup-form' },
    h('h3', null, 'Backup Now'),
    h('p', { class: 'muted' }, 'An on-demand full backup, kept as the retention rule you pick says.'),
    h('label', { for: 'backup-tag' }, 'Retain as (the policy\'s retention rules)'), tagSelect, button,
    stopped ? h('p', { class: 'muted' }, `Not while the instance is ${instance.protectionStatus}.`) : null, result);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    // Without the policy (it could not be read) the server applies the policy's own rule and tag.
    const body = backupRule ? { backupRuleOptions: { ruleName: backupRule.name,
      triggerOption: tagSelect.value ? { retentionTagOverride: tagSelect.value } : undefined } } : {};
    post(`backupInstances/${ep(instance.name)}:backup`, body, outcome(result), ctx, button);
  });
  return form;
}

function validateForm(instance, ctx) {
  const result = h('div', { class: 'result', id: 'validate-result' });
  const button = h('button', { type: 'submit', id: 'validate' }, 'Re-validate');
  const form = h('form', { class: 'action-form', id: 'validate-form' },
    h('h3', null, 'Re-validate'),
    h('p', { class: 'muted' }, 'Check again that the secret is readable, the server reachable, the login works ',
      'and the user has the backup privileges.'),
    button, result);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    post(`backupInstances/${ep(instance.name)}:validate`, {}, outcome(result), ctx, button);
  });
  return form;
}

const RETAIN = [['forever', 'Retain forever: keep every point, no deletions'],
  ['asPerPolicy', 'Retain as per policy: delete and archive on their dates, keep the latest point'],
  ['delete', 'Delete backup data: soft delete, kept for the soft-delete days (undelete until then), then purged']];

/** A soft-deleted instance: when it goes, and "Undelete" until its purge has begun. */
function undeleteForm(instance, send, result) {
  const info = instance.deletionInfo || {};
  const form = h('form', { class: 'action-form', id: 'undelete-form' }, h('h3', null, 'Soft-deleted'),
    h('p', { class: 'muted' }, `Deleted ${fmtTime(info.deletionTime)}; its recovery points are kept, not restorable, `
      + `until ${fmtTime(info.scheduledPurgeTime)} (${fmtRelative(info.scheduledPurgeTime)}), then purged.`));
  if (info.purgeJobId) {
    form.append(h('p', { class: 'muted' }, 'Its purge has begun: ', link('purge job', 'jobs', info.purgeJobId)));
    return form;
  }
  const button = h('button', { type: 'submit', id: 'undelete-instance', class: 'primary' }, 'Undelete');
  form.append(h('p', { class: 'muted' }, 'Undelete brings it back as ProtectionStopped with every point.'), button, result);
  form.addEventListener('submit', (ev) => { ev.preventDefault(); send(`backupInstances/${ep(instance.name)}:undelete`, undefined, button); });
  return form;
}

function protectionForm(instance, ctx) {
  const result = h('div', { class: 'result', id: 'protection-result' });
  const stopped = ['ProtectionStopped', 'BackupSchedulesSuspended'].includes(instance.protectionStatus)
    || instance.currentProtectionState === 'ProtectionStopped' || instance.currentProtectionState === 'BackupSchedulesSuspended';
  const form = h('form', { class: 'action-form', id: 'protection-form' }, h('h3', null, stopped ? 'Resume backup' : 'Stop backup'));
  const done = (answer) => {
    if (answer && answer.jobId) ctx.go(`#/jobs/${ep(answer.jobId)}`);
    else ctx.go(`#/instances/${ep(instance.name)}?t=${Date.now()}`);
  };
  const send = async (path, body, button) => {
    result.replaceChildren();
    button.disabled = true;
    try { done(await call(path, { method: 'POST', body })); } catch (err) {
      result.replaceChildren(errorBox(asError(err), 'Refused'));
      button.disabled = false;
    }
  };
  if (instance.protectionStatus === 'SoftDeleted') return undeleteForm(instance, send, result);
  if (stopped) {
    const button = h('button', { type: 'submit', id: 'resume-backup', class: 'primary' }, 'Resume backup');
    form.append(h('p', { class: 'muted' }, 'Scheduled backups start again; retention as per policy.'), button, result);
    form.addEventListener('submit', (ev) => { ev.preventDefault(); send(`backupInstances/${ep(instance.name)}:resumeProtection`, undefined, button); });
    return form;
  }
  const retain = h('select', { id: 'retain-data' }, RETAIN.map(([v, t]) => h('option', { value: v }, t)));
  const button = h('button', { type: 'submit', id: 'stop-backup', class: 'danger' }, 'Stop backup');
  form.append(h('label', { for: 'retain-data' }, 'Backup data'), retain, button, result);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (retain.value === 'delete' && !window.confirm(`Soft-delete every recovery point of ${instance.name}? `
      + 'They are purged for good after the soft-delete days.')) return;
    send(`backupInstances/${ep(instance.name)}:stopProtection`, { retainData: retain.value }, button);
  });
  return form;
}

/** Azure's restore request (AzureBackupRecoveryPointBasedRestoreRequest) as the form describes it. */
export function restoreRequest(point, databaseName, secretUri) {
  return {
    objectType: 'AzureBackupRecoveryPointBasedRestoreRequest',
    recoveryPointId: point.recoveryPointId,
    sourceDataStoreType: point.datastore,
    restoreTargetInfo: {
      objectType: 'RestoreTargetInfo',
      recoveryOption: 'FailIfExists',
      datasourceInfo: { resourceName: databaseName },
      datasourceAuthCredentials: {
        objectType: 'SecretStoreBasedAuthCredentials',
        secretStoreResource: { uri: secretUri, secretStoreType: 'AzureKeyVault' },
      },
    },
  };
}

/** The request for the form's choices: as a database or as files; an archived point rehydrated first. */
function fullRestoreRequest(point, v) {
  const body = restoreRequest(point, v.database, v.secret);
  if (v.kind === 'files') {
    body.restoreTargetInfo = { objectType: 'RestoreFilesTargetInfo', recoveryOption: 'FailIfExists',
      targetDetails: { url: v.url, filePrefix: v.prefix, restoreTargetLocationType: 'AzureBlobs' } };
  }
  if (point.datastore === 'ArchiveStore') {
    return { ...body, objectType: 'AzureBackupRestoreWithRehydrationRequest', rehydrationPriority: v.priority,
      rehydrationRetentionDuration: `P${Number(v.days)}D` };
  }
  return body;
}

function restoreFields(instance) {
  const kind = (value, text, checked) => h('span', { class: 'check' },
    h('input', { type: 'radio', name: 'restore-kind', id: `restore-as-${value}`, value, checked }),
    h('label', { for: `restore-as-${value}` }, text));
  const inputs = {
    database: h('input', { id: 'restore-database', required: true, maxlength: 63,
      placeholder: `${instance.database}_restored`.slice(0, 63) }),
    secret: h('input', { id: 'restore-secret', required: true, value: instance.secretUri,
      placeholder: 'https://<vault>.vault.azure.net/secrets/<name>' }),
    url: h('input', { id: 'restore-url', placeholder: 'https://<account>.blob.core.windows.net/<container>' }),
    prefix: h('input', { id: 'restore-prefix', placeholder: `${instance.name}/restore` }),
    priority: h('select', { id: 'restore-priority' }, ['Standard', 'High'].map((p) => h('option', { value: p }, p))),
    days: h('input', { id: 'restore-days', type: 'number', min: 10, max: 30, value: 15 }),
  };
  const group = (legend, ...kids) => h('fieldset', { class: 'field' }, h('legend', null, legend), kids);
  return { inputs, kinds: group('Restore as', kind('database', 'Restore as database', true), kind('files', 'Restore as files')), group };
}

function restoreForm(instance, allPoints, ctx) {
  const points = allPoints.filter((p) => p.integrity !== 'Corrupted' && p.state !== 'SoftDeleted'); // never offered as a source
  const pointSelect = h('select', { name: 'recoveryPointId', id: 'restore-point', required: true },
    points.map((p) => h('option', { value: p.recoveryPointId },
      `${fmtTime(p.time)} · ${p.retentionTag} · ${p.datastore}`)));
  const { inputs, kinds, group } = restoreFields(instance);
  const dbPart = h('div', { class: 'stack', id: 'restore-db-part' },
    h('label', { for: 'restore-database' }, 'New database name'), inputs.database);
  const filePart = h('div', { class: 'stack', id: 'restore-file-part', hidden: true },
    h('label', { for: 'restore-url' }, 'Target container URL'), inputs.url,
    h('label', { for: 'restore-prefix' }, 'File prefix'), inputs.prefix);
  const archived = group('Archived point: rehydrate first', h('label', { for: 'restore-priority' }, 'Rehydration priority'),
    inputs.priority, h('label', { for: 'restore-days' }, 'Keep rehydrated for (days)'), inputs.days);
  const sync = () => {
    const files = document.getElementById('restore-as-files').checked;
    filePart.hidden = !files; dbPart.hidden = files;
    inputs.database.required = !files; inputs.url.required = files; inputs.prefix.required = files;
    const point = points.find((p) => p.recoveryPointId === pointSelect.value);
    archived.hidden = !(point && point.datastore === 'ArchiveStore');
  };
  const result = h('div', { class: 'result', id: 'restore-result' });
  const button = h('button', { type: 'submit', class: 'primary', id: 'restore', disabled: !points.length }, 'Restore');
  const verify = h('button', { type: 'button', id: 'verify-restore', disabled: !points.length }, 'Verify restore');
  const form = h('form', { class: 'action-form', id: 'restore-form' },
    h('h3', null, 'Restore'),
    h('p', { class: 'muted' }, 'The target server is the one in the target secret\'s connection string; ',
      'an existing database of that name is never overwritten (FailIfExists).'),
    h('label', { for: 'restore-point' }, 'Recovery point'), pointSelect, kinds, dbPart, filePart, archived,
    h('label', { for: 'restore-secret' }, 'Target secret (Key Vault secret URI)'), inputs.secret,
    h('div', { class: 'row' }, button, verify), result);
  form.addEventListener('change', sync);
  setTimeout(sync, 0);
  const values = () => ({ kind: document.getElementById('restore-as-files').checked ? 'files' : 'database',
    ...Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value.trim()])) });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const point = points.find((p) => p.recoveryPointId === pointSelect.value);
    if (!point) return;
    post(`backupInstances/${ep(instance.name)}:restore`, fullRestoreRequest(point, values()), outcome(result), ctx, button);
  });
  verify.addEventListener('click', () => post(`backupInstances/${ep(instance.name)}:verifyRestore`,
    { recoveryPointId: pointSelect.value, secretUri: inputs.secret.value.trim() }, outcome(result), ctx, verify));
  form.pick = (point) => {
    pointSelect.value = point.recoveryPointId;
    sync();
    inputs.database.focus();
  };
  return form;
}

/** "15.18" out of "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)". */
function version(text) {
  const m = /\d+(\.\d+)+/.exec(String(text ?? ''));
  return m ? m[0] : String(text ?? '?');
}

function pointsTable(points, onRestore) {
  return table(['Time', 'Datastore', 'Tag', 'State', 'Size', 'Expires', 'PostgreSQL', 'Recovery point', 'Integrity', ''],
    points.map((p) => h('tr', { 'data-recovery-point': p.recoveryPointId },
      h('td', null, fmtTime(p.time)),
      h('td', null, p.datastore),
      h('td', null, p.retentionTag),
      h('td', { title: p.purgeTime ? `purged ${p.purgeTime} unless the instance is undeleted` : null },
        p.state === 'SoftDeleted' ? badge('SoftDeleted') : (p.state || '—')),
      h('td', { class: 'num' }, fmtBytes(p.sizeInBytes)),
      h('td', null, fmtTime(p.expiry), h('small', { class: 'muted' }, ` (${fmtRelative(p.expiry)})`)),
      h('td', { title: `server ${p.serverVersion}; ${p.pgDumpVersion}` },
        `${version(p.serverVersion)} (pg_dump ${version(p.pgDumpVersion)})`),
      h('td', { class: 'mono', title: p.sha256 ? `sha256 ${p.sha256}` : null }, p.recoveryPointId),
      h('td', { class: 'integrity', title: p.corruption ? `${p.corruption.detectedTime}: ${p.corruption.reason}` : null },
        badge(p.integrity || 'Available')),
      h('td', null, p.integrity === 'Corrupted' || p.state === 'SoftDeleted'
        ? h('span', { class: 'muted' }, p.state === 'SoftDeleted' ? 'undelete first' : 'not restorable')
        : h('button', { type: 'button', class: 'small', onclick: () => onRestore(p),
          'aria-label': `Restore the point of ${fmtTime(p.time)}` }, 'Restore')))),
    'No recovery points yet: back up now, or wait for the schedule.');
}

export async function renderInstance(main, name, _params, ctx) {
  const instance = await call(`backupInstances/${ep(name)}`);
  const [points, jobs, policy] = await Promise.all([
    listAll(`backupInstances/${ep(name)}/recoveryPoints`),
    listAll(`backupJobs${query({ days: 7, instance: instance.name })}`),
    call(`backupPolicies/${ep(instance.policyName)}`).catch((err) => {
      if (err instanceof AuthNeeded) throw err;
      return null;
    }),
  ]);
  if (!ctx.alive()) return;
  const readiness = instance.backupReadiness || {};
  const last = instance.lastBackup;
  const restore = restoreForm(instance, points, ctx);
  const stores = STORES.filter((st) => st === 'VaultStore' || points.some((p) => p.datastore === st)
    || (policy && JSON.stringify(policy).includes('"ArchiveStore"')));
  mount(main,
    h('div', { class: 'page-head' },
      h('h1', null, h('a', { href: '#/instances', class: 'crumb' }, 'Backup instances'), ' / ',
        h('span', { id: 'instance-name' }, instance.name)),
      badge(instance.protectionStatus), badge(readiness.status)),
    h('div', { class: 'columns' },
      h('section', { class: 'card' }, h('h2', null, 'Protected database'),
        details([
          ['Database', instance.database],
          ['Server', `${instance.server}:${instance.port}`],
          ['Secret', h('span', { class: 'mono' }, instance.secretUri)],
          ['Policy', link(instance.policyName, 'policies', instance.policyName)],
          ['Size', points.length ? `${fmtBytes(points.reduce((n, p) => n + (p.sizeInBytes || 0), 0))} in ${points.length} `
            + `recovery point${points.length === 1 ? '' : 's'}` : '—'],
          ['Readiness', h('span', null, badge(readiness.status), ' ',
            readiness.jobId ? link('validation job', 'jobs', readiness.jobId) : null)],
          ['Last backup', last ? h('span', null, badge(last.status), ' ', link(fmtTime(last.time), 'jobs', last.jobId))
            : 'never'],
          ['Next scheduled', instance.nextScheduledBackup
            ? `${fmtTime(instance.nextScheduledBackup)} (${fmtRelative(instance.nextScheduledBackup)})`
            : 'not scheduled'],
        ]),
        errorBox(readiness.error, 'Validation failed')),
      h('section', { class: 'card actions' }, h('h2', null, 'Actions'),
        backupForm(instance, policy, ctx), validateForm(instance, ctx), protectionForm(instance, ctx))),
    h('section', { class: 'card' },
      h('h2', null, 'Recovery points ', h('small', { class: 'muted' }, `${points.length}`)),
      timeline(points, stores, Date.now(), (p) => restore.pick(p)),
      h('div', { class: 'legend' }, ['Default', 'Weekly', 'Monthly', 'Yearly'].map((t) =>
        h('span', null, h('i', { class: `swatch tag-${t}` }), t))),
      pointsTable(points, (p) => restore.pick(p))),
    h('section', { class: 'card' }, restore),
    h('section', { class: 'card' }, h('h2', null, 'Jobs of the last 7 days'),
      table(JOB_HEADERS, jobs.map(jobRow), 'No jobs in the last 7 days.')));
}
