// One backup instance: details, recovery points on a timeline, backup now, validate, restore.
import { ApiError, AuthNeeded, call, listAll, query } from '../api.js';
import { timeline } from '../chart.js';
import { badge, details, errorBox, fmtBytes, fmtRelative, fmtTime, h, link, mount, table } from '../dom.js';
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

function backupForm(instance, policy, ctx) {
  const rules = ((policy && policy.properties && policy.properties.policyRules) || []);
  const backupRule = rules.find((r) => r.objectType === 'AzureBackupRule');
  const tags = rules.filter((r) => r.objectType === 'AzureRetentionRule').map((r) => r.name);
  const tagSelect = h('select', { name: 'retentionTag', id: 'backup-tag' },
    tags.map((t) => h('option', { value: t, selected: t === 'Default' }, t)));
  const result = h('div', { class: 'result', id: 'backup-result' });
  const button = h('button', { type: 'submit', class: 'primary', id: 'backup-now' }, 'Back up now');
  const form = h('form', { class: 'action-form', id: 'backup-form' },
    h('h3', null, 'Back up now'),
    h('p', { class: 'muted' }, 'Rule ', h('code', null, backupRule ? backupRule.name : '?'),
      '; the retention tag decides how long the recovery point is kept.'),
    h('label', { for: 'backup-tag' }, 'Retention tag'), tagSelect, button, result);
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
  const button = h('button', { type: 'submit', id: 'validate' }, 'Validate');
  const form = h('form', { class: 'action-form', id: 'validate-form' },
    h('h3', null, 'Validate'),
    h('p', { class: 'muted' }, 'Check again that the secret is readable, the server reachable, the login works ',
      'and the user has the backup privileges.'),
    button, result);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    post(`backupInstances/${ep(instance.name)}:validate`, {}, outcome(result), ctx, button);
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

function restoreForm(instance, allPoints, ctx) {
  const points = allPoints.filter((p) => p.integrity !== 'Corrupted'); // never offered as a source
  const pointSelect = h('select', { name: 'recoveryPointId', id: 'restore-point', required: true },
    points.map((p) => h('option', { value: p.recoveryPointId },
      `${fmtTime(p.time)} · ${p.retentionTag} · ${p.datastore}`)));
  const dbInput = h('input', { name: 'database', id: 'restore-database', required: true, maxlength: 63,
    placeholder: `${instance.database}_restored`.slice(0, 63) });
  const secretInput = h('input', { name: 'secretUri', id: 'restore-secret', required: true,
    value: instance.secretUri, placeholder: 'https://<vault>.vault.azure.net/secrets/<name>' });
  const result = h('div', { class: 'result', id: 'restore-result' });
  const button = h('button', { type: 'submit', class: 'primary', id: 'restore', disabled: !points.length }, 'Restore');
  const form = h('form', { class: 'action-form', id: 'restore-form' },
    h('h3', null, 'Restore as a new database'),
    h('p', { class: 'muted' }, 'The target server is the one in the target secret\'s connection string; ',
      'an existing database of that name is never overwritten (FailIfExists).'),
    h('label', { for: 'restore-point' }, 'Recovery point'), pointSelect,
    h('label', { for: 'restore-database' }, 'New database name'), dbInput,
    h('label', { for: 'restore-secret' }, 'Target secret (Key Vault secret URI)'), secretInput,
    button, result);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const point = points.find((p) => p.recoveryPointId === pointSelect.value);
    if (!point) return;
    const body = restoreRequest(point, dbInput.value.trim(), secretInput.value.trim());
    post(`backupInstances/${ep(instance.name)}:restore`, body, outcome(result), ctx, button);
  });
  form.pick = (point) => {
    pointSelect.value = point.recoveryPointId;
    dbInput.focus();
  };
  return form;
}

/** "15.18" out of "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)". */
function version(text) {
  const m = /\d+(\.\d+)+/.exec(String(text ?? ''));
  return m ? m[0] : String(text ?? '?');
}

function pointsTable(points, onRestore) {
  return table(['Time', 'Datastore', 'Tag', 'Size', 'Expires', 'PostgreSQL', 'Recovery point', 'Integrity', ''],
    points.map((p) => h('tr', { 'data-recovery-point': p.recoveryPointId },
      h('td', null, fmtTime(p.time)),
      h('td', null, p.datastore),
      h('td', null, p.retentionTag),
      h('td', { class: 'num' }, fmtBytes(p.sizeInBytes)),
      h('td', null, fmtTime(p.expiry), h('small', { class: 'muted' }, ` (${fmtRelative(p.expiry)})`)),
      h('td', { title: `server ${p.serverVersion}; ${p.pgDumpVersion}` },
        `${version(p.serverVersion)} (pg_dump ${version(p.pgDumpVersion)})`),
      h('td', { class: 'mono', title: p.sha256 ? `sha256 ${p.sha256}` : null }, p.recoveryPointId),
      h('td', { class: 'integrity', title: p.corruption ? `${p.corruption.detectedTime}: ${p.corruption.reason}` : null },
        badge(p.integrity || 'Available')),
      h('td', null, p.integrity === 'Corrupted'
        ? h('span', { class: 'muted' }, 'not restorable')
        : h('button', { type: 'button', class: 'small', onclick: () => onRestore(p) }, 'Restore…')))),
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
          ['Policy', instance.policyName],
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
        backupForm(instance, policy, ctx), validateForm(instance, ctx))),
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
