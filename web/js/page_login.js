// Log in: the same users, roles and sessions as the API and the CLI.
import { fill, h, errorBox } from './dom.js';
import { login } from './api.js';

export function render(main, message, onDone) {
  const user = h('input', { id: 'login-user', name: 'user', autocomplete: 'username', required: true,
                            maxlength: '64', autofocus: true });
  const pw = h('input', { id: 'login-password', name: 'password', type: 'password',
                          autocomplete: 'current-password', required: true, maxlength: '1024' });
  const msg = h('div', { class: 'login-msg' }, message ? h('p', { class: 'muted' }, message) : null);
  const btn = h('button', { type: 'submit', class: 'primary', id: 'login-submit' }, 'Log in');
  const form = h('form', { class: 'login', method: 'post', id: 'login-form' },
    h('h1', {}, 'vmseal'),
    h('p', { class: 'muted' }, 'VM encryption manager'),
    h('label', {}, 'User name', user),
    h('label', {}, 'Password', pw),
    btn, msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    btn.disabled = true;
    fill(msg);
    try {
      await login(user.value.trim(), pw.value);
      pw.value = '';
      await onDone();
    } catch (e) {
      fill(msg, errorBox(e));
    } finally {
      btn.disabled = false;
    }
  });
  fill(main, form);
  user.focus();
}
