// The dashboard's entry: hash routes to views, the session guard, the header, the banner.
//
// Each view module exports `title` and `show(root, view)`; `view` carries the route's
// params and query, and helpers whose work ends when the user leaves the view (timers,
// streams): `view.every(ms, fn)`, `view.follow(path, onEvent)`, `view.onLeave(fn)`,
// `view.active`.

import {
  ApiError,
  clearSession,
  get,
  getSession,
  post,
  readEvents,
  whenUnauthorized,
} from './api.js';
import { h, mount, setText } from './render.js';
import { forgetSystemInfo, navigate, notify, showHostHealth } from './shell.js';
import * as backups from './views/backups.js';
import * as create from './views/create.js';
import * as detail from './views/detail.js';
import * as login from './views/login.js';
import * as logs from './views/logs.js';
import * as services from './views/services.js';
import * as system from './views/system.js';
import * as webhooks from './views/webhooks.js';

const ROUTES = [
  [/^\/login$/, login, null],
  [/^\/system$/, system, 'system'],
  [/^\/webhooks$/, webhooks, 'webhooks'],
  [/^\/services\/new$/, create, 'new'],
  [/^\/services\/([^/]+)\/logs$/, logs, 'services'],
  [/^\/services\/([^/]+)\/backups$/, backups, 'services'],
  [/^\/services\/([^/]+)$/, detail, 'services'],
  [/^\/(?:services)?$/, services, 'services'],
];
// Events that come together (a wave of deploys) ask about the host once.
const HEALTH_SETTLE_MS = 1000;

const main = document.getElementById('main');
const header = document.querySelector('header.top');
let current = null;
let hostWatch = null; // the event stream the banner follows while signed in

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/services';
  const [path, search = ''] = raw.split('?');
  return { path, query: new URLSearchParams(search) };
}

function safeDecode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function leave() {
  if (current === null) return;
  current.active = false;
  for (const fn of current.cleanups.splice(0)) {
    try {
      fn();
    } catch (error) {
      console.error(error);
    }
  }
  current = null;
}

function makeView(params, query) {
  const view = {
    params,
    query,
    active: true,
    cleanups: [],
    onLeave(fn) {
      view.cleanups.push(fn);
    },
    /**
     * Run `fn` now and every `ms` until the view is left; runs never overlap, a failed run
     * is reported and the next one still comes (the agent may be back by then).
     */
    every(ms, fn) {
      let timer = null;
      const tick = async () => {
        if (!view.active) return;
        try {
          if (!document.hidden) await fn();
        } catch (error) {
          if (view.active) notify(`Could not refresh: ${error.message}`, 'error');
        }
        if (view.active) timer = setTimeout(tick, ms);
      };
      view.onLeave(() => clearTimeout(timer));
      return tick();
    },
    /**
     * Follow the server-sent events of `path` (a watch stream) until the view is left:
     * each event goes to `onEvent`; a stream that ends or breaks is opened again after the
     * server's retry delay, resuming from the last event's id (Last-Event-ID). Nothing is
     * asked in between: the agent pushes every change. Resolves when the view is left or
     * the agent refuses the stream (then `onError` hears why).
     */
    async follow(path, onEvent, onError = () => {}) {
      const controller = new AbortController();
      view.onLeave(() => controller.abort());
      let lastEventId = null;
      let retryMs = 3000;
      while (view.active) {
        try {
          const parser = await readEvents(path, {
            signal: controller.signal,
            lastEventId,
            onEvent: (event) => {
              lastEventId = event.id ?? lastEventId;
              if (view.active) onEvent(event);
            },
          });
          retryMs = parser.retry ?? retryMs;
        } catch (error) {
          if (!view.active) return;
          if (error instanceof ApiError && error.status < 500) {
            onError(error);
            return;
          }
          if (view.active) notify(`Lost the agent's updates: ${error.message}`, 'error');
        }
        if (!view.active) return;
        await new Promise((resolve) => setTimeout(resolve, retryMs));
      }
    },
  };
  return view;
}

