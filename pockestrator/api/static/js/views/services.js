// The services: one row each, filterable by status, kept current by the agent's watch
// stream (GET /services?watch=true): no request while nothing changes.
// The list endpoint gives the specs and states; memory, restarts and the config match come
// from each service's /status (systemd at that moment), fetched for a row shown when it
// first appears and when the stream says it changed (not for a health check that only
// moved its time). A new, deleted or re-filtered service reloads the page of the list.
// The sparklines (memory, requests per second over the last hour) come from the agent's
// short history, read with the list (at most every HISTORY_MS): they are as of the page's
// last load or change, since an idle page asks for nothing.

import { get, servicePath } from '../api.js';
import { badge, h, mount, setText, syncChildren, updateBadge } from '../render.js';
import { bytes, instanceUrl } from '../format.js';
import { sparkline } from '../charts.js';

export const title = 'Services';
const PAGE = 50;
const HISTORY_MS = 15000;
const SPARK_POINTS = 60;
// Changes that come together (a wave of deploys) reload the list once.
const SETTLE_MS = 150;
const STATUSES = [
  ['', 'All'],
  ['active', 'Active'],
  ['sleeping', 'Sleeping'],
  ['inactive', 'Stopped'],
  ['deploying', 'Deploying'],
  ['error', 'Error'],
  ['node_lost', 'Node lost'],
];

export async function show(root, view) {
  // The filter and the page change in place (the address follows), so focus stays put.
  let status = view.query.get('status') ?? '';
  let offset = Math.max(0, Number(view.query.get('offset')) || 0);
  const filter = h(
    'select',
    { id: 'status-filter', onchange: () => go(filter.value, 0) },
    STATUSES.map(([value, label]) => h('option', { value, selected: value === status }, label)),
  );
  const rows = h('tbody');
  const summary = h('p', { class: 'muted', 'aria-live': 'polite' });
  const empty = h('p', { class: 'empty', hidden: true });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages', hidden: true });
  const problem = h('p', { class: 'alert error', role: 'alert', hidden: true });

  mount(
    root,
    h(
      'div',
      { class: 'title-row' },
      h('h1', {}, 'Services'),
      h('a', { class: 'button', href: '#/services/new' }, 'New service'),
    ),
    h('div', { class: 'toolbar' }, h('label', { for: 'status-filter' }, 'Status'), filter, summary),
    problem,
    h(
      'div',
      { class: 'table-wrap cards' },
      h(
        'table',
        { class: 'services' },
        h('caption', { class: 'visually-hidden' }, 'Managed PocketBase services'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            [
              'Name',
              'Domain',
              'Port',
              'Node',
              'Version',
              'Status',
              'Memory',
              'Requests',
              'Restarts',
              'Config',
            ].map(
              (name) => h('th', { scope: 'col' }, name),
            ),
          ),
        ),
        rows,
      ),
    ),
    empty,
    pager,
  );

  async function go(newStatus, newOffset) {
    [status, offset] = [newStatus, newOffset];
    const query = new URLSearchParams();
    if (status) query.set('status', status);
    if (offset) query.set('offset', String(offset));
    const search = query.toString();
    history.replaceState(null, '', `#/services${search ? `?${search}` : ''}`);
    await refresh();
  }

  let latest = 0;
  // Not `history`: that is the browser's, which go() uses to keep the address in step.
  let recent = null;
  let recentAt = 0;

  async function refreshHistory() {
    if (Date.now() - recentAt < HISTORY_MS) return;
    recentAt = Date.now();
    recent = await get(`/history?points=${SPARK_POINTS}`).catch(() => recent);
  }

  async function refresh() {
    const mine = ++latest; // a filter change while a refresh is under way outdates it
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (status) query.set('status', status);
    let list;
    try {
      list = await get(`/services?${query}`);
      problem.hidden = true;
    } catch (error) {
      setText(problem, `Could not load the services: ${error.message}`);
      problem.hidden = false;
      return;
    }
    if (!view.active || mine !== latest) return;
    const [statuses] = await Promise.all([
      Promise.all(
        list.services.map((service) => get(servicePath(service.id, '/status')).catch(() => null)),
      ),
      refreshHistory(),
    ]);
    if (!view.active || mine !== latest) return;
    const items = list.services.map((service, index) => ({ service, runtime: statuses[index] }));
    drawn.clear();
    for (const item of items) drawn.set(item.service.id, { ...item, sig: signature(item.service) });
    total = list.total;
    syncChildren(
      rows,
      items,
      (item) => item.service.id,
      createRow,
      (row, item) => updateRow(row, item, recent?.services?.[item.service.project_name]),
    );
    const shown = list.services.length;
    const label = STATUSES.find(([value]) => value === status)?.[1].toLowerCase() ?? status;
    const kind = `${status ? `${label} ` : ''}service${list.total === 1 ? '' : 's'}`;
    setText(
      summary,
      shown === list.total
        ? `${list.total} ${kind}`
        : `${offset + 1}–${offset + shown} of ${list.total} ${kind}`,
    );
    empty.hidden = list.total > 0;
    if (list.total === 0) {
      mount(
        empty,
        status
          ? `No service is ${label} right now.`
          : ['No services yet. ', h('a', { href: '#/services/new' }, 'Create the first one'), '.'],
      );
    }
    updatePager(list);
  }

  function updatePager(list) {
    pager.hidden = list.total <= PAGE;
    if (pager.hidden || pager.dataset.at === `${offset}/${list.total}`) return;
    pager.dataset.at = `${offset}/${list.total}`;
    mount(
      pager,
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          disabled: offset === 0,
          onclick: () => go(status, Math.max(0, offset - PAGE)),
        },
        'Previous page',
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          disabled: offset + PAGE >= list.total,
          onclick: () => go(status, offset + PAGE),
        },
        'Next page',
      ),
    );
  }

  // What the stream says of every service (id -> its signature and status), and the rows
  // drawn (id -> item, with the signature it was drawn from).
  const known = new Map();
  const drawn = new Map();
  let total = 0;
  let syncs = 0;
  let settle = null;

  function reloadSoon() {
    clearTimeout(settle);
    settle = setTimeout(() => view.active && refresh(), SETTLE_MS);
  }
  view.onLeave(() => clearTimeout(settle));

  async function updateOne(service) {
    const runtime = await get(servicePath(service.id, '/status')).catch(() => null);
    const item = drawn.get(service.id);
    if (!view.active || !item) return;
    Object.assign(item, { service, runtime, sig: signature(service) });
    const row = [...rows.children].find((tr) => tr.dataset.key === service.id);
    if (row) updateRow(row, item, recent?.services?.[service.project_name]);
  }

  function changed(service) {
    const before = known.get(service.id);
    known.set(service.id, { sig: signature(service), status: service.status });
    if (syncs === 0) return; // the first state: compared as a whole at `synced`
    const item = drawn.get(service.id);
    if (item) {
      if (status && service.status !== status) reloadSoon();
      else if (signature(service) !== item.sig) updateOne(service);
    } else if (before === undefined || (status && service.status === status)) {
      reloadSoon(); // new, or now matching the filter: it may belong on this page
    }
  }

  /** Whether the stream's whole state is what the page shows (else it is reloaded). */
  function agrees() {
    const matching = [...known.values()].filter((k) => !status || k.status === status);
    if (matching.length !== total) return false;
    return [...drawn.values()].every((item) => known.get(item.service.id)?.sig === item.sig);
  }

  function onEvent(event) {
    const data = JSON.parse(event.data);
    if (event.type === 'service') changed(data);
    else if (event.type === 'deleted') {
      known.delete(data.id);
      if (syncs > 0) reloadSoon();
    } else if (event.type === 'synced') {
      // The whole state: at the start, or after a reconnect that could not resume.
      for (const id of [...known.keys()]) if (!data.ids.includes(id)) known.delete(id);
      syncs += 1;
      if (syncs > 1 || !agrees()) reloadSoon();
    }
  }

  await refresh();
  view.follow('/services?watch=true', onEvent, (error) => {
    setText(problem, `Could not follow the services: ${error.message}`);
    problem.hidden = false;
  });
}

