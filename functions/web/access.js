// What the caller may do (GET /api/me): the actions its role does not allow are hidden.
// The API refuses them anyway (403 naming the role); hiding them only keeps the page honest.
import { call } from './api.js';

// Element id -> the route (as in GET /api/me's "allowed") its action calls.
export const ACTIONS = {
  'backup-form': 'POST backupInstances/{name}:backup',
  'validate-form': 'POST backupInstances/{name}:validate',
  'restore-form': 'POST backupInstances/{name}:restore',
  'restore': 'POST backupInstances/{name}:restore',
  'verify-restore': 'POST backupInstances/{name}:verifyRestore',
  'protection-form': 'POST backupInstances/{name}:stopProtection',
  'job-cancel': 'POST backupJobs/{jobId}:cancel',
  'configure-open': 'PUT backupInstances/{name}',
  'configure-backup': 'PUT backupInstances/{name}',
  'revalidate-all': 'POST backupInstances/{name}:validate',
  'create-policy': 'PUT backupPolicies/{name}',
  'edit-policy': 'PUT backupPolicies/{name}',
  'policy-save': 'PUT backupPolicies/{name}',
  'wizard-create-policy': 'PUT backupPolicies/{name}',
};

let me = null;

/** The caller (GET /api/me), once per page; null until known. Throws as call() does. */
export async function loadMe() {
  if (!me) me = await call('me');
  return me;
}

export function forgetMe() { me = null; }

/** Hide, under root, every action the caller may not take. */
export function applyRoles(root) {
  if (!me) return;
  const allowed = new Set(me.allowed);
  for (const [id, routeName] of Object.entries(ACTIONS)) {
    const el = root.querySelector(`#${id}`);
    if (el && !allowed.has(routeName)) {
      el.hidden = true;
      if ('disabled' in el) el.disabled = true;
    }
  }
}

/** The header's "who": name and highest role, or the function key. */
export function whoText() {
  if (!me) return '';
  if (me.functionKey) return 'function key (all roles)';
  return `${me.name} · ${me.roles.length ? me.roles.join(', ') : 'no pgvault role'}`;
}
