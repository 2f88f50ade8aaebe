// Talking to the agent's API (same origin): the session token, JSON calls, the log stream.
// The token lives in sessionStorage, so it ends with the tab and is never sent anywhere
// but this API (there is no cookie a cross-site page could ride on).

import { SseParser } from './sse.js';

export const API = '/api/pockestrator';
const SESSION_KEY = 'pockestrator.session';

/** The current session {token, email, expires_at}, or null once it is gone or expired. */
export function getSession() {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    saved = null;
  }
  if (!saved?.token || Date.parse(saved.expires_at) <= Date.now()) {
    sessionStorage.removeItem(SESSION_KEY);
    return null;
  }
  return saved;
}

export function saveSession(login) {
  const session = { token: login.token, email: login.admin.email, expires_at: login.expires_at };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

/** An answer that is not 2xx: `status`, the API's `code`, `errors` and the whole `body`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `The agent answered ${status}`);
    this.status = status;
    this.body = body;
    this.code = body?.code ?? null;
    this.errors = Array.isArray(body?.errors) ? body.errors : [];
  }
}

let onUnauthorized = () => {};

/** What to do when the session is refused (expired, revoked): set by the app. */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

function headers(extra = {}) {
  const session = getSession();
  return {
    Accept: 'application/json',
    ...(session ? { Authorization: `Bearer ${session.token}` } : {}),
    ...extra,
  };
}

/** One JSON call; resolves to the body of a 2xx answer, rejects with ApiError otherwise. */
export async function call(method, path, body) {
  const init = { method, headers: headers(), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return answered(path, await fetch(API + path, init));
}

/** POST a file as the body (an app's tar.gz); the JSON answer as `call`'s. */
export async function upload(path, file, type) {
  const init = { method: 'POST', headers: headers({ 'Content-Type': type }), cache: 'no-store' };
  init.body = file;
  return answered(path, await fetch(API + path, init));
}

async function answered(path, response) {
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.status === 401 && !path.startsWith('/auth/login')) onUnauthorized();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body);
export const patch = (path, body) => call('PATCH', path, body);
export const del = (path) => call('DELETE', path);

/** Path of one service's endpoint, its name or id escaped. */
export function servicePath(name, rest = '') {
  return `/services/${encodeURIComponent(name)}${rest}`;
}

/**
 * Read a server-sent event stream with the bearer token until `signal` aborts or the
 * server ends it. Each event goes to `onEvent`; `lastEventId` is sent as Last-Event-ID so
 * that a reconnect resumes after the last entry seen. Resolves with the parser (its
 * lastEventId and retry) when the stream ends.
 */
export async function readEvents(path, { signal, lastEventId, onEvent, onOpen }) {
  const extra = { Accept: 'text/event-stream' };
  if (lastEventId) extra['Last-Event-ID'] = lastEventId;
  const response = await fetch(API + path, { headers: headers(extra), cache: 'no-store', signal });
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (response.status === 401) onUnauthorized();
    throw new ApiError(response.status, data);
  }
  onOpen?.();
  const parser = new SseParser(onEvent);
  parser.lastEventId = lastEventId ?? null;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const stop = () => reader.cancel().catch(() => {});
  signal?.addEventListener('abort', stop, { once: true });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
    }
  } catch (error) {
    if (!signal?.aborted) throw error;
  } finally {
    signal?.removeEventListener('abort', stop);
  }
  return parser;
}
