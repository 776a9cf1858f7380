// Building DOM nodes and formatting values. Every text goes in through
// text nodes, never innerHTML, so names from the broker cannot inject markup.

/**
 * `h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, [more])`.
 * Attributes: `class`, `style` (string), `on*` (listeners), `dataset`
 * (object), booleans (set when true), anything else as an attribute.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked' || k === 'selected' || k === 'disabled') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) { el.replaceChildren(); return el; }

/** An inline SVG icon from the sprite below (`icon('trash')`). */
export function icon(name) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  p.setAttribute('d', ICONS[name] || '');
  svg.append(p);
  return svg;
}

const ICONS = {
  overview: 'M4 13h6V4H4zm0 7h6v-5H4zm10 0h6v-9h-6zm0-16v5h6V4z',
  connections: 'M7 7h4v4H7zM13 13h4v4h-4zM11 9h4v4M5 17h4M15 7h4',
  channels: 'M4 7h16M4 12h16M4 17h10',
  exchanges: 'M4 8h13l-3-3M20 16H7l3 3',
  queues: 'M4 6h16v4H4zM4 14h16v4H4z',
  vhosts: 'M4 5h16v6H4zM4 13h16v6H4zM7 8h.01M7 16h.01',
  users: 'M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21a8 8 0 0 1 16 0',
  policies: 'M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z',
  definitions: 'M12 4v11m0 0l-4-4m4 4l4-4M5 20h14',
  refresh: 'M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7',
  plus: 'M12 5v14M5 12h14',
  trash: 'M5 7h14M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3',
  close: 'M6 6l12 12M18 6L6 18',
  logout: 'M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10',
  search: 'M11 18a7 7 0 1 1 0-14 7 7 0 0 1 0 14zM16 16l4 4',
  first: 'M17 18l-6-6 6-6M7 6v12',
  prev: 'M15 18l-6-6 6-6',
  next: 'M9 6l6 6-6 6',
  last: 'M7 6l6 6-6 6M17 6v12',
  send: 'M4 12l16-8-6 16-3-7z',
  inbox: 'M4 13l3-8h10l3 8v6H4zM4 13h5l1 2h4l1-2h5',
  broom: 'M14 4l-4 8M6 20l4-8h4l2 8zM9 16l-1 4M13 16v4',
  download: 'M12 4v11m0 0l-4-4m4 4l4-4M5 20h14',
  upload: 'M12 16V5m0 0L8 9m4-4l4 4M5 20h14',
  key: 'M14 10a4 4 0 1 0-4 4l-6 6 2 2 1-1 1 1 2-2-1-1 2-2a4 4 0 0 0 3-7',
  move: 'M4 12h14m0 0l-4-4m4 4l-4 4M20 5v14',
};

// ---- formatting -------------------------------------------------------------

const NUM = new Intl.NumberFormat('en-US');
const RATE = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 });

export function fmtNum(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return '–';
  return NUM.format(n);
}

/** A rate per second: `12.4/s`, compact above ten thousand. */
export function fmtRate(r) {
  if (r === undefined || r === null || Number.isNaN(r)) return '–';
  if (Math.abs(r) >= 10000) return `${compact(r)}/s`;
  return `${RATE.format(r)}/s`;
}

export function compact(n) {
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${trim(n / 1e9)}G`;
  if (abs >= 1e6) return `${trim(n / 1e6)}M`;
  if (abs >= 1e4) return `${trim(n / 1e3)}k`;
  return NUM.format(Math.round(n * 10) / 10);
}
function trim(x) { return (Math.round(x * 10) / 10).toString(); }

export function fmtBytes(b) {
  if (b === undefined || b === null || Number.isNaN(b)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = b;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** Milliseconds as `3d 4h`, `5h 12m`, `4m 10s`, `12s`. */
export function fmtDuration(ms) {
  if (ms === undefined || ms === null) return '–';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function fmtTime(ms) {
  if (!ms) return '–';
  return new Date(ms).toLocaleString('en-GB', { hour12: false });
}

/** A value from the API shown as text: objects as compact JSON. */
export function fmtValue(v) {
  if (v === undefined || v === null) return '–';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** `get(obj, 'message_stats.publish_details.rate')`. */
export function get(obj, dotted) {
  let v = obj;
  for (const k of dotted.split('.')) {
    if (v === undefined || v === null) return undefined;
    v = v[k];
  }
  return v;
}

/** Debounce: call fn once `ms` after the last call. */
export function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}
