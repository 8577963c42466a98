// Protected servers: every database of a server protected, each an instance of its own, found again by
// every discovery (PUT /api/protectedServers/{name}, :discover). The list with a form, and one server.
import { call, listAll } from '../api.js';
import { asError, badge, clearFieldErrors, details, errorBox, field, fmtTime, h, link, mount, showFieldError,
  table } from '../dom.js';

const ep = encodeURIComponent;
const MEMBER_CLASSES = { Protected: 'Completed', Dropped: 'Cancelled', Skipped: 'CompletedWithWarnings', Failed: 'Failed' };
const globs = (text) => text.split(',').map((g) => g.trim()).filter(Boolean);

function discoveryCell(last) {
  if (!last) return h('span', { class: 'muted' }, 'not yet');
  return h('span', null, badge(last.status), ' ', fmtTime(last.time));
}

function protectForm(policies, ctx) {
  const input = (id, attrs = {}) => h('input', { id, name: id, autocomplete: 'off', ...attrs });
  const name = input('server-name', { required: true, placeholder: 'db1' });
  const server = input('server-host', { required: true, placeholder: 'db1.postgres.database.azure.com' });
  const port = input('server-port', { type: 'number', min: 1, max: 65535, value: 5432 });
  const secret = input('server-secret', { required: true, placeholder: 'https://kv1.vault.azure.net/secrets/db1' });
  const policy = h('select', { id: 'server-policy', required: true },
    policies.map((p) => h('option', { value: p.name }, p.name)));
  const include = input('server-include', { value: '*' });
  const exclude = input('server-exclude', { placeholder: 'scratch_*, tmp' });
  const outcome = h('div', { id: 'protect-outcome', 'aria-live': 'polite' });
  const form = h('form', { class: 'card panel', id: 'protect-server-form', 'aria-label': 'Protect a server' },
    h('h2', null, 'Protect a server'),
    h('p', { class: 'muted' }, 'Every database the secret\'s user can see is protected with the policy, each an ',
      'instance of its own, validated as usual; azure_maintenance, azure_sys and templates never. Patterns are ',
      'comma-separated globs (fnmatch: *, ?, [abc]; case-sensitive).'),
    field('Name', name, { paths: ['name'] }),
    h('div', { class: 'row' }, field('Server', server, { paths: ['body.server', 'server'] }),
      field('Port', port, { paths: ['port', 'body.port'] })),
    field('Key vault secret URI', secret, { paths: ['secretUri', 'body.secretUri'] }),
    field('Backup policy', policy, { paths: ['policyName', 'body.policyName'] }),
    field('Include patterns', include, { paths: ['includePatterns'] }),
    field('Exclude patterns', exclude, { paths: ['excludePatterns'] }),
    h('div', { class: 'row submit' }, h('button', { type: 'submit', class: 'primary', id: 'protect-server' },
      'Protect server')),
    outcome);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form);
    mount(outcome);
    const body = { server: server.value.trim(), port: Number(port.value || 5432), secretUri: secret.value.trim(),
      policyName: policy.value, includePatterns: globs(include.value).length ? globs(include.value) : ['*'],
      excludePatterns: globs(exclude.value) };
    try {
      await call(`protectedServers/${ep(name.value.trim())}`, { method: 'PUT', body });
      if (ctx.alive()) ctx.go(`#/servers/${ep(name.value.trim())}`);
    } catch (err) {
      const error = asError(err);
      if (!showFieldError(form, error)) mount(outcome, errorBox(error, 'Not protected'));
    }
  });
  return form;
}

export async function renderServers(main, _arg, _params, ctx) {
  const [servers, policies] = await Promise.all([listAll('protectedServers'), listAll('backupPolicies')]);
  if (!ctx.alive()) return;
  const rows = servers.map((s) => h('tr', { 'data-server': s.name },
    h('td', null, link(s.name, 'servers', s.name)),
    h('td', null, `${s.server}:${s.port}`),
    h('td', null, link(s.policyName, 'policies', s.policyName)),
    h('td', null, (s.includePatterns || []).join(', '),
      (s.excludePatterns || []).length ? h('small', { class: 'muted' }, ` except ${s.excludePatterns.join(', ')}`)
        : null),
    h('td', null, discoveryCell(s.lastDiscovery))));
  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, 'Protected servers'),
      h('span', { class: 'muted' }, `${servers.length} server${servers.length === 1 ? '' : 's'}`)),
    h('section', { class: 'card' },
      table(['Name', 'Server', 'Policy', 'Databases', 'Last discovery'], rows,
        'No protected servers yet: protect one below, and every database it has (or will have) is backed up.')),
    policies.length ? protectForm(policies, ctx)
      : h('p', { class: 'card' }, 'Create a backup policy first: ', link('Create backup policy', 'policies', 'new')));
}

function discoverySummary(found) {
  const kinds = ['added', 'reprotected', 'updated', 'dropped', 'skipped', 'failed'];
  const pairs = kinds.filter((k) => (found[k] || []).length).map((k) => [k, found[k].join(', ')]);
  if (found.remaining) pairs.push(['left for the next discovery', String(found.remaining)]);
  return h('div', null, h('p', null, badge(found.status), ' ', fmtTime(found.time)),
    pairs.length ? details(pairs) : h('p', { class: 'muted' }, 'Nothing changed.'),
    found.error ? errorBox(found.error, 'Discovery failed') : null);
}

export async function renderServer(main, name, _params, ctx) {
  const server = await call(`protectedServers/${ep(name)}`);
  if (!ctx.alive()) return;
  const result = h('div', { id: 'discover-outcome', 'aria-live': 'polite' });
  const discover = h('button', { type: 'button', class: 'primary', id: 'discover-now' }, 'Discover now');
  discover.addEventListener('click', async () => {
    discover.disabled = true;
    try {
      await call(`protectedServers/${ep(name)}:discover`, { method: 'POST' });
      if (ctx.alive()) await renderServer(main, name, _params, ctx);
    } catch (err) {
      discover.disabled = false;
      mount(result, errorBox(asError(err), 'Discovery failed'));
    }
  });
  const rows = (server.databases || []).map((d) => h('tr', { 'data-database': d.database },
    h('td', null, d.database),
    h('td', null, badge(MEMBER_CLASSES[d.status] || d.status, d.status)),
    h('td', null, d.instance ? link(d.instance, 'instances', d.instance) : '—'),
    h('td', null, d.reason || (d.error ? `${d.error.code}: ${d.error.message}` : ''))));
  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, `Protected server ${server.name}`), discover),
    result,
    h('section', { class: 'card' }, details([
      ['Server', `${server.server}:${server.port}`],
      ['Secret', server.secretUri],
      ['Policy', link(server.policyName, 'policies', server.policyName)],
      ['Include', (server.includePatterns || []).join(', ')],
      ['Exclude', (server.excludePatterns || []).join(', ') || '—'],
      ['Protected since', fmtTime(server.createdTime)],
    ])),
    h('section', { class: 'card' }, h('h2', null, 'Last discovery'),
      server.lastDiscovery ? discoverySummary(server.lastDiscovery) : h('p', { class: 'muted' }, 'not yet')),
    h('section', { class: 'card' }, h('h2', null, 'Databases'),
      table(['Database', 'Status', 'Backup instance', 'Why'], rows, 'No databases found on this server yet.')));
}
