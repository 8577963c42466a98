// One job, refreshed while it runs: progress, bytes, steps, error and what to do.
import { call } from '../api.js';
import { badge, details, errorBox, fmtBytes, fmtDuration, fmtTime, fmtTimeSec, h, link, mount, table } from '../dom.js';

const REFRESH_MS = 1500;
// The operations POST /api/backupJobs/{jobId}:cancel accepts.
const CANCELLABLE = ['Backup', 'Restore', 'VerifyRestore'];

/** "Cancel" for a running backup or restore: asks once, posts :cancel, then the page shows the outcome. */
function cancelControl(job) {
  if (job.status !== 'InProgress' || !CANCELLABLE.includes(job.operation)) return null;
  if (job.cancelRequestedTime) {
    return h('span', { class: 'muted', id: 'job-cancel-requested' }, `cancel requested ${fmtTime(job.cancelRequestedTime)}`);
  }
  const result = h('span', { class: 'muted', id: 'job-cancel-result' });
  const button = h('button', { type: 'button', id: 'job-cancel', class: 'danger' }, 'Cancel');
  button.addEventListener('click', async () => {
    if (!window.confirm(`Cancel this ${job.operation.toLowerCase()}? Nothing it did so far is kept.`)) return;
    button.disabled = true;
    try {
      const answer = await call(`backupJobs/${encodeURIComponent(job.jobId)}:cancel`, { method: 'POST' });
      button.replaceWith(h('span', { class: 'muted', id: 'job-cancel-requested' },
        answer && answer.status === 'InProgress' ? 'cancel requested' : `job ${answer && answer.status}`));
    } catch (err) {
      button.disabled = false;
      result.textContent = (err.error && `${err.error.code}: ${err.error.message}`) || String(err.message || err);
    }
  });
  return h('span', null, button, ' ', result);
}

function progressBar(job) {
  const done = job.status !== 'InProgress';
  const fraction = done && job.status === 'Completed' ? 1 : Math.max(0, Math.min(1, Number(job.progress) || 0));
  const bar = h('div', { class: `progress ${done ? '' : 'running'}`, role: 'progressbar', 'aria-label': 'Progress', 'aria-valuemin': 0,
    'aria-valuemax': 100, 'aria-valuenow': Math.round(fraction * 100) },
  h('div', { class: `fill ${job.status === 'Failed' ? 'bad' : ''}` }));
  bar.firstChild.style.width = `${(fraction * 100).toFixed(1)}%`; // CSSOM, allowed under the page's CSP
  return h('div', { class: 'progress-wrap' }, bar,
    h('span', { class: 'pct', id: 'job-progress' }, `${Math.round(fraction * 100)} %`));
}

function stepRows(steps, running) {
  return steps.map((st, i) => {
    const status = st.status || (st.endTime ? 'Completed' : running && i === steps.length - 1 ? 'InProgress' : 'Completed');
    const secs = st.startTime && st.endTime ? (new Date(st.endTime) - new Date(st.startTime)) / 1000 : null;
    return h('tr', { 'data-step': st.name },
      h('td', null, st.name),
      h('td', null, badge(status)),
      h('td', null, fmtTimeSec(st.startTime)),
      h('td', null, st.endTime ? fmtTimeSec(st.endTime) : '—'),
      h('td', { class: 'num' }, secs === null ? '—' : fmtDuration(secs)),
      h('td', null, Array.isArray(st.warnings) ? st.warnings.join('; ') : ''));
  });
}

/** Seconds it has run: the API's figure, or counted from startTime while it runs. */
export function elapsed(job, now = Date.now()) {
  const given = Number(job.durationSeconds);
  if (job.status !== 'InProgress' || given > 0) return Number.isFinite(given) && job.startTime ? given : null;
  return job.startTime ? Math.max(0, (now - new Date(job.startTime).getTime()) / 1000) : null;
}

