// Sign in with an admin's e-mail and password; the session token goes to sessionStorage.

import { ApiError, getSession, post, saveSession } from '../api.js';
import { field, h, mount } from '../render.js';
import { navigate } from '../shell.js';

export const title = 'Sign in';

export async function show(root, view) {
  const next = view.query.get('next');
  const target = next && next.startsWith('/') && next !== '/login' ? next : '/services';
  if (getSession()) {
    navigate(`#${target}`);
    return;
  }
  const email = h('input', { type: 'email', autocomplete: 'username', required: true });
  const password = h('input', {
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const alert = h('p', { class: 'alert error', role: 'alert', hidden: true });

  const form = h(
    'form',
    { class: 'card narrow', novalidate: true, onsubmit: signIn },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Sign in with a Pockestrator admin account.'),
    alert,
    field({ name: 'email', label: 'E-mail', control: email }),
    field({ name: 'password', label: 'Password', control: password }),
    submit,
    h(
      'p',
      { class: 'hint' },
      'On the sandbox (pockestrator up), the admin and its password are printed at start-up.',
    ),
  );
  mount(root, h('div', { class: 'login' }, form));
  email.focus();

  async function signIn(event) {
    event.preventDefault();
    alert.hidden = true;
    if (!email.value || !password.value) {
      showAlert('Enter your e-mail and password.');
      (email.value ? password : email).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      saveSession(await post('/auth/login', { email: email.value, password: password.value }));
      navigate(`#${target}`);
    } catch (error) {
      showAlert(loginProblem(error));
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  }

  function showAlert(text) {
    alert.textContent = text;
    alert.hidden = false;
  }
}

function loginProblem(error) {
  if (!(error instanceof ApiError)) return `The agent did not answer: ${error.message}`;
  if (error.status === 401) return 'Wrong e-mail or password.';
  // Both throttle rules count failures from the client's address: of this e-mail there,
  // or of any e-mail (the API's description of POST /auth/login says how long each lasts).
  if (error.status === 429)
    return 'Too many failed sign-ins from this network address; try again later.';
  return error.message;
}
