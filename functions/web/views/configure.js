// Configure backup: the portal's wizard (Basics, Backup policy, Datasources, Review and configure).
// A row is validated by configuring it: POST /api/backupInstances creates the backup instance
// (ConfiguringProtection) and its validation job; it is backed up only once its readiness is Success.
import { call, callText, listAll } from '../api.js';
import { asError, badge, details, download, errorBox, field, fmtInZone, h, link, mount, table } from '../dom.js';
import { fromPolicy, ianaZone, scheduleText } from '../policy-model.js';

const ep = encodeURIComponent;
const STEPS = ['Basics', 'Backup policy', 'Datasources', 'Review and configure'];
const POLL_MS = 1500;
// The wizard's state lives as long as the page: leaving for "Create backup policy" and coming back keeps it.
let wizard = null;

function fresh(policy) {
  return { step: 0, policy: policy || '', rows: [], seq: 0, panel: false, listing: null, draft: {}, assign: false,
    assignDraft: '', outcome: null };
}

function rowKey(r) { return `${r.server}:${r.port}/${r.database}`; }

function stepNav(state, redraw) {
  return h('ol', { class: 'steps', 'aria-label': 'Configure backup steps' }, STEPS.map((name, i) => h('li', null,
    h('button', { type: 'button', class: `step ${i === state.step ? 'current' : ''}`, id: `step-${i}`,
      'aria-current': i === state.step ? 'step' : null,
      onclick: () => { state.step = i; redraw(`step-${i}`); } }, `${i + 1} ${name}`))));
}

function footer(state, redraw) {
  const prev = state.step > 0 ? h('button', { type: 'button', id: 'wizard-previous',
    onclick: () => { state.step -= 1; redraw('wizard-next'); } }, 'Previous') : null;
  const next = state.step < STEPS.length - 1 ? h('button', { type: 'button', class: 'primary', id: 'wizard-next',
    onclick: () => { state.step += 1; redraw(`step-${state.step}`); } },
  state.step === STEPS.length - 2 ? 'Review and configure' : 'Next') : null;
  return h('div', { class: 'row submit' }, prev, next);
}

function basics(health) {
  return h('section', { class: 'card' }, h('h2', null, 'Basics'),
    field('Datasource type', h('select', { id: 'datasource-type' },
      h('option', { value: 'Microsoft.DBforPostgreSQL/servers/databases' }, 'Azure Database for PostgreSQL (databases)'))),
    details([['Vault', health.vault || '—'], ['Region', health.region || '—']]),
    h('p', { class: 'muted' }, 'Each database is dumped with pg_dump by this vault and kept as recovery points in its '
      + 'storage. The server must be reachable from the vault, in the vault\'s region.'));
}

function policyStep(state, policies, redraw) {
  const select = h('select', { id: 'wizard-policy', required: true },
    h('option', { value: '' }, 'Select a backup policy'),
    policies.map((p) => h('option', { value: p.name, selected: p.name === state.policy }, p.name)));
  select.addEventListener('change', () => { state.policy = select.value; redraw('wizard-policy'); });
  const chosen = policies.find((p) => p.name === state.policy);
  const form = chosen ? fromPolicy(chosen.name, chosen.properties || chosen) : null;
  return h('section', { class: 'card' }, h('h2', null, 'Backup policy'),
    field('Backup policy', select),
    h('p', null, h('a', { class: 'button', id: 'wizard-create-policy', href: '#/policies/new?return=configure' },
      'Create backup policy')),
    form ? details([['Schedule', `${scheduleText(form)} (${form.timeZone})`],
      ['Retention', form.rules.map((r) => `${r.tag}: ${r.duration.n}${r.duration.unit}${r.archive ? ' then archive' : ''}`)
        .join(', ')]]) : h('p', { class: 'muted' }, 'Pick the policy the databases are backed up by.'));
}

async function listDatabases(state, inputs, redraw) {
  const body = { secretUri: inputs.secret.value.trim(), server: inputs.server.value.trim() || undefined,
    port: inputs.port.value ? Number(inputs.port.value) : undefined };
  state.listing = { busy: true, body };
  redraw();
  try {
    const answer = await call('servers:listDatabases', { method: 'POST', body });
    state.listing = { body, answer, checked: new Set() };
  } catch (err) {
    state.listing = { body, error: asError(err) };
  }
  redraw('list-result');
}

