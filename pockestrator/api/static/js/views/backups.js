// A service's backups: the list (sizes, ages, verification), taking one now, downloading
// one, verifying one, and restoring one after a confirmation that names what is lost.
// A long operation shows its progress (what runs, for how long) and is followed with the
// API's long poll (`GET .../operations/{id}?wait=true`), not a timer.

import { API, ApiError, call, get, getSession, servicePath } from '../api.js';
import { bytes, duration, since, when } from '../format.js';
import { button, card, h, mount, serviceCrumbs, setText } from '../render.js';
import { notify } from '../shell.js';

export const title = 'Backups';

export async function show(root, view) {
  const [key] = view.params;
  let listing;
  try {
    listing = await get(servicePath(key, '/backups'));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    mount(
      root,
      h('h1', {}, 'No such service'),
      h('p', {}, h('a', { href: '#/services' }, 'All services')),
    );
    return;
  }
  const name = listing.project_name;
  document.title = `Backups of ${name} · Pockestrator`;
  const progress = h('p', {
    class: 'progress',
    role: 'status',
    'aria-live': 'polite',
    hidden: true,
  });
  const body = h('tbody');
  const summary = h('p', { class: 'muted' });
  const takeButton = button('Take a backup now', () =>
    operate('snapshot', '/backups', 'Taking a backup'),
  );
  const backupPath = (backup, rest) => `/backups/${encodeURIComponent(backup.id)}${rest}`;
  const dialog = restoreDialog(name, (backup) =>
    operate('restore', backupPath(backup, '/restore'), `Restoring ${backup.id}`),
  );
  let busy = false;

  function render(answer) {
    const policy = answer.policy;
    setText(
      summary,
      `${answer.total} backup(s), ${bytes(answer.total_bytes)}. ` +
        `Schedule: ${policy.schedule ?? 'on request only'}; ` +
        `keeps the last ${policy.keep.last}, ${policy.keep.daily} daily, ` +
        `${policy.keep.weekly} weekly, ${policy.keep.monthly} monthly; ` +
        `verified ${policy.verify ?? 'on request only'}.`,
    );
    mount(
      body,
      answer.backups.length
        ? answer.backups.map((backup) =>
            h(
              'tr',
              { 'data-backup': backup.id },
              h('td', {}, h('code', {}, backup.id)),
              h('td', {}, backup.kind),
              h('td', { title: when(backup.created_at) }, since(backup.created_at)),
              h('td', {}, bytes(backup.size_bytes)),
              h('td', {}, backup.file_count),
              h('td', {}, backup.pocketbase_version ?? '—'),
              h('td', {}, verifiedText(backup)),
              h(
                'td',
                { class: 'actions' },
                button('Download', () => download(backup), { class: 'secondary' }),
                button(
                  'Verify',
                  () => operate('verify', backupPath(backup, '/verify'), `Verifying ${backup.id}`),
                  { class: 'secondary' },
                ),
                button('Restore…', () => dialog.open(backup), { class: 'danger' }),
              ),
            ),
          )
        : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No backups yet.')),
    );
  }

  async function refresh() {
    render(await get(servicePath(name, '/backups')));
  }

  /** Ask for an operation, then follow it to its end, showing what runs and for how long. */
  async function operate(kind, path, label) {
    if (busy) return;
    busy = true;
    const started = Date.now();
    const tick = () => setText(progress, `${label}… ${duration((Date.now() - started) / 1000)}`);
    progress.hidden = false;
    tick();
    const timer = setInterval(tick, 250);
    view.onLeave(() => clearInterval(timer));
    try {
      let answer = await call('POST', servicePath(name, `${path}?wait=false`));
      while (answer.operation.state === 'pending' && view.active) {
        answer = await get(servicePath(name, `/operations/${answer.operation.id}?wait=true`));
      }
      notify(doneText(kind, answer));
    } catch (error) {
      notify(error.message, 'error');
    } finally {
      clearInterval(timer);
      progress.hidden = true;
      busy = false;
    }
    if (view.active) await refresh();
  }

  async function download(backup) {
    const url = API + servicePath(name, backupPath(backup, '/download'));
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${getSession()?.token ?? ''}` },
      cache: 'no-store',
    });
    if (!response.ok) {
      notify(`The download failed (${response.status})`, 'error');
      return;
    }
    const href = URL.createObjectURL(await response.blob());
    const link = h('a', { href, download: `${name}-${backup.id}.tar` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  mount(
    root,
    serviceCrumbs(name, 'backups'),
    h('h1', {}, `Backups of ${name}`),
    h(
      'div',
      { class: 'toolbar actions', role: 'group', 'aria-label': 'Backup actions' },
      takeButton,
    ),
    progress,
    card(
      'Backups',
      {},
      summary,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'backups' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['ID', 'Kind', 'Age', 'Size', 'Files', 'Version', 'Verified', ''].map((label) =>
                h('th', { scope: 'col' }, label),
              ),
            ),
          ),
          body,
        ),
      ),
    ),
    dialog.element,
  );
  render(listing);
}

function verifiedText(backup) {
  if (backup.verified === null || backup.verified === undefined) return 'not yet';
  if (backup.verified) return `yes, ${since(backup.verified_at)}`;
  return `FAILED: ${backup.verification_detail ?? ''}`;
}

function doneText(kind, answer) {
  const op = answer.operation;
  if (op.state === 'pending') return `The ${kind} is still running (operation ${op.id}).`;
  if (kind === 'snapshot') return `Backup ${answer.backup?.id ?? op.backup_id} taken.`;
  if (kind === 'verify') return `Backup ${op.backup_id} verified: restored, checked and booted.`;
  const safety = op.result.safety_snapshot;
  return `Backup ${op.backup_id} restored (safety backup ${safety} taken first).`;
}

/** The confirmation before a restore, saying what is lost. */
function restoreDialog(name, onConfirm) {
  let chosen = null;
  const what = h('p', { class: 'consequence alert error' });
  const form = h(
    'form',
    { method: 'dialog' },
    h('h2', { id: 'restore-dialog-title' }, `Restore a backup of ${name}?`),
    what,
    h(
      'p',
      {},
      'A safety backup of the current data is taken first, and the replaced data is kept ' +
        'on the host. The instance is stopped while the data is swapped, then started and ' +
        'checked.',
    ),
    h(
      'div',
      { class: 'actions' },
      button('Cancel', () => dialog.close(), { class: 'secondary' }),
      h('button', { type: 'submit', class: 'danger' }, 'Restore and replace the data'),
    ),
  );
  const dialog = h('dialog', { 'aria-labelledby': 'restore-dialog-title' }, form);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    dialog.close();
    if (chosen) onConfirm(chosen);
  });
  return {
    element: dialog,
    open(backup) {
      chosen = backup;
      setText(
        what,
        `Everything written to ${name} since ${when(backup.created_at)} ` +
          `(${since(backup.created_at)}) is lost from the running service: ` +
          `its data becomes backup ${backup.id}.`,
      );
      dialog.showModal();
    },
  };
}
