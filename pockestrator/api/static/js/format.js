// Numbers and times as people read them. The API sends UTC ISO 8601; the browser shows
// local time.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

export function when(iso) {
  return iso ? dateTime.format(new Date(iso)) : '—';
}

export function clock(iso) {
  return iso ? timeOnly.format(new Date(iso)) : '';
}

/** "3d 4h", "2h 30m", "45s" */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  let rest = Math.max(0, Math.floor(seconds));
  const parts = [];
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ]) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (parts.length < 2) parts.push(`${rest}s`);
  return parts.slice(0, 2).join(' ');
}

export function since(iso) {
  return iso ? `${duration((Date.now() - Date.parse(iso)) / 1000)} ago` : '—';
}

export function bytes(value) {
  if (value === null || value === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? size : size.toFixed(1)} ${units[unit]}`;
}

/** The address an instance answers at: the service's url (scheme, domain, Caddy's port). */
export function instanceUrl(service) {
  return `${new URL(service.url).origin}/`;
}

/** Newest first: '0.40.6' before '0.29.0' (pre-releases after their release). */
export function compareVersions(a, b) {
  const parse = (v) => v.split(/[.-]/).map((part) => (/^\d+$/.test(part) ? Number(part) : part));
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i += 1) {
    if (x[i] === y[i]) continue;
    if (x[i] === undefined) return -1;
    if (y[i] === undefined) return 1;
    if (typeof x[i] === typeof y[i]) return x[i] < y[i] ? 1 : -1;
    return typeof x[i] === 'number' ? -1 : 1;
  }
  return 0;
}