async function route() {
  leave();
  const { path, query } = parseHash();
  const session = getSession();
  const match = ROUTES.map(([pattern, module, nav]) => [path.match(pattern), module, nav]).find(
    ([found]) => found,
  );
  if (!session && (!match || match[1] !== login)) {
    const next = path === '/login' ? '' : `?next=${encodeURIComponent(path)}`;
    location.replace(`#/login${next}`);
    return;
  }
  showChrome(session);
  const [found, module, nav] = match ?? [null, null, null];
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const root = h('div', { class: 'view' });
  mount(main, root);
  if (!module) {
    document.title = 'Not found · Pockestrator';
    mount(
      root,
      h('h1', {}, 'Page not found'),
      h('p', {}, h('a', { href: '#/services' }, 'Back to the services')),
    );
    focusHeading(root);
    return;
  }
  const view = makeView(found.slice(1).map(safeDecode), query);
  current = view;
  document.title = `${module.title} · Pockestrator`;
  try {
    await module.show(root, view);
  } catch (error) {
    if (!view.active) return;
    mount(
      root,
      h('h1', {}, module.title),
      h('p', { class: 'alert error', role: 'alert' }, error.message),
    );
  }
  if (view.active) focusHeading(root);
}

/** After a route change, move focus to the page's heading so screen readers announce it. */
function focusHeading(root) {
  const heading = root.querySelector('h1');
  if (heading && !root.contains(document.activeElement)) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
}

function showChrome(session) {
  header.hidden = !session;
  setText(document.getElementById('who'), session?.email ?? '');
  if (session && hostWatch === null) {
    hostWatch = new AbortController();
    checkHost();
    followHost(hostWatch.signal);
  }
  if (!session && hostWatch !== null) {
    hostWatch.abort();
    hostWatch = null;
    showHostHealth(null);
  }
}

/**
 * The banner asks about the host when something happens, not on a timer: at sign-in, at
 * each event the agent records (an alert such as disk_low is one), and when the tab is
 * shown again. An idle tab sends nothing; its one open stream is the events'.
 */
async function followHost(signal) {
  let settle = null;
  const soon = () => {
    clearTimeout(settle);
    settle = setTimeout(checkHost, HEALTH_SETTLE_MS);
  };
  const shown = () => document.visibilityState === 'visible' && checkHost();
  document.addEventListener('visibilitychange', shown);
  signal.addEventListener('abort', () => {
    clearTimeout(settle);
    document.removeEventListener('visibilitychange', shown);
  });
  let lastEventId = null;
  let retryMs = 3000;
  while (!signal.aborted) {
    try {
      const parser = await readEvents('/events?follow=true', {
        signal,
        lastEventId,
        onEvent: (event) => {
          lastEventId = event.id ?? lastEventId;
          soon();
        },
      });
      retryMs = parser.retry ?? retryMs;
    } catch (error) {
      if (signal.aborted || error?.status === 401) return;
    }
    if (!signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, retryMs));
      checkHost(); // what happened while the stream was down
    }
  }
}

/** Ask the agent about its host, so the banner tells when it is not ready. */
async function checkHost() {
  let report = null;
  try {
    report = await get('/system/health');
  } catch (error) {
    report = error.body?.checks ? error.body : null; // 503 carries the report
  }
  showHostHealth(getSession() ? report : null);
}

function signedOut(message) {
  clearSession();
  forgetSystemInfo();
  navigate('#/login');
  if (message) notify(message, 'error');
}

document.getElementById('sign-out').addEventListener('click', async () => {
  try {
    await post('/auth/logout');
  } catch {
    // The session may already be gone; signing out still ends it for this tab.
  }
  if (getSession()) signedOut();
  notify('Signed out.');
});

whenUnauthorized(() => {
  if (getSession()) signedOut('Your session has ended; please sign in again.');
});
window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (event) => {
  notify(event.reason?.message ?? String(event.reason), 'error');
});
route();