function listingResult(state, redraw) {
  const l = state.listing;
  if (!l) return null;
  if (l.busy) return h('p', { class: 'muted', id: 'list-result', tabindex: -1 }, 'Listing databases…');
  if (l.error) return h('div', { id: 'list-result', tabindex: -1 }, errorBox(l.error, 'Could not list databases'));
  const { server, port, value, excluded = [] } = l.answer;
  const taken = new Set(state.rows.map(rowKey));
  const items = [
    ...value.map((d) => ({ ...d, why: d.protected ? `already protected (${d.instance})`
      : taken.has(`${server}:${port}/${d.database}`) ? 'already in the list' : null })),
    ...excluded.map((d) => ({ database: d.database, why: d.reason })),
  ];
  const boxes = items.map((d, i) => {
    const box = h('input', { type: 'checkbox', id: `db-${i}`, value: d.database, disabled: Boolean(d.why),
      'data-database': d.database, checked: !d.why && l.checked.has(d.database) });
    box.addEventListener('change', () => { if (box.checked) l.checked.add(d.database); else l.checked.delete(d.database); });
    return h('li', { class: d.why ? 'disabled' : '' }, box, h('label', { for: box.id }, d.database),
      d.why ? h('small', { class: 'muted', id: `db-${i}-why` }, ` — ${d.why}`) : null);
  });
  const add = h('button', { type: 'button', class: 'primary', id: 'add-databases', onclick: () => {
    for (const database of items.filter((d) => !d.why && l.checked.has(d.database)).map((d) => d.database)) {
      state.seq += 1;
      state.rows.push({ id: state.seq, server, port, database, secretUri: l.body.secretUri, selected: false, status: 'New' });
    }
    state.panel = false;
    state.listing = null;
    state.draft = {};
    redraw('datasource-rows');
  } }, 'Add');
  return h('div', { id: 'list-result', tabindex: -1 },
    h('fieldset', { class: 'field' }, h('legend', null, `Databases on ${server}:${port}`),
      h('ul', { class: 'db-list' }, boxes)), add);
}

function addPanel(state, redraw) {
  // Typed values live in the state: the rows' live validation redraws the page meanwhile.
  const draft = state.draft;
  const input = (key, attrs) => {
    const el = h('input', { ...attrs, value: draft[key] || '', autocomplete: 'off' });
    el.addEventListener('input', () => { draft[key] = el.value; });
    return el;
  };
  const secret = input('secretUri', { id: 'add-secret', required: true, placeholder: 'https://<vault>.vault.azure.net/secrets/<name>' });
  const server = input('server', { id: 'add-server', placeholder: 'myserver.postgres.database.azure.com' });
  const port = input('port', { id: 'add-port', type: 'number', min: 1, max: 65535, placeholder: '5432', class: 'short' });
  const inputs = { server, port, secret };
  const form = h('form', { class: 'card panel', id: 'add-panel', 'aria-label': 'Select databases' },
    h('h3', null, 'Select databases'),
    field('Key vault secret (connection string of a user who may log in)', secret),
    field('Server (default: the secret\'s)', server),
    field('Port', port),
    h('button', { type: 'submit', id: 'list-databases' }, 'List databases'),
    listingResult(state, redraw));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); listDatabases(state, inputs, redraw); });
  return form;
}

export async function renderConfigure(main, _arg, params, ctx) {
  const [policies, health] = await Promise.all([listAll('backupPolicies'), call('health').catch(() => ({}))]);
  if (!ctx.alive()) return;
  if (!wizard || params.get('new')) wizard = fresh(params.get('policy'));
  if (params.get('policy')) {
    wizard.policy = params.get('policy');
    if (wizard.step === 0) wizard.step = 1;
  }
  const state = wizard;
  const timers = [];
  state.polling = false;
  ctx.onLeave(() => { for (const t of timers) clearTimeout(t); });
  const redraw = (focusId) => {
    if (!ctx.alive()) return;
    const keep = focusId || (document.activeElement && document.activeElement.id);
    const body = [basics(health), policyStep(state, policies, redraw), datasources(state, redraw, ctx, timers),
      review(state, policies, redraw)][state.step];
    mount(main,
      h('div', { class: 'page-head' }, h('h1', null, h('a', { href: '#/instances', class: 'crumb' }, 'Backup instances'),
        ' / Configure backup')),
      stepNav(state, redraw), body, footer(state, redraw));
    const el = keep && document.getElementById(keep);
    if (el) el.focus();
  };
  state.redraw = redraw;
  redraw();
}

// ---- Datasources: rows, secrets, live validation --------------------------------------------

function readinessCell(row) {
  if (row.status === 'New') return h('span', { class: 'muted' }, row.secretUri ? 'Not validated' : 'Assign a key vault secret');
  return badge(row.status);
}

