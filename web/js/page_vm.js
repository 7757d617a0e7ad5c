// A VM's summary (as the vSphere Client's "Summary" tab with VM Encryption):
// hardware, encryption (policy, key provider, KEK id, locked and why),
// disks; actions power on/off, VM storage policy (encrypt/decrypt),
// shallow and deep re-encrypt, serial console; the running task with live
// progress, and the VM's recent events.
import { h, fill, badge, facts, card, table, errorBox, toast, link, progress, confirmDialog, fmtTime } from './dom.js';
import { api, path, query, privilegesOn, opButton, session } from './api.js';
import { vmBadges, powerOf } from './page_inventory.js';
import { eventRow, EVENT_HEADERS } from './page_events.js';
import * as tasks from './tasks.js';

const POLICY = { encrypted: 'VM Encryption Policy', none: 'Datastore default' };

export async function render(detail, name, ctx) {
  let alive = true;
  let taskTimer = null;
  const taskBox = h('div', { id: 'vm-task' });
  const msg = h('div', { id: 'vm-msg' });

  async function load() {
    const [vm, privs] = await Promise.all([api('GET', path('/vms', name)), privilegesOn(`vm:${name}`)]);
    return { vm, privs };
  }

  // Follow a task of this VM until it ends, with its progress bar.
  async function watchTask(id) {
    clearTimeout(taskTimer);
    if (!alive) return;
    let t;
    try {
      t = await api('GET', path('/tasks', String(id)));
    } catch (e) {
      fill(taskBox, errorBox(e));
      return;
    }
    fill(taskBox, card('Running task', table(['Task', 'Target', 'Status', 'Initiator', 'Started'], [tasks.taskRow(t)])));
    tasks.kick();
    if (t.state === 'running') {
      taskTimer = setTimeout(() => watchTask(id), 500);
    } else {
      if (t.state === 'success') toast(`${t.action} of ${name}: completed`, 'ok');
      else toast(`${t.action} of ${name} failed: ${t.error || ''}`, 'bad');
      await draw();
      fill(taskBox, card('Last task', table(['Task', 'Target', 'Status', 'Initiator', 'Started'], [tasks.taskRow(t)])));
      if (ctx && ctx.reloadTree) ctx.reloadTree();
    }
  }

  async function act(what, fn) {
    fill(msg);
    try {
      const r = await fn();
      if (r && r.task) {
        toast(`${what}: task ${r.task.id} started`, 'ok');
        watchTask(r.task.id);
      } else {
        if (r && r.changed === false) toast(`${what}: nothing to do, already applied`, 'ok');
        else toast(`${what}: done`, 'ok');
        await draw();
        if (ctx && ctx.reloadTree) ctx.reloadTree();
      }
    } catch (e) {
      fill(msg, errorBox(e));
    }
  }

  async function draw() {
    let vm, privs;
    try {
      ({ vm, privs } = await load());
    } catch (e) {
      fill(detail, h('h1', {}, name), errorBox(e));
      return;
    }
    if (!alive) return;
    const rt = vm.runtime || {};
    const enc = !!vm.encrypted;
    const p = powerOf(vm);

    // VM storage policy: apply the VM Encryption Policy or the datastore default
    const policySel = h('select', { id: 'vm-policy' },
      h('option', { value: 'encrypted' }, POLICY.encrypted), h('option', { value: 'none' }, POLICY.none));
    policySel.value = vm.policy === 'encrypted' ? 'encrypted' : 'none';
    let kmsSel = null;
    if (session.privileges.has('Cryptographer.ReadKeyServersInfo')) {
      try {
        const provs = (await api('GET', '/kms')).providers || [];
        kmsSel = h('select', { id: 'vm-kms' }, h('option', { value: '' }, 'Default key provider'),
          provs.map((x) => h('option', { value: x.name }, x.default ? `${x.name} (default)` : x.name)));
      } catch (e) { kmsSel = null; }
    }
    const applyPolicy = async () => {
      const want = policySel.value;
      if (want === (vm.policy === 'encrypted' ? 'encrypted' : 'none')) {
        toast(`${name} already has the ${POLICY[want]}`, 'ok');
        return;
      }
      const body = { policy: want };
      if (want === 'encrypted' && kmsSel && kmsSel.value) body.kms = kmsSel.value;
      const text = want === 'encrypted'
        ? [h('p', {}, `Encrypt ${name}: the manager gets a new key encryption key (KEK) from the key provider, `
            + 'hands it sealed to the host, and the host converts every disk and the NVRAM to encrypted images.'),
           h('p', {}, 'The VM must be powered off. Progress is shown as a task.')]
        : [h('p', {}, `Decrypt ${name}: every disk is rewritten in clear and the VM's KEK is retired.`),
           h('p', {}, 'The VM must be powered off. Anyone with access to the datastore can then read its data.')];
      if (await confirmDialog(want === 'encrypted' ? `Encrypt ${name}?` : `Decrypt ${name}?`, text,
        want === 'encrypted' ? 'Encrypt' : 'Decrypt', want !== 'encrypted')) {
        act(want === 'encrypted' ? 'Encrypt' : 'Decrypt', () => api('PATCH', path('/vms', name), body));
      }
    };
    const policyBtn = () => opButton('Apply policy', policySel.value === 'encrypted' ? 'vm.encrypt' : 'vm.decrypt',
      privs, false, applyPolicy, 'primary');
    const policyBtnBox = h('span', { id: 'vm-policy-apply' }, policyBtn());
    policySel.addEventListener('change', () => fill(policyBtnBox, policyBtn()));

    const rekey = async () => {
      const shallow = h('input', { type: 'radio', name: 'rekey', value: 'shallow', id: 'rekey-shallow', checked: true });
      const deep = h('input', { type: 'radio', name: 'rekey', value: 'deep', id: 'rekey-deep' });
      const ok = await confirmDialog(`Re-encrypt ${name}`, [
        h('label', { class: 'choice' }, shallow, h('b', {}, 'Shallow re-encrypt'),
          h('span', { class: 'muted' }, ' — a new KEK from the key provider; the key safes holding the VM\'s and '
            + 'the disks\' secrets are rewrapped with it. The data on the disks is not touched: quick, and '
            + 'allowed while the VM runs.')),
        h('label', { class: 'choice' }, deep, h('b', {}, 'Deep re-encrypt'),
          h('span', { class: 'muted' }, ' — new data encryption keys for every disk: all data is re-encrypted '
            + '(takes time in proportion to the disks\' size), and a new KEK as well. The VM must be powered off.')),
      ], 'Re-encrypt');
      if (ok) {
        const isDeep = deep.checked;
        act(isDeep ? 'Deep re-encrypt' : 'Shallow re-encrypt',
          () => api('POST', path('/vms', name, 'rekey'), { deep: isDeep }));
      }
    };

    const disks = rt.disks || (vm.disks || []).map((d, i) => ({ index: i, size_mb: d.size_mb }));
    fill(detail,
      h('h1', {}, h('span', { class: `power ${p || 'unknown'}` }), name, ' ', vmBadges(vm)),
      msg,
      card('Actions', h('div', { class: 'row actions' },
        opButton('Power on', 'vm.power-on', privs, enc,
          () => act('Power on', () => api('POST', path('/vms', name, 'power-on'))), p === 'on' ? 'secondary' : 'primary'),
        opButton('Power off', 'vm.power-off', privs, enc, async () => {
          if (await confirmDialog(`Power off ${name}?`, h('p', {}, 'The guest gets an ACPI power-button press and is '
            + 'stopped after its grace time.'), 'Power off', true)) act('Power off', () => api('POST', path('/vms', name, 'power-off')));
        }),
        enc ? opButton('Re-encrypt…', 'vm.rekey', privs, enc, rekey) : null,
        opButton('Serial console', 'vm.log', privs, enc, () => { location.hash = `#/vm/${encodeURIComponent(name)}/console`; }),
        opButton('Console (VNC)', 'vm.vnc', privs, enc, () => { location.hash = `#/vm/${encodeURIComponent(name)}/vnc`; }),
        h('span', { class: 'op-denied' }, h('button', { type: 'button', disabled: true, dataset: { op: 'vm.migrate' } }, 'Migrate'),
          h('span', { class: 'needs' }, 'not available yet (issue 10)')))),
      taskBox,
      h('div', { class: 'cards' },
        card('VM storage policy', facts([
          ['Policy', h('span', { id: 'vm-policy-name' }, POLICY[vm.policy] || vm.policy)],
          ['Encryption', enc ? badge('Encrypted', 'enc') : badge('Not encrypted', 'plain')],
          ['Key provider', vm.kms],
          ['KEK id', vm.kek_id ? h('span', { class: 'mono', id: 'vm-kek' }, vm.kek_id) : null],
          ['Locked', rt.locked ? h('span', { class: 'bad', id: 'vm-locked' }, `yes: ${rt.locked_reason || ''}`)
            : (vm.runtime ? 'no' : null)],
          rt.pending_operation ? ['Unfinished operation', rt.pending_operation] : null,
        ]),
        h('div', { class: 'row' }, policySel, kmsSel, policyBtnBox)),
        card('VM hardware', facts([
          ['Host', link(vm.host, 'host', vm.host)],
          ['UUID', h('span', { class: 'mono' }, vm.uuid)],
          ['CPUs', String(vm.cpus || rt.cpus || '')],
          ['Memory', `${vm.memory_mb || rt.memory_mb || '?'} MiB`],
          ['Firmware', vm.firmware || rt.firmware],
          ['Kernel', vm.kernel || rt.kernel],
          ['Initrd', vm.initrd || rt.initrd],
          ['Kernel command line', h('span', { class: 'mono', id: 'vm-append' }, vm.append || rt.append || '')],
          ['Network adapters', (vm.nics && vm.nics.length) ? vm.nics.map((n) => JSON.stringify(n)).join(', ') : 'none'],
          ['Power', p ? (p === 'on' ? 'Powered on' : 'Powered off') : (vm.runtime_error || 'unknown')],
          ['Created', fmtTime(vm.created)],
        ]))),
      card('Disks', table(['Disk', 'Size', 'Encrypted', 'File', 'LUKS UUID'], disks.map((d) => h('tr', {},
        h('td', {}, `Hard disk ${Number(d.index) + 1}`), h('td', {}, `${d.size_mb} MiB`),
        h('td', {}, d.encrypted === undefined ? '—' : (d.encrypted ? badge('Encrypted', 'enc') : badge('No', 'plain'))),
        h('td', { class: 'mono' }, d.file || '—'), h('td', { class: 'mono' }, d.luks_uuid || '—'))))),
      h('div', { id: 'vm-events' }));
    if (vm.task && !taskTimer) watchTask(vm.task);
    if (session.privileges.has('System.Read')) recentEvents(name, detail.querySelector('#vm-events'));
  }

  await draw();
  return () => { alive = false; clearTimeout(taskTimer); };
}

async function recentEvents(name, box) {
  try {
    const [a, b] = await Promise.all([
      api('GET', `/events${query({ object: name, since: -15 })}`),
      api('GET', `/events${query({ object: `vm:${name}`, since: -15 })}`),
    ]);
    const evs = [...(a.events || []), ...(b.events || [])].sort((x, y) => y.id - x.id).slice(0, 15);
    fill(box, card('Recent events', evs.length ? table(EVENT_HEADERS, evs.map(eventRow))
      : h('p', { class: 'muted' }, 'None.')));
  } catch (e) {
    fill(box, card('Recent events', errorBox(e)));
  }
}