/** Bytes per second, ETA in seconds (null when unknown). */
export function pace(job, now = Date.now()) {
  const secs = elapsed(job, now);
  const rate = job.throughputBytesPerSecond || (job.bytes && secs ? job.bytes / secs : null);
  const p = Number(job.progress) || 0;
  const eta = job.status === 'InProgress' && secs && p > 0 && p < 1 ? (secs * (1 - p)) / p : null;
  return { secs, rate, eta };
}

const OPERATION_WORDS = { Backup: 'Back up', Restore: 'Restore', VerifyRestore: 'Verify a restore of', Validate: 'Validate',
  Rehydrate: 'Rehydrate a point of', ArchiveMove: 'Move to Vault-archive a point of', Delete: 'Delete a point of' };

/** What was asked, in words rather than JSON. */
export function requestSummary(job) {
  const d = job.details || {};
  const req = d.request || {};
  const target = req.restoreTargetInfo || {};
  const would = d.backupInstance;
  if (would) {
    // Validate for backup: a would-be instance, checked without being configured.
    return `Validate for backup ${would.database} on ${would.server}:${would.port} with the secret ${would.secretUri} `
      + `and the policy ${would.policyName} (would be the instance ${would.name}; nothing was configured)`;
  }
  const parts = [`${OPERATION_WORDS[job.operation] || job.operation} ${job.instance}`];
  if (job.ruleName || job.retentionTag) parts.push(`rule ${job.ruleName || '—'}, retained as ${job.retentionTag || '—'}`);
  if (req.recoveryPointId || d.recoveryPointId) parts.push(`from recovery point ${req.recoveryPointId || d.recoveryPointId}`);
  if (req.sourceDataStoreType) parts.push(`in ${req.sourceDataStoreType}`);
  const database = req.database || (target.datasourceInfo && target.datasourceInfo.resourceName);
  const files = target.targetDetails || (req.containerUrl ? { url: req.containerUrl, filePrefix: req.filePrefix } : null);
  if (database && job.operation === 'Restore') parts.push(`as the new database ${database}`);
  if (files && files.url) parts.push(`as files ${files.filePrefix || ''} in ${files.url}`);
  if (req.secretUri) parts.push(`target secret ${req.secretUri}`);
  const opts = req.restoreOptions || {};
  const chosen = Object.entries(opts).filter(([, v]) => v === true || (Array.isArray(v) && v.length)
    || (typeof v === 'string' && v)).map(([k, v]) => (v === true ? k : `${k} ${Array.isArray(v) ? v.join(', ') : v}`));
  if (chosen.length) parts.push(`options: ${chosen.join(', ')}`);
  if (req.rehydrationPriority) parts.push(`rehydrated first (${req.rehydrationPriority}, kept ${req.rehydrationRetentionDuration || ''})`);
  if (d.supersededBy) parts.push(`superseded by validation ${d.supersededBy}`);
  return parts.join('; ');
}

function retriesTable(job) {
  const retries = (job.details && job.details.retries) || [];
  if (!retries.length) return null;
  return h('section', { class: 'card' }, h('h2', null, `Retries (${retries.length})`),
    table(['Try', 'Time', 'Error'], retries.map((r) => h('tr', null, h('td', { class: 'num' }, String(r.attempt)),
      h('td', null, fmtTimeSec(r.time)), h('td', null, h('strong', null, r.code), ' ', r.message)))));
}

