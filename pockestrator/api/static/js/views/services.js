// The services: one row each, refreshed every few seconds, filterable by status.
// The list endpoint gives the specs and states; memory, restarts and the config match come
// from each service's /status (systemd at this moment), fetched for the rows shown. The
// sparklines (memory, requests per second over the last hour) come from the agent's short
// history, which gains a point a minute, so it is fetched less often.

import { get, servicePath } from '../api.js';
import { badge, h, mount, setText, syncChildren, updateBadge } from '../render.js';
import { bytes, instanceUrl } from '../format.js';
import { sparkline } from '../charts.js';

export const title = 'Services';
const REFRESH_MS = 3000;
const PAGE = 50;
const HISTORY_MS = 15000;
const SPARK_POINTS = 60;
const STATUSES = [
  ['', 'All'],
  ['active', 'Active'],
  ['sleeping', 'Sleeping'],
  ['inactive', 'Stopped'],
  ['deploying', 'Deploying'],
  ['error', 'Error'],
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
      { class: 'table-wrap' },
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

  await view.every(REFRESH_MS, refresh);
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
