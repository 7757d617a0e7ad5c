// Inventory: hosts and their VMs as a tree (left), the selected object's
// summary (right). Each VM shows an encrypted / not-encrypted badge, its
// power state and, when its host cannot unlock it, "locked" with the reason.
import { h, fill, link, badge, facts, card, table, errorBox, toast, fmtTime, fingerprint } from './dom.js';
import { api, path, privilegesOn, opButton, session } from './api.js';
import * as tasks from './tasks.js';

// Run fns with at most n at once.
async function pool(items, n, fn) {
  const queue = items.slice();
  await Promise.all(Array.from({ length: Math.min(n, queue.length) }, async () => {
    while (queue.length) await fn(queue.shift());
  }));
}

export function powerOf(vm) {
  const rt = vm.runtime;
  if (!rt) return null;
  return rt.power_state || rt.power || null;
}

// The badges of a VM: encryption, power, locked (with the reason).
export function vmBadges(vm) {
  const out = [vm.encrypted ? badge('Encrypted', 'enc') : badge('Not encrypted', 'plain')];
  const p = powerOf(vm);
  if (p) out.push(badge(p === 'on' ? 'Powered on' : 'Powered off', p === 'on' ? 'on' : 'off'));
  else if (vm.runtime_error) out.push(badge('Host unreachable', 'warn'));
  if (vm.runtime && vm.runtime.locked) {
    out.push(h('span', { class: 'badge locked', title: vm.runtime.locked_reason || '' }, 'Locked'));
  }
  if (vm.runtime && vm.runtime.busy) out.push(badge(vm.runtime.busy, 'busy'));
  return out;
}

function vmNode(vm, selected) {
  const li = h('li', { class: `vm${selected ? ' selected' : ''}`, dataset: { vm: vm.name } });
  const draw = () => {
    const p = powerOf(vm);
    fill(li,
      h('a', { href: `#/vm/${encodeURIComponent(vm.name)}` },
        h('span', { class: `power ${p || 'unknown'}`, title: p ? `powered ${p}` : 'power state unknown' }),
        h('span', { class: 'name' }, vm.name)),
      ' ', vmBadges(vm),
      vm.runtime && vm.runtime.locked
        ? h('div', { class: 'lock-reason small' }, vm.runtime.locked_reason || 'locked') : null);
  };
  draw();
  li.redraw = draw;
  return li;
}

export async function render(main, sel, vmPage) {
  const tree = h('nav', { class: 'tree', 'aria-label': 'Inventory' });
  const detail = h('div', { class: 'detail' });
  fill(main, h('div', { class: 'split' }, tree, detail));
  let alive = true;
  let vmsByName = new Map();
  let hosts = [];

  async function loadTree() {
    const [hl, vl] = await Promise.all([api('GET', '/hosts'), api('GET', '/vms')]);
    hosts = hl.hosts || [];
    const vms = vl.vms || [];
    const byHost = new Map(hosts.map((x) => [x.name, []]));
    for (const vm of vms) {
      if (!byHost.has(vm.host)) byHost.set(vm.host, []);
      byHost.get(vm.host).push(vm);
    }
    const nodes = [];
    const rootSel = !sel;
    fill(tree,
      h('div', { class: `root${rootSel ? ' selected' : ''}` }, link('vmseal-managerd', 'inventory')),
      h('ul', {}, [...byHost.entries()].map(([hn, list]) => h('li', { class: 'host', dataset: { host: hn } },
        h('a', { href: `#/host/${encodeURIComponent(hn)}`, class: sel && sel.host === hn ? 'selected' : '' },
          h('span', { class: 'icon-host' }), hn),
        h('ul', {}, list.map((vm) => {
          const n = vmNode(vm, sel && sel.vm === vm.name);
          nodes.push([vm, n]);
          return n;
        }))))));
    vmsByName = new Map(vms.map((v) => [v.name, v]));
    // the hosts' live view (power, lock) of every VM, four at a time
    pool(nodes, 4, async ([vm, n]) => {
      if (!alive) return;
      try {
        const full = await api('GET', path('/vms', vm.name));
        Object.assign(vm, full);
      } catch (e) {
        vm.runtime_error = e.message;
      }
      if (alive) n.redraw();
    });
    return { hosts, vms };
  }

  let inv;
  try {
    inv = await loadTree();
  } catch (e) {
    fill(tree, errorBox(e));
    inv = { hosts: [], vms: [] };
  }
  let pageCleanup = null;
  if (sel && sel.vm && vmPage) {
    pageCleanup = await vmPage.render(detail, sel.vm, { reloadTree: () => loadTree().catch(() => {}) });
  } else if (sel && sel.host) {
    await hostSummary(detail, sel.host, inv);
  } else {
    overview(detail, inv);
  }
  // a finished task changes the tree (badges)
  let running = new Set();
  const unsub = tasks.subscribe((list) => {
    const now = new Set(list.filter((t) => t.state === 'running').map((t) => t.id));
    const finished = [...running].some((id) => !now.has(id));
    running = now;
    if (finished && alive) loadTree().catch(() => {});
  });
  return () => {
    alive = false;
    unsub();
    if (pageCleanup) pageCleanup();
  };
}

