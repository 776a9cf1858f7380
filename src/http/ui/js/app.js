// Warren's management UI: login, the page frame (navigation, vhost choice,
// refresh), the router that picks a view, and keyboard shortcuts.
// Each view module exports render(ctx) → { refresh?(), destroy?() }.

import { api, credentials, login, setUnauthorizedHandler } from './api.js';
import { h, icon, clear } from './dom.js';
import { dialog, describeError } from './ui.js';
import { session, setUser, setVhost, isAdmin, canPolicy, currentRoute, link } from './session.js';
import * as overview from './views/overview.js';
import * as connections from './views/connections.js';
import * as channels from './views/channels.js';
import * as exchanges from './views/exchanges.js';
import * as queues from './views/queues.js';
import * as vhosts from './views/vhosts.js';
import * as users from './views/users.js';
import * as policies from './views/policies.js';
import * as definitions from './views/definitions.js';

const app = document.getElementById('app');

// [route, label, icon, module, shortcut key, visible?]
const NAV = [
  ['', 'Overview', 'overview', overview, 'o'],
  ['connections', 'Connections', 'connections', connections, 'c'],
  ['channels', 'Channels', 'channels', channels, 'h'],
  ['exchanges', 'Exchanges', 'exchanges', exchanges, 'e'],
  ['queues', 'Queues', 'queues', queues, 'q'],
  ['vhosts', 'Virtual hosts', 'vhosts', vhosts, 'v', isAdmin],
  ['users', 'Users', 'users', users, 'u', isAdmin],
  ['policies', 'Policies', 'policies', policies, 'p', canPolicy],
  ['definitions', 'Definitions', 'definitions', definitions, 'd', isAdmin],
];
const ADMIN_START = 5;

const REFRESH_KEY = 'warren.refresh';
let refreshMs = Number(sessionStorage.getItem(REFRESH_KEY) ?? 5000);
let current = null;
let main;
let timer = null;

// ---- login -----------------------------------------------------------------

function showLogin(message) {
  stopTimer();
  if (current && current.destroy) current.destroy();
  current = null;
  const errorSlot = h('div', { class: 'form-error', role: 'alert' }, message ? h('div', { class: 'alert alert-error' }, message) : null);
  const user = h('input', { name: 'username', id: 'login-user', autocomplete: 'username', required: true, spellcheck: 'false', autocapitalize: 'off' });
  const pass = h('input', { name: 'password', id: 'login-pass', type: 'password', autocomplete: 'current-password' });
  const submit = h('button', { type: 'submit', class: 'button primary wide' }, 'Log in');
  const f = h('form', { class: 'login-form' },
    h('div', { class: 'field' }, h('label', { for: 'login-user' }, 'Username'), user),
    h('div', { class: 'field' }, h('label', { for: 'login-pass' }, 'Password'), pass),
    errorSlot, submit);
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    submit.textContent = 'Logging in…';
    errorSlot.replaceChildren();
    try {
      const me = await login(user.value, pass.value);
      await start(me);
    } catch (err) {
      const text = err.status === 401 ? 'Login failed: wrong username or password.' : describeError(err);
      errorSlot.replaceChildren(h('div', { class: 'alert alert-error' }, text));
      submit.disabled = false;
      submit.textContent = 'Log in';
      pass.select();
    }
  });
  app.replaceChildren(h('div', { class: 'login' },
    h('div', { class: 'login-card' },
      h('div', { class: 'login-brand' }, logo(44), h('div', {}, h('div', { class: 'brand-name' }, 'Warren'), h('div', { class: 'muted' }, 'Message broker management'))),
      f)));
  user.focus();
}

function logo(size) {
  const img = h('img', { src: 'favicon.svg', width: size, height: size, alt: '', class: 'logo' });
  return img;
}

function logout() {
  credentials.clear();
  session.user = null;
  location.hash = '#/';
  showLogin();
}

