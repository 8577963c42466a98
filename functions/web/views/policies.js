// Backup policies: the list, one policy (schedule, rules, the simulator as pictures).
import { INSTANCES, call, listAll } from '../api.js';
import { badge, details, errorBox, fmtBytes, fmtInZone, h, link, mount, table, asError } from '../dom.js';
import { criterionText, durationLabel, fromPolicy, ianaZone, ruleLifecycles, scheduleText } from '../policy-model.js';
import { calendar, liveAt, tiers, tiersChart } from '../sim.js';

const ep = encodeURIComponent;
const STORE_WORDS = { VaultStore: 'Vault-standard', ArchiveStore: 'Vault-archive' };
const viewerZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

function rulesSummary(props) {
  return (props.policyRules || []).filter((r) => r.objectType === 'AzureRetentionRule').map((r) => {
    const [first] = ruleLifecycles(r);
    return `${r.name} ${durationLabel(first && first.duration)}${first && first.copyTo ? ' → archive' : ''}`;
  }).join(', ');
}

export async function renderPolicies(main, _arg, _params, ctx) {
  const [policies, instances] = await Promise.all([listAll('backupPolicies'), listAll(INSTANCES)]);
  if (!ctx.alive()) return;
  const rows = policies.map((p) => {
    const props = p.properties || p;
    const form = fromPolicy(p.name, props);
    const users = instances.filter((i) => i.policyName === p.name).length;
    return h('tr', { 'data-policy': p.name },
      h('td', null, link(p.name, 'policies', p.name)),
      h('td', null, `${scheduleText(form)} (${form.timeZone})`),
      h('td', null, rulesSummary(props)),
      h('td', { class: 'num' }, String(users)));
  });
  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Backup policies'),
      h('a', { class: 'button primary', href: '#/policies/new', id: 'create-policy' }, 'Create backup policy')),
    h('section', { class: 'card' },
      table(['Name', 'Schedule', 'Retention rules', 'Backup instances'], rows,
        'No backup policies yet: "Create backup policy" makes the first.')));
}

function scheduleCard(props, form, upcoming) {
  const zone = form.timeZone;
  const iana = ianaZone(zone) || 'UTC';
  const mine = viewerZone();
  return h('section', { class: 'card' }, h('h2', null, 'Schedule'),
    details([
      ['Backup', `${scheduleText(form)}, ${zone}${iana !== zone ? ` (${iana})` : ''}`],
      ['Datastore', 'Vault-standard (VaultStore), full backup'],
    ]),
    h('h3', { class: 'gap' }, 'Next backups'),
    table([`In the policy's zone (${zone})`, `In yours (${mine})`, 'UTC', 'Tag'], upcoming.slice(0, 6).map((b) =>
      h('tr', null, h('td', null, fmtInZone(b.time, iana)), h('td', null, fmtInZone(b.time, mine)),
        h('td', null, fmtInZone(b.time, 'UTC')), h('td', null, h('span', { class: `tagchip tag-${b.tag}` }, b.tag)))),
    'No backup scheduled.'));
}

function rulesCard(props) {
  const rows = [];
  for (const r of (props.policyRules || []).filter((x) => x.objectType === 'AzureRetentionRule')) {
    for (const l of ruleLifecycles(r)) {
      rows.push(h('tr', { 'data-rule': r.name },
        h('td', null, r.name, r.isDefault ? h('small', { class: 'muted' }, ' (default)') : null),
        h('td', null, STORE_WORDS[l.datastore] || l.datastore, h('small', { class: 'muted' }, ` ${l.datastore}`)),
        h('td', null, durationLabel(l.duration), h('small', { class: 'muted' }, ` ${l.duration}`)),
        h('td', null, l.datastore === 'VaultStore' ? criterionText(props, r.name) : 'after the move'),
        h('td', null, l.copyTo ? `${l.copyOption === 'ImmediateCopyOption' ? 'Copy at once' : 'On-expiry: move'} to `
          + `${STORE_WORDS[l.copyTo] || l.copyTo}` : 'delete')));
    }
  }
  return h('section', { class: 'card' }, h('h2', null, 'Retention rules'),
    table(['Rule', 'Datastore', 'Retention', 'Picks', 'On expiry'], rows));
}

