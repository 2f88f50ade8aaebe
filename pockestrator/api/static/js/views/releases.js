// A service's app releases on its page: the list (when, by whom, size, which is live, the
// file names changed against the release before), deploy by upload (a tar.gz of
// pb_hooks/, pb_migrations/, pb_public/) and rollback to any earlier release. The agent
// checks the archive and does the deploy; what it refuses is shown with its reason.

import { ApiError, get, post, servicePath, upload } from '../api.js';
import { bytes, when } from '../format.js';
import { button, card, h, mount, setText } from '../render.js';

/** The card, and refresh() to call with the page's other refreshes. */
export function releasesCard(id, onChange) {
  const body = h('tbody');
  // Neither the table nor "no app deployed" shows until the first answer says which.
  const table = h(
    'table',
    { class: 'releases', hidden: true },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Live', 'Release', 'Deployed', 'By', 'Size', 'Files', 'Changes', ''].map((text) =>
          h('th', { scope: 'col' }, text),
        ),
      ),
    ),
    body,
  );
  const empty = h(
    'p',
    { class: 'muted', hidden: true },
    'No app deployed: PocketBase runs the spec’s folders.',
  );
  const file = h('input', {
    type: 'file',
    id: 'release-archive',
    accept: '.tar.gz,.tgz,application/gzip',
  });
  const message = h('p', { class: 'message', role: 'status', 'data-testid': 'release-message' });
  const deployButton = button('Deploy', deploy);
  const element = card(
    'App releases',
    { class: 'card wide' },
    h(
      'p',
      { class: 'muted' },
      'Each deploy is checked, booted on a copy of the data and snapshotted first; a failure puts the previous release and data back.',
    ),
    empty,
    h('div', { class: 'table-wrap' }, table),
    h(
      'div',
      { class: 'upload' },
      h('label', { for: 'release-archive' }, 'App archive (tar.gz)'),
      file,
      deployButton,
    ),
    message,
  );
  let shown = '';
  let busy = false;

  async function refresh() {
    const answer = await get(servicePath(id, '/releases'));
    const key = JSON.stringify(answer.releases);
    if (key === shown) return;
    shown = key;
    empty.hidden = answer.releases.length > 0;
    table.hidden = answer.releases.length === 0;
    mount(body, answer.releases.map(row));
  }

  function row(release) {
    const { added, changed, removed } = release.diff;
    const names = [
      ...added.map((n) => `+ ${n}`),
      ...changed.map((n) => `~ ${n}`),
      ...removed.map((n) => `- ${n}`),
    ];
    return h(
      'tr',
      { 'data-release': release.id, class: release.live ? 'live' : '' },
      h('td', {}, release.live ? h('span', { class: 'badge active' }, 'Live') : ''),
      h('td', {}, h('code', {}, release.id)),
      h('td', {}, when(release.created_at)),
      h('td', {}, release.created_by),
      h('td', {}, bytes(release.size_bytes)),
      h('td', {}, release.file_count),
      h(
        'td',
        { title: names.join('\n') },
        `+${added.length} ~${changed.length} -${removed.length}`,
      ),
      h(
        'td',
        {},
        release.live
          ? ''
          : button('Roll back to this', () => rollback(release.id), {
              class: 'secondary',
              'aria-label': `Roll back to release ${release.id}`,
            }),
      ),
    );
  }

  async function run(what, action) {
    if (busy) return;
    busy = true;
    deployButton.disabled = true;
    setText(message, `${what}…`);
    try {
      const answer = await action();
      const result = answer.operation.result;
      setText(
        message,
        answer.operation.state === 'pending'
          ? `${what} still running; see the events.`
          : result.unchanged
            ? `Release ${result.release} is already live.`
            : `Release ${result.release} is live.`,
      );
      shown = '';
      await refresh();
      onChange?.();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      setText(message, `${what} refused: ${error.message}`);
    } finally {
      busy = false;
      deployButton.disabled = false;
    }
  }

  function deploy() {
    const chosen = file.files?.[0];
    if (!chosen) {
      setText(message, 'Choose a tar.gz of pb_hooks/, pb_migrations/ and pb_public/ first.');
      return;
    }
    return run('Deploy', () => upload(servicePath(id, '/releases'), chosen, 'application/gzip'));
  }

  function rollback(release) {
    return run('Rollback', () =>
      post(servicePath(id, `/rollback?release=${encodeURIComponent(release)}`)),
    );
  }

  return { element, refresh };
}
