// The dashboard's whole rendering layer: build elements with h(), never from HTML strings,
// so that text from the API (names, log lines, errors) can never become markup.

/** h('a', {href: '#/x', class: 'link', onclick: fn}, 'text', child, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  el.append(...nodes(children));
  return el;
}

function nodes(children) {
  return children
    .flat(Infinity)
    .filter((child) => child !== null && child !== undefined && child !== false)
    .map((child) => (child instanceof Node ? child : String(child)));
}

/** Replace everything inside `parent`. */
export function mount(parent, ...children) {
  parent.replaceChildren(...nodes(children));
}

/** Set text only when it changed (live updates then leave selection and focus alone). */
export function setText(el, value) {
  const text = value === null || value === undefined ? '' : String(value);
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Keep `parent`'s children in step with `items`, one element per key: existing elements
 * are updated in place (a focused link in a row keeps its focus while the list refreshes).
 */
export function syncChildren(parent, items, keyOf, create, update) {
  const existing = new Map([...parent.children].map((el) => [el.dataset.key, el]));
  const wanted = items.map((item) => {
    const key = String(keyOf(item));
    let el = existing.get(key);
    if (el === undefined) {
      el = create(item);
      el.dataset.key = key;
    }
    existing.delete(key);
    update(el, item);
    return el;
  });
  for (const el of existing.values()) el.remove();
  wanted.forEach((el, index) => {
    if (parent.children[index] !== el) parent.insertBefore(el, parent.children[index] ?? null);
  });
}

let uniqueIds = 0;

/**
 * A labelled form control with a hint and a message line for validation results:
 * field({name: 'port', label: 'Port', control: h('input', {...}), hint: '...'}).
 * The control gets an id, the label points at it, and hint and message describe it.
 */
export function field({ name, label, control, hint }) {
  const id = control.id || `f-${name.replace(/[^a-z0-9]+/gi, '-')}-${++uniqueIds}`;
  control.id = id;
  control.name ||= name;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  const message = h('p', { class: 'message', id: `${id}-message`, 'aria-live': 'polite' });
  control.setAttribute('aria-describedby', [hintEl?.id, message.id].filter(Boolean).join(' '));
  return h(
    'div',
    { class: 'field', 'data-field': name },
    h('label', { for: id }, label),
    control,
    hintEl,
    message,
  );
}

/** Show an error or a warning under a field made by field(); null clears it. */
export function fieldMessage(wrapper, problem, kind = 'error') {
  const message = wrapper.querySelector('.message');
  const control = wrapper.querySelector('input, select, textarea');
  setText(message, problem ? problem.message : '');
  message.className = problem ? `message ${kind}` : 'message';
  if (control) {
    if (problem && kind === 'error') control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  }
}

const STATE_LABELS = {
  active: 'Active',
  inactive: 'Stopped',
  error: 'Error',
  deploying: 'Deploying',
  node_lost: 'Node lost',
};

/** A status badge: the word is always there, the colour only repeats it. */
export function badge(state) {
  return h('span', { class: `badge badge-${state}` }, STATE_LABELS[state] ?? state);
}

export function updateBadge(el, state) {
  el.className = `badge badge-${state}`;
  setText(el, STATE_LABELS[state] ?? state);
}

/** A titled section; its heading names it for assistive technology. */
export function card(heading, props, ...children) {
  const id = `card-${++uniqueIds}`;
  return h(
    'section',
    { class: 'card', 'aria-labelledby': id, ...props },
    h('h2', { id }, heading),
    ...children,
  );
}

/** The trail above a service's page: Services / name, or with `page` (a page below the
 * service's own) Services / name / page, the name then a link to the service. */
export function serviceCrumbs(name, page) {
  const services = h('a', { href: '#/services' }, 'Services');
  if (page === undefined) return h('p', { class: 'crumbs' }, services, ' / ', name);
  const service = h('a', { href: `#/services/${encodeURIComponent(name)}` }, name);
  return h('p', { class: 'crumbs' }, services, ' / ', service, ' / ', page);
}

/** A plain button: button('Stop', () => stop(), {class: 'secondary'}). */
export function button(label, onclick, props = {}) {
  return h('button', { type: 'button', onclick, ...props }, label);
}
