// PocketBase's own settings (the spec's `settings`) in the dashboard: the form that edits
// them, on the create page and on a service's page, and how a service's settings read.
// Only what a field holds is declared; an empty field is left to PocketBase (and to its
// admin UI). Secrets are write-only: their box is always empty, what is typed there
// replaces the secret, and the page only ever says that one is set.

import { field, h } from '../render.js';

/** [path under `settings`, label, kind, hint]; kind: text, number, toggle or secret. */
export const SETTINGS_FIELDS = [
  ['app_name', 'App name', 'text', 'The name in the admin UI and in its e-mails.'],
  [
    'app_url',
    'App URL',
    'text',
    "The address in e-mails' links. Empty: the service's own URL (the default).",
  ],
  ['rate_limits.enabled', 'Rate limiter', 'toggle'],
  ['logs.max_days', 'Keep logs for (days)', 'number'],
  ['batch.enabled', 'Batch API', 'toggle'],
  [
    'smtp.host',
    'SMTP host',
    'text',
    'A server beyond loopback also needs its address among the outbound addresses.',
  ],
  ['smtp.port', 'SMTP port', 'number'],
  ['smtp.username', 'SMTP user', 'text'],
  ['smtp.password', 'SMTP password', 'secret'],
  ['smtp.tls', 'SMTP over TLS', 'toggle', 'On: TLS from the start (port 465); off: STARTTLS.'],
  ['smtp.sender_name', 'Sender name', 'text'],
  ['smtp.sender_address', 'Sender address', 'text'],
  ['s3.bucket', 'S3 bucket', 'text', 'Uploaded files go to this bucket instead of pb_data.'],
  ['s3.region', 'S3 region', 'text'],
  ['s3.endpoint', 'S3 endpoint', 'text', 'e.g. https://s3.example.com'],
  ['s3.access_key', 'S3 access key', 'text'],
  ['s3.secret', 'S3 secret key', 'secret'],
  ['s3.force_path_style', 'S3 path-style addressing', 'toggle'],
];
const SECTIONS = ['smtp', 's3', 'rate_limits', 'logs', 'batch'];

function at(object, path) {
  return path.split('.').reduce((node, key) => (node == null ? undefined : node[key]), object);
}

function put(object, path, value) {
  const keys = path.split('.');
  const last = keys.pop();
  let node = object;
  for (const key of keys) node = node[key] ??= {};
  node[last] = value;
}

/**
 * The settings fieldset. `current` is a service's `settings` (none when creating);
 * `fields` maps each spec path ('settings.smtp.host') to its field, for messages;
 * `value()` is what to create with, `patch()` the merge patch that makes `current` what
 * the form says (null removes a declaration, a secret left empty is kept).
 */
export function settingsEditor(current = null, props = {}) {
  const controls = {};
  const removals = {};
  const fields = {};
  const inputs = SETTINGS_FIELDS.map(([path, label, kind, hint]) => {
    const shown = kind === 'secret' ? null : at(current, path);
    controls[path] = control(kind, shown, at(current, path), props);
    const parts = [
      field({
        name: `settings.${path}`,
        label,
        control: controls[path],
        hint: hintFor(kind, hint, current, path),
      }),
    ];
    if (kind === 'secret' && current && at(current, path)) {
      removals[path] = h('input', { type: 'checkbox', ...props });
      parts.push(h('label', { class: 'choice' }, removals[path], `Remove the ${label}`));
    }
    fields[`settings.${path}`] = parts[0];
    return parts;
  });
  const element = h(
    'fieldset',
    { class: 'settings' },
    h('legend', {}, 'PocketBase settings (optional)'),
    h(
      'p',
      { class: 'hint' },
      'Applied through PocketBase’s own API once the instance is up; what is set here is kept as set, the rest stays editable in its admin UI.',
    ),
    inputs,
  );

  function read(path, kind) {
    const raw = controls[path].value.trim();
    if (kind === 'toggle') return raw === '' ? undefined : raw === 'true';
    if (raw === '') return undefined;
    if (kind === 'secret') return { value: controls[path].value };
    // A number that is not one goes as typed, so that the API says what is wrong.
    if (kind === 'number') return /^\d{1,9}$/.test(raw) ? Number(raw) : raw;
    return raw;
  }

  function value() {
    const settings = {};
    for (const [path, , kind] of SETTINGS_FIELDS) {
      const wanted = read(path, kind);
      if (wanted !== undefined) put(settings, path, wanted);
    }
    return settings;
  }

  function patch() {
    const body = {};
    for (const [path, , kind] of SETTINGS_FIELDS) {
      const wanted = read(path, kind);
      const had = at(current, path);
      if (kind === 'secret') {
        if (removals[path]?.checked) put(body, path, null);
        else if (wanted !== undefined) put(body, path, wanted);
      } else if (wanted === undefined) {
        if (had !== undefined && had !== null) put(body, path, null);
      } else if (wanted !== had) {
        put(body, path, wanted);
      }
    }
    // A section left with nothing declared is dropped whole (smtp without a host and the
    // rest would be refused as incomplete).
    const after = value();
    for (const section of SECTIONS) {
      const kept = SETTINGS_FIELDS.some(
        ([p, , k]) =>
          k === 'secret' && p.startsWith(`${section}.`) && at(current, p) && !removals[p]?.checked,
      );
      if (at(current, section) && !after[section] && !kept) body[section] = null;
    }
    return body;
  }

  return { element, fields, value, patch };
}