function storageControl(series) {
  const input = h('input', { type: 'number', id: 'sim-size', min: 0.001, step: 'any', value: 10, inputmode: 'decimal' });
  const out = h('output', { for: 'sim-size', id: 'sim-storage', 'aria-live': 'polite' });
  const peak = { VaultStore: Math.max(...series.map((p) => p.VaultStore)),
    ArchiveStore: Math.max(...series.map((p) => p.ArchiveStore)) };
  const last = series[series.length - 1];
  const update = () => {
    const gib = Math.max(0, Number(input.value) || 0) * 1024 ** 3;
    out.textContent = `In a year: ${last.VaultStore} points in Vault-standard = ${fmtBytes(gib * last.VaultStore)}, `
      + `${last.ArchiveStore} in Vault-archive = ${fmtBytes(gib * last.ArchiveStore)} `
      + `(at most ${fmtBytes(gib * peak.VaultStore)} and ${fmtBytes(gib * peak.ArchiveStore)} on the way).`;
  };
  input.addEventListener('input', update);
  update();
  return h('div', { class: 'field inline' }, h('label', { for: 'sim-size' }, 'Size of one backup (GiB)'), input, out);
}

function simulatorCard(sim, from, to) {
  const backups = sim.backups || [];
  const series = tiers(backups, from, to);
  const perTag = (sim.summary && sim.summary.backupsPerTag) || {};
  return h('section', { class: 'card', id: 'simulator' }, h('h2', null, 'Simulator: the next year'),
    h('p', { class: 'muted' }, `${backups.length} backups: `,
      Object.entries(perTag).map(([t, n]) => `${n} ${t}`).join(', '), '. ',
      `Live at the end: ${liveAt(backups, to).VaultStore} in Vault-standard, ${liveAt(backups, to).ArchiveStore} `
      + 'in Vault-archive.'),
    calendar(backups, from),
    h('div', { class: 'legend' }, ['Default', 'Weekly', 'Monthly', 'Yearly'].map((t) =>
      h('span', null, h('i', { class: `swatch tag-${t}` }), t))),
    h('h3', { class: 'gap' }, 'Points per tier'),
    tiersChart(series),
    storageControl(series));
}

export async function renderPolicy(main, name, _params, ctx) {
  const from = Date.now();
  const to = from + 365 * 86400000;
  const [doc, sim, instances] = await Promise.all([
    call(`backupPolicies/${ep(name)}`),
    call(`backupPolicies/${ep(name)}:simulate`, { method: 'POST',
      body: { from: new Date(from).toISOString(), to: new Date(to).toISOString() } }).catch((err) => ({ error: asError(err) })),
    listAll(INSTANCES),
  ]);
  if (!ctx.alive()) return;
  const props = doc.properties || doc;
  const form = fromPolicy(name, props);
  const users = instances.filter((i) => i.policyName === name);
  mount(main,
    h('div', { class: 'page-head' },
      h('h1', null, h('a', { href: '#/policies', class: 'crumb' }, 'Backup policies'), ' / ',
        h('span', { id: 'policy-name' }, name)),
      h('a', { class: 'button', href: `#/policies/${ep(name)}/edit`, id: 'edit-policy' }, 'Edit'),
      h('a', { class: 'button', href: `#/configure?new=1&policy=${ep(name)}` }, 'Configure backup')),
    scheduleCard(props, form, sim.backups || []),
    rulesCard(props),
    sim.error ? errorBox(sim.error, 'Simulation failed') : simulatorCard(sim, from, to),
    h('section', { class: 'card' }, h('h2', null, 'Backup instances using it'),
      table(['Name', 'Database', 'Protection'], users.map((i) => h('tr', null,
        h('td', null, link(i.name, 'instances', i.name)), h('td', null, i.database), h('td', null, badge(i.protectionStatus)))),
      'No backup instance uses this policy.')));
}