function overview(detail, inv) {
  const enc = inv.vms.filter((v) => v.encrypted).length;
  fill(detail,
    h('h1', {}, 'vmseal-managerd'),
    card('Summary', facts([
      ['Hosts', String(inv.hosts.length)],
      ['Virtual machines', String(inv.vms.length)],
      ['Encrypted VMs', `${enc} of ${inv.vms.length}`],
      ['Logged in as', `${session.user} (${session.role})`],
    ])),
    card('Virtual machines', inv.vms.length ? table(['Name', 'Host', 'Encryption', 'Key provider', 'KEK id'],
      inv.vms.map((v) => h('tr', {},
        h('td', {}, link(v.name, 'vm', v.name)), h('td', {}, v.host),
        h('td', {}, v.encrypted ? badge('Encrypted', 'enc') : badge('Not encrypted', 'plain')),
        h('td', {}, v.kms || '—'), h('td', { class: 'mono' }, v.kek_id || '—'))))
      : h('p', { class: 'muted' }, 'No VMs yet. Select a host to create one.')));
}

async function hostSummary(detail, name, inv) {
  let hst;
  try {
    hst = await api('GET', path('/hosts', name));
  } catch (e) {
    fill(detail, h('h1', {}, name), errorBox(e));
    return;
  }
  const privs = await privilegesOn(`host:${name}`);
  const vms = inv.vms.filter((v) => v.host === name);
  const policySel = h('select', { id: 'host-default-policy' },
    h('option', { value: 'none' }, 'Datastore default (not encrypted)'),
    h('option', { value: 'encrypted' }, 'VM Encryption Policy'));
  policySel.value = hst.default_policy || 'none';
  const msg = h('div');
  fill(detail,
    h('h1', {}, h('span', { class: 'icon-host' }), name),
    card('Summary', facts([
      ['Address', hst.url],
      ['Datastore', hst.datastore],
      ['Certificate', hst.subject],
      ['Pinned certificate (SHA-256)', hst.fingerprint ? h('span', { class: 'mono' }, fingerprint(hst.fingerprint))
        : badge('revoked', 'bad')],
      hst.pending_fingerprint ? ['Certificate waiting for approval',
        h('span', { class: 'mono' }, fingerprint(hst.pending_fingerprint))] : null,
      ['Registered', fmtTime(hst.registered)],
      ['Last seen', fmtTime(hst.last_seen)],
      ['Virtual machines', String(vms.length)],
    ])),
    card('Default encryption policy for new VMs',
      h('div', { class: 'row' }, policySel, opButton('Save', 'host.default-policy', privs, false, async () => {
        try {
          await api('PUT', path('/hosts', name, 'default-policy'), { policy: policySel.value });
          toast(`Default policy of ${name} saved`, 'ok');
        } catch (e) { fill(msg, errorBox(e)); }
      })), msg),
    card('Actions', h('div', { class: 'row' },
      opButton('New virtual machine…', 'vm.create', privs, false, () => newVmDialog(name, privs)),
      hst.pending_fingerprint ? opButton('Approve the new certificate', 'host.approve-cert', privs, false, async () => {
        try {
          await api('POST', path('/hosts', name, 'approve-cert'), { fingerprint: hst.pending_fingerprint });
          location.reload();
        } catch (e) { fill(msg, errorBox(e)); }
      }) : null)));
}

