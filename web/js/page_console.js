// A VM's serial console, read-only: GET /vms/{name}/log (for an encrypted
// VM the host unseals its sealed log; reading it needs
// Cryptographer.Access and is recorded as an event). The display: page_vnc.js.
import { h, fill, errorBox, link } from './dom.js';
import { api, path, query, privilegesOn, missing } from './api.js';

export async function render(main, name) {
  const out = h('pre', { class: 'console', id: 'console-text' });
  const info = h('div', { class: 'muted', id: 'console-info' });
  const msg = h('div');
  const follow = h('input', { type: 'checkbox', id: 'console-follow' });
  let timer = null;
  let alive = true;
  let vm;
  try {
    vm = await api('GET', `${path('/vms', name)}${query({ live: 0 })}`);
  } catch (e) {
    fill(main, h('h1', {}, `${name}: serial console`), errorBox(e));
    return null;
  }
  const privs = await privilegesOn(`vm:${name}`);
  const miss = missing('vm.log', privs, vm.encrypted);
  async function load() {
    clearTimeout(timer);
    try {
      const d = await api('GET', `${path('/vms', name, 'log')}${query({ tail: 65536 })}`);
      const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.textContent = d.log || '';
      if (atEnd) out.scrollTop = out.scrollHeight;
      fill(info, `${d.encrypted ? 'Sealed log (encrypted VM)' : 'Clear log'}: ${d.bytes} bytes logged; `
        + 'the last 64 KiB are shown.');
      fill(msg);
    } catch (e) {
      fill(msg, errorBox(e));
    }
    if (alive && follow.checked) timer = setTimeout(load, 2000);
  }
  follow.addEventListener('change', () => { if (follow.checked) load(); else clearTimeout(timer); });
  fill(main,
    h('h1', {}, link(name, 'vm', name), ': serial console'),
    h('p', { class: 'muted' }, 'Read-only. ',
      vm.encrypted ? 'This VM is encrypted: its console is sealed on the host and reading it is recorded as an event.' : ''),
    miss.length ? h('p', { class: 'needs', id: 'console-denied' }, `Requires the privilege ${miss.join(', ')}`)
      : [h('div', { class: 'row' },
        h('button', { type: 'button', class: 'secondary', id: 'console-refresh', onclick: load }, 'Refresh'),
        h('label', { class: 'inline' }, follow, ' Follow (every 2 s)')),
      info, msg, out]);
  if (!miss.length) await load();
  return () => { alive = false; clearTimeout(timer); };
}
