// A service's logs from the journal: the last N entries, or a live follow mode that reads
// the API's server-sent events through fetch() (EventSource cannot send the bearer token),
// resumes after the last entry seen when the stream breaks, and keeps the view scrolled to
// the newest line unless the user has scrolled up to read. The controls act in place (the
// address follows), so the keyboard focus stays on them.

import { ApiError, get, readEvents, servicePath } from '../api.js';
import { clock } from '../format.js';
import { button, h, mount, serviceCrumbs, setText } from '../render.js';

export const title = 'Logs';
const LINE_CHOICES = [50, 100, 500, 1000, 5000];
const KEEP_LINES = 5000;
const FLUSH_MS = 50;
const STICK_PX = 48;

export async function show(root, view) {
  const [key] = view.params;
  const asked = Number(view.query.get('lines'));
  let lines = LINE_CHOICES.includes(asked) ? asked : 100;
  let following = view.query.get('follow') === 'true';
  let stream = null; // the AbortController of the live stream
  const select = h(
    'select',
    { id: 'log-lines', onchange: () => changeLines(Number(select.value)) },
    LINE_CHOICES.map((n) => h('option', { value: n, selected: n === lines }, `Last ${n}`)),
  );
  const reload = button('Reload', () => load(), { class: 'secondary' });
  const follow = button('Follow live', () => setFollowing(!following), { 'aria-pressed': 'false' });
  const state = h('p', { class: 'muted', id: 'log-state', role: 'status' });
  const count = h('p', { class: 'muted', id: 'log-count' });
  const output = h('div', {
    class: 'log',
    role: 'log',
    'aria-live': 'off',
    tabindex: '0',
    'aria-label': `Log lines of ${key}`,
  });
  document.title = `Logs of ${key} · Pockestrator`;
  const service = `#/services/${encodeURIComponent(key)}`;
  mount(
    root,
    serviceCrumbs(key, 'Logs'),
    h('h1', {}, `Logs of ${key}`),
    h(
      'div',
      { class: 'toolbar' },
      h('label', { for: 'log-lines' }, 'Show'),
      select,
      reload,
      follow,
      state,
      count,
    ),
    output,
  );

  let pending = [];
  let flushTimer = null;
  view.onLeave(() => {
    clearTimeout(flushTimer);
    stream?.abort();
  });

  function remember() {
    const query = new URLSearchParams({ lines: String(lines) });
    if (following) query.set('follow', 'true');
    history.replaceState(null, '', `${service}/logs?${query}`);
  }

  function changeLines(value) {
    lines = value;
    remember();
    if (following) startStream();
    else load();
  }

  function setFollowing(on) {
    following = on;
    remember();
    follow.setAttribute('aria-pressed', String(on));
    setText(follow, on ? 'Stop following' : 'Follow live');
    reload.disabled = on;
    if (on) {
      startStream();
    } else {
      stream?.abort();
      stream = null;
      setText(state, 'Stopped following.');
    }
  }

  function append(entry) {
    pending.push(entry);
    flushTimer ??= setTimeout(flush, FLUSH_MS);
  }

  function flush() {
    flushTimer = null;
    const stick = output.scrollHeight - output.scrollTop - output.clientHeight < STICK_PX;
    output.append(...pending.map(lineElement));
    pending = [];
    while (output.childElementCount > KEEP_LINES) output.firstElementChild.remove();
    if (stick) output.scrollTop = output.scrollHeight;
    const total = output.childElementCount;
    setText(count, `${total} line${total === 1 ? '' : 's'}`);
  }

  function clear() {
    pending = [];
    mount(output);
    setText(count, '');
  }

  async function load() {
    reload.disabled = true;
    setText(state, 'Loading…');
    try {
      const answer = await get(servicePath(key, `/logs?lines=${lines}`));
      if (!view.active || following) return;
      clear();
      setText(state, answer.logs.length === 0 ? 'No log lines yet.' : '');
      answer.logs.forEach(append);
    } catch (error) {
      setText(state, problem(error));
    } finally {
      reload.disabled = following;
    }
  }

  /** Follow from the last `lines` entries on; reconnect after a break, resuming. */
  async function startStream() {
    stream?.abort();
    const controller = new AbortController();
    stream = controller;
    clear();
    let lastEventId = null;
    let retryMs = 3000;
    setText(state, 'Connecting…');
    while (!controller.signal.aborted) {
      try {
        const parser = await readEvents(servicePath(key, `/logs?follow=true&lines=${lines}`), {
          signal: controller.signal,
          lastEventId,
          onOpen: () => setText(state, 'Following live'),
          onEvent: (event) => {
            if (event.type !== 'log') return;
            lastEventId = event.id ?? lastEventId;
            append(JSON.parse(event.data));
          },
        });
        retryMs = parser.retry ?? retryMs;
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && error.status < 500) {
          setText(state, problem(error));
          return;
        }
      }
      if (controller.signal.aborted) return;
      setText(state, `The stream ended; reconnecting in ${Math.round(retryMs / 1000)} s…`);
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  }

  if (following) setFollowing(true);
  else await load();
}

function lineElement(entry) {
  const level = (entry.level || 'info').toLowerCase();
  return h(
    'div',
    { class: `line level-${level}` },
    h('time', { datetime: entry.timestamp }, clock(entry.timestamp)),
    ' ',
    h('span', { class: 'level' }, entry.level),
    ' ',
    h('span', { class: 'text' }, entry.message),
  );
}

function problem(error) {
  if (error instanceof ApiError && error.status === 404) return 'No such service.';
  return `Could not read the logs: ${error.message}`;
}
