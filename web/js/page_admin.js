// Administration: users, roles, groups and permissions (the same rules as
// the API: nobody grants what they do not hold; the manager refuses and
// says why, and the refusal is an event).
import { h, fill, link, badge, card, table, errorBox, toast, confirmDialog, fmtTime } from './dom.js';
import { api, path, query, session, opButton } from './api.js';

const TABS = [['users', 'Users'], ['roles', 'Roles'], ['groups', 'Groups'], ['permissions', 'Permissions']];

export async function render(main, tab) {
  const content = h('div', { id: `admin-${tab}` });
  fill(main, h('h1', {}, 'Administration'),
    h('nav', { class: 'tabs' }, TABS.map(([t, label]) => {
      const a = link(label, 'admin', t);
      if (t === tab) a.classList.add('active');
      return a;
    })),
    content);
  const again = () => render(main, tab);
  try {
    if (tab === 'users') await users(content, again);
    else if (tab === 'roles') await roles(content, again);
    else if (tab === 'groups') await groups(content, again);
    else if (tab === 'permissions') await permissions(content);
  } catch (e) {
    fill(content, errorBox(e));
  }
  return null;
}

async function roleNames() {
  try { return ((await api('GET', '/roles')).roles || []).map((r) => r.name); } catch (e) { return []; }
}

async function users(box, again) {
  const privs = session.privileges;
  const [d, rn] = await Promise.all([api('GET', '/users'), roleNames()]);
  const msg = h('div');
  const fail = (e) => fill(msg, errorBox(e));
  const rows = (d.users || []).map((u) => {
    const sel = h('select', {}, rn.map((r) => h('option', { value: r }, r)));
    sel.value = u.role;
    return h('tr', { dataset: { user: u.name } },
      h('td', {}, u.name), h('td', {}, u.role), h('td', {}, fmtTime(u.created)), h('td', {}, fmtTime(u.password_changed)),
      h('td', { class: 'row' }, sel,
        opButton('Change role', 'user.role', privs, false, async () => {
          try { await api('PATCH', path('/users', u.name), { role: sel.value }); toast(`${u.name} is now ${sel.value}`, 'ok'); again(); } catch (e) { fail(e); }
        }),
        opButton('Remove', 'user.delete', privs, false, async () => {
          if (!await confirmDialog(`Remove user ${u.name}?`, h('p', {}, 'Their sessions end.'), 'Remove', true)) return;
          try { await api('DELETE', path('/users', u.name)); again(); } catch (e) { fail(e); }
        })));
  });
  const nu = { name: h('input', { id: 'nu-name', maxlength: '64' }), pw: h('input', { id: 'nu-password', type: 'password', autocomplete: 'new-password' }),
               role: h('select', { id: 'nu-role' }, rn.map((r) => h('option', { value: r }, r))) };
  fill(box, msg,
    table(['User', 'Role', 'Created', 'Password changed', ''], rows, { id: 'users-table' }),
    card('Add a user', h('div', { class: 'row' },
      h('label', {}, 'Name', nu.name), h('label', {}, 'Password (8 or more characters)', nu.pw), h('label', {}, 'Role', nu.role),
      opButton('Add user', 'user.create', privs, false, async () => {
        try {
          await api('POST', '/users', { name: nu.name.value.trim(), password: nu.pw.value, role: nu.role.value });
          nu.pw.value = '';
          again();
        } catch (e) { fail(e); }
      }, 'primary'))));
}

async function roles(box, again) {
  const privs = session.privileges;
  const d = await api('GET', '/roles');
  const msg = h('div');
  const all = d.all_privileges || [];
  const rows = (d.roles || []).map((r) => {
    const list = Array.isArray(r.privileges) ? r.privileges : String(r.privileges || '').split(' ').filter(Boolean);
    return h('tr', { dataset: { role: r.name } },
      h('td', {}, h('b', {}, r.name), r.builtin ? [' ', badge('built-in', 'plain')] : null),
      h('td', {}, h('details', {}, h('summary', {}, `${list.length} privilege(s)`), h('ul', { class: 'privs' }, list.map((p) => h('li', { class: 'mono' }, p))))),
      h('td', {}, r.builtin ? null : opButton('Remove', 'role.delete', privs, false, async () => {
        try { await api('DELETE', path('/roles', r.name)); again(); } catch (e) { fill(msg, errorBox(e)); }
      })));
  });
  const name = h('input', { id: 'nr-name', maxlength: '64' });
  const boxes = all.map((p) => h('label', { class: 'inline priv' }, h('input', { type: 'checkbox', value: p }), ` ${p}`));
  fill(box, msg, table(['Role', 'Privileges', ''], rows, { id: 'roles-table' }),
    card('Add a custom role', h('label', {}, 'Name', name), h('div', { class: 'priv-grid' }, boxes),
      opButton('Add role', 'role.create', privs, false, async () => {
        const chosen = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
        try { await api('POST', '/roles', { name: name.value.trim(), privileges: chosen }); again(); } catch (e) { fill(msg, errorBox(e)); }
      }, 'primary')));
}

