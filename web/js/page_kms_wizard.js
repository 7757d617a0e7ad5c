// "Add standard key provider" (as vCenter's wizard), or the trust steps of
// an existing one (#/kms/NAME/setup):
//   1. name and KMIP servers (host:port, in failover order)
//   2. "Trust KMS": the chain the server presents, with SHA-256
//      fingerprints, shown before anything is trusted; the administrator
//      compares the fingerprint and trusts the CA (or self-signed cert)
//   3. "Make KMS trust the manager": a CSR for the KMS to sign, then its
//      certificate; or a certificate and key the KMS issued
//   4. the three status checks
import { h, fill, card, table, errorBox, toast, fingerprint, fmtTime, badge } from './dom.js';
import { api, path, session, missing } from './api.js';
import { statusInto } from './page_kms.js';

const readFile = (input) => (input.files && input.files[0] ? input.files[0].text() : Promise.resolve(''));

export async function render(main, existing) {
  const need = missing('kms.add', session.privileges, false);
  const title = existing ? `Key provider ${existing}: trust` : 'Add standard key provider';
  if (need.length) {
    fill(main, h('h1', {}, title), h('p', { class: 'needs' }, `Requires the privilege ${need.join(', ')}`));
    return null;
  }
  let name = existing;
  const steps = h('ol', { class: 'steps' });
  const body = h('div', { class: 'wizard-body' });
  const STEPS = ['Name and servers', 'Trust the KMS', 'Make the KMS trust the manager', 'Status'];
  const go = (i) => {
    fill(steps, STEPS.map((s, k) => h('li', { class: k === i ? 'current' : (k < i ? 'done' : '') }, s)));
    [stepName, stepTrust, stepClient, stepStatus][i]();
  };
  fill(main, h('h1', {}, title), h('div', { class: 'wizard', id: 'kms-wizard' }, steps, body));

  function stepName() {
    const n = h('input', { id: 'kw-name', required: true, maxlength: '32', placeholder: 'e.g. kms-cluster-1' });
    const servers = h('textarea', { id: 'kw-servers', rows: '3', required: true,
                                    placeholder: 'kms1.example.com:5696\nkms2.example.com:5696' });
    const def = h('input', { id: 'kw-default', type: 'checkbox' });
    const msg = h('div', { id: 'kw-msg' });
    const form = h('form', { class: 'form', id: 'kw-form-name' },
      h('label', {}, 'Name', n),
      h('label', {}, 'KMIP servers (host:port, one per line, in failover order)', servers),
      h('label', { class: 'inline' }, def, ' Make this the default key provider'),
      msg,
      h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', id: 'kw-next' }, 'Add and continue')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const b = { name: n.value.trim(), servers: servers.value.split('\n').map((s) => s.trim()).filter(Boolean) };
      if (def.checked) b.default = true;
      try {
        await api('POST', '/kms', b);
        name = b.name;
        toast(`Key provider ${name} added`, 'ok');
        go(1);
      } catch (e) {
        fill(msg, errorBox(e));
      }
    });
    fill(body, form);
  }

  async function stepTrust() {
    fill(body, h('p', { class: 'muted' }, `Asking the servers of ${name} for their certificate…`));
    let cert;
    try {
      cert = await api('GET', path('/kms', name, 'server-certificate'));
    } catch (e) {
      fill(body, errorBox(e), h('div', { class: 'buttons' },
        h('button', { type: 'button', class: 'secondary', onclick: () => stepTrust() }, 'Try again'),
        h('button', { type: 'button', class: 'secondary', onclick: () => go(2) }, 'Skip')));
      return;
    }
    const chain = cert.chain || [];
    // the default choice: the top-most CA or self-signed certificate
    let pick = -1;
    chain.forEach((c, i) => { if (c.is_ca || c.self_signed) pick = i; });
    const radios = chain.map((c, i) => h('input', { type: 'radio', name: 'kw-cert', value: String(i),
      disabled: !(c.is_ca || c.self_signed), checked: i === pick }));
    const msg = h('div', { id: 'kw-msg' });
    fill(body,
      h('p', {}, `The server ${cert.server} presents this certificate chain. It is not trusted yet: compare the `
        + 'SHA-256 fingerprint with the one the KMS administrator gives you before you trust it.'),
      table(['', 'Subject', 'Issuer', 'SHA-256 fingerprint', 'Valid until', 'Kind'], chain.map((c, i) => h('tr', { dataset: { cert: String(i) } },
        h('td', {}, radios[i]),
        h('td', { class: 'subject' }, c.subject), h('td', {}, c.issuer),
        h('td', { class: 'mono fingerprint' }, fingerprint(c.sha256)),
        h('td', {}, fmtTime(c.not_after)),
        h('td', {}, c.is_ca ? badge('CA', 'ok') : (c.self_signed ? badge('self-signed', 'warn') : badge('leaf', 'plain')))))),
      pick < 0 ? h('p', { class: 'error' }, 'No certificate in the chain is a CA or self-signed: ask the KMS administrator for the CA certificate.') : null,
      msg,
      h('div', { class: 'buttons' },
        h('button', { type: 'button', class: 'secondary', id: 'kw-skip-trust', onclick: () => go(2) }, 'Skip'),
        h('button', { type: 'button', class: 'primary', id: 'kw-trust', disabled: pick < 0, onclick: async () => {
          const i = radios.findIndex((r) => r.checked);
          if (i < 0) return;
          try {
            await api('PUT', path('/kms', name, 'trust'), { ca_pem: chain[i].pem });
            toast(`The manager trusts ${chain[i].subject}`, 'ok');
            go(2);
          } catch (e) { fill(msg, errorBox(e)); }
        } }, 'Trust this certificate')));
  }

  function stepClient() {
    const msg = h('div', { id: 'kw-msg' });
    const cn = h('input', { id: 'kw-cn', placeholder: 'common name (optional)' });
    const csrOut = h('div');
    const signed = h('input', { type: 'file', id: 'kw-signed', accept: '.crt,.pem,.cer' });
    const cert = h('input', { type: 'file', id: 'kw-cert', accept: '.crt,.pem,.cer' });
    const key = h('input', { type: 'file', id: 'kw-key', accept: '.key,.pem' });
    const upload = async (certPem, keyPem) => {
      const b = { cert_pem: certPem };
      if (keyPem) b.key_pem = keyPem;
      try {
        await api('PUT', path('/kms', name, 'client-certificate'), b);
        toast('Client certificate stored', 'ok');
        go(3);
      } catch (e) { fill(msg, errorBox(e)); }
    };
    fill(body,
      h('p', {}, 'The KMS must know the manager too. Choose one:'),
      card('A: the manager makes a certificate signing request',
        h('div', { class: 'row' }, cn, h('button', { type: 'button', class: 'secondary', id: 'kw-csr', onclick: async () => {
          try {
            const b = cn.value.trim() ? { common_name: cn.value.trim() } : {};
            const r = await api('POST', path('/kms', name, 'csr'), b);
            fill(csrOut, h('p', {}, 'Give this CSR to the KMS administrator to sign (client authentication):'),
              h('textarea', { readonly: true, rows: '8', class: 'mono', id: 'kw-csr-pem', value: r.csr_pem }));
          } catch (e) { fill(msg, errorBox(e)); }
        } }, 'Generate CSR')),
        csrOut,
        h('label', {}, 'Then upload the certificate the KMS signed', signed),
        h('button', { type: 'button', class: 'primary', id: 'kw-upload-signed', onclick: async () => upload(await readFile(signed)) },
          'Upload signed certificate')),
      card('B: upload a certificate and private key the KMS issued',
        h('label', {}, 'Certificate (PEM)', cert), h('label', {}, 'Private key (PEM)', key),
        h('button', { type: 'button', class: 'primary', id: 'kw-upload', onclick: async () => upload(await readFile(cert), await readFile(key)) },
          'Upload certificate and key')),
      msg,
      h('div', { class: 'buttons' }, h('button', { type: 'button', class: 'secondary', onclick: () => go(3) }, 'Skip')));
  }

  function stepStatus() {
    const box = h('div', { id: 'kw-status' });
    fill(body, box, h('div', { class: 'buttons' },
      h('button', { type: 'button', class: 'secondary', onclick: () => statusInto(box, name) }, 'Check again'),
      h('a', { class: 'button primary', href: '#/kms', id: 'kw-done' }, 'Done')));
    statusInto(box, name);
  }

  go(existing ? 1 : 0);
  return null;
}
