// What every view may use of the page around it: moving to another page, a short message
// in the live region, and the agent's /system/info (fetched once per sign-in).

import { get } from './api.js';
import { h, mount } from './render.js';

let infoPromise = null;
let toastTimer = null;

export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}

/** A short message at the bottom of the page, read out by screen readers. */
export function notify(text, kind = 'info') {
  const toast = document.getElementById('toast');
  toast.className = `toast ${kind}`;
  mount(toast, h('p', {}, text));
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => mount(toast), kind === 'error' ? 10000 : 6000);
}

/** Version, paths and the instances' public port; `fresh` asks the agent again. */
export function systemInfo(fresh = false) {
  if (fresh || infoPromise === null) {
    infoPromise = get('/system/info').catch((error) => {
      infoPromise = null;
      throw error;
    });
  }
  return infoPromise;
}

export function forgetSystemInfo() {
  infoPromise = null;
}

/**
 * The reference's "check health first": a banner on every page while the host is not
 * ready, from the latest /system/health report (null hides it).
 */
export function showHostHealth(report) {
  const banner = document.getElementById('host-banner');
  if (!report || report.healthy !== false) {
    banner.hidden = true;
    return;
  }
  const count = report.errors.length;
  const problems = `${count} problem${count === 1 ? '' : 's'}`;
  mount(
    banner,
    h(
      'p',
      {},
      `This host is not ready to run services (${problems}). `,
      h('a', { href: '#/system' }, 'See what to set up'),
    ),
  );
  banner.hidden = false;
}
