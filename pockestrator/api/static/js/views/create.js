// Create a service: a form with the spec's fields, checked by POST /validate/service as
// the user types (debounced; each error or warning next to its field, once the field has
// been touched), then POST /services and the deployment (views/deployment.js). PocketBase's
// own settings are a fieldset of their own (views/settings.js).

import { ApiError, get, post } from '../api.js';
import { compareVersions } from '../format.js';
import { field, fieldMessage, h, mount, setText } from '../render.js';
import { systemInfo } from '../shell.js';
import { showDeployment } from './deployment.js';
import { settingsEditor } from './settings.js';

export const title = 'New service';
const VALIDATE_AFTER_MS = 350;

// -- proxy and tls: how Caddy serves the service (their own block; see proxyBody) --------
const PROXY_GROUP = [
  'Proxy and HTTPS (optional)',
  [
    [
      'proxy.aliases',
      'More domains',
      'Served by the same instance, separated by spaces; each unique across services.',
    ],
    [
      'proxy.redirect_aliases',
      'Redirect them to the main domain',
      'Answer the other domains with a 301 to the service URL instead of serving them.',
    ],
    [
      'proxy.max_body_size',
      'Largest request body',
      'Default 10MB (KB, MB, GB or KiB, MiB, GiB; up to 1GiB). Larger uploads get a 413.',
    ],
    [
      'proxy.hold_requests',
      'Hold requests while restarting (seconds)',
      'Default 10: a restart looks like latency instead of a 502; 0 answers 502 at once.',
    ],
    ['tls.mode', 'Certificates', "Default: the agent's setting (caddy_tls)."],
    [
      'tls.hsts',
      'Send HSTS',
      'Over HTTPS, tell browsers to use only HTTPS for these domains for a year.',
    ],
  ],
];

function proxyControls(input) {
  const check = (checked) => h('input', { type: 'checkbox', checked });
  return {
    'proxy.aliases': input({ inputmode: 'url', placeholder: 'www.example.com' }),
    'proxy.redirect_aliases': check(false),
    'proxy.max_body_size': input({ placeholder: '10MB' }),
    'proxy.hold_requests': input({ inputmode: 'numeric', placeholder: '10' }),
    'tls.mode': h(
      'select',
      {},
      h('option', { value: '' }, "The agent's setting"),
      h('option', { value: 'auto' }, 'auto: ACME (Let’s Encrypt or the configured CA)'),
      h('option', { value: 'internal' }, "internal: Caddy's local CA"),
      h('option', { value: 'off' }, 'off: plain HTTP'),
    ),
    'tls.hsts': check(true),
  };
}

/** The spec's proxy and tls sections from the form: only what differs from the defaults. */
function proxyBody(controls) {
  const text = (name) => controls[name].value.trim();
  const proxy = {};
  const aliases = text('proxy.aliases').split(/[\s,]+/).filter(Boolean);
  if (aliases.length) proxy.aliases = aliases;
  if (controls['proxy.redirect_aliases'].checked) proxy.redirect_aliases = true;
  if (text('proxy.max_body_size')) proxy.max_body_size = text('proxy.max_body_size');
  const hold = text('proxy.hold_requests');
  if (hold) proxy.hold_requests = /^\d{1,4}$/.test(hold) ? Number(hold) : hold;
  const tls = {};
  if (controls['tls.mode'].value) tls.mode = controls['tls.mode'].value;
  if (!controls['tls.hsts'].checked) tls.hsts = false;
  return {
    ...(Object.keys(proxy).length ? { proxy } : {}),
    ...(Object.keys(tls).length ? { tls } : {}),
  };
}
// -- end of proxy and tls ----------------------------------------------------------------

/** The form, group by group: [spec field, label, hint]; 'env' is the variables editor. */
const GROUPS = [
  [
    'Service',
    [
      [
        'project_name',
        'Project name',
        'Lowercase letters, digits and "-", starting with a letter.',
      ],
      ['port', 'Port', 'The local port PocketBase listens on (1024–65535); Caddy proxies to it.'],
      ['pocketbase_version', 'PocketBase version'],
      ['domain', 'Domain (optional)'],
      ['description', 'Description (optional)'],
    ],
  ],
  [
    'Access',
    [
      [
        'superuser_email',
        'First superuser e-mail (optional)',
        'A superuser is created with a generated password, shown once after creation.',
      ],
    ],
  ],
  ['Environment variables (optional)', 'env'],
  [
    'Limits and state',
    [
      ['resources.memory_max', 'Memory limit (optional)', 'systemd MemoryMax=, e.g. 512M.'],
      [
        'resources.cpu_quota',
        'CPU quota (optional)',
        'systemd CPUQuota=, e.g. 50% (100% is one core).',
      ],
      [
        'egress',
        'Outbound addresses (optional)',
        'IP addresses or networks the instance may connect to beyond loopback (an SMTP relay, S3), separated by spaces, or "any". None by default.',
      ],
      ['desired_state', 'After creation'],
    ],
  ],
  ['PocketBase settings (optional)', 'settings'],
  PROXY_GROUP,
];
const TEXT_FIELDS = ['project_name', 'pocketbase_version', 'domain', 'superuser_email'];

