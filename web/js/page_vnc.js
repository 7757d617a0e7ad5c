// A VM's display in the browser: noVNC (Debian's novnc package, compiled
// into vmseal-managerd at build time and served under /ui/novnc/) over the
// manager's websocket GET /api/v1/vms/{name}/vnc. The session cookie
// authenticates it (the manager checks the Origin); it needs the same
// privileges as the serial console: VirtualMachine.Interact.ConsoleInteract,
// and Cryptographer.Access when the VM is encrypted (opening it is an event).
import { h, fill, errorBox, link } from './dom.js';
import { api, path, query, privilegesOn, missing } from './api.js';

export async function render(main, name) {
  let vm;
  try {
    vm = await api('GET', `${path('/vms', name)}${query({ live: 0 })}`);
  } catch (e) {
    fill(main, h('h1', {}, `${name}: console`), errorBox(e));
    return null;
  }
  const privs = await privilegesOn(`vm:${name}`);
  const miss = missing('vm.vnc', privs, vm.encrypted);
  const status = h('div', { class: 'muted', id: 'vnc-status' }, 'Connecting…');
  const screen = h('div', { class: 'vnc-screen', id: 'vnc-screen' });
  fill(main,
    h('h1', {}, link(name, 'vm', name), ': console'),
    h('p', { class: 'muted' }, 'The VM\'s display (VNC, through the manager). ',
      vm.encrypted ? 'This VM is encrypted: opening its console is recorded as an event.' : ''),
    miss.length ? h('p', { class: 'needs', id: 'vnc-denied' }, `Requires the privilege ${miss.join(', ')}`)
      : [status, screen]);
  if (miss.length) return null;
  let RFB;
  try {
    ({ default: RFB } = await import('/ui/novnc/core/rfb.js'));
  } catch (e) {
    fill(status, 'This manager was built without noVNC (Debian package novnc): no VNC console here.');
    return null;
  }
  let rfb;
  try {
    rfb = new RFB(screen, `wss://${location.host}/api/v1${path('/vms', name, 'vnc')}`, { wsProtocols: [] });
  } catch (e) {
    fill(status, errorBox(e));
    return null;
  }
  rfb.scaleViewport = true;
  rfb.addEventListener('connect', () => fill(status, 'Connected: keyboard and mouse go to the VM.'));
  rfb.addEventListener('disconnect', (ev) => fill(status, ev.detail && ev.detail.clean
    ? 'Disconnected.' : 'The console was closed (the VM is off, or the connection was refused).'));
  return () => { try { rfb.disconnect(); } catch (e) { /* gone already */ } };
}
