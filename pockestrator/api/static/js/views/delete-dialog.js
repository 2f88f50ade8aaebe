// The confirmation before deleting a service: archive (the default) or purge, said plainly
// before anything happens. `onConfirm(purge)` runs when the user confirms.

import { button, h, setText } from '../render.js';

export function deleteDialog(name, info, onConfirm) {
  const archiveDir = info ? `${info.config.base_dir}/.archive` : 'the archive folder';
  const consequence = h('p', { class: 'consequence', 'aria-live': 'polite' });
  const confirm = h('button', { type: 'submit', class: 'danger' });
  const choice = (value, label, checked) =>
    h(
      'label',
      { class: 'choice' },
      h('input', { type: 'radio', name: 'data', value, checked }),
      label,
    );
  const form = h(
    'form',
    { method: 'dialog' },
    h('h2', { id: 'delete-dialog-title' }, `Delete ${name}?`),
    h('p', {}, 'The instance is stopped; its systemd unit and Caddy site are removed.'),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Its data (pb_data)'),
      choice('archive', 'Archive it (can be restored by hand)', true),
      choice('purge', 'Purge it (deleted for good)', false),
    ),
    consequence,
    h(
      'div',
      { class: 'actions' },
      button('Cancel', () => dialog.close(), { class: 'secondary' }),
      confirm,
    ),
  );
  const dialog = h('dialog', { 'aria-labelledby': 'delete-dialog-title' }, form);
  const purging = () => form.elements.data.value === 'purge';
  const update = () => {
    setText(
      consequence,
      purging()
        ? `The data of ${name} will be deleted permanently. This cannot be undone.`
        : `The data of ${name} will be archived: moved to ${archiveDir} (or the agent's archive_dir).`,
    );
    consequence.className = `consequence alert ${purging() ? 'error' : 'info'}`;
    setText(confirm, purging() ? 'Delete and purge data' : 'Delete and archive data');
  };
  form.addEventListener('change', update);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const purge = purging();
    dialog.close();
    onConfirm(purge);
  });
  dialog.addEventListener('close', () => {
    form.elements.data.value = 'archive'; // the safe choice, next time it opens
    update();
  });
  update();
  return dialog;
}
