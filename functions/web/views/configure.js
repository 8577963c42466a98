// Configure backup: the portal's wizard (Basics, Backup policy, Datasources, Review and configure).
// A row is validated without being configured (POST /api/backupInstances:validateForBackup: a Validate
// job, no instance stored); only "Configure backup" creates backup instances, of the rows whose
// readiness is Success, so a wizard left half-way leaves no unprotected instance behind.
import { call, callText, listAll } from '../api.js';
import { asError, badge, details, download, errorBox, field, h, link, mount, table } from '../dom.js';
import { fromPolicy, scheduleText } from '../policy-model.js';

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

function entryOf(state, r) {
  return { server: r.server, port: r.port, database: r.database, secretUri: r.secretUri, policyName: state.policy };
}

/** Validate rows without configuring them: each a validateForBackup job; nothing is stored but the job. */
async function validateRows(state, rows) {
  if (!state.policy) return;
  for (const r of rows) { r.status = 'Validating'; r.error = null; r.job = null; r.jobId = null; r.open = false; }
  state.redraw();
  await Promise.all(rows.map(async (r) => {
    try {
      const answer = await call('backupInstances:validateForBackup', { method: 'POST', body: entryOf(state, r) });
      r.jobId = answer.jobId;
    } catch (err) {
      // Refused at once (already protected, a secret for another server...): what configure would say.
      r.status = 'Failed'; r.error = asError(err);
    }
  }));
  state.redraw();
}

async function poll(state) {
  const busy = state.rows.filter((r) => r.status === 'Validating' && r.jobId);
  await Promise.all(busy.map(async (r) => {
    const job = await call(`backupJobs/${ep(r.jobId)}`).catch(() => null);
    if (!job || job.status === 'InProgress' || job.jobId !== r.jobId) return;
    r.job = job;
    r.status = (job.details && job.details.backupReadiness) || (job.status === 'Completed' ? 'Success' : 'Failed');
    r.error = job.error;
  }));
  if (busy.length) state.redraw();
}

/** Copy `text`; where the clipboard is not allowed, show it selected in a box to copy by hand. */
async function copyText(text, note, slot) {
  try {
    await navigator.clipboard.writeText(text);
    note.textContent = 'Copied to the clipboard.';
    slot.replaceChildren();
  } catch (err) {
    const box = h('textarea', { class: 'mono copy-box', readonly: true, rows: 6, id: `${slot.id}-text`,
      'aria-label': 'Grant script (select it and copy)' }, text);
    slot.replaceChildren(box);
    box.select();
    note.textContent = `The browser refused the clipboard (${asError(err).message}): the script is selected below.`;
  }
}

