// What the whole UI shares: who is logged in (whoami's tags decide what is
// shown), the chosen virtual host, what the broker told us in /api/overview,
// and the address (hash routes like #/queues/%2F/orders?page=2).

import { tagsOf, path } from './api.js';

const VHOST_KEY = 'warren.vhost';

export const session = {
  user: null,
  tags: [],
  /** '' means all virtual hosts. */
  vhost: sessionStorage.getItem(VHOST_KEY) || '',
  vhosts: [],
  overview: null,
};

export function setUser(user) {
  session.user = user;
  session.tags = tagsOf(user);
}

export function setVhost(v) {
  session.vhost = v;
  if (v) sessionStorage.setItem(VHOST_KEY, v); else sessionStorage.removeItem(VHOST_KEY);
}

// RabbitMQ's tags: administrator includes monitoring and policymaker; both include management.
export const isAdmin = () => session.tags.includes('administrator');
export const canMonitor = () => isAdmin() || session.tags.includes('monitoring');
export const canPolicy = () => isAdmin() || session.tags.includes('policymaker');

/** Lists show a vhost column only when more than one vhost can be in them. */
export function showVhostColumn() {
  return !session.vhost && session.vhosts.length !== 1;
}

/** `resource` for all vhosts, `resource/{vhost}` for the chosen one. */
export function scoped(resource) {
  return session.vhost ? `${resource}/${path(session.vhost)}` : resource;
}

/** Exchange types the broker offers (from /api/overview), with a fallback. */
export function exchangeTypes() {
  const types = session.overview && session.overview.exchange_types;
  return types && types.length ? types.map((t) => t.name) : ['direct', 'fanout', 'headers', 'topic'];
}

// ---- the address -------------------------------------------------------------

/** `#/queues/%2F/orders?page=2` → { parts: ['queues', '/', 'orders'], query }. */
export function currentRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [p, q = ''] = raw.split('?');
  const parts = p.split('/').filter((x) => x !== '').map((x) => {
    try { return decodeURIComponent(x); } catch { return x; }
  });
  return { parts, query: new URLSearchParams(q) };
}

/** `link('queues', '/', 'orders')` → `#/queues/%2F/orders`. */
export function link(...segments) {
  return `#/${segments.map((s) => encodeURIComponent(s)).join('/')}`;
}

/** Replaces the query part of the address without re-rendering the view. */
export function setQuery(values) {
  const { parts } = currentRoute();
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v !== '' && v !== undefined && v !== null && v !== false) q.set(k, String(v));
  const qs = q.toString();
  const next = `${link(...parts)}${qs ? `?${qs}` : ''}`;
  if (next !== location.hash) history.replaceState(null, '', next);
}
