// DOM helpers. Every string from the server becomes a text node
// (createTextNode / textContent): nothing here parses HTML, and the page's
// Content-Security-Policy (Trusted Types) makes the HTML sinks throw anyway.

// h(tag, attrs, ...children): an element. attrs: class, text, on<event>
// (functions only), properties (disabled, checked, value...) or attributes;
// children: nodes, strings (as text), arrays, null (skipped).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) {
      if (typeof v !== 'function') throw new Error(`h(): ${k} must be a function`);
      el.addEventListener(k.slice(2), v);
    } else if (k === 'href' || k === 'src' || k === 'action') {
      // only the app's own routes and files
      if (!/^(#\/|\/ui\/)/.test(String(v))) throw new Error(`h(): ${k} ${v} is not the app's own`);
      el.setAttribute(k, v);
    } else if (k === 'value' || ((typeof v === 'boolean' || typeof v === 'number') && k in el)) {
      el[k] = v;
    } else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replace el's children.
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const text = (s) => document.createTextNode(s === null || s === undefined ? '' : String(s));

// A route link: #/a/b with each part URL-encoded.
export function route(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(p)).join('/');
}

export function link(label, ...parts) {
  return h('a', { href: route(...parts) }, label);
}

export function badge(label, kind) {
  return h('span', { class: `badge ${kind || ''}` }, label);
}

export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(Number(t) * 1000);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

// "ab12cd..." -> "AB:12:CD:..." (as vCenter shows fingerprints)
export function fingerprint(hex) {
  return String(hex || '').toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

export function card(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

// A two-column table of label -> value.
export function facts(rows) {
  return h('table', { class: 'facts' },
    h('tbody', {}, rows.filter(Boolean).map(([k, v]) =>
      h('tr', {}, h('th', {}, k), h('td', {}, v === null || v === undefined || v === '' ? '—' : v)))));
}

export function table(headers, rows, attrs) {
  return h('table', Object.assign({ class: 'grid' }, attrs || {}),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
    rows instanceof HTMLTableSectionElement ? rows : h('tbody', {}, rows));
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err && err.message ? err.message : String(err));
}

export function toast(msg, kind) {
  const t = document.getElementById('toast');
  const el = h('div', { class: `toast ${kind || ''}` }, msg);
  t.appendChild(el);
  setTimeout(() => el.remove(), 6000);
}

// A progress bar (0..100): the native <progress> element.
export function progress(pct, label) {
  const p = Math.max(0, Math.min(100, Number(pct) || 0));
  return h('span', { class: 'progress' },
    h('progress', { max: 100, value: p }),
    h('span', { class: 'pct' }, label ? `${label} ${p}%` : `${p}%`));
}

// Modal confirmation: resolves true (confirmed) or false.
export function confirmDialog(title, body, okLabel, danger) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'dialog' });
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    append(dlg, [
      h('h2', {}, title),
      h('div', { class: 'dialog-body' }, body),
      h('div', { class: 'buttons' },
        h('button', { type: 'button', class: 'secondary', onclick: () => done(false) }, 'Cancel'),
        h('button', { type: 'button', class: danger ? 'danger' : 'primary', 'data-confirm': 'yes',
                      onclick: () => done(true) }, okLabel || 'OK')),
    ]);
    dlg.addEventListener('cancel', () => done(false));
    document.body.appendChild(dlg);
    dlg.showModal();
  });
}
