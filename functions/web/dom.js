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

/** "<1 ms", "240 ms", "4.2 s", "38 s", "2 min 5 s", "1 h 4 min": a sub-second job is never "0 s". */
export function fmtDuration(seconds) {
  const v = Number(seconds);
  if (seconds === null || seconds === undefined || seconds === '' || !Number.isFinite(v) || v < 0) return '—';
  if (v < 0.9995) {
    const ms = Math.round(v * 1000);
    return ms < 1 ? '<1 ms' : `${ms} ms`;
  }
  if (v < 9.95) return `${v.toFixed(1)} s`;
  const s = Math.round(v);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A coloured label for a status; the class comes from a fixed list, never from the data. */
const STATUS_CLASSES = {
  Completed: 'ok', Success: 'ok', ProtectionConfigured: 'ok',
  CompletedWithWarnings: 'warn', Validating: 'busy', InProgress: 'busy', ConfiguringProtection: 'busy',
  Failed: 'bad', ConfiguringProtectionFailed: 'bad', Corrupted: 'bad', Available: 'ok',
  Cancelled: 'off', ProtectionStopped: 'off', SoftDeleted: 'warn',
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

/**
 * A table of `rows` under `headers`. With `stack`, on a narrow screen each row becomes a block of
 * "header: value" lines (every cell labelled by its column) instead of a table scrolled sideways,
 * whose squeezed columns would make tall rows of one word per line.
 */
export function table(headers, rows, empty = 'Nothing here yet.', { stack = false } = {}) {
  if (!rows.length) return h('p', { class: 'muted empty' }, empty);
  if (stack) {
    for (const tr of rows.flat(Infinity)) {
      if (!(tr instanceof Element)) continue;
      [...tr.children].forEach((td, i) => {
        if (headers[i] && !td.hasAttribute('colspan') && !td.hasAttribute('data-label')) td.setAttribute('data-label', headers[i]);
      });
    }
  }
  // Focusable: on a narrow screen the table scrolls sideways, and the keyboard must reach that too.
  return h('div', { class: `table-wrap${stack ? ' stack' : ''}`, tabindex: 0, role: 'region',
    'aria-label': `Table: ${headers.filter(Boolean).slice(0, 3).join(', ')}` }, h('table', { class: 'grid' },
    h('thead', null, h('tr', null, headers.map((x) => h('th', { scope: 'col' }, x || h('span', { class: 'sr-only' }, 'Actions'))))),
    h('tbody', null, rows)));
}

/** "2026-11-25 14:03:07 UTC": a job's times, to the second. */
export function fmtTimeSec(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${fmtTime(iso).slice(0, 16)}:${pad(d.getUTCSeconds())} UTC`;
}

/** An instant as the wall clock of `zone` (IANA) shows it: "Mon 2026-11-30 22:00". */
export function fmtInZone(iso, zone) {
  const d = new Date(iso);
  try {
    const parts = Object.fromEntries(new Intl.DateTimeFormat('en-GB', { timeZone: zone, weekday: 'short',
      year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
      .formatToParts(d).map((p) => [p.type, p.value]));
    return `${parts.weekday} ${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
  } catch {
    return fmtTime(iso);
  }
}

let fieldSeq = 0;
/** A labelled control with a slot for its error; `paths` are the API targets it answers for. */
export function field(label, control, { paths = [], hint = null } = {}) {
  if (!control.id) { fieldSeq += 1; control.id = `f${fieldSeq}`; }
  const error = h('p', { class: 'field-error', id: `${control.id}-error`, hidden: true });
  const hintEl = hint ? h('p', { class: 'hint muted', id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field', 'data-paths': paths.join(' ') || null },
    h('label', { for: control.id }, label), control, hintEl, error);
}

/** A group of controls (checkboxes, a duration) under one legend, with an error slot. */
export function group(legend, controls, { paths = [], cls = '' } = {}) {
  fieldSeq += 1;
  const error = h('p', { class: 'field-error', id: `g${fieldSeq}-error`, hidden: true });
  return h('fieldset', { class: `field ${cls}`, 'data-paths': paths.join(' ') || null },
    h('legend', null, legend), controls, error);
}

/** Clear every field error inside root. */
export function clearFieldErrors(root) {
  for (const el of root.querySelectorAll('.field-error')) { el.hidden = true; el.textContent = ''; }
  for (const el of root.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

/**
 * Show the API's error beside the field whose path is the longest prefix of its target; returns
 * false when no field answers for it (the caller shows it as a box).
 */
export function showFieldError(root, error) {
  const target = String((error && error.target) || '');
  if (!target) return false;
  let best = null; let bestLen = -1;
  for (const el of root.querySelectorAll('[data-paths]')) {
    for (const p of el.dataset.paths.split(' ')) {
      if (p && (target === p || target.startsWith(`${p}.`) || target.startsWith(`${p}[`)) && p.length > bestLen) {
        best = el; bestLen = p.length;
      }
    }
  }
  if (!best) return false;
  const slot = best.querySelector(':scope > .field-error');
  slot.replaceChildren(h('strong', null, error.code || 'Error'), ': ', error.message || '',
    error.recommendedAction ? h('span', { class: 'action' }, ' What to do: ', error.recommendedAction) : null);
  slot.hidden = false;
  const control = best.querySelector('input, select, textarea');
  if (control) {
    control.setAttribute('aria-invalid', 'true');
    control.setAttribute('aria-describedby', [control.getAttribute('aria-describedby'), slot.id].filter(Boolean).join(' '));
    control.focus();
  }
  return true;
}

/** Offer `text` as a file download (a Blob URL: nothing is sent anywhere). */
export function download(filename, text, type = 'text/plain') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** The message of anything thrown, in the public error shape. */
export function asError(err) {
  return (err && err.error) || { code: 'Error', message: String((err && err.message) || err) };
}