setUnauthorizedHandler(() => {
  credentials.clear();
  showLogin('Your session ended: the credentials are no longer accepted.');
});

// ---- the frame ---------------------------------------------------------------

async function start(me) {
  setUser(me);
  try {
    session.overview = await api.get('overview', { columns: 'cluster_name,product_name,product_version,rabbitmq_version,exchange_types,node,management_version' });
  } catch { session.overview = null; }
  await loadVhosts();
  frame();
  route();
}

async function loadVhosts() {
  try {
    const list = await api.get('vhosts', { columns: 'name' });
    session.vhosts = list.map((v) => v.name).sort();
  } catch { session.vhosts = []; }
  if (session.vhost && !session.vhosts.includes(session.vhost)) setVhost('');
}

function frame() {
  const ov = session.overview || {};
  const navLinks = NAV.filter((n) => !n[5] || n[5]()).map((n) => h('a', {
    href: link(...(n[0] ? [n[0]] : [])) || '#/', class: 'nav-link', dataset: { route: n[0] }, title: `${n[1]} (g ${n[4]})`,
  }, icon(n[2]), h('span', {}, n[1])));
  const mainNav = navLinks.filter((a) => NAV.findIndex((n) => n[0] === a.dataset.route) < ADMIN_START);
  const adminNav = navLinks.filter((a) => NAV.findIndex((n) => n[0] === a.dataset.route) >= ADMIN_START);

  const vhostSelect = h('select', { id: 'vhost-select', 'aria-label': 'Virtual host', onchange: () => { setVhost(vhostSelect.value); route(); } },
    h('option', { value: '' }, 'All virtual hosts'),
    session.vhosts.map((v) => h('option', { value: v, selected: v === session.vhost }, v)));
  const refreshSelect = h('select', { 'aria-label': 'Refresh interval', onchange: () => { refreshMs = Number(refreshSelect.value); sessionStorage.setItem(REFRESH_KEY, String(refreshMs)); schedule(); } },
    [[5000, 'Every 5 s'], [10000, 'Every 10 s'], [30000, 'Every 30 s'], [0, 'Paused']].map(([v, l]) => h('option', { value: v, selected: v === refreshMs }, l)));

  main = h('main', { id: 'main', tabindex: '-1' });
  app.replaceChildren(h('div', { class: 'shell' },
    h('aside', { class: 'side' },
      h('a', { class: 'brand', href: '#/' }, logo(30), h('span', { class: 'brand-name' }, 'Warren')),
      h('nav', { 'aria-label': 'Main' }, mainNav,
        adminNav.length ? [h('div', { class: 'nav-group' }, 'Admin'), adminNav] : null),
      h('div', { class: 'side-foot' },
        h('button', { type: 'button', class: 'linkish', onclick: showShortcuts }, 'Keyboard shortcuts ', h('kbd', {}, '?')),
        h('div', {}, [ov.product_name, ov.product_version].filter(Boolean).join(' ')))),
    h('div', { class: 'main-col' },
      h('header', { class: 'top' },
        h('div', { class: 'cluster' }, h('span', { class: 'muted' }, 'Cluster '), h('strong', {}, ov.cluster_name || '–')),
        h('span', { class: 'spacer' }),
        h('label', { class: 'top-field' }, h('span', {}, 'Virtual host'), vhostSelect),
        h('label', { class: 'top-field' }, icon('refresh'), refreshSelect),
        h('div', { class: 'who' },
          h('span', { class: 'who-name' }, session.user.name),
          h('span', { class: 'who-tags' }, session.tags.join(', ') || 'no tags'),
          h('button', { type: 'button', class: 'icon-button', title: 'Log out', 'aria-label': 'Log out', onclick: logout }, icon('logout')))),
      main)));
}

/** Re-reads the vhost list (after one was added or deleted) and updates the selector. */
async function vhostsChanged() {
  await loadVhosts();
  const sel = document.getElementById('vhost-select');
  if (!sel) return;
  sel.replaceChildren(h('option', { value: '' }, 'All virtual hosts'),
    ...session.vhosts.map((v) => h('option', { value: v, selected: v === session.vhost }, v)));
}
window.addEventListener('warren:vhosts-changed', vhostsChanged);

