// The HTTP API, called with the function key the user gave (sessionStorage, this tab only).

const BASE = new URL('../', import.meta.url); // this file is /api/dashboard/api.js; the API is /api/
const KEY_ITEM = 'pgvault.functionKey';
const MAX_PAGES = 20;
/** The instances list in its largest pages (1,000 a request): a vault of 10,000 is ten requests. */
export const INSTANCES = 'backupInstances?top=1000';

export class AuthNeeded extends Error {
  constructor() { super('this vault needs its function key'); }
}

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `the API answered ${status}`);
    this.status = status;
    this.body = body;
    this.error = { code: err.code || `HTTP ${status}`, message: this.message, target: err.target,
      recommendedAction: err.recommendedAction };
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY_ITEM),
  set: (value) => sessionStorage.setItem(KEY_ITEM, value),
  forget: () => sessionStorage.removeItem(KEY_ITEM),
};

export function apiUrl(path) {
  // "./": a path such as servers:listDatabases would otherwise read as a URL of scheme "servers:".
  return new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(path) ? path : `./${String(path).replace(/^\.?\//, '')}`, BASE);
}

/** One API call; JSON in and out. Throws AuthNeeded on 401, ApiError on any other failure. */
export async function call(path, options = {}) {
  const text = await callText(path, options);
  try { return text ? JSON.parse(text) : null; } catch { return null; }
}

/** One API call answering text (a grant script, a template). Same errors as call(). */
export async function callText(path, { method = 'GET', body } = {}) {
  const url = apiUrl(path);
  if (url.origin !== location.origin) throw new Error(`refusing to send the key to ${url.origin}`);
  const headers = { Accept: 'application/json' };
  const k = key.get();
  if (k) headers['x-functions-key'] = k;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(url, {
    // same-origin: App Service Authentication's session cookie goes with the call (never elsewhere).
    method, headers, cache: 'no-store', credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) throw new AuthNeeded();
  const text = await r.text();
  if (!r.ok) {
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    throw new ApiError(r.status, data);
  }
  return text;
}

/**
 * Every item of a list, following nextLink (same origin only) up to MAX_PAGES pages. The array's
 * `truncated` property says whether more pages were left unread.
 */
export async function listAll(path) {
  const out = [];
  let next = path;
  for (let i = 0; next && i < MAX_PAGES; i += 1) {
    const page = await call(next);
    out.push(...((page && page.value) || []));
    next = page && page.nextLink ? String(page.nextLink) : null;
  }
  out.truncated = Boolean(next);
  return out;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}
