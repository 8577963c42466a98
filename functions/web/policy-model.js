// A backup policy as the form edits it, and Azure's BackupPolicy JSON: both ways, nothing else.
import { WINDOWS_ZONES } from './timezones.js';

export const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
export const DAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
export const UNITS = { D: 'Days', W: 'Weeks', M: 'Months', Y: 'Years' };
// The rules the form offers besides Default: the tag, the criterion that picks its backups, its priority.
export const RULES = {
  Weekly: { criterion: 'FirstOfWeek', priority: 20, duration: { n: 12, unit: 'W' } },
  Monthly: { criterion: 'FirstOfMonth', priority: 15, duration: { n: 6, unit: 'M' } },
  Yearly: { criterion: 'FirstOfYear', priority: 10, duration: { n: 1, unit: 'Y' } },
};
const DATASOURCE = 'Microsoft.DBforPostgreSQL/servers/databases';
// 2025-01-05 is a Sunday: the schedule's intervals start in its week (any past week would do).
const FIRST_SUNDAY = Date.UTC(2025, 0, 5);

const store = (type) => ({ objectType: 'DataStoreInfoBase', dataStoreType: type });
const pad = (n) => String(n).padStart(2, '0');

/** The IANA zone for a Windows or IANA name, or null when the browser knows neither. */
export function ianaZone(name) {
  const text = String(name || 'UTC');
  for (const [win, iana] of WINDOWS_ZONES) if (win.toLowerCase() === text.toLowerCase()) return iana;
  try {
    new Intl.DateTimeFormat('en', { timeZone: text });
    return text;
  } catch {
    return null;
  }
}

/** The zone's UTC offset in minutes at instant ms. */
function offsetMinutes(zone, ms) {
  const part = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' })
    .formatToParts(new Date(ms)).find((p) => p.type === 'timeZoneName').value; // "GMT+01:00" or "GMT"
  const m = /GMT([+-])(\d{2}):?(\d{2})?/.exec(part);
  return m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3] || 0)) : 0;
}

/** "2025-01-06T22:00:00+01:00": the weekday's start at wall-clock `time` in `zone`. */
export function intervalStart(day, time, zoneName) {
  const [hh, mm] = time.split(':').map(Number);
  const wall = FIRST_SUNDAY + day * 86400000 + (hh * 60 + mm) * 60000;
  const zone = ianaZone(zoneName);
  let off = zone ? offsetMinutes(zone, wall) : 0;
  if (zone) off = offsetMinutes(zone, wall - off * 60000);
  const d = new Date(wall);
  const sign = off < 0 ? '-' : '+';
  const abs = Math.abs(off);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(hh)}:${pad(mm)}:00`
    + `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The weekday (0 = Sunday) and "HH:MM" an interval's start is in `zoneName`. */
export function wallClock(interval, zoneName) {
  const start = String(interval).split('/')[1];
  const zone = ianaZone(zoneName) || 'UTC';
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', { timeZone: zone, weekday: 'short',
    hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(new Date(start)).map((p) => [p.type, p.value]));
  return { day: DAYS.indexOf(parts.weekday), time: `${parts.hour}:${parts.minute}` };
}

export function durationText({ n, unit }) {
  return `P${Number(n)}${unit}`;
}

export function parseDuration(text) {
  const m = /^P(\d+)([DWMY])$/.exec(String(text || ''));
  return m ? { n: Number(m[1]), unit: m[2] } : { n: 3, unit: 'M' };
}

/** "3 Months". */
export function durationLabel(text) {
  const m = /^P(\d+)([DWMY])$/.exec(String(text || ''));
  if (!m) return String(text || '—');
  const unit = UNITS[m[2]];
  return `${m[1]} ${Number(m[1]) === 1 ? unit.slice(0, -1) : unit}`;
}

/** A new policy's form: Sundays 02:00 UTC, the Default rule kept 3 months in Vault-standard. */
export function emptyForm() {
  return { name: '', days: [0], time: '02:00', timeZone: 'UTC',
    rules: [{ tag: 'Default', duration: { n: 3, unit: 'M' }, archive: false, archiveDuration: { n: 6, unit: 'M' } }] };
}

function lifecycles(rule) {
  const vault = { sourceDataStore: store('VaultStore'),
    deleteAfter: { objectType: 'AbsoluteDeleteOption', duration: durationText(rule.duration) },
    targetDataStoreCopySettings: rule.archive
      ? [{ copyAfter: { objectType: 'CopyOnExpiryOption' }, dataStore: store('ArchiveStore') }] : [] };
  if (!rule.archive) return [vault];
  return [vault, { sourceDataStore: store('ArchiveStore'),
    deleteAfter: { objectType: 'AbsoluteDeleteOption', duration: durationText(rule.archiveDuration) },
    targetDataStoreCopySettings: [] }];
}

