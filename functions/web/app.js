// The dashboard's entry: hash routes, the key prompt, the header.
import { AuthNeeded, call, key } from './api.js';
import { errorBox, h, mount } from './dom.js';
import { renderConfigure } from './views/configure.js';
import { renderInstance } from './views/instance.js';
import { renderInstances } from './views/instances.js';
import { renderJob } from './views/job.js';
import { renderAllJobs, renderJobs } from './views/jobs.js';
import { renderPolicies, renderPolicy } from './views/policies.js';
import { renderPolicyForm } from './views/policy-form.js';
import { renderServer, renderServers } from './views/servers.js';

const main = document.getElementById('main');
const forget = document.getElementById('forget-key');
let current = { cleanup: null, seq: 0 };

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, search = ''] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(search) };
}

function pick(parts) {
  const [section, arg, sub] = parts;
  if (section === 'instances' && arg) return ['instances', renderInstance, arg];
  if (section === 'instances') return ['instances', renderInstances, null];
  if (section === 'configure') return ['instances', renderConfigure, null];
  if (section === 'servers' && arg) return ['servers', renderServer, arg];
  if (section === 'servers') return ['servers', renderServers, null];
  if (section === 'policies' && arg === 'new') return ['policies', renderPolicyForm, null];
  if (section === 'policies' && arg && sub === 'edit') return ['policies', renderPolicyForm, arg];
  if (section === 'policies' && arg) return ['policies', renderPolicy, arg];
  if (section === 'policies') return ['policies', renderPolicies, null];
  if (section === 'jobs' && arg === 'all') return ['jobs', renderAllJobs, null];
  if (section === 'jobs' && arg) return ['jobs', renderJob, arg];
  return ['jobs', renderJobs, null];
}

const TITLES = { jobs: 'Jobs', instances: 'Backup instances', servers: 'Protected servers', policies: 'Backup policies' };

function keyForm(retry, refused) {
  const input = h('input', { type: 'password', id: 'function-key', name: 'key', autocomplete: 'off',
    required: true, placeholder: 'function key' });
  const form = h('form', { class: 'card key-form', id: 'key-form' },
    h('h1', null, 'Function key needed'),
    refused ? h('p', { class: 'error-box', id: 'key-refused' }, 'The vault refused that key. Check it and try again.')
      : null,
    h('p', null, 'This vault answers only requests that carry its function key (x-functions-key). ',
      'The key stays in this browser tab (sessionStorage) and goes only to this vault\'s API.'),
    h('label', { for: 'function-key' }, 'Function key'),
    input,
    h('button', { type: 'submit', class: 'primary' }, 'Use key'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    key.set(input.value.trim());
    retry();
  });
  return form;
}

async function route() {
  if (current.cleanup) current.cleanup();
  const seq = current.seq + 1;
  current = { cleanup: null, seq };
  const { parts, params } = parseHash();
  const [section, render, arg] = pick(parts);
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === section);
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[section]} · pgvault`;
  forget.hidden = !key.get();
  const ctx = {
    alive: () => current.seq === seq,
    onLeave: (fn) => { current.cleanup = fn; },
    go: (hash) => { location.hash = hash; },
  };
  try {
    await render(main, arg, params, ctx);
  } catch (err) {
    if (!ctx.alive()) return;
    if (err instanceof AuthNeeded) {
      const refused = Boolean(key.get());
      key.forget();
      forget.hidden = true;
      mount(main, keyForm(route, refused));
      document.getElementById('function-key').focus();
    } else {
      mount(main, errorBox(err.error || { code: 'Error', message: String(err.message || err) }, 'Could not load'));
    }
  }
}

async function showVault() {
  try {
    const health = await call('health');
    mount(document.getElementById('vault'), `vault ${health.vault || '?'} · ${health.region || ''}`);
  } catch {
    mount(document.getElementById('vault'), 'vault unreachable');
  }
}

forget.addEventListener('click', () => { key.forget(); route(); });
document.querySelector('.skip').addEventListener('click', (ev) => { ev.preventDefault(); main.focus(); });
window.addEventListener('hashchange', route);
showVault();
route();
