// Webhooks: the list (where events go, which ones, how their deliveries went), adding one
// (its signing secret is shown here once, never again), deleting one, sending a test
// event, and each webhook's last deliveries with the receiver's answer and time.

import { ApiError, del, get, post } from '../api.js';
import { since, when } from '../format.js';
import { button, card, field, fieldMessage, h, mount, setText } from '../render.js';
import { notify } from '../shell.js';

export const title = 'Webhooks';
const REFRESH_MS = 5000;

const list = (text) =>
  text
    .split(/[\s,]+/)
    .map((item) => item.trim())
    .filter(Boolean);

export async function show(root, view) {
  const body = h('tbody');
  const secretBox = h('div', { class: 'alert success', role: 'status', hidden: true });
  const deliveries = h('section', { class: 'card wide', hidden: true, 'aria-live': 'polite' });
  const url = h('input', {
    type: 'url',
    required: true,
    placeholder: 'https://hooks.example.com/pockestrator',
    autocomplete: 'off',
  });
  const kinds = h('input', { type: 'text', placeholder: 'process_restarted, crash_loop' });
  const services = h('input', { type: 'text', placeholder: 'blog, shop' });
  const fields = {
    url: field({ name: 'url', label: 'URL', control: url, hint: 'http(s), no credentials' }),
    kinds: field({
      name: 'kinds',
      label: 'Only these kinds',
      control: kinds,
      hint: 'Comma-separated; empty: every kind',
    }),
    services: field({
      name: 'services',
      label: 'Only these services',
      control: services,
      hint: 'Comma-separated project names; empty: every service',
    }),
  };
  const form = h(
    'form',
    { class: 'form', novalidate: true, onsubmit: add },
    fields.url,
    fields.kinds,
    fields.services,
    h('button', { type: 'submit' }, 'Add webhook'),
  );
  let shown = null; // the webhook whose deliveries are open

  mount(
    root,
    h('h1', {}, 'Webhooks'),
    h(
      'p',
      { class: 'muted' },
      'Every event the agent records is delivered as signed JSON to each webhook whose filter ' +
        'it passes, retried until the receiver answers 2xx (docs/observability.md).',
    ),
    secretBox,
    h(
      'div',
      { class: 'grid' },
      card(
        'Webhooks',
        { class: 'card wide' },
        h(
          'table',
          {},
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['URL', 'Filter', 'Delivered', 'Pending', 'Failed', 'Last delivery', ''].map((t) =>
                h('th', { scope: 'col' }, t),
              ),
            ),
          ),
          body,
        ),
      ),
      card('Add a webhook', {}, form),
      deliveries,
    ),
  );

  async function add(event) {
    event.preventDefault();
    for (const wrapper of Object.values(fields)) fieldMessage(wrapper, null);
    try {
      const created = await post('/webhooks', {
        url: url.value.trim(),
        kinds: list(kinds.value),
        services: list(services.value),
      });
      form.reset();
      mount(
        secretBox,
        h('p', {}, `Webhook added. Its signing secret is shown this once; copy it now:`),
        h('p', {}, h('code', { class: 'secret' }, created.secret)),
        button('I have copied it', () => {
          secretBox.hidden = true;
          mount(secretBox);
        }, { class: 'secondary' }),
      );
      secretBox.hidden = false;
      await refresh();
    } catch (error) {
      if (!(error instanceof ApiError) || !error.body?.errors?.length) throw error;
      for (const problem of error.body.errors) {
        const wrapper = fields[String(problem.field).split('.')[0]];
        if (wrapper) fieldMessage(wrapper, problem);
        else notify(problem.message, 'error');
      }
    }
  }

  function filterText(hook) {
    const parts = [];
    parts.push(hook.kinds.length ? hook.kinds.join(', ') : 'every kind');
    parts.push(hook.services.length ? hook.services.join(', ') : 'every service');
    return parts.join(' · ');
  }

  function render(answer) {
    mount(
      body,
      answer.webhooks.length
        ? answer.webhooks.map((hook) => {
            const confirm = button('Delete', () => remove(hook, confirm), { class: 'danger' });
            return h(
              'tr',
              { 'data-webhook': hook.id },
              h('td', {}, h('code', {}, hook.url)),
              h('td', {}, filterText(hook)),
              h('td', {}, hook.deliveries.delivered),
              h('td', {}, hook.deliveries.pending + hook.deliveries.sending),
              h('td', {}, hook.deliveries.failed),
              h(
                'td',
                { title: hook.last_delivery_at ? when(hook.last_delivery_at) : '' },
                hook.last_delivery_at ? since(hook.last_delivery_at) : '—',
              ),
              h(
                'td',
                { class: 'actions' },
                button('Send test event', () => test(hook), { class: 'secondary' }),
                button('Deliveries', () => openDeliveries(hook), { class: 'secondary' }),
                confirm,
              ),
            );
          })
        : h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No webhooks yet.')),
    );
  }

  async function refresh() {
    render(await get('/webhooks'));
    if (shown !== null) await renderDeliveries(shown);
  }

  async function test(hook) {
    const queued = await post(`/webhooks/${encodeURIComponent(hook.id)}/test`);
    notify(`Test event ${queued.event_id} queued for ${hook.url}.`);
    shown = hook;
    await refresh();
  }

  /** Two clicks: the first arms the button, the second deletes. */
  async function remove(hook, control) {
    if (control.dataset.armed !== 'yes') {
      control.dataset.armed = 'yes';
      setText(control, 'Really delete?');
      return;
    }
    await del(`/webhooks/${encodeURIComponent(hook.id)}`);
    notify(`Webhook ${hook.url} deleted.`);
    if (shown?.id === hook.id) {
      shown = null;
      deliveries.hidden = true;
    }
    await refresh();
  }

  async function openDeliveries(hook) {
    shown = hook;
    await renderDeliveries(hook);
  }

  async function renderDeliveries(hook) {
    let answer;
    try {
      answer = await get(`/webhooks/${encodeURIComponent(hook.id)}/deliveries?limit=20`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        shown = null;
        deliveries.hidden = true;
        return;
      }
      throw error;
    }
    if (!view.active) return;
    mount(
      deliveries,
      h('h2', {}, `Last deliveries to ${hook.url}`),
      h(
        'table',
        {},
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['When', 'Event', 'Attempt', 'Answer', 'Time', 'Outcome', 'Error'].map((t) =>
              h('th', { scope: 'col' }, t),
            ),
          ),
        ),
        h(
          'tbody',
          {},
          answer.deliveries.length
            ? answer.deliveries.map((d) =>
                h(
                  'tr',
                  { 'data-delivery': d.id },
                  h('td', { title: when(d.at) }, since(d.at)),
                  h('td', {}, d.event_id),
                  h('td', {}, d.attempt),
                  h('td', {}, d.status_code ?? 'no answer'),
                  h('td', {}, `${Math.round(d.duration_ms)} ms`),
                  h('td', {}, d.outcome),
                  h('td', {}, d.error ?? ''),
                ),
              )
            : h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No deliveries yet.')),
        ),
      ),
    );
    deliveries.hidden = false;
  }

  await view.every(REFRESH_MS, refresh);
}