export async function show(root, view) {
  const [info, list, releases] = await Promise.all([
    systemInfo().catch(() => null),
    get('/services?limit=500').catch(() => ({ services: [] })),
    get('/releases').catch(() => ({ versions: [], latest: null })),
  ]);
  const known = knownVersions(list.services, releases.versions);
  const ports = list.services.map((service) => service.port);
  const input = (props = {}) =>
    h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', ...props });
  const controls = {
    project_name: input({ maxlength: 50, required: true }),
    port: input({ inputmode: 'numeric', required: true, value: suggestPort(ports) }),
    pocketbase_version: input({
      list: 'known-versions',
      required: true,
      value: releases.latest ?? known[0] ?? '',
    }),
    domain: input({ inputmode: 'url' }),
    description: h('textarea', { rows: 2, maxlength: 500 }),
    superuser_email: input({ type: 'email' }),
    'resources.memory_max': input(),
    'resources.cpu_quota': input(),
    egress: input(),
    desired_state: h(
      'select',
      {},
      h('option', { value: 'running' }, 'Running'),
      h('option', { value: 'stopped' }, 'Stopped'),
    ),
    ...proxyControls(input),
  };
  const hints = {
    pocketbase_version: releases.latest
      ? `The latest is ${releases.latest}; the list offers every version the agent can deploy.`
      : 'A released version, e.g. 0.29.0; the agent checks that it exists.',
    domain: `Default: <project name>.${info?.config.default_domain ?? '<default domain>'}`,
  };
  const fields = {};
  const env = envEditor();
  const settings = settingsEditor();
  Object.assign(fields, settings.fields);
  const general = h('div', { class: 'alert error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit' }, 'Create service');
  const status = h('p', { class: 'muted', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'card', novalidate: true, onsubmit: create, oninput: changed, onchange: changed },
    general,
    GROUPS.map(([legend, entries]) =>
      entries === 'env' || entries === 'settings'
        ? { env, settings }[entries].element
        : h(
            'fieldset',
            {},
            h('legend', {}, legend),
            entries.map(([name, label, hint]) => {
              fields[name] = field({
                name,
                label,
                control: controls[name],
                hint: hints[name] ?? hint,
              });
              return fields[name];
            }),
          ),
    ),
    h('div', { class: 'actions' }, submit, status),
  );
  mount(
    root,
    h('h1', {}, 'New service'),
    h(
      'datalist',
      { id: 'known-versions' },
      known.map((version) => h('option', { value: version })),
    ),
    form,
  );

  // Problems show for the fields the user has been at (prefilled ones count), all on submit.
  const touched = new Set(Object.keys(controls).filter((name) => controls[name].value));
  touched.delete('desired_state');
  touched.delete('tls.mode');
  let submitted = false;
  let timer = null;
  let sequence = 0;
  view.onLeave(() => clearTimeout(timer));

  function body() {
    const text = (name) => controls[name].value.trim();
    const spec = { desired_state: controls.desired_state.value };
    for (const name of TEXT_FIELDS) if (text(name)) spec[name] = text(name);
    // A port that is not a number goes as typed, so that the API says what is wrong.
    if (text('port'))
      spec.port = /^\d{1,6}$/.test(text('port')) ? Number(text('port')) : text('port');
    if (controls.description.value) spec.description = controls.description.value;
    const variables = env.value();
    if (Object.keys(variables).length) spec.env = variables;
    const resources = {};
    for (const key of ['memory_max', 'cpu_quota']) {
      if (text(`resources.${key}`)) resources[key] = text(`resources.${key}`);
    }
    if (Object.keys(resources).length) spec.resources = resources;
    const egress = text('egress').split(/[\s,]+/).filter(Boolean);
    if (egress.length) spec.egress = egress;
    const declared = settings.value();
    if (Object.keys(declared).length) spec.settings = declared;
    Object.assign(spec, proxyBody(controls));
    return spec;
  }

  function changed(event) {
    const wrapper = event.target.closest('[data-field]');
    if (wrapper) touched.add(wrapper.dataset.field);
    clearTimeout(timer);
    timer = setTimeout(validate, VALIDATE_AFTER_MS);
  }

  async function validate() {
    const mine = ++sequence;
    let result;
    try {
      result = await post('/validate/service', body());
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 400 || !error.body?.errors) {
        if (mine === sequence) setText(status, `Could not check the spec: ${error.message}`);
        return;
      }
      result = error.body; // 400: the spec has errors, listed like warnings
    }
    if (mine !== sequence || !view.active) return; // an answer to an older edit
    setText(status, '');
    showProblems(result.errors, result.warnings ?? []);
  }

  /** Which field shows a problem: the nearest field on its path ('env.FOO' -> 'env',
   * 'settings.smtp.password.value' -> 'settings.smtp.password'), or none. */
  function owner(problem) {
    const parts = problem.field.split('.');
    if (parts[0] === 'env') return 'env';
    for (let length = parts.length; length > 0; length -= 1) {
      const path = parts.slice(0, length).join('.');
      if (fields[path]) return path;
    }
    return null;
  }

  /** Each problem next to its field; errors that no field shows go to the top. */
  function showProblems(errors, warnings) {
    const placed = new Set();
    for (const name of [...Object.keys(fields), 'env']) {
      const error = errors.find((problem) => owner(problem) === name);
      const warning = warnings.find((problem) => owner(problem) === name);
      if (error) placed.add(error);
      const shown = submitted || touched.has(name) ? (error ?? warning ?? null) : null;
      const kind = error ? 'error' : 'warning';
      if (name === 'env') env.message(shown, kind);
      else fieldMessage(fields[name], shown, kind);
    }
    const rest = submitted ? errors.filter((problem) => !placed.has(problem)) : [];
    general.hidden = rest.length === 0;
    mount(
      general,
      rest.length
        ? h(
            'ul',
            {},
            rest.map((p) => h('li', {}, `${p.field}: ${p.message}`)),
          )
        : null,
    );
  }

  async function create(event) {
    event.preventDefault();
    submitted = true;
    clearTimeout(timer);
    sequence += 1; // answers to validations still in flight no longer matter
    submit.disabled = true;
    setText(status, 'Creating…');
    let created;
    try {
      created = await post('/services', body());
    } catch (error) {
      submit.disabled = false;
      setText(status, '');
      if (error instanceof ApiError && error.errors.length) {
        showProblems(error.errors, []);
        form.querySelector('[aria-invalid="true"]')?.focus();
      } else {
        general.hidden = false;
        mount(general, h('p', {}, `The service was not created: ${error.message}`));
      }
      return;
    }
    await showDeployment(root, view, created);
  }
}

