// One service: runtime status, drift (config_match and the rendered hashes), events,
// start/stop/restart, a version change (an upgrade through PATCH), PocketBase's own
// settings (shown, and edited through PATCH; secrets write-only), its app releases
// (deploy by upload, rollback: views/releases.js) and deletion.
// A service owned by a spec file shows its file; what the API refuses for it (spec
// changes and deletion: 409 OWNED_BY_FILE) is disabled here, with the reason next to it.
// The page follows the service's watch stream (GET /services/{id}?watch=true) and reloads
// its parts when the service or its status changes: no request while nothing does.

import { ApiError, del, get, patch, post, servicePath } from '../api.js';
import { bytes, instanceUrl, since, when } from '../format.js';
import {
  badge,
  button,
  card,
  field,
  fieldMessage,
  h,
  mount,
  serviceCrumbs,
  setText,
  updateBadge,
} from '../render.js';
import { navigate, notify, systemInfo } from '../shell.js';
import { chart } from '../charts.js';
import { deleteDialog } from './delete-dialog.js';
import { releasesCard } from './releases.js';
import { settingsEditor, settingsRows } from './settings.js';

export const title = 'Service';

// Each row: [term, what to show from {service, runtime, status, link}] (null shows '—').
const RUNTIME = [
  [
    'systemd state',
    ({ status: s }) => `${s.systemd_status}${s.sub_state ? ` (${s.sub_state})` : ''}`,
  ],
  ['Main PID', ({ status }) => status.pid],
  ['Memory', ({ status }) => bytes(status.memory_bytes)],
  ['CPU', ({ status }) => status.cpu_usage],
  ['Restarts', ({ status }) => status.restarts],
  [
    'Active since',
    ({ status: s }) => s.active_since && `${when(s.active_since)} (${since(s.active_since)})`,
  ],
  ['Health check', ({ status }) => healthText(status)],
  ['Desired state', ({ status }) => status.desired_state],
  ['Deployed version', ({ status }) => status.deployed_version],
  ['Last error', ({ status }) => status.error_message ?? 'none'],
  ['Certificate', ({ service, status }) => certificateText(service, status.certificate)],
];
const DRIFT = [
  ['Config match', ({ runtime }) => driftText(runtime.config_match)],
  ['systemd config hash', ({ service }) => service.systemd_config_hash],
  ['Caddy config hash', ({ service }) => service.caddy_config_hash],
  ['Caddy site', ({ runtime }) => runtime.caddy_status],
  ['Checked', ({ runtime }) => when(runtime.last_checked)],
];
const SPEC = [
  [
    'Domain',
    ({ service, link }) =>
      h('a', { href: link, target: '_blank', rel: 'noopener noreferrer' }, service.domain),
  ],
  ['Port', ({ service }) => service.port],
  ['Node', ({ service }) => service.node],
  ['Proxy', ({ service }) => proxyText(service.proxy)],
  ['HTTPS', ({ service }) => tlsText(service)],
  ['PocketBase version', ({ service }) => service.pocketbase_version],
  ['systemd unit', ({ service }) => service.service_name],
  ['Description', ({ service }) => service.description || null],
  ['First superuser', ({ service }) => service.superuser_email],
  [
    'Environment',
    ({ service }) =>
      Object.entries(service.env)
        .map(([k, v]) => `${k}=${v}`)
        .join('\n') || null,
  ],
  [
    'Secret variables',
    ({ service }) => (service.secret_env_names ?? []).join(', ') || null,
  ],
  ['Limits', ({ service }) => limitsText(service.resources)],
  [
    'Outbound addresses',
    ({ service }) => (service.egress?.length ? service.egress.join(' ') : 'loopback only'),
  ],
  [
    'Defined by',
    ({ service: s }) =>
      s.source === 'file' ? `spec file ${s.source_file}` : `the API (${s.created_by})`,
  ],
  ['Created', ({ service }) => when(service.created_at)],
  ['Updated', ({ service: s }) => `${when(s.updated_at)} (generation ${s.generation})`],
];