/** A detail's value as words: "server 127.0.0.1, port 5432" rather than JSON. */
function readable(v) {
  if (v === null || v === undefined) return '—';
  if (Array.isArray(v)) return v.length ? v.map(readable).join('; ') : '—';
  if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k} ${readable(x)}`).join(', ');
  return String(v);
}

const SHOWN = new Set(['request', 'retries', 'missingPrivileges', 'missingPrivilegesCount', 'supersededBy', 'backupInstance']);

export async function renderJob(main, jobId, _params, ctx) {
  const job = await call(`backupJobs/${encodeURIComponent(jobId)}`);
  if (!ctx.alive()) return;
  const running = job.status === 'InProgress';
  const { secs, rate, eta } = pace(job);
  const p = Number(job.progress) || 0;
  const extra = Object.entries(job.details || {}).filter(([k]) => !SHOWN.has(k)).map(([k, v]) =>
    [k, k === 'attempt' && v && v.number ? `try ${v.number}, started ${fmtTimeSec(v.started)}`
      : readable(v)]);
  const missing = (job.details && job.details.missingPrivileges) || [];
  mount(main,
    h('div', { class: 'page-head' },
      h('h1', null, h('a', { href: '#/jobs', class: 'crumb' }, 'Jobs'), ' / ', ...(job.details && job.details.backupInstance
        ? [`Validate for backup of ${job.details.backupInstance.database}`]
        : [`${job.operation} of `, link(job.instance, 'instances', job.instance)])),
      h('span', { id: 'job-status' }, badge(job.status)),
      running ? h('span', { class: 'muted live' }, 'refreshing while it runs') : null,
      cancelControl(job)),
    h('section', { class: 'card' }, progressBar(job),
      h('p', { id: 'job-pace', class: 'muted' }, `${fmtBytes(job.bytes || 0)}`,
        running && p > 0 && job.bytes ? ` of about ${fmtBytes(job.bytes / p)}` : '',
        rate ? ` · ${fmtBytes(rate)}/s` : '', eta !== null ? ` · about ${fmtDuration(eta)} left` : ''),
      h('p', { id: 'job-request' }, h('strong', null, 'Request: '), requestSummary(job)),
      details([
        ['Job', h('span', { class: 'mono' }, job.jobId)],
        ['Created', fmtTimeSec(job.createdTime)],
        ['Started', job.startTime ? fmtTimeSec(job.startTime) : 'queued'],
        ['Ended', job.endTime ? fmtTimeSec(job.endTime) : '—'],
        ['Duration', h('span', { id: 'job-duration' }, fmtDuration(secs))],
        ['Bytes', job.bytes ? `${fmtBytes(job.bytes)} (${Number(job.bytes).toLocaleString('en')} bytes)` : '—'],
        ['Throughput', rate ? `${fmtBytes(rate)}/s` : '—'],
        ['Rule / tag', `${job.ruleName || '—'} / ${job.retentionTag || '—'}`],
        ['Recovery point', job.recoveryPointId
          ? h('span', null, h('span', { class: 'mono', id: 'job-recovery-point' }, job.recoveryPointId), ' ',
            link('view instance', 'instances', job.instance))
          : '—'],
        ...extra,
      ]),
      errorBox(job.error, 'Failed')),
    missing.length ? h('section', { class: 'card' }, h('h2', null, 'Missing privileges'),
      table(['Privilege', 'On', 'Name', 'Owner'], missing.map((m) => h('tr', null, h('td', null, m.privilege),
        h('td', null, m.kind), h('td', { class: 'mono' }, m.name), h('td', null, m.owner || '—'))))) : null,
    retriesTable(job),
    h('section', { class: 'card' }, h('h2', null, 'Steps'),
      table(['Step', 'Status', 'Started', 'Ended', 'Duration', 'Notes'], stepRows(job.steps || [], running),
        running ? (job.startTime ? 'Starting…' : `Queued: ${job.details?.waiting?.reason || 'waiting for a worker to pick the job up'}…`) : 'No steps recorded.')));
  if (running) {
    const timer = setTimeout(() => {
      if (ctx.alive()) renderJob(main, jobId, _params, ctx).catch((err) => {
        if (ctx.alive()) main.append(errorBox({ code: 'Error', message: String(err.message || err) }, 'Refresh failed'));
      });
    }, REFRESH_MS);
    ctx.onLeave(() => clearTimeout(timer));
  }
}
