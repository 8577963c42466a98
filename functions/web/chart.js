// Charts drawn as inline SVG from numbers only (labels go in through text nodes).
import { h, s } from './dom.js';

export const OUTCOMES = ['Completed', 'CompletedWithWarnings', 'Failed', 'Cancelled', 'InProgress'];
const OUTCOME_CLASS = {
  Completed: 'ok', CompletedWithWarnings: 'warn', Failed: 'bad', Cancelled: 'off', InProgress: 'busy',
};

/**
 * The width to draw a chart at: the page's own (up to `max`), so that its text keeps its size in
 * CSS pixels. A chart drawn 1100 wide and shrunk into a 400 px window would show 4 px labels.
 */
export function fitWidth(max = 1100, min = 300) {
  const main = typeof document !== 'undefined' && document.querySelector('main');
  const room = main ? main.clientWidth - 40 : max;
  return Math.round(Math.max(min, Math.min(max, room || max)));
}

function utcDay(d) {
  return d.toISOString().slice(0, 10);
}

/** Jobs counted per UTC day (the last `days` days, oldest first) and outcome. */
export function perDay(jobs, days, now = new Date()) {
  const buckets = [];
  for (let i = days - 1; i >= 0; i -= 1) {
    const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - i));
    buckets.push({ day: utcDay(d), counts: Object.fromEntries(OUTCOMES.map((o) => [o, 0])) });
  }
  const byDay = new Map(buckets.map((b) => [b.day, b]));
  for (const job of jobs) {
    const when = job.createdTime || job.startTime;
    if (!when) continue;
    const bucket = byDay.get(utcDay(new Date(when)));
    if (bucket && job.status in bucket.counts) bucket.counts[job.status] += 1;
  }
  return buckets;
}

/** Stacked bars of outcomes per day. */
export function outcomesChart(buckets, W = fitWidth()) {
  const H = W < 600 ? 200 : 230; const left = 30; const bottom = 28; const top = 16;
  const max = Math.max(1, ...buckets.map((b) => OUTCOMES.reduce((n, o) => n + b.counts[o], 0)));
  const step = (W - left - 8) / buckets.length;
  const barW = Math.min(56, step * 0.6);
  const y = (v) => H - bottom - ((H - bottom - top) * v) / max;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
    'aria-label': 'Job outcomes per day, last 7 days' });
  const ticks = max <= 4 ? max : 4;
  for (let i = 0; i <= ticks; i += 1) {
    const v = Math.round((max * i) / ticks);
    svg.append(s('line', { x1: left, x2: W - 8, y1: y(v), y2: y(v), class: 'gridline' }),
      s('text', { x: left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, String(v)));
  }
  buckets.forEach((b, i) => {
    const x = left + step * i + (step - barW) / 2;
    let acc = 0;
    for (const o of OUTCOMES) {
      const n = b.counts[o];
      if (!n) continue;
      svg.append(s('rect', { x, y: y(acc + n), width: barW, height: y(acc) - y(acc + n),
        class: `bar ${OUTCOME_CLASS[o]}` }, s('title', null, `${b.day}: ${n} ${o}`)));
      acc += n;
    }
    svg.append(s('text', { x: x + barW / 2, y: H - 8, class: 'axis', 'text-anchor': 'middle' }, b.day.slice(5)));
    if (acc) svg.append(s('text', { x: x + barW / 2, y: y(acc) - 4, class: 'axis total', 'text-anchor': 'middle' },
      String(acc)));
  });
  const legend = h('div', { class: 'legend' },
    OUTCOMES.map((o) => h('span', null, h('i', { class: `swatch ${OUTCOME_CLASS[o]}` }), o)));
  return h('div', { class: 'chart-wrap' }, svg, legend);
}

const DAY = 86400000;

/**
 * Recovery points on a timeline, one lane per datastore. Each point is a dot at its backup time;
 * its <title> names it. `onPick(point)` is called when a dot is clicked.
 */
export function timeline(points, stores, now = Date.now(), onPick = null, W = fitWidth()) {
  const laneH = 40; const left = W < 600 ? 92 : 110; const right = 16; const top = 10;
  const H = top + laneH * stores.length + 26;
  const times = points.map((p) => new Date(p.time).getTime()).filter((t) => !Number.isNaN(t));
  let start = Math.min(now - 7 * DAY, ...times);
  const end = now + DAY / 4;
  start -= (end - start) * 0.03;
  const x = (t) => left + ((W - left - right) * (t - start)) / (end - start);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart timeline', role: 'img',
    'aria-label': 'Recovery points per datastore over time' });
  stores.forEach((store, i) => {
    const cy = top + laneH * i + laneH / 2;
    svg.append(s('rect', { x: left, y: top + laneH * i + 4, width: W - left - right, height: laneH - 8,
      class: `lane ${i % 2 ? 'alt' : ''}` }),
    s('text', { x: left - 10, y: cy + 4, class: 'axis lane-label', 'text-anchor': 'end' }, store));
  });
  const span = end - start;
  let tickEvery = span > 400 * DAY ? 90 * DAY : span > 60 * DAY ? 30 * DAY : span > 14 * DAY ? 7 * DAY : DAY;
  while (((W - left - right) * tickEvery) / span < 46) tickEvery *= 2; // labels never overlap on a narrow screen
  const firstTick = Math.ceil(start / tickEvery) * tickEvery;
  for (let t = firstTick; t <= end; t += tickEvery) {
    svg.append(s('line', { x1: x(t), x2: x(t), y1: top, y2: H - 22, class: 'gridline' }),
      s('text', { x: x(t), y: H - 6, class: 'axis', 'text-anchor': 'middle' },
        new Date(t).toISOString().slice(tickEvery >= 30 * DAY ? 0 : 5, tickEvery >= 30 * DAY ? 7 : 10)));
  }
  svg.append(s('line', { x1: x(now), x2: x(now), y1: top, y2: H - 22, class: 'now' }),
    s('text', { x: x(now), y: top + 8, class: 'axis now-label', 'text-anchor': 'end', dx: -4 }, 'now'));
  for (const p of points) {
    const lane = stores.indexOf(p.datastore);
    const t = new Date(p.time).getTime();
    if (lane < 0 || Number.isNaN(t)) continue;
    const dot = s('circle', { cx: x(t), cy: top + laneH * lane + laneH / 2, r: 7,
      class: `point tag-${['Default', 'Weekly', 'Monthly', 'Yearly'].includes(p.retentionTag) ? p.retentionTag : 'Other'}`,
      tabindex: 0, 'data-recovery-point': p.recoveryPointId },
    s('title', null, `${p.recoveryPointId}\n${p.time} · ${p.retentionTag} · ${p.datastore}`));
    if (onPick) {
      dot.addEventListener('click', () => onPick(p));
      dot.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); onPick(p); }
      });
    }
    svg.append(dot);
  }
  return svg;
}
