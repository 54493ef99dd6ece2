// Staff sign-in shared by the agent console, wallboard and reviewer console.
// The token is kept in sessionStorage (this tab only) under one key per app.
import { api } from './api.js';
import { h, clear } from './dom.js';
import { t, tx } from './i18n.js';

export function staffSession(app) {
  const key = 'vbranch.staff.' + app;
  return {
    get() {
      try {
        const s = JSON.parse(sessionStorage.getItem(key) || 'null');
        if (s && s.expires_at && Date.parse(s.expires_at) < Date.now()) return null;
        return s;
      } catch { return null; }
    },
    set(v) { sessionStorage.setItem(key, JSON.stringify(v)); },
    clear() { sessionStorage.removeItem(key); sessionStorage.removeItem(key + '.resume'); },
    resumeKey: key + '.resume',
  };
}

/**
 * Render the sign-in form into `container`; calls onSignedIn({token, role, display_name, ...}).
 * `roles`: the roles allowed on this page.
 */
export function renderLogin(container, { roles, onSignedIn, notice }) {
  clear(container);
  const error = h('p', { class: 'form-error', role: 'alert', id: 'login-error' });
  if (notice) tx(error, notice);
  const user = h('input', { id: 'login-username', name: 'username', testid: 'login-username', autocomplete: 'username',
    required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { id: 'login-password', name: 'password', type: 'password', testid: 'login-password',
    autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block', testid: 'login-submit', i18n: 'login.submit' });
  const form = h('form', { class: 'card login-card', 'aria-labelledby': 'login-title', novalidate: true },
    h('h2', { id: 'login-title', i18n: 'login.title' }),
    h('div', { class: 'field' }, h('label', { for: 'login-username', i18n: 'login.username' }), user),
    h('div', { class: 'field' }, h('label', { for: 'login-password', i18n: 'login.password' }), pass),
    error, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!user.value.trim() || !pass.value) { tx(error, 'login.failed'); return; }
    submit.disabled = true;
    tx(submit, 'login.busy');
    error.textContent = '';
    try {
      const s = await api('/api/v1/auth/login', { method: 'POST', body: { username: user.value.trim(), password: pass.value } });
      if (!roles.includes(s.role)) {
        tx(error, 'login.wrong_role', { role: s.role });
        return;
      }
      s.username = user.value.trim();
      onSignedIn(s);
    } catch (err) {
      tx(error, err.status === 0 ? 'login.network' : 'login.failed');
      pass.select();
    } finally {
      submit.disabled = false;
      tx(submit, 'login.submit');
    }
  });
  container.append(form);
  user.focus();
  return form;
}

export { t };