export async function show(root, view) {
  const [key] = view.params;
  const info = await systemInfo().catch(() => null);
  let detail;
  try {
    detail = await get(servicePath(key));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    mount(
      root,
      h('h1', {}, 'No such service'),
      h('p', {}, `There is no service “${key}”. `, h('a', { href: '#/services' }, 'All services')),
    );
    return;
  }
  const { project_name: name, id, source, source_file: sourceFile } = detail.service;
  const fileOwned = source === 'file';
  const owned = fileOwned ? { disabled: true, 'aria-describedby': 'owned-note' } : {};
  document.title = `${name} · Pockestrator`;

  const releases = releasesCard(id, () => refresh());
  const rows = [];
  const list = (table) =>
    h(
      'dl',
      { class: 'details' },
      table.map(([term, value]) => {
        const dd = h('dd', { 'data-term': term });
        rows.push([dd, value]);
        return h('div', {}, h('dt', {}, term), dd);
      }),
    );
  const state = badge(detail.service.status);
  const historyNote = h('p', { class: 'muted history-note' });
  const charts = Object.fromEntries(
    [
      ['memory', 'Memory'],
      ['cpu', 'CPU'],
      ['requests', 'Requests and 5xx'],
      ['latency', 'Latency (p95)'],
    ].map(([key, heading]) => {
      const plot = h('div', { class: 'chart', 'data-chart': key });
      return [key, { plot, figure: h('figure', {}, h('figcaption', {}, heading), plot) }];
    }),
  );
  const controls = {
    start: button('Start', () => control('start')),
    stop: button('Stop', () => control('stop'), { class: 'secondary' }),
    restart: button('Restart', () => control('restart'), { class: 'secondary' }),
  };
  const adminLink = h(
    'a',
    { class: 'button secondary', target: '_blank', rel: 'noopener noreferrer' },
    'Open admin UI',
  );
  const message = h('p', { class: 'muted', role: 'status' });
  const versionInput = h('input', {
    type: 'text',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    ...owned,
  });
  const versionField = field({
    name: 'pocketbase_version',
    label: 'New PocketBase version',
    control: versionInput,
    hint: 'The data is backed up first; a version that does not become healthy is rolled back.',
  });
  const upgradeButton = h(
    'button',
    { type: 'submit', class: 'secondary', ...owned },
    'Change version',
  );
  const settingsList = h('dl', { class: 'details settings-list' });
  let settings = settingsEditor(detail.service.settings, owned);
  const settingsForm = h('form', { novalidate: true, onsubmit: saveSettings });
  const settingsButton = h(
    'button',
    { type: 'submit', class: 'secondary', ...owned },
    'Save settings',
  );
  const settingsMessage = h('p', { class: 'message', role: 'status' });
  mount(settingsForm, settings.element, settingsMessage, settingsButton);
  // Shown once the API refuses a lower version (VERSION_DOWNGRADE): allowing it restores
  // the backup taken before the upgrade from that version.
  const allowDowngrade = h('input', { type: 'checkbox', id: 'allow-downgrade', ...owned });
  const downgradeRow = h(
    'p',
    { class: 'checkbox', hidden: true },
    allowDowngrade,
    ' ',
    h(
      'label',
      { for: 'allow-downgrade' },
      'Allow the downgrade: restore the data backed up before the upgrade from this version (what was written since is set aside, not deleted)',
    ),
  );
  const proxyCard = proxyEditor(id, fileOwned, owned, () => refresh());
  const events = h('ol', { class: 'events', 'aria-label': 'Events, newest first' });
  const dialog = deleteDialog(name, info, remove);
  const deleteButton = button('Delete service…', () => dialog.showModal(), {
    class: 'danger',
    ...owned,
  });
  const logsLink = h(
    'a',
    { class: 'button secondary', href: `#/services/${encodeURIComponent(name)}/logs` },
    'Logs',
  );
  const backupsLink = h(
    'a',
    { class: 'button secondary', href: `#/services/${encodeURIComponent(name)}/backups` },
    'Backups',
  );

  mount(
    root,
    serviceCrumbs(name),
    h('div', { class: 'title-row' }, h('h1', {}, name, ' ', state)),
    fileOwned
      ? h(
          'p',
          { class: 'alert info', id: 'owned-note' },
          'Defined in the spec file ',
          h('code', { class: 'source-file' }, sourceFile),
          '. Change or delete it there; start, stop and restart work here.',
        )
      : null,
    h(
      'div',
      { class: 'toolbar actions', role: 'group', 'aria-label': 'Service actions' },
      Object.values(controls),
      adminLink,
      logsLink,
      backupsLink,
    ),
    message,
    h(
      'div',
      { class: 'grid' },
      card('Runtime', {}, list(RUNTIME)),
      card(
        'Drift',
        {},
        h(
          'p',
          { class: 'muted' },
          'Whether the unit file and Caddy site on disk are what the agent rendered.',
        ),
        list(DRIFT),
      ),
      card('Spec', {}, list(SPEC)),
      releases.element,
      card(
        'Change version',
        {},
        fileOwned ? h('p', { class: 'muted' }, 'Change the version in the spec file.') : null,
        h(
          'form',
          { novalidate: true, onsubmit: upgrade },
          versionField,
          downgradeRow,
          upgradeButton,
        ),
      ),
      card(
        'PocketBase settings',
        { class: 'card wide' },
        h(
          'p',
          { class: 'muted' },
          'What the agent keeps set in PocketBase (a change made in its admin UI is set back); the rest is PocketBase’s.',
        ),
        settingsList,
        fileOwned
          ? h('p', { class: 'muted' }, 'Change the settings in the spec file.')
          : h(
              'details',
              {},
              h('summary', {}, 'Edit settings'),
              settingsForm,
            ),
      ),
      card(
        'Last hours',
        { class: 'card wide history' },
        historyNote,
        h('div', { class: 'charts' }, ...Object.values(charts).map((item) => item.figure)),
      ),
      proxyCard.element,
      card('Events', { class: 'card wide' }, events),
      card(
        'Delete',
        { class: 'card danger-zone' },
        h(
          'p',
          { class: 'muted' },
          'Stops the instance and removes its unit and Caddy site; its data is archived or purged, as you choose.',
        ),
        fileOwned
          ? h(
              'p',
              { class: 'muted' },
              'A service from a spec file is deleted by removing its file.',
            )
          : null,
        deleteButton,
      ),
    ),
    dialog,
  );

  let busy = false;
  let gone = false;
  let current = null;

  async function refresh() {
    if (gone) return;
    let status, history, recent;
    try {
      [detail, status, history, recent] = await Promise.all([
        get(servicePath(id)),
        get(servicePath(id, '/status')),
        get(servicePath(id, '/events?limit=30')),
        get(servicePath(id, '/history')).catch(() => null),
        releases.refresh(),
      ]);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      gone = true;
      setText(message, 'This service no longer exists.');
      for (const control of root.querySelectorAll('button')) control.disabled = true;
      return;
    }
    if (!view.active) return;
    const link = instanceUrl(detail.service);
    current = { service: detail.service, runtime: detail.runtime_status, status, link };
    render(history.events);
    if (recent) drawCharts(recent);
  }

  function drawCharts({ series, memory_max_bytes: limit, interval_seconds: interval }) {
    const at = series.at;
    const every = interval >= 60 && interval % 60 === 0 ? `${interval / 60} min` : `${interval} s`;
    setText(
      historyNote,
      `One point every ${every}, kept by the agent since it started (240 points at most).`,
    );
    chart(
      charts.memory.plot,
      at,
      [
        { label: 'memory', values: series.memory_bytes },
        ...(limit ? [{ label: 'memory_max', values: at.map(() => limit), kind: 'limit' }] : []),
      ],
      'bytes',
    );
    chart(charts.cpu.plot, at, [{ label: 'CPU', values: series.cpu_cores }], 'cores');
    chart(
      charts.requests.plot,
      at,
      [
        { label: 'requests', values: series.requests_per_second },
        { label: '5xx', values: series.errors_per_second, kind: 'error' },
      ],
      'rate',
    );
    chart(charts.latency.plot, at, [{ label: 'p95', values: series.p95_seconds }], 'seconds');
  }

  function render(eventList) {
    const { service, runtime } = current;
    updateBadge(state, service.status);
    for (const [dd, value] of rows) showValue(dd, value(current));
    const match = runtime.config_match;
    root.querySelector('dd[data-term="Config match"]').className =
      match === false ? 'bad' : match ? 'ok' : '';
    adminLink.href = `${current.link}_/`;
    versionInput.placeholder = service.pocketbase_version;
    renderSettings(service.settings);
    proxyCard.show(service);
    renderEvents(eventList);
    updateControls();
  }

  function renderSettings(declared) {
    const shown = JSON.stringify(declared);
    if (settingsList.dataset.shown === shown) return;
    settingsList.dataset.shown = shown;
    mount(
      settingsList,
      settingsRows(declared).map(([term, text]) =>
        h('div', {}, h('dt', {}, term), h('dd', { 'data-term': term }, text)),
      ),
    );
  }

  async function saveSettings(event) {
    event.preventDefault();
    const body = settings.patch();
    for (const wrapper of Object.values(settings.fields)) fieldMessage(wrapper, null);
    if (Object.keys(body).length === 0) {
      setText(settingsMessage, 'Nothing to change.');
      return;
    }
    settingsButton.disabled = true;
    setText(settingsMessage, 'Saving…');
    try {
      const result = await patch(servicePath(id), { settings: body });
      // The form starts again from what is now declared (secret boxes empty).
      settings = settingsEditor(result.service.settings);
      mount(settingsForm, settings.element, settingsMessage, settingsButton);
      setText(settingsMessage, 'Saved; the agent applies them to PocketBase.');
      notify(`Settings of ${name} saved; the events show when PocketBase has them.`);
      await refresh();
    } catch (error) {
      setText(settingsMessage, '');
      const placed = [];
      for (const problem of error.errors ?? []) {
        const path = Object.keys(settings.fields)
          .filter((key) => problem.field === key || problem.field.startsWith(`${key}.`))
          .sort((a, b) => b.length - a.length)[0];
        if (path) fieldMessage(settings.fields[path], problem);
        else placed.push(`${problem.field}: ${problem.message}`);
      }
      if (placed.length || !error.errors?.length)
        setText(settingsMessage, `Not saved: ${placed.join('; ') || error.message}`);
    } finally {
      settingsButton.disabled = fileOwned;
    }
  }

  function renderEvents(list) {
    const newest = String(list[0]?.id ?? 0);
    if (events.dataset.newest === newest) return;
    events.dataset.newest = newest;
    mount(
      events,
      list.length === 0 ? h('li', { class: 'muted' }, 'No events yet.') : null,
      list.map((event) =>
        h(
          'li',
          { class: `event event-${event.kind}` },
          h('time', { datetime: event.at }, when(event.at)),
          h('span', { class: 'kind' }, event.kind.replaceAll('_', ' ')),
          h('span', { class: 'event-message' }, event.message),
        ),
      ),
    );
  }

  /** Start when it is not (wanted) running, stop when it is; nothing while one is under way. */
  function updateControls() {
    const wanted = current?.service.desired_state;
    const running = current?.status.is_running ?? false;
    controls.start.disabled = busy || gone || (wanted === 'running' && running);
    controls.stop.disabled = busy || gone || (wanted === 'stopped' && !running);
    controls.restart.disabled = busy || gone;
  }

  async function control(action) {
    busy = true;
    updateControls();
    setText(
      message,
      `${{ start: 'Starting', stop: 'Stopping', restart: 'Restarting' }[action]} ${name}…`,
    );
    try {
      setText(message, (await post(servicePath(id, '/control'), { action })).message);
    } catch (error) {
      setText(message, `Could not ${action} ${name}: ${error.message}`);
    } finally {
      busy = false;
      if (view.active) await refresh();
    }
  }

  async function upgrade(event) {
    event.preventDefault();
    const version = versionInput.value.trim();
    if (!version) {
      fieldMessage(versionField, { message: 'Enter the version to change to.' });
      versionInput.focus();
      return;
    }
    upgradeButton.disabled = true;
    try {
      const change = { pocketbase_version: version };
      if (!downgradeRow.hidden && allowDowngrade.checked) change.allow_downgrade = true;
      const result = await patch(servicePath(id), change);
      versionInput.value = '';
      downgradeRow.hidden = true;
      allowDowngrade.checked = false;
      fieldMessage(versionField, result.warnings?.[0] ?? null, 'warning');
      notify(`Changing ${name} to PocketBase ${version}; the events show the upgrade.`);
      await refresh();
    } catch (error) {
      const problem = error.errors?.find((p) => p.field === 'pocketbase_version');
      fieldMessage(versionField, problem ?? { message: error.message });
      // A downgrade with a backup to restore can be allowed; one without cannot.
      downgradeRow.hidden = !(
        problem?.code === 'VERSION_DOWNGRADE' && problem.message.includes('allow_downgrade')
      );
      versionInput.focus();
    } finally {
      upgradeButton.disabled = fileOwned;
    }
  }

  async function remove(purge) {
    setText(message, `Deleting ${name}…`);
    gone = true; // the service is leaving the store: no refresh should look for it now
    deleteButton.disabled = true;
    updateControls();
    try {
      const result = await del(servicePath(id, purge ? '?purge=true' : ''));
      const data = purge
        ? 'its data purged'
        : `its data archived to ${result.archived_to ?? 'the archive'}`;
      notify(result.removed ? `Deleted ${name}; ${data}.` : result.message);
      navigate('#/services');
    } catch (error) {
      gone = false;
      deleteButton.disabled = false;
      setText(message, `Could not delete ${name}: ${error.message}`);
      await refresh();
    }
  }

  // Every message is a change of the service, its status or its history (the agent does
  // not send a probe round that found all as it was): each reloads the page's parts, once
  // for a burst. Only the stream's first message may repeat what the page just loaded.
  let lastSeen = null;
  let reloading = null;
  let again = false;
  const seen = (answer) =>
    JSON.stringify({
      service: { ...answer.service, last_health_check: null },
      runtime: { ...answer.runtime_status, last_checked: null },
    });

  async function reload() {
    if (reloading) {
      again = true;
      return;
    }
    do {
      again = false;
      reloading = refresh().catch((error) =>
        notify(`Could not refresh: ${error.message}`, 'error'),
      );
      await reloading;
      reloading = null;
    } while (again && view.active);
  }

  function onEvent(event) {
    if (event.type === 'deleted') {
      gone = true;
      setText(message, 'This service no longer exists.');
      for (const control of root.querySelectorAll('button')) control.disabled = true;
      return;
    }
    if (event.type !== 'service') return;
    const signature = seen(JSON.parse(event.data));
    const repeat = lastSeen !== null && signature === lastSeen;
    lastSeen = null; // from the second message on, every one counts
    if (!repeat) reload();
  }

  await refresh();
  if (detail) lastSeen = seen(detail);
  view.follow(servicePath(id, '?watch=true'), onEvent);
}

