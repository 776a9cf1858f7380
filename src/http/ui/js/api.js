// The one place that talks to the management HTTP API: credentials, URLs,
// JSON in and out, and RabbitMQ's error bodies turned into ApiError.
// Views never call fetch() themselves.

const CREDENTIALS_KEY = 'warren.credentials';

// The API lives beside the UI: `/api/` when the UI is served at `/`, and
// `/prefix/api/` behind a path prefix.
const API_ROOT = new URL('api/', new URL('.', location.href));

/** An error as the management API reports it: `{"error": ..., "reason": ...}`. */
export class ApiError extends Error {
  constructor(status, error, reason) {
    const text = reasonText(reason);
    super(text ? `${error}: ${text}` : String(error));
    this.status = status;
    this.error = error;
    this.reason = text;
  }
}

function reasonText(reason) {
  if (reason === undefined || reason === null) return '';
  return typeof reason === 'string' ? reason : JSON.stringify(reason);
}

function base64Utf8(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export const credentials = {
  /** `user:password` as base64, as the Authorization header carries it. */
  get() { return sessionStorage.getItem(CREDENTIALS_KEY); },
  set(username, password) { sessionStorage.setItem(CREDENTIALS_KEY, base64Utf8(`${username}:${password}`)); },
  clear() { sessionStorage.removeItem(CREDENTIALS_KEY); },
};

let onUnauthorized = () => {};
/** Called when a request with stored credentials gets 401 (password changed, user deleted). */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

/** Encodes path segments: `path('queues', '/', 'a b')` is `queues/%2F/a%20b`. */
export function path(...segments) {
  return segments.map((s) => encodeURIComponent(s)).join('/');
}

/** The URL of an API path with query parameters (undefined, null and '' are left out). */
export function apiUrl(apiPath, query) {
  const url = new URL(apiPath, API_ROOT);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, String(v));
  }
  return url;
}

/**
 * One request. `body` is sent as JSON; `headers` adds headers (X-Reason);
 * `auth` overrides the stored credentials (login). Resolves to the parsed
 * JSON, or null for an empty answer (201, 204).
 */
export async function request(method, apiPath, { query, body, signal, headers, auth, asBlob } = {}) {
  const sent = { ...(headers || {}) };
  const token = auth || credentials.get();
  if (token) sent.Authorization = `Basic ${token}`;
  let payload;
  if (body !== undefined) {
    sent['Content-Type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(apiPath, query), { method, headers: sent, body: payload, signal, credentials: 'omit', cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network_error', 'The management API could not be reached');
  }
  if (!response.ok) {
    let error = `HTTP ${response.status}`;
    let reason = response.statusText;
    try {
      const parsed = JSON.parse(await response.text());
      if (parsed && parsed.error !== undefined) { error = parsed.error; reason = parsed.reason; }
    } catch { /* not JSON: keep the status line */ }
    if (response.status === 401 && !auth) onUnauthorized();
    throw new ApiError(response.status, error, reason);
  }
  if (asBlob) return response.blob();
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const api = {
  get: (p, query, opts) => request('GET', p, { ...opts, query }),
  put: (p, body, opts) => request('PUT', p, { ...opts, body: body ?? {} }),
  post: (p, body, opts) => request('POST', p, { ...opts, body: body ?? {} }),
  del: (p, opts) => request('DELETE', p, opts),
};

/** Logs in: checks the credentials against /api/whoami and keeps them for this tab. */
export async function login(username, password) {
  const token = base64Utf8(`${username}:${password}`);
  const me = await request('GET', 'whoami', { auth: token });
  sessionStorage.setItem(CREDENTIALS_KEY, token);
  return me;
}

/** whoami's tags: an array in RabbitMQ 3.9+, a comma-separated string before. */
export function tagsOf(user) {
  const tags = user && user.tags;
  if (Array.isArray(tags)) return tags;
  return String(tags || '').split(/[\s,]+/).filter(Boolean);
}

/** The default exchange is named "" but addressed as amq.default in URLs. */
export function exchangeSegment(name) { return name === '' ? 'amq.default' : name; }
