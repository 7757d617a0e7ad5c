// The REST API (docs/api.md) as the web client uses it.
//
// The session token lives only in an HttpOnly cookie the manager sets at
// login (POST /session {"cookie": true}): this script never sees it, and
// it is never in a URL or in localStorage/sessionStorage. What the script
// holds, in memory only, is the session's CSRF token, sent with every
// request that changes something (X-CSRF-Token); after a reload it is read
// again from GET /session (docs/web.md).
import { h } from './dom.js';

let csrf = null;
export const session = { user: null, role: null, privileges: new Set() };
let onLoggedOut = () => {};
export function setLoggedOutHandler(f) { onLoggedOut = f; }

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// "/vms/" + name: every name URL-encoded.
export function path(...parts) {
  return parts.map((p, i) => (i === 0 ? p : encodeURIComponent(p))).join('/');
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export async function api(method, p, body, opts) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const r = await fetch(`/api/v1${p}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
    redirect: 'error',
    signal: opts && opts.signal,
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    if (r.status === 401 && !p.startsWith('/session')) {
      csrf = null;
      onLoggedOut('Your session ended; log in again.');
    }
    throw new ApiError(r.status, (data && data.error) || `HTTP ${r.status}`);
  }
  return data;
}

function setSession(d) {
  csrf = d.csrf || null;
  session.user = d.user;
  session.role = d.role;
  session.privileges = new Set(String(d.privileges || '').split(' ').filter(Boolean));
}

// Resume the cookie session after a reload; false when there is none.
export async function resume() {
  try {
    setSession(await api('GET', '/session'));
    return true;
  } catch (e) {
    if (e.status === 401) return false;
    throw e;
  }
}

export async function login(user, password) {
  setSession(await api('POST', '/session', { user, password, cookie: true }));
}

export async function logout() {
  try { await api('DELETE', '/session'); } finally {
    csrf = null;
    session.user = null;
    session.privileges = new Set();
  }
}

// ---- privileges: which an operation needs (api_table.c, served as
// /ui/api-table.json) against what the user holds on the object.

let table = null;
export async function loadTable() {
  if (table) return table;
  const r = await fetch('/ui/api-table.json', { credentials: 'same-origin', cache: 'no-store' });
  const t = await r.json();
  table = { ops: new Map(t.operations.map((o) => [o.id, o])), privileges: t.privileges };
  return table;
}

export function opInfo(id) { return table && table.ops.get(id); }

// The privileges op lacks (empty: allowed) for holder privs (a Set), with
// the crypto privileges too when the VM is encrypted.
export function missing(opId, privs, encrypted) {
  const op = opInfo(opId);
  if (!op) return [`(unknown operation ${opId})`];
  const need = [];
  if (op.privileges) need.push(...op.privileges.split(' '));
  if (encrypted && op.crypto) need.push(...op.crypto.split(' '));
  return need.filter((p) => !privs.has(p));
}

// The user's privileges on an object ("vm:NAME", "host:NAME", "root").
export async function privilegesOn(object) {
  if (object === 'root') return session.privileges;
  try {
    const d = await api('GET', `/session/privileges${query({ object })}`);
    return new Set(d.privileges);
  } catch (e) {
    if (e.status === 403) return new Set();
    throw e;
  }
}

// A button for an operation: disabled, with the missing privilege named,
// when the user lacks it; otherwise runs onclick.
export function opButton(label, opId, privs, encrypted, onclick, cls) {
  const miss = missing(opId, privs, encrypted);
  const b = h('button', { type: 'button', class: cls || 'secondary', dataset: { op: opId },
                          onclick: miss.length ? null : onclick }, label);
  if (!miss.length) return b;
  b.disabled = true;
  b.dataset.missing = miss.join(' ');
  b.title = `Requires the privilege ${miss.join(', ')}`;
  return h('span', { class: 'op-denied' }, b, h('span', { class: 'needs' }, `requires ${miss.join(', ')}`));
}