async function groups(box, again) {
  const privs = session.privileges;
  const d = await api('GET', '/groups');
  const msg = h('div');
  const rows = (d.groups || []).map((g) => {
    const who = h('input', { placeholder: 'user', maxlength: '64' });
    return h('tr', { dataset: { group: g.name } }, h('td', {}, g.name), h('td', {}, (g.members || []).join(', ') || '—'),
      h('td', { class: 'row' }, who,
        opButton('Add member', 'group.member-add', privs, false, async () => {
          try { await api('PUT', path('/groups', g.name, 'members', who.value.trim())); again(); } catch (e) { fill(msg, errorBox(e)); }
        }),
        opButton('Remove member', 'group.member-rm', privs, false, async () => {
          try { await api('DELETE', path('/groups', g.name, 'members', who.value.trim())); again(); } catch (e) { fill(msg, errorBox(e)); }
        })));
  });
  const name = h('input', { id: 'ng-name', maxlength: '64' });
  fill(box, msg, table(['Group', 'Members', ''], rows),
    card('Add a group', h('div', { class: 'row' }, h('label', {}, 'Name', name),
      opButton('Add group', 'group.create', privs, false, async () => {
        try { await api('POST', '/groups', { name: name.value.trim() }); again(); } catch (e) { fill(msg, errorBox(e)); }
      }, 'primary'))));
}

async function permissions(box) {
  const privs = session.privileges;
  const obj = h('input', { id: 'perm-object', value: 'root', placeholder: 'root, host:NAME, vm:NAME, folder:NAME' });
  const list = h('div');
  const msg = h('div');
  const rn = await roleNames();
  async function load() {
    fill(msg);
    try {
      const d = await api('GET', `/permissions${query({ object: obj.value.trim() })}`);
      fill(list, table(['Object', 'User or group', 'Role', 'Propagates', ''], (d.permissions || []).map((p) => h('tr', {},
        h('td', {}, p.object), h('td', {}, p.user ? `user ${p.user}` : `group ${p.group}`), h('td', {}, p.role),
        h('td', {}, p.propagate ? 'yes' : 'no'),
        h('td', {}, p.user_role ? h('span', { class: 'muted' }, '(the user\'s own role)') : opButton('Remove', 'permission.remove', privs, false, async () => {
          const q = { object: p.object };
          if (p.user) q.user = p.user; else q.group = p.group;
          try { await api('DELETE', `/permissions${query(q)}`); load(); } catch (e) { fill(msg, errorBox(e)); }
        }))))));
    } catch (e) { fill(msg, errorBox(e)); }
  }
  const np = { object: h('input', { id: 'np-object', placeholder: 'vm:NAME' }), who: h('input', { id: 'np-who', placeholder: 'user name' }),
               kind: h('select', { id: 'np-kind' }, h('option', { value: 'user' }, 'user'), h('option', { value: 'group' }, 'group')),
               role: h('select', { id: 'np-role' }, rn.map((r) => h('option', { value: r }, r))),
               prop: h('input', { type: 'checkbox', id: 'np-propagate', checked: true }) };
  fill(box,
    h('form', { class: 'row', onsubmit: (ev) => { ev.preventDefault(); load(); } }, h('label', {}, 'Object', obj),
      h('button', { type: 'submit', class: 'secondary' }, 'Show')),
    msg, list,
    card('Add a permission', h('div', { class: 'row' },
      h('label', {}, 'Object', np.object), h('label', {}, 'For', np.kind), h('label', {}, 'Name', np.who),
      h('label', {}, 'Role', np.role), h('label', { class: 'inline' }, np.prop, ' propagate'),
      opButton('Add permission', 'permission.add', privs, false, async () => {
        const b = { object: np.object.value.trim(), role: np.role.value, propagate: np.prop.checked };
        b[np.kind.value] = np.who.value.trim();
        try { await api('POST', '/permissions', b); obj.value = b.object; load(); } catch (e) { fill(msg, errorBox(e)); }
      }, 'primary'))));
  await load();
}