function control(kind, shown, had, props) {
  if (kind === 'toggle') {
    const select = h(
      'select',
      props,
      h('option', { value: '' }, 'As PocketBase has it'),
      h('option', { value: 'true' }, 'On'),
      h('option', { value: 'false' }, 'Off'),
    );
    select.value = shown === true ? 'true' : shown === false ? 'false' : '';
    return select;
  }
  const input = h('input', {
    type: kind === 'secret' ? 'password' : 'text',
    autocomplete: kind === 'secret' ? 'new-password' : 'off',
    spellcheck: 'false',
    inputmode: kind === 'number' ? 'numeric' : undefined,
    placeholder: kind === 'secret' && had ? 'set; type a new one to replace it' : undefined,
    ...props,
  });
  if (shown !== undefined && shown !== null) input.value = String(shown);
  return input;
}

function hintFor(kind, hint, current, path) {
  if (kind !== 'secret') return hint;
  return at(current, path)
    ? 'Write-only: it is set, and never shown again.'
    : 'Write-only: kept by the agent in a root-only file, never shown again.';
}

/** The settings a service declares, as rows [term, text] for a details list. */
export function settingsRows(settings) {
  const s = settings ?? {};
  const onOff = (value) => (value === true ? 'on' : value === false ? 'off' : null);
  const proxy = s.trusted_proxy;
  const rules = s.rate_limits?.rules;
  return [
    ['App name', s.app_name ?? 'as PocketBase has it'],
    ['App URL', s.app_url ?? 'the service’s own URL'],
    [
      'Trusted proxy',
      proxy?.headers?.length
        ? `${proxy.headers.join(', ')} (${proxy.use_leftmost_ip ? 'left' : 'right'}-most address)`
        : 'none: PocketBase sees Caddy’s address',
    ],
    [
      'Rate limiter',
      s.rate_limits
        ? [onOff(s.rate_limits.enabled), rules ? `${rules.length} rule(s)` : null]
            .filter(Boolean)
            .join(', ') || 'as PocketBase has it'
        : 'as PocketBase has it',
    ],
    ['Mail (SMTP)', s.smtp ? smtpText(s.smtp) : 'as PocketBase has it'],
    ['File storage (S3)', s.s3 ? s3Text(s.s3) : 'as PocketBase has it'],
    [
      'Logs',
      s.logs
        ? [
            s.logs.max_days != null ? `kept ${s.logs.max_days} days` : null,
            s.logs.min_level != null ? `level ≥ ${s.logs.min_level}` : null,
            s.logs.log_ip != null ? `addresses ${onOff(s.logs.log_ip)}` : null,
          ]
            .filter(Boolean)
            .join(', ') || 'as PocketBase has it'
        : 'as PocketBase has it',
    ],
    [
      'Batch API',
      s.batch
        ? [onOff(s.batch.enabled), s.batch.max_requests && `${s.batch.max_requests} requests`]
            .filter(Boolean)
            .join(', ') || 'as PocketBase has it'
        : 'as PocketBase has it',
    ],
  ];
}

function smtpText(smtp) {
  if (smtp.enabled === false) return 'off';
  const where = `${smtp.host ?? '?'}${smtp.port ? `:${smtp.port}` : ''}`;
  return [
    where,
    smtp.username && `user ${smtp.username}`,
    smtp.password ? 'password set' : null,
    smtp.sender_address && `from ${smtp.sender_address}`,
  ]
    .filter(Boolean)
    .join(', ');
}

function s3Text(s3) {
  if (s3.enabled === false) return 'off: files in pb_data';
  return [
    `${s3.bucket ?? '?'} at ${s3.endpoint ?? '?'}`,
    s3.region,
    s3.secret ? 'secret set' : null,
  ]
    .filter(Boolean)
    .join(', ');
}
