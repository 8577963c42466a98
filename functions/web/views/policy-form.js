// Create backup policy / Edit: a form that builds Azure's BackupPolicy; the API's field errors
// show beside the field they name.
import { ApiError, call } from '../api.js';
import { asError, clearFieldErrors, errorBox, field, group, h, mount, showFieldError } from '../dom.js';
import { DAY_NAMES, RULES, UNITS, emptyForm, fromPolicy, toPolicy } from '../policy-model.js';
import { WINDOWS_ZONES } from '../timezones.js';

const ep = encodeURIComponent;

function zoneList() {
  const iana = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  return h('datalist', { id: 'time-zones' },
    [...WINDOWS_ZONES].map(([win, zone]) => h('option', { value: win, label: `Windows · ${zone}` })),
    h('option', { value: 'UTC', label: 'IANA' }),
    iana.map((z) => h('option', { value: z, label: 'IANA' })));
}

function durationControls(id, label, value, paths, onChange) {
  const n = h('input', { type: 'number', id: `${id}-n`, min: 1, max: 520, value: value.n, required: true,
    class: 'short', 'aria-label': `${label}: number` });
  const unit = h('select', { id: `${id}-unit`, 'aria-label': `${label}: unit` },
    Object.entries(UNITS).map(([k, v]) => h('option', { value: k, selected: k === value.unit }, v)));
  const sync = () => onChange({ n: Number(n.value), unit: unit.value });
  n.addEventListener('input', sync);
  unit.addEventListener('change', sync);
  return group(label, h('div', { class: 'row' }, n, unit), { paths, cls: 'duration' });
}

function ruleFieldset(form, index, rerender) {
  const rule = form.rules[index];
  const base = `policyRules[${index + 1}]`;
  const id = `rule-${rule.tag}`;
  const archive = h('input', { type: 'checkbox', id: `${id}-archive`, checked: rule.archive });
  archive.addEventListener('change', () => { rule.archive = archive.checked; rerender(`${id}-archive`); });
  const remove = rule.tag === 'Default' ? null : h('button', { type: 'button', class: 'small', id: `${id}-remove`,
    onclick: () => { form.rules.splice(index, 1); rerender('add-rule-Weekly'); } }, `Remove ${rule.tag} rule`);
  const picks = rule.tag === 'Default' ? 'Every backup no other rule takes.'
    : `The first successful backup of each ${rule.tag.replace(/ly$/, '').replace('Dai', 'day').toLowerCase()}.`;
  return group(`${rule.tag} rule`, [
    h('p', { class: 'muted' }, picks),
    durationControls(`${id}-vault`, 'Vault-standard: retain for', rule.duration,
      [`${base}.lifecycles[0].deleteAfter`, `${base}.lifecycles[0]`], (v) => { rule.duration = v; }),
    h('div', { class: 'check' }, archive, h('label', { for: archive.id }, 'On-expiry: move to Vault-archive')),
    rule.archive ? durationControls(`${id}-archive-duration`, 'Vault-archive: retain for', rule.archiveDuration,
      [`${base}.lifecycles[1]`, `${base}.lifecycles[0].targetDataStoreCopySettings`], (v) => { rule.archiveDuration = v; })
      : null,
    remove,
  ], { paths: [base, `policyRules[0].trigger.taggingCriteria[${index}]`], cls: `rule rule-${rule.tag}` });
}