// ---- routing and refresh ---------------------------------------------------------

let lastPath = null;
function route() {
  if (!session.user) return;
  const r = currentRoute();
  const top = r.parts[0] || '';
  const entry = NAV.find((n) => n[0] === top);
  for (const a of app.querySelectorAll('.nav-link')) a.classList.toggle('active', a.dataset.route === top);
  if (current && current.destroy) current.destroy();
  clear(main);
  lastPath = r.parts.join('/');
  if (!entry || (entry[5] && !entry[5]())) {
    main.append(h('div', { class: 'empty-state' }, h('h1', {}, 'Not here'), h('p', {}, 'This page does not exist or needs other user tags.'), h('a', { href: '#/' }, 'Back to the overview')));
    current = null;
    return;
  }
  document.title = `${entry[1]} · Warren`;
  current = entry[3].render({ main, parts: r.parts.slice(1), query: r.query }) || null;
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  schedule();
}

function stopTimer() { clearTimeout(timer); timer = null; }

function schedule() {
  stopTimer();
  if (!refreshMs || !current || !current.refresh) return;
  timer = setTimeout(async () => {
    if (!document.hidden && current && current.refresh && !document.querySelector('dialog[open]')) {
      try { await current.refresh(); } catch { /* views show their own errors */ }
    }
    schedule();
  }, refreshMs);
}

window.addEventListener('hashchange', () => {
  const r = currentRoute();
  if (r.parts.join('/') === lastPath) return; // only the list state changed
  route();
});

// ---- keyboard ---------------------------------------------------------------

let pendingG = 0;
document.addEventListener('keydown', (e) => {
  if (!session.user || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t.closest && t.closest('input, textarea, select, [contenteditable], dialog')) return;
  if (Date.now() - pendingG < 1500) {
    pendingG = 0;
    const entry = NAV.find((n) => n[4] === e.key && (!n[5] || n[5]()));
    if (entry) { e.preventDefault(); location.hash = entry[0] ? link(entry[0]) : '#/'; }
    return;
  }
  const click = (sel) => { const el = main && main.querySelector(sel); if (el && !el.disabled) { e.preventDefault(); el.click(); } };
  switch (e.key) {
    case 'g': pendingG = Date.now(); break;
    case '/': { const f = main && main.querySelector('[data-filter]'); if (f) { e.preventDefault(); f.focus(); f.select(); } break; }
    case '[': click('[data-page-prev]'); break;
    case ']': click('[data-page-next]'); break;
    case 'n': click('[data-new]'); break;
    case 'r': if (current && current.refresh) { e.preventDefault(); current.refresh(); } break;
    case '?': e.preventDefault(); showShortcuts(); break;
    default:
  }
});

function showShortcuts() {
  const rows = [
    ['/', 'Filter the list'], ['[  ]', 'Previous / next page'], ['n', 'Add (queue, exchange, user…)'], ['r', 'Refresh now'],
    ...NAV.filter((n) => !n[5] || n[5]()).map((n) => [`g ${n[4]}`, `Go to ${n[1]}`]), ['Esc', 'Close a dialog, clear a filter'],
  ];
  dialog('Keyboard shortcuts', () => h('table', { class: 'kv shortcuts' }, h('tbody', {},
    rows.map(([k, d]) => h('tr', {}, h('th', {}, k.split(' ').filter(Boolean).map((x) => h('kbd', {}, x))), h('td', {}, d))))));
}

// ---- boot ------------------------------------------------------------------

(async function boot() {
  if (!credentials.get()) { showLogin(); return; }
  try {
    const me = await api.get('whoami');
    await start(me);
  } catch (err) {
    credentials.clear();
    showLogin(err.status === 401 ? null : describeError(err));
  }
}());
