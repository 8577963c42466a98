// The policy simulator as pictures: a year's calendar of backups coloured by tag, and points per
// tier over time with the storage they take. Numbers and dates only; labels go in as text nodes.
import { h, s } from './dom.js';

const DAY = 86400000;
const TAGS = ['Default', 'Weekly', 'Monthly', 'Yearly'];
const tagClass = (t) => `tag-${TAGS.includes(t) ? t : 'Other'}`;
const utcDay = (ms) => Math.floor(ms / DAY) * DAY;

/** One column per week, one row per weekday; a day with a backup is coloured by its tag. */
export function calendar(backups, from) {
  const start = utcDay(from) - new Date(utcDay(from)).getUTCDay() * DAY; // the Sunday on or before
  const byDay = new Map(backups.map((b) => [utcDay(new Date(b.time).getTime()), b]));
  const cell = 15; const left = 34; const top = 18;
  const weeks = 54;
  const svg = s('svg', { viewBox: `0 0 ${left + weeks * cell + 44} ${top + 7 * cell + 4}`, class: 'chart calendar',
    role: 'img', 'aria-label': `Calendar of the next year's ${backups.length} backups, coloured by retention tag` });
  ['Sun', 'Tue', 'Thu', 'Sat'].forEach((d, i) => svg.append(s('text', { x: left - 6, y: top + (i * 2 + 1) * cell - 4,
    class: 'axis', 'text-anchor': 'end' }, d)));
  let lastMonth = -1;
  for (let w = 0; w < weeks; w += 1) {
    const weekStart = start + w * 7 * DAY;
    const month = new Date(weekStart).getUTCMonth();
    const endsMonth = new Date(weekStart + 7 * DAY).getUTCMonth() !== month; // a first column mostly of last month
    if (month !== lastMonth && !(w === 0 && endsMonth)) {
      svg.append(s('text', { x: left + w * cell, y: top - 6, class: 'axis' },
        new Date(weekStart).toISOString().slice(0, 7)));
    }
    lastMonth = w === 0 && endsMonth ? -1 : month;
    for (let d = 0; d < 7; d += 1) {
      const day = weekStart + d * DAY;
      const b = byDay.get(day);
      svg.append(s('rect', { x: left + w * cell, y: top + d * cell, width: cell - 3, height: cell - 3, rx: 2,
        class: b ? `cal ${tagClass(b.tag)}` : 'cal none', 'data-day': new Date(day).toISOString().slice(0, 10),
        'data-tag': b ? b.tag : null },
      b ? s('title', null, `${b.time} · ${b.tag}`) : null));
    }
  }
  return svg;
}

/** How many points live in each datastore at instant t. */
export function liveAt(backups, t) {
  let vault = 0; let archive = 0;
  for (const b of backups) {
    const time = new Date(b.time).getTime();
    if (time <= t && t < new Date(b.vaultExpiry).getTime()) vault += 1;
    if (b.archiveMove && new Date(b.archiveMove).getTime() <= t && t < new Date(b.archiveExpiry).getTime()) archive += 1;
  }
  return { VaultStore: vault, ArchiveStore: archive };
}

/** Points per datastore, week by week from `from` to `to`. */
export function tiers(backups, from, to) {
  const out = [];
  for (let t = from; t <= to; t += 7 * DAY) out.push({ t, ...liveAt(backups, t) });
  return out;
}

/** Two lines: VaultStore and ArchiveStore points over time. */
export function tiersChart(series) {
  const W = 1100; const H = 220; const left = 40; const bottom = 26; const top = 10;
  const max = Math.max(1, ...series.map((p) => Math.max(p.VaultStore, p.ArchiveStore)));
  const t0 = series[0].t; const t1 = series[series.length - 1].t;
  const x = (t) => left + ((W - left - 10) * (t - t0)) / Math.max(1, t1 - t0);
  const y = (v) => H - bottom - ((H - bottom - top) * v) / max;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
    'aria-label': 'Recovery points per datastore over the next year' });
  const ticks = Math.min(4, max);
  for (let i = 0; i <= ticks; i += 1) {
    const v = Math.round((max * i) / ticks);
    svg.append(s('line', { x1: left, x2: W - 10, y1: y(v), y2: y(v), class: 'gridline' }),
      s('text', { x: left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, String(v)));
  }
  for (let i = 0; i < series.length; i += 9) {
    svg.append(s('text', { x: x(series[i].t), y: H - 8, class: 'axis', 'text-anchor': 'middle' },
      new Date(series[i].t).toISOString().slice(0, 7)));
  }
  for (const [storeName, cls] of [['VaultStore', 'line-vault'], ['ArchiveStore', 'line-archive']]) {
    svg.append(s('polyline', { class: `series ${cls}`, fill: 'none',
      points: series.map((p) => `${x(p.t).toFixed(1)},${y(p[storeName]).toFixed(1)}`).join(' ') },
    s('title', null, `${storeName}: up to ${Math.max(...series.map((p) => p[storeName]))} points`)));
  }
  return h('div', { class: 'chart-wrap' }, svg, h('div', { class: 'legend' },
    h('span', null, h('i', { class: 'swatch line-vault' }), 'Vault-standard (VaultStore)'),
    h('span', null, h('i', { class: 'swatch line-archive' }), 'Vault-archive (ArchiveStore)')));
}