async function configureRows(state, rows) {
  if (!state.policy) return;
  for (const r of rows) r.status = 'Validating';
  state.redraw();
  const added = rows.filter((r) => !r.name);
  const changed = rows.filter((r) => r.name);
  if (added.length) {
    try {
      const answer = await call('backupInstances', { method: 'POST', body: { instances: added.map((r) => ({
        server: r.server, port: r.port, database: r.database, secretUri: r.secretUri, policyName: state.policy })) } });
      answer.value.forEach((entry, i) => applyEntry(added[i], entry));
    } catch (err) {
      const entries = err.body && err.body.value;
      added.forEach((r, i) => (entries ? applyEntry(r, entries[i]) : fail(r, asError(err))));
    }
  }
  await Promise.all(changed.map(async (r) => {
    try {
      const answer = await call(`backupInstances/${ep(r.name)}`, { method: 'PUT', body: { server: r.server, port: r.port,
        database: r.database, secretUri: r.secretUri, policyName: state.policy } });
      r.jobId = answer.validationJobId || (answer.backupReadiness && answer.backupReadiness.jobId);
    } catch (err) { fail(r, asError(err)); }
  }));
  state.redraw();
}

function applyEntry(row, entry) {
  if (!entry || entry.error) { fail(row, (entry && entry.error) || { code: 'Error', message: 'no answer for this row' }); return; }
  row.name = entry.name;
  row.jobId = entry.validationJobId;
  row.status = 'Validating';
}

function fail(row, error) {
  row.status = 'Failed';
  row.error = error;
  row.refused = true; // refused before any instance existed: nothing to re-validate, fix the row and add it again
}

async function revalidate(state, rows) {
  await Promise.all(rows.map(async (r) => {
    if (!r.name) return;
    r.status = 'Validating'; r.error = null; r.job = null;
    try {
      const answer = await call(`backupInstances/${ep(r.name)}:validate`, { method: 'POST' });
      r.jobId = answer.jobId;
    } catch (err) { r.status = 'Failed'; r.error = asError(err); }
  }));
  state.redraw();
}

async function poll(state) {
  const busy = state.rows.filter((r) => r.status === 'Validating' && r.name);
  await Promise.all(busy.map(async (r) => {
    const inst = await call(`backupInstances/${ep(r.name)}`).catch(() => null);
    const ready = inst && inst.backupReadiness;
    if (!ready || ready.status === 'Validating' || (r.jobId && ready.jobId !== r.jobId)) return;
    r.status = ready.status;
    r.error = ready.error;
    r.instance = inst;
    r.job = await call(`backupJobs/${ep(ready.jobId)}`).catch(() => null);
  }));
  if (busy.length) state.redraw();
}

function grantTools(row) {
  const fmt = h('select', { id: `grant-format-${row.id}` },
    [['sql', 'SQL (psql)'], ['sh', 'Shell (sh)'], ['ps1', 'PowerShell (ps1)']].map(([v, t]) => h('option', { value: v }, t)));
  const note = h('span', { class: 'muted', 'aria-live': 'polite', id: `grant-note-${row.id}` });
  const script = () => callText(`backupInstances/${ep(row.name)}/grantScript?format=${ep(fmt.value)}`);
  return h('div', { class: 'row tools' },
    field('Grant script format', fmt),
    h('button', { type: 'button', id: `grant-download-${row.id}`, onclick: async () => {
      try { download(`grant-${row.name}.${fmt.value}`, await script()); note.textContent = 'Downloaded.'; }
      catch (err) { note.textContent = asError(err).message; }
    } }, 'Download grant script'),
    h('button', { type: 'button', id: `grant-copy-${row.id}`, onclick: async () => {
      try { await navigator.clipboard.writeText(await script()); note.textContent = 'Copied to the clipboard.'; }
      catch (err) { note.textContent = `Could not copy: ${asError(err).message}`; }
    } }, 'Copy grant script'),
    h('button', { type: 'button', id: `role-template-${row.id}`, onclick: async () => {
      try {
        download(`role-assignment-${row.name}.json`, await callText(`backupInstances/${ep(row.name)}/roleAssignmentTemplate`),
          'application/json');
        note.textContent = 'Downloaded.';
      } catch (err) { note.textContent = asError(err).message; }
    } }, 'Download role assignment template'),
    note);
}