/** Rows of NAME = value; `value()` gives the env object, `message()` shows a problem. */
function envEditor() {
  const rows = h('div', { class: 'env-rows' });
  const note = h('p', { class: 'message', id: 'env-message', 'aria-live': 'polite' });
  const add = h('button', { type: 'button', class: 'secondary' }, 'Add variable');
  const element = h(
    'fieldset',
    { class: 'env', 'data-field': 'env', 'aria-describedby': 'env-message' },
    h('legend', {}, 'Environment variables (optional)'),
    rows,
    note,
    add,
  );
  const text = (className, label, placeholder) =>
    h(
      'label',
      {},
      h('span', { class: 'visually-hidden' }, label),
      h('input', {
        type: 'text',
        class: className,
        placeholder,
        autocomplete: 'off',
        spellcheck: 'false',
      }),
    );
  add.addEventListener('click', () => {
    const index = rows.children.length + 1;
    const remove = h(
      'button',
      { type: 'button', class: 'secondary icon', 'aria-label': `Remove variable ${index}` },
      '×',
    );
    const row = h(
      'div',
      { class: 'env-row' },
      text('env-name', `Variable ${index} name`, 'NAME'),
      text('env-value', `Variable ${index} value`, 'value'),
      remove,
    );
    remove.addEventListener('click', () => {
      row.remove();
      add.focus();
      element.dispatchEvent(new Event('input', { bubbles: true })); // validate again
    });
    rows.append(row);
    row.querySelector('input').focus();
  });
  return {
    element,
    value() {
      const env = {};
      for (const row of rows.children) {
        const name = row.querySelector('.env-name').value.trim();
        if (name) env[name] = row.querySelector('.env-value').value;
      }
      return env;
    },
    message(problem, kind) {
      setText(note, problem ? `${problem.field}: ${problem.message}` : '');
      note.className = problem ? `message ${kind}` : 'message';
    },
  };
}

/** The port after the highest in use (the API says if it is taken); none for the first. */
function suggestPort(ports) {
  const next = Math.max(...ports) + 1;
  return ports.length && next <= 65535 ? next : '';
}

function knownVersions(services, released = []) {
  const versions = new Set(released);
  for (const service of services) {
    versions.add(service.pocketbase_version);
    if (service.deployed_version) versions.add(service.deployed_version);
  }
  return [...versions].sort(compareVersions);
}