function scheduleFields(form) {
  const days = DAY_NAMES.map((name, d) => {
    const box = h('input', { type: 'checkbox', id: `day-${d}`, value: d, checked: form.days.includes(d) });
    box.addEventListener('change', () => {
      form.days = box.checked ? [...form.days, d] : form.days.filter((x) => x !== d);
    });
    return h('span', { class: 'check' }, box, h('label', { for: box.id }, name));
  });
  const time = h('input', { type: 'time', id: 'policy-time', value: form.time, required: true });
  time.addEventListener('input', () => { form.time = time.value || '00:00'; });
  const zone = h('input', { id: 'policy-zone', value: form.timeZone, list: 'time-zones', autocomplete: 'off',
    required: true, spellcheck: 'false' });
  zone.addEventListener('input', () => { form.timeZone = zone.value.trim(); });
  return [
    h('p', null, 'Backup frequency: ', h('strong', null, 'Weekly'), h('span', { class: 'muted' }, ' (full backups)')),
    group('Days', h('div', { class: 'days' }, days),
      { paths: ['policyRules[0].trigger.schedule.repeatingTimeIntervals', 'policyRules[0].trigger.schedule'] }),
    field('Time', time),
    field('Time zone', zone, { paths: ['policyRules[0].trigger.schedule.timeZone'],
      hint: 'A Windows name as Azure writes it (W. Europe Standard Time) or an IANA name (Europe/Berlin).' }),
    zoneList(),
  ];
}

function addRuleButtons(form, rerender) {
  return h('div', { class: 'row' }, Object.keys(RULES).map((tag) => h('button', {
    type: 'button', id: `add-rule-${tag}`, disabled: form.rules.some((r) => r.tag === tag),
    onclick: () => {
      form.rules.push({ tag, duration: { ...RULES[tag].duration }, archive: false, archiveDuration: { n: 6, unit: 'M' } });
      rerender(`rule-${tag}-vault-n`);
    } }, `Add ${tag} rule`)));
}

function render(main, form, editing, ctx, params) {
  const rerender = (focusId) => {
    render(main, form, editing, ctx, params);
    const el = focusId && document.getElementById(focusId);
    if (el && !el.disabled) el.focus();
  };
  const name = h('input', { id: 'policy-name-input', value: form.name, required: true, maxlength: 150,
    disabled: Boolean(editing), autocomplete: 'off' });
  name.addEventListener('input', () => { form.name = name.value.trim(); });
  const result = h('div', { class: 'result', id: 'policy-result' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'policy-save' }, editing ? 'Save' : 'Create');
  const el = h('form', { class: 'card policy-form', id: 'policy-form', novalidate: true },
    h('h2', null, 'Basics'),
    field('Policy name', name, { paths: ['name'] }),
    h('h2', null, 'Schedule'), scheduleFields(form),
    h('h2', null, 'Retention rules'),
    h('p', { class: 'muted' }, 'Each backup is kept by the first rule whose criterion it meets (Yearly, then Monthly, '
      + 'then Weekly), else by Default.'),
    form.rules.map((_, i) => ruleFieldset(form, i, rerender)),
    addRuleButtons(form, rerender),
    h('div', { class: 'row submit' }, submit,
      h('a', { class: 'button', href: editing ? `#/policies/${ep(editing)}` : '#/policies' }, 'Cancel')),
    result);
  el.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors(el);
    result.replaceChildren();
    if (!form.name) {
      showFieldError(el, { code: 'InvalidRequest', target: 'name', message: 'give the policy a name' });
      return;
    }
    submit.disabled = true;
    try {
      await call(`backupPolicies/${ep(form.name)}`, { method: 'PUT', body: toPolicy(form) });
      if (!ctx.alive()) return;
      ctx.go(params.get('return') === 'configure' ? `#/configure?policy=${ep(form.name)}` : `#/policies/${ep(form.name)}`);
    } catch (err) {
      const error = asError(err);
      if (!(err instanceof ApiError && showFieldError(el, error))) result.replaceChildren(errorBox(error, 'Not saved'));
    } finally {
      submit.disabled = false;
    }
  });
  mount(main,
    h('div', { class: 'page-head' }, h('h1', null, h('a', { href: '#/policies', class: 'crumb' }, 'Backup policies'),
      ' / ', editing ? `Edit ${editing}` : 'Create backup policy')),
    el);
}

export async function renderPolicyForm(main, name, params, ctx) {
  const form = name ? fromPolicy(name, await call(`backupPolicies/${ep(name)}`)) : emptyForm();
  if (!ctx.alive()) return;
  render(main, form, name, ctx, params);
  document.getElementById(name ? 'day-0' : 'policy-name-input').focus();
}