/** Azure's BackupPolicy properties for the form (policyRules[0] is the backup rule, then rules in order). */
export function toPolicy(form) {
  const days = [...new Set(form.days)].sort();
  const criteria = [{ isDefault: true, taggingPriority: 99, tagInfo: { tagName: 'Default' } },
    ...form.rules.filter((r) => r.tag !== 'Default').map((r) => ({
      isDefault: false, taggingPriority: RULES[r.tag].priority, tagInfo: { tagName: r.tag },
      criteria: [{ objectType: 'ScheduleBasedBackupCriteria', absoluteCriteria: [RULES[r.tag].criterion] }],
    }))];
  return {
    objectType: 'BackupPolicy',
    datasourceTypes: [DATASOURCE],
    policyRules: [
      { name: 'BackupWeekly', objectType: 'AzureBackupRule',
        backupParameters: { objectType: 'AzureBackupParams', backupType: 'Full' },
        dataStore: store('VaultStore'),
        trigger: { objectType: 'ScheduleBasedTriggerContext',
          schedule: { timeZone: form.timeZone || 'UTC',
            repeatingTimeIntervals: days.map((d) => `R/${intervalStart(d, form.time, form.timeZone)}/P1W`) },
          taggingCriteria: criteria } },
      ...form.rules.map((r) => ({ name: r.tag, objectType: 'AzureRetentionRule', isDefault: r.tag === 'Default',
        lifecycles: lifecycles(r) })),
    ],
  };
}

function copySettings(lifecycle) {
  const raw = lifecycle && lifecycle.targetDataStoreCopySettings;
  if (!raw) return [];
  return Array.isArray(raw) ? raw : [raw];
}

/** What a retention rule keeps: [{datastore, duration, onExpiry: 'ArchiveStore'|null, copy}] per lifecycle. */
export function ruleLifecycles(rule) {
  return (rule.lifecycles || []).map((l) => {
    const copy = copySettings(l)[0];
    return { datastore: l.sourceDataStore && l.sourceDataStore.dataStoreType,
      duration: l.deleteAfter && l.deleteAfter.duration,
      copyTo: copy ? copy.dataStore && copy.dataStore.dataStoreType : null,
      copyOption: copy ? copy.copyAfter && copy.copyAfter.objectType : null };
  });
}

/** The form for a stored policy (GET /backupPolicies/{name} answers its normalised properties). */
export function fromPolicy(name, doc) {
  const props = (doc && doc.properties) || doc || {};
  const rules = props.policyRules || [];
  const backup = rules.find((r) => r.objectType === 'AzureBackupRule') || {};
  const schedule = (backup.trigger && backup.trigger.schedule) || {};
  const zone = schedule.timeZone || 'UTC';
  const clocks = (schedule.repeatingTimeIntervals || []).map((i) => wallClock(i, zone));
  const form = { name, days: clocks.map((c) => c.day), time: clocks.length ? clocks[0].time : '02:00', timeZone: zone,
    rules: [] };
  for (const r of rules.filter((x) => x.objectType === 'AzureRetentionRule')) {
    const [vault, archive] = ruleLifecycles(r);
    const tag = r.isDefault ? 'Default' : r.name;
    if (tag !== 'Default' && !RULES[tag]) continue; // the form edits the portal's four rules only
    form.rules.push({ tag, duration: parseDuration(vault && vault.duration), archive: Boolean(vault && vault.copyTo),
      archiveDuration: parseDuration(archive ? archive.duration : 'P6M') });
  }
  if (!form.rules.some((r) => r.tag === 'Default')) form.rules.unshift(emptyForm().rules[0]);
  return form;
}

/** "Mon, Thu at 22:00". */
export function scheduleText(form) {
  const days = [...new Set(form.days)].sort().map((d) => DAYS[d]);
  return `Every ${days.join(', ') || '—'} at ${form.time}`;
}

/** The criterion that picks a tag's backups, in words. */
export function criterionText(props, tag) {
  const backup = (props.policyRules || []).find((r) => r.objectType === 'AzureBackupRule') || {};
  const found = ((backup.trigger && backup.trigger.taggingCriteria) || [])
    .find((c) => c.tagInfo && c.tagInfo.tagName === tag);
  if (!found) return '—';
  if (found.isDefault) return 'every backup no other rule takes';
  const words = { FirstOfWeek: 'first successful backup of the week', FirstOfMonth: 'first successful backup of the month',
    FirstOfYear: 'first successful backup of the year', FirstOfDay: 'first successful backup of the day',
    AllBackup: 'every backup' };
  const crit = (found.criteria || []).flatMap((c) => c.absoluteCriteria || ['custom days']);
  return `${crit.map((c) => words[c] || c).join(', ')} (priority ${found.taggingPriority})`;
}
