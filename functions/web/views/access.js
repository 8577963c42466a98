// The audit trail (every mutating call) and approval requests of critical operations.
import { call, listAll } from '../api.js';
import { asError, badge, errorBox, fmtTime, h, mount, table } from '../dom.js';

const ep = encodeURIComponent;

export async function renderAudit(main, _arg, params, ctx) {
  const days = params.get('days') || '7';
  const records = await listAll(`auditLog?days=${ep(days)}&top=200`);
  if (!ctx.alive()) return;
  const rows = records.map((r) => h('tr', { 'data-audit': r.id },
    h('td', null, fmtTime(r.time)),
    h('td', null, r.principal),
    h('td', null, `${r.method} ${r.route}`),
    h('td', null, r.target || ''),
    h('td', null, badge(r.outcome.status < 400 ? 'Completed' : 'Failed', String(r.outcome.status)),
      r.outcome.errorCode ? h('small', { class: 'muted' }, ` ${r.outcome.errorCode}`) : null),
    h('td', null, r.body == null ? '' : h('code', null, JSON.stringify(r.body)))));
  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Audit log'),
      h('span', { class: 'muted' }, `the last ${days} days${records.truncated ? ' (more pages not shown)' : ''}`)),
    h('section', { class: 'card' },
      table(['Time', 'Who', 'Call', 'Target', 'Outcome', 'Body (redacted)'], rows, 'No mutating call in this period.')));
}

export async function renderApprovals(main, _arg, _params, ctx) {
  const [page, me] = await Promise.all([call('approvals?days=30'), call('me')]);
  if (!ctx.alive()) return;
  const guard = me.allowed.includes('POST approvals/{id}:approve');
  const rows = page.value.map((a) => {
    const out = h('span', { class: 'muted', id: `approval-result-${a.id}` });
    const approve = guard && a.status === 'Pending' && a.requestedById !== me.id
      ? h('button', { type: 'button', class: 'danger', id: `approve-${a.id}`, onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          await call(`approvals/${ep(a.id)}:approve`, { method: 'POST' });
          // Drawn again: the row now says Executed (or Failed) and who approved it.
          await renderApprovals(main, _arg, _params, ctx);
        } catch (err) {
          out.replaceChildren(errorBox(asError(err), 'Refused'));
          ev.target.disabled = false;
        }
      } }, 'Approve') : null;
    return h('tr', { 'data-approval': a.id },
      h('td', null, fmtTime(a.created)),
      h('td', null, a.operation, h('br', null), h('small', { class: 'muted' }, a.reason)),
      h('td', null, a.target),
      h('td', null, a.requestedBy),
      h('td', null, badge(a.status === 'Executed' ? 'Completed' : a.status === 'Pending' ? 'InProgress' : 'Failed', a.status),
        a.approvedBy ? h('small', { class: 'muted' }, ` by ${a.approvedBy}`) : null,
        a.resultStatus ? h('small', { class: 'muted' }, ` (${a.resultStatus})`) : null),
      h('td', null, fmtTime(a.expires)),
      h('td', null, approve, out));
  });
  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Approvals'),
      h('span', { class: 'muted' }, me.multiUserAuthorization ? 'critical operations wait for a Backup Guard'
        : 'multi-user authorization is off')),
    h('section', { class: 'card' },
      table(['Requested', 'Operation', 'Target', 'By', 'Status', 'Expires', ''], rows, 'No approval request.')));
}
