// Events: who did what to which object, when, from where, with old -> new
// values as a readable difference; filters (object, user, action, result,
// time) and live follow (the API's long poll: GET /events?since=LAST&wait=25).
import { h, fill, badge, table, errorBox, fmtTime } from './dom.js';
import { api, query } from './api.js';
import { diffView } from './diff.js';

export const EVENT_HEADERS = ['Time', 'User', 'Source', 'Action', 'Object', 'Result', 'Change'];

const ACTIONS = ['user.', 'role.', 'group.', 'permission.', 'kms.', 'host.', 'vm.', 'key.', 'task.',
  'user.create', 'user.role', 'user.password', 'user.delete', 'kms.add', 'kms.update', 'kms.default',
  'kms.trust', 'kms.csr', 'kms.client-cert', 'host.register', 'vm.create', 'vm.delete', 'vm.power-on',
  'vm.power-off', 'vm.reconfigure', 'vm.policy', 'vm.rekey', 'vm.log', 'task.start', 'task.failed',
  'key.push', 'key.deliver', 'web.csrf'];

export function eventRow(e) {
  const res = e.result === 'ok' ? badge('ok', 'ok') : badge(e.result, e.result === 'denied' ? 'bad' : 'warn');
  return h('tr', { dataset: { event: String(e.id), action: e.action } },
    h('td', { class: 'nowrap' }, fmtTime(e.time)), h('td', {}, e.user), h('td', {}, e.source || ''),
    h('td', { class: 'mono' }, e.action), h('td', {}, e.object), h('td', {}, res),
    h('td', { class: 'change' }, diffView(e.old, e.new)));
}

function toUnix(v) {
  if (!v) return undefined;
  const t = Date.parse(`${v}Z`);
  return Number.isNaN(t) ? undefined : Math.floor(t / 1000);
}

export async function render(main) {
  const f = {
    object: h('input', { id: 'ev-object', placeholder: 'e.g. vm1, vm:vm1, kms1' }),
    user: h('input', { id: 'ev-user', placeholder: 'user name' }),
    action: h('input', { id: 'ev-action', list: 'ev-actions', placeholder: 'e.g. vm. or vm.policy' }),
    result: h('select', { id: 'ev-result' }, ['', 'ok', 'denied', 'failed'].map((r) => h('option', { value: r }, r || 'any'))),
    from: h('input', { id: 'ev-from', type: 'datetime-local', step: '1' }),
    to: h('input', { id: 'ev-to', type: 'datetime-local', step: '1' }),
    follow: h('input', { id: 'ev-follow', type: 'checkbox' }),
  };
  const body = h('tbody');
  const status = h('div', { class: 'muted', id: 'ev-status' });
  const msg = h('div');
  let last = 0;
  let ctrl = null;
  let alive = true;

  const params = () => ({
    object: f.object.value.trim(), user: f.user.value.trim(), action: f.action.value.trim(),
    result: f.result.value, from: toUnix(f.from.value), to: toUnix(f.to.value),
  });

  async function loadFirst() {
    if (ctrl) ctrl.abort();
    ctrl = null;
    fill(msg);
    try {
      const d = await api('GET', `/events${query({ ...params(), since: -200, limit: 200 })}`);
      const evs = (d.events || []).slice().sort((a, b) => b.id - a.id);
      fill(body, evs.map(eventRow));
      last = d.last || evs.reduce((m, e) => Math.max(m, e.id), 0);
      fill(status, `${evs.length} event(s)`);
    } catch (e) {
      fill(msg, errorBox(e));
    }
    if (f.follow.checked) followLoop();
  }

  async function followLoop() {
    const my = new AbortController();
    ctrl = my;
    fill(status, 'Following: new events appear at the top.');
    while (alive && ctrl === my && f.follow.checked) {
      try {
        const d = await api('GET', `/events${query({ ...params(), since: last, wait: 25 })}`, undefined, { signal: my.signal });
        const evs = (d.events || []).slice().sort((a, b) => b.id - a.id);
        for (const e of evs.reverse()) body.prepend(eventRow(e));
        if (d.last) last = Math.max(last, d.last);
        for (const e of d.events || []) last = Math.max(last, e.id);
      } catch (e) {
        if (my.signal.aborted || !alive) return;
        fill(msg, errorBox(e));
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }

  const form = h('form', { class: 'filters', id: 'ev-filters' },
    h('label', {}, 'Object', f.object), h('label', {}, 'User', f.user),
    h('label', {}, 'Action', f.action), h('label', {}, 'Result', f.result),
    h('label', {}, 'From (UTC)', f.from), h('label', {}, 'To (UTC)', f.to),
    h('button', { type: 'submit', class: 'primary', id: 'ev-apply' }, 'Apply'),
    h('label', { class: 'inline' }, f.follow, ' Live follow'),
    h('datalist', { id: 'ev-actions' }, ACTIONS.map((a) => h('option', { value: a }))));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); loadFirst(); });
  f.follow.addEventListener('change', () => {
    if (f.follow.checked) followLoop();
    else { if (ctrl) ctrl.abort(); ctrl = null; fill(status, 'Not following.'); }
  });
  fill(main, h('h1', {}, 'Events'), form, msg, status,
    table(EVENT_HEADERS, body, { id: 'events-table' }));
  await loadFirst();
  return () => { alive = false; if (ctrl) ctrl.abort(); };
}