// "New virtual machine" on a host, with the VM Encryption policy or not.
async function newVmDialog(host, privs) {
  let providers = [];
  if (session.privileges.has('Cryptographer.ReadKeyServersInfo')) {
    try { providers = (await api('GET', '/kms')).providers || []; } catch (e) { providers = []; }
  }
  const f = {
    name: h('input', { id: 'nv-name', required: true, maxlength: '64' }),
    cpus: h('input', { id: 'nv-cpus', type: 'number', min: '1', max: '64', value: '1' }),
    mem: h('input', { id: 'nv-memory', type: 'number', min: '16', max: '65536', value: '128' }),
    disk: h('input', { id: 'nv-disk', type: 'number', min: '1', value: '16' }),
    firmware: h('select', { id: 'nv-firmware' }, h('option', { value: 'bios' }, 'BIOS'), h('option', { value: 'uefi' }, 'UEFI')),
    kernel: h('input', { id: 'nv-kernel', placeholder: 'e.g. vmlinuz (in the host\'s images folder)' }),
    initrd: h('input', { id: 'nv-initrd', placeholder: 'e.g. initrd.gz' }),
    append: h('input', { id: 'nv-append', placeholder: 'e.g. console=ttyS0' }),
    policy: h('select', { id: 'nv-policy' },
      h('option', { value: '' }, 'Host default'),
      h('option', { value: 'none' }, 'Datastore default (not encrypted)'),
      h('option', { value: 'encrypted' }, 'VM Encryption Policy')),
    kms: h('select', { id: 'nv-kms' }, h('option', { value: '' }, 'Default key provider'),
      providers.map((p) => h('option', { value: p.name }, p.default ? `${p.name} (default)` : p.name))),
  };
  const encMissing = !privs.has('Cryptographer.EncryptNew');
  if (encMissing) {
    f.policy.querySelector('option[value="encrypted"]').disabled = true;
  }
  const msg = h('div');
  const dlg = h('dialog', { class: 'dialog', id: 'new-vm' });
  const create = h('button', { type: 'submit', class: 'primary', id: 'nv-create' }, 'Create');
  const form = h('form', { method: 'dialog' },
    h('h2', {}, `New virtual machine on ${host}`),
    h('div', { class: 'form-grid' },
      h('label', {}, 'Name', f.name), h('label', {}, 'CPUs', f.cpus),
      h('label', {}, 'Memory (MiB)', f.mem), h('label', {}, 'Disk (MiB)', f.disk),
      h('label', {}, 'Firmware', f.firmware), h('label', {}, 'Kernel', f.kernel),
      h('label', {}, 'Initrd', f.initrd), h('label', {}, 'Kernel command line', f.append),
      h('label', {}, 'VM storage policy', f.policy), h('label', {}, 'Key provider', f.kms)),
    encMissing ? h('p', { class: 'needs' }, 'The VM Encryption Policy requires Cryptographer.EncryptNew') : null,
    msg,
    h('div', { class: 'buttons' },
      h('button', { type: 'button', class: 'secondary', onclick: () => { dlg.close(); dlg.remove(); } }, 'Cancel'),
      create));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { name: f.name.value.trim(), host, cpus: Number(f.cpus.value), memory_mb: Number(f.mem.value),
                   disks: [{ size_mb: Number(f.disk.value) }], firmware: f.firmware.value };
    for (const k of ['kernel', 'initrd', 'append']) if (f[k].value.trim()) body[k] = f[k].value.trim();
    if (f.policy.value) body.policy = f.policy.value;
    if (f.kms.value && f.policy.value === 'encrypted') body.kms = f.kms.value;
    create.disabled = true;
    try {
      await api('POST', '/vms', body);
      dlg.close();
      dlg.remove();
      toast(`VM ${body.name} created`, 'ok');
      location.hash = `#/vm/${encodeURIComponent(body.name)}`;
    } catch (e) {
      fill(msg, errorBox(e));
    } finally { create.disabled = false; }
  });
  dlg.appendChild(form);
  document.body.appendChild(dlg);
  dlg.showModal();
}
