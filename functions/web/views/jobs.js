// Jobs of the last 7 days: counts by status, outcomes per day, and the filtered list.
import { INSTANCES, call, listAll, query } from '../api.js';
import { outcomesChart, perDay } from '../chart.js';
import { badge, fmtBytes, fmtDuration, fmtTime, h, link, mount, table } from '../dom.js';

const DAYS = 7;
const STATUSES = ['InProgress', 'Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled'];
const OPERATIONS = ['Backup', 'Validate', 'Restore', 'VerifyRestore', 'Rehydrate', 'ArchiveMove', 'Delete'];

function select(name, label, options, value, onChange) {
  const el = h('select', { name, id: `filter-${name}` },
    h('option', { value: '' }, `any ${label.toLowerCase()}`),
    options.map((o) => h('option', { value: o, selected: o === value }, o)));
  el.addEventListener('change', onChange);
  return h('div', { class: 'filter' }, h('label', { for: el.id }, label), el);
}

export function jobRow(job) {
  return h('tr', { 'data-job-id': job.jobId },
    h('td', null, link(job.operation, 'jobs', job.jobId)),
    h('td', null, job.details && job.details.backupInstance
      // Validate for backup: the instance it would be, which exists only if it was configured since.
      ? [job.instance, h('small', { class: 'muted' }, ' (validated for backup)')]
      : link(job.instance, 'instances', job.instance)),
    h('td', null, badge(job.status)),
    h('td', null, fmtTime(job.startTime || job.createdTime)),
    h('td', { class: 'num' }, job.status === 'InProgress' ? `${Math.round((job.progress || 0) * 100)} %`
      : fmtDuration(job.durationSeconds)),
    h('td', { class: 'num' }, job.bytes ? fmtBytes(job.bytes) : '—'),
    h('td', null, job.retentionTag || '—'),
    h('td', { class: 'mono' }, link(job.jobId.slice(-8), 'jobs', job.jobId)));
}

export const JOB_HEADERS = ['Operation', 'Instance', 'Status', 'Started', 'Duration', 'Bytes', 'Tag', 'Job'];

export async function renderJobs(main, _arg, params, ctx) {
  const filters = { instance: params.get('instance') || '', status: params.get('status') || '',
    operation: params.get('operation') || '' };
  const filtered = filters.instance || filters.status || filters.operation;
  const [all, instances] = await Promise.all([
    listAll(`backupJobs${query({ days: DAYS })}`),
    listAll(INSTANCES),
  ]);
  const shown = filtered ? await listAll(`backupJobs${query({ days: DAYS, ...filters })}`) : all;
  if (!ctx.alive()) return;

  const apply = () => {
    const q = new URLSearchParams();
    for (const name of ['instance', 'status', 'operation']) {
      const v = document.getElementById(`filter-${name}`).value;
      if (v) q.set(name, v);
    }
    ctx.go(`#/jobs${q.toString() ? `?${q}` : ''}`);
  };
  const counts = Object.fromEntries(STATUSES.map((st) => [st, all.filter((j) => j.status === st).length]));
  const byOperation = OPERATIONS.map((op) => [op, all.filter((j) => j.operation === op)]).filter(([, list]) => list.length);
  const cards = h('div', { class: 'cards' },
    h('a', { class: 'card stat', href: '#/jobs' }, h('span', { class: 'n' }, String(all.length)),
      h('span', null, 'All jobs')),
    STATUSES.map((st) => h('a', { class: `card stat ${filters.status === st ? 'selected' : ''}`,
      href: `#/jobs?status=${encodeURIComponent(st)}`, 'data-status': st },
    h('span', { class: 'n' }, String(counts[st])), badge(st, st === 'CompletedWithWarnings' ? 'With warnings' : st))));

  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Jobs'), h('span', { class: 'muted' }, `last ${DAYS} days`),
      h('a', { class: 'button', href: '#/jobs/all', id: 'view-all' }, 'View all')),
    all.truncated ? h('p', { class: 'note' }, `More jobs than the dashboard reads at once: the counts and the chart `
      + `cover the newest ${all.length}. Use the filters or the API's nextLink for the rest.`) : null,
    cards,
    h('section', { class: 'card' }, h('h2', null, 'Outcomes per day'), outcomesChart(perDay(all, DAYS))),
      h('section', { class: 'card' }, h('h2', null, 'By operation'),
        table(['Operation', 'Jobs', ...STATUSES.map((st) => (st === 'CompletedWithWarnings' ? 'With warnings' : st))],
          byOperation.map(([op, list]) => h('tr', { 'data-operation': op }, h('td', null, op),
            h('td', { class: 'num' }, String(list.length)),
            STATUSES.map((st) => h('td', { class: 'num' }, String(list.filter((j) => j.status === st).length))))),
          'No jobs in the last 7 days.')),
    h('section', { class: 'card' },
      h('div', { class: 'section-head' }, h('h2', null, filtered ? 'Jobs (filtered)' : 'All jobs'),
        h('form', { class: 'filters', id: 'job-filters' },
          select('instance', 'Instance', [...new Set([...instances.map((i) => i.name),
            ...(filters.instance ? [filters.instance] : [])])].sort(), filters.instance, apply),
          select('status', 'Status', STATUSES, filters.status, apply),
          select('operation', 'Operation', OPERATIONS, filters.operation, apply),
          filtered ? h('a', { href: '#/jobs', class: 'button' }, 'Clear') : null)),
      table(JOB_HEADERS, shown.map(jobRow), filtered ? 'No job matches these filters.'
        : 'No jobs in the last 7 days.', { stack: true })));

  // Running jobs change: refresh the page while any is in progress.
  if (all.some((j) => j.status === 'InProgress')) {
    const timer = setTimeout(() => { if (ctx.alive()) renderJobs(main, _arg, params, ctx).catch(() => {}); }, 5000);
    ctx.onLeave(() => clearTimeout(timer));
  }
}

