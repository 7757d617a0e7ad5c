// vmseal web client: the shell (header, navigation, recent tasks) and a
// hash router (#/inventory, #/vm/NAME, #/kms, #/events, #/admin/users...).
// Routes carry object names only: never a token or anything secret.
import { fill, h, link, errorBox } from './dom.js';
import { resume, logout, session, loadTable, setLoggedOutHandler } from './api.js';
import * as loginPage from './page_login.js';
import * as inventory from './page_inventory.js';
import * as vmPage from './page_vm.js';
import * as kmsPage from './page_kms.js';
import * as wizard from './page_kms_wizard.js';
import * as eventsPage from './page_events.js';
import * as admin from './page_admin.js';
import * as consolePage from './page_console.js';
import * as vncPage from './page_vnc.js';
import * as tasks from './tasks.js';

const main = () => document.getElementById('main');
let cleanup = null;
let loggedIn = false;

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  return raw ? raw.split('/').map((p) => decodeURIComponent(p)) : [];
}

const NAV = [
  ['Inventory', 'inventory'],
  ['Key providers', 'kms'],
  ['Events', 'events'],
  ['Administration', 'admin', 'users'],
];

function renderShell() {
  const r = parseRoute()[0] || 'inventory';
  fill(document.getElementById('nav'), NAV.map(([label, ...parts]) => {
    const a = link(label, ...parts);
    if (parts[0] === r || (r === 'vm' || r === 'host') && parts[0] === 'inventory' ||
        r === 'kms-add' && parts[0] === 'kms') a.classList.add('active');
    return a;
  }));
  fill(document.getElementById('who'),
    h('span', { class: 'user', title: `role ${session.role}` }, session.user),
    h('span', { class: 'muted' }, ` (${session.role}) `),
    h('button', { type: 'button', class: 'link', id: 'logout', onclick: doLogout }, 'Log out'));
}

async function doLogout() {
  await logout().catch(() => {});
  showLogin('You have logged out.');
}

function showLogin(message) {
  loggedIn = false;
  generation++;
  if (cleanup) cleanup();
  cleanup = null;
  tasks.stop();
  fill(document.getElementById('nav'));
  fill(document.getElementById('who'));
  loginPage.render(main(), message, async () => {
    loggedIn = true;
    await start();
  });
}

let generation = 0;

async function route() {
  if (!loggedIn) return;
  if (cleanup) { try { cleanup(); } catch (e) { /* page gone */ } }
  cleanup = null;
  const gen = ++generation;
  renderShell();
  const [page, ...args] = parseRoute();
  // each route renders into a fresh container: a slower earlier render
  // that finishes late writes into a detached one
  const el = h('div', { class: 'page' });
  fill(main(), el);
  let done = null;
  try {
    switch (page || 'inventory') {
      case 'inventory': done = await inventory.render(el, null); break;
      case 'host': done = await inventory.render(el, { host: args[0] }); break;
      case 'vm':
        if (args[1] === 'console') done = await consolePage.render(el, args[0]);
        else if (args[1] === 'vnc') done = await vncPage.render(el, args[0]);
        else done = await inventory.render(el, { vm: args[0] }, vmPage);
        break;
      case 'kms': done = await (args[1] === 'setup' ? wizard.render(el, args[0]) : kmsPage.render(el)); break;
      case 'kms-add': done = await wizard.render(el, null); break;
      case 'events': done = await eventsPage.render(el); break;
      case 'admin': done = await admin.render(el, args[0] || 'users'); break;
      default: fill(el, h('h1', {}, 'Not found'), h('p', {}, 'No such page.'));
    }
  } catch (e) {
    append404(el, e);
  }
  // a page that finished after the user moved on stops at once
  if (gen !== generation) { if (done) done(); } else cleanup = done;
}

function append404(el, e) {
  el.appendChild(errorBox(e));
}


async function start() {
  await loadTable();
  renderShell();
  tasks.start(document.getElementById('tasks'));
  if (!location.hash) history.replaceState(null, '', '#/inventory');
  await route();
}

window.addEventListener('hashchange', route);
setLoggedOutHandler((msg) => { if (loggedIn) showLogin(msg); });

(async () => {
  try {
    await loadTable();
    if (await resume()) {
      loggedIn = true;
      await start();
    } else showLogin();
  } catch (e) {
    fill(main(), errorBox(e));
  }
})();
