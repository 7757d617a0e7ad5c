// "Recent tasks" (as at the bottom of the vSphere Client): the manager's
// tasks with live progress. Polls every second while one runs, else every
// ten seconds. Needs System.Read.
import { fill, h, link, progress, fmtTime, badge } from './dom.js';
import { api, session } from './api.js';

let timer = null;
let el = null;
let listeners = new Set();

// Pages that show tasks of their own get told of every refresh.
export function subscribe(f) { listeners.add(f); return () => listeners.delete(f); }

export function kick() {
  if (!el) return;
  clearTimeout(timer);
  timer = setTimeout(poll, 50);
}

export function start(container) {
  el = container;
  if (!session.privileges.has('System.Read')) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  kick();
}

export function stop() {
  clearTimeout(timer);
  timer = null;
  if (el) { el.hidden = true; fill(el); }
  el = null;
}

const ACTIONS = {
  encrypt: 'Encrypt VM', decrypt: 'Decrypt VM', 'recrypt-shallow': 'Shallow re-encrypt',
  'recrypt-deep': 'Deep re-encrypt',
};

export function taskRow(t) {
  const state = t.state === 'running' ? progress(t.progress)
    : badge(t.state === 'success' ? 'Completed' : 'Failed', t.state === 'success' ? 'ok' : 'bad');
  return h('tr', { dataset: { task: String(t.id), state: t.state } },
    h('td', {}, ACTIONS[t.action] || t.action),
    h('td', {}, t.vm ? link(t.vm, 'vm', t.vm) : '—'),
    h('td', { class: 'task-state' }, state, t.error ? h('div', { class: 'error small' }, t.error) : null),
    h('td', {}, t.user || ''),
    h('td', {}, fmtTime(t.created)));
}

async function poll() {
  if (!el) return;
  let running = false;
  try {
    const d = await api('GET', '/tasks');
    const list = (d.tasks || []).slice().sort((a, b) => b.id - a.id);
    running = list.some((t) => t.state === 'running');
    fill(el, h('h2', {}, 'Recent tasks'),
      list.length ? h('table', { class: 'grid tasks' },
        h('thead', {}, h('tr', {}, ['Task', 'Target', 'Status', 'Initiator', 'Started'].map((x) => h('th', {}, x)))),
        h('tbody', {}, list.slice(0, 6).map(taskRow)))
        : h('p', { class: 'muted' }, 'No tasks yet.'));
    for (const f of listeners) f(list);
  } catch (e) {
    if (e.status === 401) return;
  }
  if (el) timer = setTimeout(poll, running ? 1000 : 10000);
}
