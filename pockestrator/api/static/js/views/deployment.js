// The deployment of a service just created: its superuser password (shown here once, as
// the agent keeps no copy it would show again) and its progress, polled every second,
// until the instance is up (or stopped, when it was created stopped), with its events.

import { get, servicePath } from '../api.js';
import { clock, instanceUrl } from '../format.js';
import { badge, h, mount, setText, updateBadge } from '../render.js';

const PROGRESS_MS = 1000;

/** After the 201: the password (once) and the deployment, until the instance is up. */
export async function showDeployment(root, view, created) {
  const service = created.service;
  const name = service.project_name;
  const url = instanceUrl(service);
  const state = badge(service.status);
  const steps = h('ol', { class: 'steps' });
  const events = h('ul', { class: 'events' });
  const outcome = h('div', { class: 'outcome', 'aria-live': 'polite' });
  mount(
    root,
    h('h1', { tabindex: '-1' }, `Deploying ${name}`),
    created.superuser_password
      ? passwordBox(service.superuser_email, created.superuser_password)
      : null,
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'progress-title' },
      h('h2', { id: 'progress-title' }, 'Progress ', state),
      steps,
      outcome,
      h('h3', {}, 'Events'),
      events,
    ),
  );
  root.querySelector('h1').focus();
  const wantsRunning = service.desired_state === 'running';
  const stepList = [
    ['saved', 'Spec saved'],
    ['reconciled', 'Binary, service directory, systemd unit and Caddy site in place'],
    [
      'running',
      wantsRunning ? 'systemd unit running' : 'systemd unit installed (stopped as asked)',
    ],
    ['healthy', wantsRunning ? 'PocketBase answers its health check' : 'Ready'],
  ];
  const stepItems = Object.fromEntries(
    stepList.map(([key, text]) => [
      key,
      h('li', { class: 'pending' }, h('span', { class: 'step-state' }, 'Waiting: '), text),
    ]),
  );
  steps.append(...Object.values(stepItems));
  const mark = (key, done) => {
    const item = stepItems[key];
    item.className = done ? 'done' : 'pending';
    setText(item.querySelector('.step-state'), done ? 'Done: ' : 'Waiting: ');
  };
  mark('saved', true);

  let finished = false;
  await view.every(PROGRESS_MS, async () => {
    if (finished) return;
    const [detail, history] = await Promise.all([
      get(servicePath(service.id)),
      get(servicePath(service.id, '/events?limit=20')),
    ]);
    const current = detail.service;
    updateBadge(state, current.status);
    const reconciled = history.events.some((event) => event.kind === 'reconciled');
    mark('reconciled', reconciled);
    mark('running', wantsRunning ? detail.runtime_status.is_running : reconciled);
    const ready = current.status === (wantsRunning ? 'active' : 'inactive');
    mark('healthy', ready);
    mount(
      events,
      history.events.map((event) =>
        h(
          'li',
          {},
          h('time', { datetime: event.at }, clock(event.at)),
          h('span', { class: 'kind' }, event.kind.replaceAll('_', ' ')),
          h('span', { class: 'event-message' }, event.message),
        ),
      ),
    );
    if (ready) {
      finished = true;
      mount(
        outcome,
        h(
          'p',
          { class: 'alert success' },
          `${name} is ${wantsRunning ? 'up and running' : 'installed'}.`,
        ),
        h(
          'p',
          { class: 'links' },
          wantsRunning
            ? h(
                'a',
                { class: 'button', href: `${url}_/`, target: '_blank', rel: 'noopener noreferrer' },
                'Open the PocketBase admin UI',
              )
            : null,
          h(
            'a',
            { class: 'button secondary', href: `#/services/${encodeURIComponent(name)}` },
            'Service details',
          ),
        ),
      );
    } else if (current.status === 'error') {
      mount(
        outcome,
        h(
          'p',
          { class: 'alert error', role: 'alert' },
          `Deployment failed: ${current.last_error ?? 'see the events'}. The agent keeps retrying.`,
        ),
        h('p', {}, h('a', { href: `#/services/${encodeURIComponent(name)}` }, 'Service details')),
      );
    }
  });
}

function passwordBox(email, password) {
  const copy = h('button', { type: 'button', class: 'secondary' }, 'Copy password');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(password);
      copy.textContent = 'Copied';
    } catch {
      copy.textContent = 'Select and copy it by hand';
    }
  });
  return h(
    'section',
    { class: 'card secret', 'aria-labelledby': 'secret-title' },
    h('h2', { id: 'secret-title' }, 'Superuser password — shown only this once'),
    h('p', {}, 'Sign in to the PocketBase admin UI (/_/) as ', h('strong', {}, email), ' with:'),
    h(
      'p',
      {},
      h('code', { class: 'password', 'data-testid': 'superuser-password' }, password),
      ' ',
      copy,
    ),
    h('p', { class: 'muted' }, 'Pockestrator keeps no copy it could show again. Store it now.'),
  );
}