/** Text, or an element (replaced only when it would look different). */
function showValue(dd, value) {
  if (!(value instanceof Node)) {
    setText(dd, value ?? '—');
  } else if (dd.firstChild?.outerHTML !== value.outerHTML) {
    mount(dd, value);
  }
}

function healthText(status) {
  if (!status.is_running) return 'not running';
  if (status.health_ok === null) return 'not checked yet';
  return `${status.health_ok ? 'healthy' : 'failing'} (checked ${since(status.last_health_check)})`;
}

function driftText(match) {
  if (match === null) return 'not rendered yet';
  return match ? 'Match' : 'Drift: the host differs from the render';
}

function limitsText({ memory_max: memory, cpu_quota: cpu }) {
  const limits = [memory && `memory ${memory}`, cpu && `CPU ${cpu}`].filter(Boolean);
  return limits.join(', ') || 'none';
}

// -- proxy and tls: shown in the spec, edited in a card of their own -----------------------

function proxyText(proxy) {
  if (!proxy) return null;
  const parts = [`body up to ${proxy.max_body_size}`, `requests held ${proxy.hold_requests} s`];
  if (proxy.aliases.length) {
    const verb = proxy.redirect_aliases ? 'redirected' : 'served';
    parts.push(`${proxy.aliases.join(' ')} (${verb})`);
  }
  return parts.join('; ');
}