const PAGE = 25;
const PERIODS = [1, 7, 14, 30, 60, 90];

function errorCell(job) {
  if (!job.error) return h('td', { class: 'muted' }, '—');
  return h('td', { class: 'small' }, h('strong', { class: 'bad-text' }, job.error.code), h('div', null, job.error.message));
}

/** "View all": any period up to 90 days, filters, pages of PAGE jobs following nextLink, the error column. */
export async function renderAllJobs(main, _arg, params, ctx) {
  const f = { days: params.get('days') || '7', instance: params.get('instance') || '', status: params.get('status') || '',
    operation: params.get('operation') || '' };
  const pages = (params.get('pages') || '').split(',').filter(Boolean); // the nextLinks that led to this page
  const path = pages.length ? pages[pages.length - 1] : `backupJobs${query({ ...f, top: PAGE })}`;
  const [page, instances] = await Promise.all([call(path), listAll(INSTANCES)]);
  if (!ctx.alive()) return;
  const go = (extra = {}) => {
    const q = new URLSearchParams();
    for (const name of ['days', 'instance', 'status', 'operation']) {
      const v = document.getElementById(`filter-${name}`).value;
      if (v) q.set(name, v);
    }
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    ctx.go(`#/jobs/all?${q}`);
  };
  const period = h('select', { name: 'days', id: 'filter-days' },
    PERIODS.map((d) => h('option', { value: d, selected: String(d) === f.days }, d === 1 ? 'Last 24 hours' : `Last ${d} days`)));
  period.addEventListener('change', () => go());
  const jobs = (page && page.value) || [];
  const next = page && page.nextLink ? String(page.nextLink).replace(/^.*?\/api\//, '') : null;
  const keep = new URLSearchParams(params);
  keep.delete('pages');
  const pagesParam = (list) => (list.length ? { pages: list.join(',') } : {});
  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, h('a', { href: '#/jobs', class: 'crumb' }, 'Jobs'), ' / All jobs')),
    h('section', { class: 'card' },
      h('form', { class: 'filters', id: 'job-filters' },
        h('div', { class: 'filter' }, h('label', { for: 'filter-days' }, 'Period'), period),
        select('instance', 'Instance', [...new Set([...instances.map((i) => i.name), ...(f.instance ? [f.instance] : [])])].sort(),
          f.instance, () => go()),
        select('status', 'Status', STATUSES, f.status, () => go()),
        select('operation', 'Operation', OPERATIONS, f.operation, () => go())),
      table([...JOB_HEADERS, 'Error'], jobs.map((j) => { const row = jobRow(j); row.append(errorCell(j)); return row; }),
        'No job matches these filters.', { stack: true }),
      h('nav', { class: 'row pager', 'aria-label': 'Pages' },
        h('span', { class: 'muted', id: 'page-number' }, `Page ${pages.length + 1}`),
        pages.length ? h('a', { class: 'button', id: 'page-previous',
          href: `#/jobs/all?${new URLSearchParams({ ...Object.fromEntries(keep), ...pagesParam(pages.slice(0, -1)) })}` },
        'Previous page') : null,
        next ? h('a', { class: 'button', id: 'page-next',
          href: `#/jobs/all?${new URLSearchParams({ ...Object.fromEntries(keep), ...pagesParam([...pages, next]) })}` },
        'Next page') : null)));
}
