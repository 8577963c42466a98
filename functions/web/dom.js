// Building the page from data without ever parsing data as HTML: elements are created one by
// one and every piece of text goes in through text nodes, never parsed as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.setAttribute('class', value);
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  return el;
}

/** An HTML element: h('a', {href: '#/x', class: 'y'}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** An SVG element, same calling convention as h(). */
export function s(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

/** Replace everything inside el with children. */
export function mount(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A link to a page of the dashboard; every part of the route is URL-encoded. */
export function link(text, ...parts) {
  return h('a', { href: '#/' + parts.map(encodeURIComponent).join('/') }, text);
}

const pad = (n) => String(n).padStart(2, '0');

/** "2026-11-25 14:03 UTC" (the vault works in UTC; so does this page). */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} `
    + `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
}

/** "in 3 h", "5 min ago". */
export function fmtRelative(iso, now = Date.now()) {
  if (!iso) return '';
  const diff = new Date(iso).getTime() - now;
  const abs = Math.abs(diff);
  const units = [[86400000, 'd'], [3600000, 'h'], [60000, 'min'], [1000, 's']];
  for (const [ms, unit] of units) {
    if (abs >= ms || unit === 's') {
      const n = Math.round(abs / ms);
      return diff >= 0 ? `in ${n} ${unit}` : `${n} ${unit} ago`;
    }
  }
  return '';
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.round(Number(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A coloured label for a status; the class comes from a fixed list, never from the data. */
const STATUS_CLASSES = {
  Completed: 'ok', Success: 'ok', ProtectionConfigured: 'ok',
  CompletedWithWarnings: 'warn', Validating: 'busy', InProgress: 'busy', ConfiguringProtection: 'busy',
  Failed: 'bad', ConfiguringProtectionFailed: 'bad', Corrupted: 'bad', Available: 'ok',
  Cancelled: 'off', ProtectionStopped: 'off',
};
export function badge(status, label = status) {
  const cls = STATUS_CLASSES[status] || 'off';
  return h('span', { class: `badge ${cls}`, title: status }, label ?? '—');
}

/** The public error shape shown as a box: code, message, what to do. */
export function errorBox(error, title = 'Error') {
  if (!error) return null;
  return h('div', { class: 'error-box', role: 'alert' },
    h('strong', null, title, ': ', error.code || 'Error'),
    h('p', null, error.message || ''),
    error.target ? h('p', { class: 'muted' }, 'Field: ', error.target) : null,
    error.recommendedAction ? h('p', { class: 'action' }, 'What to do: ', error.recommendedAction) : null);
}

/** A definition list from [label, value] pairs. */
export function details(pairs) {
  return h('dl', { class: 'details' },
    pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v ?? '—')]));
}

export function table(headers, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'muted empty' }, empty);
  return h('table', { class: 'grid' },
    h('thead', null, h('tr', null, headers.map((x) => h('th', null, x)))),
    h('tbody', null, rows));
}
