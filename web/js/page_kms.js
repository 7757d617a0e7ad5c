// Key providers: the list with the default marked; per provider vCenter's
// three checks for each KMIP server (connection, KMS certificate, manager
// certificate), green or red with the plain reason; actions.
import { h, fill, badge, table, errorBox, toast, confirmDialog, fmtTime } from './dom.js';
import { api, path, session, opButton, missing } from './api.js';

function check(ok, label, reason, warn) {
  const cls = ok ? (warn ? 'warn' : 'ok') : 'bad';
  return h('div', { class: `check ${cls}`, dataset: { check: label } },
    h('span', { class: 'dot' }), h('b', {}, label), h('span', { class: 'reason' }, reason));
}

function expiry(c) {
  if (!c) return '';
  const d = c.days_left;
  return `${c.status}, expires ${fmtTime(c.not_after)}${d !== undefined ? ` (${d} days)` : ''}`;
}

// The three checks of one server, from GET /kms/{name}/status.
export function serverChecks(s, st) {
  const conn = s.reachable && s.kmip_ok;
  const connReason = conn ? `connected (KMIP ${s.kmip_version || ''}${s.vendor ? `, ${s.vendor}` : ''})`
    : (s.last_error || s.state || 'not connected');
  const kc = s.kms_certificate;
  const kmsOk = !!s.tls_ok || (kc && s.state === 'client refused');
  const kmsReason = kc ? `${kmsOk ? 'trusted' : 'not trusted'}: ${kc.subject}; ${expiry(kc)}`
    : (s.state === 'not trusted' ? 'the manager does not trust this KMS yet' : (s.last_error || s.state || 'unknown'));
  const cc = st.client_certificate;
  const mgrOk = !!cc && s.state !== 'client refused' && s.state !== 'no client certificate' && cc.status !== 'expired';
  const mgrReason = !cc ? 'the manager has no client certificate for this KMS (make a CSR or upload one)'
    : s.state === 'client refused' ? `the KMS refused the manager's certificate: ${s.last_error || ''}`
      : `${s.kms_trusts_manager ? 'accepted by the KMS' : 'not yet confirmed'}: ${cc.subject}; ${expiry(cc)}`;
  return h('div', { class: 'checks', dataset: { server: s.address } },
    h('div', { class: 'server mono' }, s.address),
    check(conn, 'Connection', connReason),
    check(kmsOk && kc && kc.status !== 'expired', 'KMS certificate', kmsReason, kc && kc.status === 'expiring'),
    check(mgrOk, 'Manager certificate', mgrReason, cc && cc.status === 'expiring'));
}

export async function statusInto(box, name) {
  fill(box, h('p', { class: 'muted' }, `Checking ${name}…`));
  try {
    const st = await api('GET', path('/kms', name, 'status'));
    fill(box,
      h('p', {}, 'State: ', st.state === 'connected' ? badge('Connected', 'ok') : badge('Not connected', 'bad')),
      (st.servers || []).map((s) => serverChecks(s, st)));
  } catch (e) {
    fill(box, errorBox(e));
  }
}

export async function render(main) {
  const privs = session.privileges;
  const need = missing('kms.list', privs, false);
  if (need.length) {
    fill(main, h('h1', {}, 'Key providers'),
      h('p', { class: 'needs', id: 'kms-denied' }, `Requires the privilege ${need.join(', ')}`));
    return null;
  }
  const msg = h('div');
  let list;
  try {
    list = (await api('GET', '/kms')).providers || [];
  } catch (e) {
    fill(main, h('h1', {}, 'Key providers'), errorBox(e));
    return null;
  }
  const rows = list.map((p) => {
    const statusBox = h('div', { class: 'status-box' });
    const tr = h('tr', { dataset: { kms: p.name } },
      h('td', {}, h('b', {}, p.name), p.default ? [' ', badge('Default', 'default')] : null),
      h('td', { class: 'mono' }, (p.servers || []).join(', ')),
      h('td', {}, p.trusted ? badge('Trusted', 'ok') : badge('Not trusted', 'bad')),
      h('td', {}, p.client_certificate ? `${p.client_certificate.subject} (${expiry(p.client_certificate)})`
        : (p.csr_pending ? 'CSR made, waiting for the signed certificate' : 'none')),
      h('td', {}, String(p.keks)),
      h('td', { class: 'row' },
        h('button', { type: 'button', class: 'secondary', dataset: { op: 'kms.status' },
                      onclick: () => statusInto(statusBox, p.name) }, 'Check status'),
        h('a', { class: 'button secondary', href: `#/kms/${encodeURIComponent(p.name)}/setup` }, 'Trust…'),
        p.default ? null : opButton('Set as default', 'kms.update', privs, false, async () => {
          try {
            await api('PATCH', path('/kms', p.name), { default: true });
            toast(`${p.name} is the default key provider`, 'ok');
            render(main);
          } catch (e) { fill(msg, errorBox(e)); }
        }),
        opButton('Remove', 'kms.remove', privs, false, async () => {
          if (!await confirmDialog(`Remove key provider ${p.name}?`, h('p', {}, 'Refused while VMs are encrypted with its keys.'), 'Remove', true)) return;
          try {
            await api('DELETE', path('/kms', p.name));
            render(main);
          } catch (e) { fill(msg, errorBox(e)); }
        })));
    return [tr, h('tr', { class: 'status-row' }, h('td', { colspan: '6' }, statusBox))];
  });
  fill(main, h('h1', {}, 'Key providers'),
    h('div', { class: 'row' }, opButton('Add standard key provider…', 'kms.add', privs, false,
      () => { location.hash = '#/kms-add'; }, 'primary')),
    msg,
    list.length ? table(['Key provider', 'KMIP servers', 'KMS certificate', 'Manager certificate', 'KEKs', ''], rows, { id: 'kms-table' })
      : h('p', { class: 'muted' }, 'No key provider yet. Add one to encrypt VMs.'),
    h('p', { class: 'muted small' }, 'vCenter\'s checks, per server: the connection (TCP, TLS and a KMIP Query), '
      + 'the KMS certificate (trusted by the manager, and when it expires) and the manager\'s certificate '
      + '(accepted by the KMS, and when it expires).'));
  // status of each provider, one after the other
  (async () => {
    for (const p of list) {
      const box = main.querySelector(`tr[data-kms="${CSS.escape(p.name)}"] + tr .status-box`);
      if (box && box.isConnected) await statusInto(box, p.name);
    }
  })();
  return null;
}