/** A service's view without what a health check moves on every round. */
function signature(service) {
  return JSON.stringify({ ...service, last_health_check: null });
}

function createRow(item) {
  const cell = (label, ...content) => h('td', { 'data-label': label }, ...content);
  const name = h('a', { class: 'name' });
  const domain = h('a', { target: '_blank', rel: 'noopener noreferrer' });
  return h(
    'tr',
    {},
    h('th', { scope: 'row', 'data-label': 'Name' }, name, h('span', { class: 'source muted' })),
    cell('Domain', domain),
    cell('Port', h('span', { class: 'port' })),
    cell('Node', h('span', { class: 'node' })),
    cell('Version', h('span', { class: 'version' })),
    cell('Status', badge(item.service.status)),
    cell(
      'Memory',
      h('span', { class: 'memory' }),
      h('div', { class: 'spark memory-spark', 'aria-hidden': 'true' }),
    ),
    cell(
      'Requests',
      h('span', { class: 'requests' }),
      h('div', { class: 'spark requests-spark', 'aria-hidden': 'true' }),
    ),
    cell('Restarts', h('span', { class: 'restarts' })),
    cell('Config', h('span', { class: 'config' })),
  );
}

function updateRow(row, { service, runtime }, series) {
  const name = row.querySelector('a.name');
  name.href = `#/services/${encodeURIComponent(service.project_name)}`;
  setText(name, service.project_name);
  setText(row.querySelector('.source'), service.source === 'file' ? ' (spec file)' : '');
  const domain = row.querySelector('td[data-label="Domain"] a');
  domain.href = instanceUrl(service);
  setText(domain, service.domain);
  setText(row.querySelector('.port'), service.port);
  setText(row.querySelector('.node'), service.node);
  const deployed = service.deployed_version;
  setText(
    row.querySelector('.version'),
    deployed && deployed !== service.pocketbase_version
      ? `${deployed} → ${service.pocketbase_version}`
      : service.pocketbase_version,
  );
  updateBadge(row.querySelector('.badge'), service.status);
  setText(row.querySelector('.memory'), runtime ? bytes(runtime.memory_bytes) : '—');
  setText(row.querySelector('.restarts'), runtime?.restarts ?? '—');
  updateSparks(row, series);
  const config = row.querySelector('.config');
  const match = runtime?.config_match;
  setText(config, match === true ? 'Match' : match === false ? 'Drift' : '—');
  config.className = `config ${match === true ? 'ok' : match === false ? 'bad' : ''}`;
  config.title =
    match === false ? 'The unit file or Caddy site on disk differs from what was rendered' : '';
}

function updateSparks(row, series) {
  const memory = row.querySelector('.memory-spark');
  const requests = row.querySelector('.requests-spark');
  const known = series && series.at.length > 1;
  memory.hidden = requests.hidden = !known;
  const latest = series?.requests_per_second.findLast((value) => value !== null);
  setText(row.querySelector('.requests'), latest === undefined ? '—' : `${latest.toFixed(2)}/s`);
  if (!known) return;
  sparkline(memory, series.at, series.memory_bytes, 'memory');
  sparkline(requests, series.at, series.requests_per_second, 'requests per second');
}
