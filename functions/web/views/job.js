// One job, refreshed while it runs: progress, bytes, steps, error and what to do.
import { call } from '../api.js';
import { badge, details, errorBox, fmtBytes, fmtDuration, fmtTime, h, link, mount, table } from '../dom.js';

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
  const bar = h('div', { class: `progress ${done ? '' : 'running'}`, role: 'progressbar', 'aria-valuemin': 0,
    'aria-valuemax': 100, 'aria-valuenow': Math.round(fraction * 100) },
  h('div', { class: `fill ${job.status === 'Failed' ? 'bad' : ''}` }));
  bar.firstChild.style.width = `${(fraction * 100).toFixed(1)}%`; // CSSOM, allowed under the page's CSP
  return h('div', { class: 'progress-wrap' }, bar,
    h('span', { class: 'pct', id: 'job-progress' }, `${Math.round(fraction * 100)} %`));
}

function stepRows(steps) {
  return steps.map((st) => h('tr', null,
    h('td', null, st.name),
    h('td', null, badge(st.status)),
    h('td', null, fmtTime(st.startTime)),
    h('td', null, st.endTime ? fmtTime(st.endTime) : '—'),
    h('td', null, Array.isArray(st.warnings) ? st.warnings.join('; ') : '')));
}

function throughput(job) {
  if (!job.bytes || !job.durationSeconds) return null;
  return `${fmtBytes(job.bytes / job.durationSeconds)}/s`;
}

export async function renderJob(main, jobId, _params, ctx) {
  const job = await call(`backupJobs/${encodeURIComponent(jobId)}`);
  if (!ctx.alive()) return;
  const running = job.status === 'InProgress';
  const extra = Object.entries(job.details || {}).map(([k, v]) =>
    [k, typeof v === 'object' ? JSON.stringify(v) : String(v)]);
  mount(main,
    h('div', { class: 'page-head' },
      h('h1', null, h('a', { href: '#/jobs', class: 'crumb' }, 'Jobs'), ' / ', `${job.operation} of `,
        link(job.instance, 'instances', job.instance)),
      h('span', { id: 'job-status' }, badge(job.status)),
      running ? h('span', { class: 'muted live' }, 'refreshing while it runs') : null,
      cancelControl(job)),
    h('section', { class: 'card' }, progressBar(job),
      details([
        ['Job', h('span', { class: 'mono' }, job.jobId)],
        ['Created', fmtTime(job.createdTime)],
        ['Started', job.startTime ? fmtTime(job.startTime) : 'queued'],
        ['Ended', job.endTime ? fmtTime(job.endTime) : '—'],
        ['Duration', fmtDuration(job.durationSeconds)],
        ['Bytes', job.bytes ? `${fmtBytes(job.bytes)} (${Number(job.bytes).toLocaleString('en')} bytes)` : '—'],
        ['Throughput', throughput(job) || '—'],
        ['Rule / tag', `${job.ruleName || '—'} / ${job.retentionTag || '—'}`],
        ['Recovery point', job.recoveryPointId
          ? h('span', null, h('span', { class: 'mono', id: 'job-recovery-point' }, job.recoveryPointId), ' ',
            link('view instance', 'instances', job.instance))
          : '—'],
        ...extra,
      ]),
      errorBox(job.error, 'Failed')),
    h('section', { class: 'card' }, h('h2', null, 'Steps'),
      table(['Step', 'Status', 'Started', 'Ended', 'Notes'], stepRows(job.steps || []),
        running ? 'Waiting for a worker to pick the job up…' : 'No steps recorded.')));
  if (running) {
    const timer = setTimeout(() => {
      if (ctx.alive()) renderJob(main, jobId, _params, ctx).catch((err) => {
        if (ctx.alive()) main.append(errorBox({ code: 'Error', message: String(err.message || err) }, 'Refresh failed'));
      });
    }, REFRESH_MS);
    ctx.onLeave(() => clearTimeout(timer));
  }
}