function tlsText(service) {
  const scheme = new URL(service.url).protocol === 'https:' ? 'HTTPS' : 'plain HTTP';
  const mode = service.tls?.mode ?? "the agent's setting";
  const hsts = scheme === 'HTTPS' && service.tls?.hsts !== false ? ', HSTS' : '';
  return `${scheme} (${mode})${hsts}`;
}

function certificateText(service, certificate) {
  if (new URL(service.url).protocol !== 'https:') return 'none (plain HTTP)';
  if (!certificate) return 'not asked yet';
  if (!certificate.not_after) return `none served yet (asked ${since(certificate.checked_at)})`;
  const issuer = certificate.issuer ? ` by ${certificate.issuer}` : '';
  return `expires ${when(certificate.not_after)}${issuer}; Caddy renews it after ${when(certificate.renews_after)}`;
}

/** The "Proxy and HTTPS" card: a form that PATCHes proxy and tls (a merge patch). */
function proxyEditor(id, fileOwned, owned, refreshed) {
  const input = (props = {}) =>
    h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', ...owned, ...props });
  const controls = {
    'proxy.aliases': input({ inputmode: 'url' }),
    'proxy.redirect_aliases': h('input', { type: 'checkbox', ...owned }),
    'proxy.max_body_size': input(),
    'proxy.hold_requests': input({ inputmode: 'numeric' }),
    'tls.mode': h(
      'select',
      owned,
      h('option', { value: '' }, "The agent's setting"),
      h('option', { value: 'auto' }, 'auto (ACME)'),
      h('option', { value: 'internal' }, "internal (Caddy's local CA)"),
      h('option', { value: 'off' }, 'off (plain HTTP)'),
    ),
    'tls.hsts': h('input', { type: 'checkbox', ...owned }),
  };
  const labels = {
    'proxy.aliases': ['More domains', 'Separated by spaces; each unique across services.'],
    'proxy.redirect_aliases': ['Redirect them to the main domain (301)'],
    'proxy.max_body_size': ['Largest request body', 'e.g. 10MB, 50MiB; up to 1GiB.'],
    'proxy.hold_requests': [
      'Hold requests while restarting (seconds)',
      '0 to 120: a restart looks like latency instead of a 502.',
    ],
    'tls.mode': ['Certificates'],
    'tls.hsts': ['Send HSTS over HTTPS'],
  };
  const fields = {};
  for (const [name, [label, hint]] of Object.entries(labels)) {
    fields[name] = field({ name, label, control: controls[name], hint });
  }
  const save = h('button', { type: 'submit', class: 'secondary', ...owned }, 'Save');
  const note = h('p', { class: 'muted', role: 'status' });
  let shown = null;
  const element = card(
    'Proxy and HTTPS',
    {},
    fileOwned ? h('p', { class: 'muted' }, 'Change these in the spec file.') : null,
    h('form', { novalidate: true, onsubmit: submit }, Object.values(fields), save, note),
  );

  /** Fill the form from the service, unless the user is editing it. */
  function show(service) {
    const key = JSON.stringify([service.proxy, service.tls]);
    if (key === shown || element.contains(document.activeElement)) return;
    shown = key;
    controls['proxy.aliases'].value = service.proxy.aliases.join(' ');
    controls['proxy.redirect_aliases'].checked = service.proxy.redirect_aliases;
    controls['proxy.max_body_size'].value = service.proxy.max_body_size;
    controls['proxy.hold_requests'].value = String(service.proxy.hold_requests);
    controls['tls.mode'].value = service.tls.mode ?? '';
    controls['tls.hsts'].checked = service.tls.hsts;
  }

  async function submit(event) {
    event.preventDefault();
    const text = (name) => controls[name].value.trim();
    const hold = text('proxy.hold_requests');
    const change = {
      proxy: {
        aliases: text('proxy.aliases').split(/[\s,]+/).filter(Boolean),
        redirect_aliases: controls['proxy.redirect_aliases'].checked,
        max_body_size: text('proxy.max_body_size'),
        hold_requests: /^\d{1,4}$/.test(hold) ? Number(hold) : hold,
      },
      tls: { mode: controls['tls.mode'].value || null, hsts: controls['tls.hsts'].checked },
    };
    save.disabled = true;
    for (const wrapper of Object.values(fields)) fieldMessage(wrapper, null);
    try {
      await patch(servicePath(id), change);
      setText(note, 'Saved; the agent rewrites the Caddy site.');
      shown = null;
      await refreshed();
    } catch (error) {
      setText(note, '');
      const problems = error.errors ?? [{ field: '', message: error.message }];
      for (const problem of problems) {
        const name = Object.keys(fields).find(
          (each) => problem.field === each || problem.field.startsWith(`${each}.`),
        );
        if (name) fieldMessage(fields[name], problem);
        else setText(note, `${problem.field}: ${problem.message}`);
      }
    } finally {
      save.disabled = fileOwned;
    }
  }

  return { element, show };
}