function grantTools(row) {
  const links = (row.job && row.job.links) || {};
  const fmt = h('select', { id: `grant-format-${row.id}` },
    [['sql', 'SQL (psql)'], ['sh', 'Shell (sh)'], ['ps1', 'PowerShell (ps1)']].map(([v, t]) => h('option', { value: v }, t)));
  const note = h('span', { class: 'muted', 'aria-live': 'polite', id: `grant-note-${row.id}` });
  const slot = h('div', { id: `grant-copy-slot-${row.id}` });
  const file = `${row.server.split('.')[0]}-${row.database}`;
  const script = () => callText(`${links.grantScript.replace(/^\/api\//, '')}?format=${ep(fmt.value)}`);
  return h('div', { class: 'tools' }, h('div', { class: 'row' },
    field('Grant script format', fmt),
    h('button', { type: 'button', id: `grant-download-${row.id}`, onclick: async () => {
      try { download(`grant-${file}.${fmt.value}`, await script()); note.textContent = 'Downloaded.'; }
      catch (err) { note.textContent = asError(err).message; }
    } }, 'Download grant script'),
    h('button', { type: 'button', id: `grant-copy-${row.id}`, onclick: async () => {
      try { await copyText(await script(), note, slot); } catch (err) { note.textContent = asError(err).message; }
    } }, 'Copy grant script'),
    h('button', { type: 'button', id: `role-template-${row.id}`, onclick: async () => {
      try {
        download(`role-assignment-${file}.json`, await callText(links.roleAssignmentTemplate.replace(/^\/api\//, '')),
          'application/json');
        note.textContent = 'Downloaded.';
      } catch (err) { note.textContent = asError(err).message; }
    } }, 'Download role assignment template'),
    note), slot);
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
  const actions = row.name ? [] : [
    h('button', { type: 'button', class: 'small', id: `assign-${row.id}`, onclick: () => {
      for (const r of state.rows) r.selected = r === row;
      state.assign = true; state.assignDraft = row.secretUri || ''; redraw('assign-secret');
    } }, 'Assign key vault'),
    row.secretUri && row.status !== 'Validating' ? h('button', { type: 'button', class: 'small', id: `revalidate-${row.id}`,
      onclick: () => validateRows(state, [row]) }, 'Re-validate') : null,
    row.status === 'Failed' && row.job ? h('button', { type: 'button', class: 'small', id: `view-details-${row.id}`,
      'aria-expanded': row.open ? 'true' : 'false', onclick: () => { row.open = !row.open; redraw(`view-details-${row.id}`); } },
    'View details') : null,
    h('button', { type: 'button', class: 'small', id: `remove-${row.id}`, onclick: () => {
      state.rows = state.rows.filter((r) => r !== row); redraw('datasource-rows');
    } }, 'Remove'),
  ];
  const failed = row.status === 'Failed' && !row.name;
  return [
    h('tr', { 'data-row': row.database, id: `row-${row.id}` },
      h('td', null, select),
      h('td', null, row.database, row.name ? h('div', { class: 'small muted' }, 'instance ', link(row.name, 'instances', row.name))
        : null),
      h('td', null, `${row.server}:${row.port}`),
      h('td', { class: 'mono' }, row.secretUri || '—'),
      h('td', { class: 'readiness', id: `readiness-${row.id}` }, readinessCell(row)),
      h('td', null, h('div', { class: 'row-actions' }, actions))),
    failed ? h('tr', { class: 'row-error' }, h('td', { colspan: 6 }, errorBox(row.error, 'Validation failed'),
      row.job && row.job.links && row.job.links.grantScript ? grantTools(row) : null, row.open ? detailsPanel(row) : null))
      : null,
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
    const open = chosen.filter((r) => !r.name); // a configured row keeps its secret: change it on its instance
    for (const r of open) { r.secretUri = uri; r.selected = false; }
    state.assign = false;
    state.assignDraft = '';
    validateRows(state, open);
  });
  return form;
}

function datasources(state, redraw, ctx, timers) {
  const pending = state.rows.filter((r) => r.status === 'New' && r.secretUri);
  if (pending.length && state.policy) setTimeout(() => validateRows(state, pending), 0);
  for (const r of pending) r.status = state.policy ? 'Validating' : r.status;
  if (state.rows.some((r) => r.status === 'Validating') && !state.polling) {
    state.polling = true;
    timers.push(setTimeout(() => {
      state.polling = false;
      if (ctx.alive()) poll(state).catch(() => {});
    }, POLL_MS));
  }
  const selected = state.rows.filter((r) => r.selected).length;
  const open = state.rows.filter((r) => r.secretUri && !r.name && r.status !== 'Validating');
  return h('section', { class: 'card' }, h('h2', null, 'Datasources'),
    state.policy ? null : errorBox({ code: 'NoPolicy', message: 'Pick a backup policy first (step 2).' }, 'Backup policy'),
    h('p', { class: 'muted' }, 'Each row is validated as soon as it has a secret: the vault reads the secret, connects, '
      + 'checks the backup privileges and finds a pg_dump for the server. Validating stores nothing: only "Configure '
      + 'backup" creates the backup instances, of the rows whose readiness is Success.'),
    h('div', { class: 'row' },
      h('button', { type: 'button', id: 'add-edit', 'aria-expanded': state.panel ? 'true' : 'false',
        onclick: () => { state.panel = !state.panel; redraw(state.panel ? 'add-secret' : 'add-edit'); } }, 'Add/Edit'),
      h('button', { type: 'button', id: 'assign-open', disabled: !selected,
        onclick: () => { state.assign = true; redraw('assign-secret'); } }, `Assign key vault${selected ? ` (${selected})` : ''}`),
      h('button', { type: 'button', id: 'revalidate-all', disabled: !open.length,
        onclick: () => validateRows(state, open) }, 'Re-validate all')),
    state.panel ? addPanel(state, redraw) : null,
    state.assign ? assignForm(state, redraw) : null,
    h('div', { id: 'datasource-rows', tabindex: -1 },
      table(['', 'Database', 'Server', 'Key vault secret', 'Backup readiness', ''], state.rows.flatMap((r) => rowView(state, r, redraw)),
        'No databases yet: "Add/Edit" lists a server\'s databases.', { stack: true })));
}

// ---- Review and configure ---------------------------------------------------------------------

function plan(row, policyForm) {
  if (row.name) return `Configured as ${row.name}.`;
  if (row.status === 'Success') return `Protected by the policy: ${scheduleText(policyForm)} (${policyForm.timeZone})`;
  if (row.status === 'Failed') return 'Not configured: its validation failed. Grant what is missing, then Re-validate.';
  if (row.status === 'Validating') return 'Still validating: configured only if it succeeds.';
  return row.secretUri ? 'Not validated yet.' : 'Skipped: no key vault secret.';
}

function review(state, policies, redraw) {
  const chosen = policies.find((p) => p.name === state.policy);
  const policyForm = chosen ? fromPolicy(chosen.name, chosen.properties || chosen) : null;
  const rows = state.rows.map((r) => h('tr', { 'data-review': r.database },
    h('td', null, r.database), h('td', null, `${r.server}:${r.port}`), h('td', null, readinessCell(r)),
    h('td', null, policyForm ? plan(r, policyForm) : '—')));
  const out = state.outcome;
  const ready = state.rows.some((r) => r.status === 'Success' && !r.name);
  const button = h('button', { type: 'button', class: 'primary', id: 'configure-backup',
    disabled: !policyForm || !ready, onclick: () => finish(state, button) }, 'Configure backup');
  return h('section', { class: 'card' }, h('h2', null, 'Review and configure'),
    details([['Backup policy', state.policy || '—'], ['Databases', String(state.rows.length)]]),
    table(['Database', 'Server', 'Backup readiness', 'What will happen'], rows, 'No databases selected.', { stack: true }),
    h('div', { class: 'row submit' }, button),
    out ? h('div', { id: 'configure-outcome', tabindex: -1, role: 'status' }, h('h3', null, 'Outcome'),
      table(['Database', 'Backup instance', 'Outcome'], out.map((o) => h('tr', { 'data-outcome': o.database },
        h('td', null, o.database), h('td', null, o.name ? link(o.name, 'instances', o.name) : '—'),
        h('td', null, badge(o.status, o.text)))), 'Nothing configured.', { stack: true }),
      h('p', null, h('a', { href: '#/instances', id: 'to-instances' }, 'Go to Backup instances'))) : null);
}

const pause = () => new Promise((resolve) => { setTimeout(resolve, POLL_MS); });

/** Configure backup: one configure-many request for the rows whose readiness is Success, then each outcome. */
async function finish(state, button) {
  button.disabled = true;
  const ready = state.rows.filter((r) => r.status === 'Success' && !r.name);
  const refused = new Map();
  if (ready.length) {
    let entries;
    try {
      entries = (await call('backupInstances', { method: 'POST',
        body: { instances: ready.map((r) => entryOf(state, r)) } })).value;
    } catch (err) {
      entries = (err.body && err.body.value) || ready.map(() => ({ error: asError(err) }));
    }
    ready.forEach((r, i) => {
      const entry = entries[i] || { error: { code: 'Error', message: 'no answer for this row' } };
      if (entry.error) refused.set(r, entry.error); else r.name = entry.name;
    });
  }
  // Each new instance validates once more (the same checks): wait for its readiness.
  const configured = state.rows.filter((r) => r.name);
  const instances = new Map();
  for (let i = 0; i < 40; i += 1) {
    const got = await Promise.all(configured.map((r) => call(`backupInstances/${ep(r.name)}`).catch(() => null)));
    configured.forEach((r, k) => instances.set(r, got[k]));
    if (!got.some((x) => x && x.backupReadiness && x.backupReadiness.status === 'Validating')) break;
    await pause();
  }
  state.outcome = state.rows.map((r) => {
    const inst = instances.get(r);
    if (inst) {
      const status = inst.protectionStatus;
      const err = inst.backupReadiness && inst.backupReadiness.error;
      return { database: r.database, name: r.name, status,
        text: status === 'ProtectionConfigured' ? 'Backup configured' : `${status}${err ? `: ${err.code}` : ''}` };
    }
    const error = refused.get(r) || (r.status !== 'Success' && r.error);
    const why = refused.has(r) ? error.code : `readiness ${r.status}${error ? ` (${error.code})` : ''}`;
    return { database: r.database, name: null, status: 'Failed', text: `Not configured: ${why}` };
  });
  state.redraw('configure-outcome');
}