function detailsPanel(row) {
  const job = row.job || {};
  const missing = (job.details && job.details.missingPrivileges) || [];
  return h('div', { class: 'row-details', id: `details-${row.id}` },
    h('h4', null, 'Checks'),
    table(['Check', 'Outcome', 'Notes'], (job.steps || []).map((st) => h('tr', null, h('td', null, st.name),
      h('td', null, badge(st.status)), h('td', null, (st.warnings || []).join('; ')))), 'No check ran.'),
    missing.length ? [h('h4', null, `Missing privileges (${job.details.missingPrivilegesCount || missing.length})`),
      table(['Privilege', 'On', 'Name', 'Owner'], missing.map((m) => h('tr', null, h('td', null, m.privilege),
        h('td', null, m.kind), h('td', { class: 'mono' }, m.name), h('td', null, m.owner || '—'))))] : null,
    row.jobId ? h('p', null, link('The validation job', 'jobs', row.jobId)) : null);
}

function rowView(state, row, redraw) {
  const select = h('input', { type: 'checkbox', id: `select-${row.id}`, checked: row.selected,
    'aria-label': `Select ${row.database} on ${row.server}:${row.port}` });
  select.addEventListener('change', () => { row.selected = select.checked; redraw(select.id); });
  const actions = [
    h('button', { type: 'button', class: 'small', id: `assign-${row.id}`, onclick: () => {
      for (const r of state.rows) r.selected = r === row;
      state.assign = true; state.assignDraft = row.secretUri || ''; redraw('assign-secret');
    } }, 'Assign key vault'),
    row.name ? h('button', { type: 'button', class: 'small', id: `revalidate-${row.id}`,
      onclick: () => revalidate(state, [row]) }, 'Re-validate') : null,
    row.status === 'Failed' && row.name ? h('button', { type: 'button', class: 'small', id: `view-details-${row.id}`,
      'aria-expanded': row.open ? 'true' : 'false', onclick: () => { row.open = !row.open; redraw(`view-details-${row.id}`); } },
    'View details') : null,
    !row.name ? h('button', { type: 'button', class: 'small', id: `remove-${row.id}`, onclick: () => {
      state.rows = state.rows.filter((r) => r !== row); redraw('datasource-rows');
    } }, 'Remove') : null,
  ];
  const failed = row.status === 'Failed';
  return [
    h('tr', { 'data-row': row.database, id: `row-${row.id}` },
      h('td', null, select),
      h('td', null, row.database, row.name ? h('div', { class: 'small muted' }, 'instance ', link(row.name, 'instances', row.name))
        : null),
      h('td', null, `${row.server}:${row.port}`),
      h('td', { class: 'mono' }, row.secretUri || '—'),
      h('td', { class: 'readiness', id: `readiness-${row.id}` }, readinessCell(row)),
      h('td', { class: 'row-actions' }, actions)),
    failed ? h('tr', { class: 'row-error' }, h('td', { colspan: 6 }, errorBox(row.error, 'Validation failed'),
      row.name ? grantTools(row) : null, row.open ? detailsPanel(row) : null)) : null,
  ];
}

function assignForm(state, redraw) {
  const chosen = state.rows.filter((r) => r.selected);
  const secret = h('input', { id: 'assign-secret', autocomplete: 'off', required: true,
    placeholder: 'https://<vault>.vault.azure.net/secrets/<name>', value: state.assignDraft });
  secret.addEventListener('input', () => { state.assignDraft = secret.value; });
  const form = h('form', { class: 'card panel', id: 'assign-form', 'aria-label': 'Assign key vault' },
    h('h3', null, `Assign key vault: ${chosen.length} selected`),
    field('Key vault secret URI (the connection string the backups log in with)', secret),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary', id: 'assign-apply' }, 'Assign'),
      h('button', { type: 'button', onclick: () => { state.assign = false; redraw('assign-open'); } }, 'Cancel')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const uri = secret.value.trim();
    if (!uri || !chosen.length) return;
    for (const r of chosen) { r.secretUri = uri; r.selected = false; r.error = null; r.job = null; }
    state.assign = false;
    state.assignDraft = '';
    configureRows(state, chosen.filter((r) => !r.refused || !r.name));
  });
  return form;
}

