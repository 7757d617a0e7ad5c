// Old -> new values of an event as a readable difference: for objects, one
// line per key that changed (added, removed or changed); otherwise the two
// values side by side. Values are shown as text only.
import { h } from './dom.js';

function show(v) {
  if (v === undefined) return '';
  if (v === null) return 'null';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }

// The changes between old and new: [{key, kind: add|remove|change, old, new}].
export function changes(oldV, newV) {
  if (isObj(oldV) || isObj(newV)) {
    const o = isObj(oldV) ? oldV : {};
    const n = isObj(newV) ? newV : {};
    const keys = [...new Set([...Object.keys(o), ...Object.keys(n)])];
    const out = [];
    for (const k of keys) {
      const a = o[k], b = n[k];
      if (!(k in o)) out.push({ key: k, kind: 'add', new: b });
      else if (!(k in n)) out.push({ key: k, kind: 'remove', old: a });
      else if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ key: k, kind: 'change', old: a, new: b });
    }
    return out;
  }
  if (JSON.stringify(oldV) === JSON.stringify(newV)) return [];
  return [{ key: '', kind: oldV === null || oldV === undefined ? 'add' : (newV === null || newV === undefined ? 'remove' : 'change'), old: oldV, new: newV }];
}

export function diffView(oldV, newV) {
  const cs = changes(oldV, newV);
  if (!cs.length) return h('span', { class: 'muted' }, '—');
  return h('ul', { class: 'diff' }, cs.map((c) => h('li', { class: c.kind, dataset: { key: c.key } },
    c.key ? h('span', { class: 'key' }, `${c.key}: `) : null,
    c.kind !== 'add' ? h('del', {}, show(c.old)) : null,
    c.kind === 'change' ? h('span', { class: 'arrow' }, ' → ') : null,
    c.kind !== 'remove' ? h('ins', {}, show(c.new)) : null)));
}