function datasources(state, redraw, ctx, timers) {
  const pending = state.rows.filter((r) => r.status === 'New' && r.secretUri);
  if (pending.length && state.policy) setTimeout(() => configureRows(state, pending), 0);
  for (const r of pending) r.status = state.policy ? 'Validating' : r.status;
  if (state.rows.some((r) => r.status === 'Validating') && !state.polling) {
    state.polling = true;
    timers.push(setTimeout(() => {
      state.polling = false;
      if (ctx.alive()) poll(state).catch(() => {});
    }, POLL_MS));
  }
  const selected = state.rows.filter((r) => r.selected).length;
  return h('section', { class: 'card' }, h('h2', null, 'Datasources'),
    state.policy ? null : errorBox({ code: 'NoPolicy', message: 'Pick a backup policy first (step 2).' }, 'Backup policy'),
    h('p', { class: 'muted' }, 'Each row is validated as soon as it has a secret: the vault reads the secret, connects, '
      + 'checks the backup privileges and finds a pg_dump for the server. Validating creates the backup instance; it is '
      + 'backed up only once its readiness is Success.'),
    h('div', { class: 'row' },
      h('button', { type: 'button', id: 'add-edit', 'aria-expanded': state.panel ? 'true' : 'false',
        onclick: () => { state.panel = !state.panel; redraw(state.panel ? 'add-secret' : 'add-edit'); } }, 'Add/Edit'),
      h('button', { type: 'button', id: 'assign-open', disabled: !selected,
        onclick: () => { state.assign = true; redraw('assign-secret'); } }, `Assign key vault${selected ? ` (${selected})` : ''}`),
      h('button', { type: 'button', id: 'revalidate-all', disabled: !state.rows.some((r) => r.name),
        onclick: () => revalidate(state, state.rows.filter((r) => r.name)) }, 'Re-validate all')),
    state.panel ? addPanel(state, redraw) : null,
    state.assign ? assignForm(state, redraw) : null,
    h('div', { id: 'datasource-rows', tabindex: -1 },
      table(['', 'Database', 'Server', 'Key vault secret', 'Backup readiness', ''], state.rows.flatMap((r) => rowView(state, r, redraw)),
        'No databases yet: "Add/Edit" lists a server\'s databases.')));
}

// ---- Review and configure ---------------------------------------------------------------------

function plan(row, policyForm) {
  if (row.status === 'Success') {
    const next = row.instance && row.instance.nextScheduledBackup;
    return `Protected by the policy: ${scheduleText(policyForm)}${next ? `; first backup ${fmtInZone(next, ianaZone(policyForm.timeZone) || 'UTC')} (${policyForm.timeZone})` : ''}`;
  }
  if (row.status === 'Failed') return 'Not backed up until it validates: grant the privileges, then Re-validate.';
  if (row.status === 'Validating') return 'Still validating.';
  return row.secretUri ? 'Configured and validated now.' : 'Skipped: no key vault secret.';
}

function review(state, policies, redraw) {
  const chosen = policies.find((p) => p.name === state.policy);
  const policyForm = chosen ? fromPolicy(chosen.name, chosen.properties || chosen) : null;
  const rows = state.rows.map((r) => h('tr', { 'data-review': r.database },
    h('td', null, r.database), h('td', null, `${r.server}:${r.port}`), h('td', null, readinessCell(r)),
    h('td', null, policyForm ? plan(r, policyForm) : '—')));
  const out = state.outcome;
  const button = h('button', { type: 'button', class: 'primary', id: 'configure-backup',
    disabled: !policyForm || !state.rows.length, onclick: () => finish(state, button) }, 'Configure backup');
  return h('section', { class: 'card' }, h('h2', null, 'Review and configure'),
    details([['Backup policy', state.policy || '—'], ['Databases', String(state.rows.length)]]),
    table(['Database', 'Server', 'Backup readiness', 'What will happen'], rows, 'No databases selected.'),
    h('div', { class: 'row submit' }, button),
    out ? h('div', { id: 'configure-outcome', tabindex: -1, role: 'status' }, h('h3', null, 'Outcome'),
      table(['Database', 'Backup instance', 'Outcome'], out.map((o) => h('tr', { 'data-outcome': o.database },
        h('td', null, o.database), h('td', null, o.name ? link(o.name, 'instances', o.name) : '—'),
        h('td', null, badge(o.status, o.text))))),
      h('p', null, h('a', { href: '#/instances', id: 'to-instances' }, 'Go to Backup instances'))) : null);
}

async function finish(state, button) {
  button.disabled = true;
  await configureRows(state, state.rows.filter((r) => r.status === 'New' && r.secretUri));
  for (let i = 0; i < 40 && state.rows.some((r) => r.status === 'Validating'); i += 1) {
    await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
    await poll(state).catch(() => {});
  }
  state.outcome = await Promise.all(state.rows.map(async (r) => {
    const inst = r.name ? await call(`backupInstances/${ep(r.name)}`).catch(() => null) : null;
    const status = inst ? inst.protectionStatus : r.status;
    const text = !inst ? `Not configured: ${(r.error && r.error.code) || 'no secret'}`
      : status === 'ProtectionConfigured' ? 'Backup configured' : `${status}: ${(r.error && r.error.code) || ''}`;
    return { database: r.database, name: r.name, status, text };
  }));
  state.redraw('configure-outcome');
}
