// Shared pieces of the page: notices, dialogs, panels, forms, the
// arguments editor, property tables. No view-specific logic here.

import { h, icon, clear, fmtValue } from './dom.js';
import { ApiError } from './api.js';

// ---- notices ---------------------------------------------------------------

let toastBox;
/** A short notice in the corner; `kind` is ok, warn or error. */
export function toast(text, kind = 'ok') {
  if (!toastBox) {
    toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(toastBox);
  }
  const t = h('div', { class: `toast toast-${kind}` }, text);
  toastBox.append(t);
  setTimeout(() => t.classList.add('leaving'), kind === 'error' ? 7000 : 3500);
  setTimeout(() => t.remove(), kind === 'error' ? 7400 : 3900);
}

/** An error as the API reported it, for an inline box. */
export function errorBox(err) {
  if (err instanceof ApiError) {
    return h('div', { class: 'alert alert-error', role: 'alert' },
      h('strong', {}, err.status ? `${err.status} ${err.error}` : err.error),
      err.reason ? h('span', {}, ` — ${err.reason}`) : null);
  }
  return h('div', { class: 'alert alert-error', role: 'alert' }, String(err && err.message ? err.message : err));
}

export function describeError(err) {
  return err instanceof ApiError ? err.message : String(err && err.message ? err.message : err);
}

// ---- dialogs ---------------------------------------------------------------

/**
 * A modal dialog. `build(close)` returns its body; resolves with what
 * `close(value)` was called with (undefined on Escape or cancel).
 */
export function dialog(title, build, { wide = false } = {}) {
  return new Promise((resolve) => {
    const d = h('dialog', { class: `dialog${wide ? ' dialog-wide' : ''}`, 'aria-label': title });
    const close = (value) => { d.close(); d.remove(); resolve(value); };
    d.addEventListener('cancel', (e) => { e.preventDefault(); close(undefined); });
    d.append(
      h('header', { class: 'dialog-head' }, h('h2', {}, title),
        h('button', { class: 'icon-button', type: 'button', 'aria-label': 'Close', onclick: () => close(undefined) }, icon('close'))),
      h('div', { class: 'dialog-body' }, build(close)));
    document.body.append(d);
    d.showModal();
    const first = d.querySelector('[autofocus]') || d.querySelector('input:not([type=hidden]):not([disabled]), select, textarea, button.primary');
    if (first) first.focus();
  });
}

/** Asks before a destructive action (Cancel has the focus). Resolves true when confirmed. */
export function confirmDanger(title, text, action = 'Delete') {
  return dialog(title, (close) => h('div', {},
    h('p', {}, text),
    h('div', { class: 'form-actions' },
      h('button', { type: 'button', class: 'button', autofocus: true, onclick: () => close(false) }, 'Cancel'),
      h('button', { type: 'button', class: 'button danger primary', onclick: () => close(true) }, action)))).then(Boolean);
}

// ---- layout ----------------------------------------------------------------

export function pageHead(title, { kicker, actions = [], sub } = {}) {
  return h('header', { class: 'page-head' },
    h('div', { class: 'page-title' },
      kicker ? h('div', { class: 'kicker' }, kicker) : null,
      h('h1', {}, title),
      sub ? h('div', { class: 'page-sub' }, sub) : null),
    h('div', { class: 'page-actions' }, actions));
}

export function panel(title, body, { actions = [], id, cls = '' } = {}) {
  return h('section', { class: `panel ${cls}`, id },
    title ? h('header', { class: 'panel-head' }, h('h2', {}, title), h('div', { class: 'panel-actions' }, actions)) : null,
    h('div', { class: 'panel-body' }, body));
}

export function button(label, onclick, { kind = '', iconName, title, type = 'button', disabled } = {}) {
  return h('button', { type, class: `button ${kind}`.trim(), onclick, title, disabled },
    iconName ? icon(iconName) : null, label ? h('span', {}, label) : null);
}

/** A definition list of label → value pairs (values may be nodes); empty values are left out. */
export function facts(pairs, { grid = false } = {}) {
  const shown = pairs.filter((p) => p && p[1] !== undefined && p[1] !== null && p[1] !== '');
  if (grid) return h('dl', { class: 'facts-grid' }, shown.map(([k, v]) => h('div', { class: 'fact' }, h('dt', {}, k), h('dd', {}, v))));
  return h('dl', { class: 'facts' }, shown.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** A small table of an object's keys and values (arguments, properties, headers). */
export function kvTable(obj, empty = 'none') {
  const entries = Object.entries(obj || {});
  if (!entries.length) return h('span', { class: 'muted' }, empty);
  return h('table', { class: 'kv' }, h('tbody', {}, entries.map(([k, v]) =>
    h('tr', {}, h('th', {}, k), h('td', {}, typeof v === 'object' && v !== null && !Array.isArray(v) ? kvTable(v) : fmtValue(v))))));
}

export function badge(text, kind = '') {
  return h('span', { class: `badge ${kind ? `badge-${kind}` : ''}`.trim() }, text);
}

/** The feature letters RabbitMQ's users know: D durable, AD auto-delete, Excl, I internal, Args. */
export function features(obj) {
  const out = [];
  if (obj.durable) out.push(badge('D', 'soft'));
  if (obj.auto_delete) out.push(badge('AD', 'soft'));
  if (obj.exclusive) out.push(badge('Excl', 'soft'));
  if (obj.internal) out.push(badge('I', 'soft'));
  const args = Object.keys(obj.arguments || {});
  if (args.length) {
    const b = badge('Args', 'soft');
    b.title = args.join(', ');
    out.push(b);
  }
  if (obj.policy) { const p = badge(obj.policy, 'policy'); p.title = `policy ${obj.policy}`; out.push(p); }
  return h('span', { class: 'features' }, out);
}

/** A state as a coloured dot and its name: running, idle, flow, blocked… */
export function stateBadge(state) {
  if (!state) return h('span', { class: 'muted' }, '–');
  const kind = { running: 'ok', idle: 'soft', flow: 'warn', blocked: 'error', blocking: 'warn', closing: 'warn', down: 'error', crashed: 'error', stopped: 'error', terminated: 'error' }[state] || 'soft';
  return h('span', { class: `state state-${kind}` }, state);
}

// ---- forms -----------------------------------------------------------------

let fieldSeq = 0;
/** A labelled control. `control` is an input/select/textarea node. */
export function field(label, control, { hint, wide } = {}) {
  fieldSeq += 1;
  const id = control.id || `f${fieldSeq}`;
  control.id = id;
  return h('div', { class: `field${wide ? ' field-wide' : ''}` },
    h('label', { for: id }, label), control, hint ? h('div', { class: 'hint' }, hint) : null);
}

export function input(name, attrs = {}) { return h('input', { name, type: 'text', autocomplete: 'off', spellcheck: 'false', ...attrs }); }

export function select(name, options, value, attrs = {}) {
  return h('select', { name, ...attrs }, options.map((o) => {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: v === value }, label);
  }));
}

export function checkbox(name, label, checked) {
  return h('label', { class: 'check' }, h('input', { type: 'checkbox', name, checked }), h('span', {}, label));
}

/**
 * A form whose submit runs `onsubmit(form)` with the button disabled and an
 * API error shown inside the form. The handler's value (if any) resolves `run`.
 */
export function form(children, onsubmit, { submit = 'Save', cancel, cls = '' } = {}) {
  const errorSlot = h('div', { class: 'form-error' });
  const submitButton = h('button', { type: 'submit', class: 'button primary' }, submit);
  const f = h('form', { class: `form ${cls}`.trim(), novalidate: true },
    h('div', { class: 'form-grid' }, children),
    errorSlot,
    h('div', { class: 'form-actions' },
      cancel ? h('button', { type: 'button', class: 'button', onclick: cancel }, 'Cancel') : null,
      submitButton));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(errorSlot);
    if (!f.reportValidity()) return;
    submitButton.disabled = true;
    f.classList.add('busy');
    try {
      await onsubmit(f);
    } catch (err) {
      errorSlot.append(errorBox(err));
    } finally {
      submitButton.disabled = false;
      f.classList.remove('busy');
    }
  });
  return f;
}

/** The value of a named control in a form. */
export function val(f, name) {
  const el = f.elements[name];
  if (!el) return undefined;
  if (el.type === 'checkbox') return el.checked;
  return el.value;
}

// ---- arguments editor --------------------------------------------------------

const TYPES = [['string', 'String'], ['number', 'Number'], ['boolean', 'Boolean'], ['json', 'List / JSON']];

/**
 * Rows of key, value and type, as x-arguments, headers and policy
 * definitions need. `presets` are [key, type, hint] offered as one-click chips.
 * Returns `{node, value()}`; value() throws on a value of the wrong type.
 */
export function argumentsEditor({ presets = [], label = 'Arguments', initial = {} } = {}) {
  const rows = h('div', { class: 'args-rows' });
  const addRow = (key = '', value = '', type = 'string') => {
    const typeSelect = select('arg-type', TYPES, type, { 'aria-label': 'Type' });
    const row = h('div', { class: 'args-row' },
      input('arg-key', { value: key, placeholder: 'key', 'aria-label': 'Key' }),
      h('span', { class: 'args-eq' }, '='),
      input('arg-value', { value, placeholder: 'value', 'aria-label': 'Value' }),
      typeSelect,
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Remove', onclick: () => row.remove() }, icon('close')));
    rows.append(row);
    return row;
  };
  for (const [k, v] of Object.entries(initial)) {
    const type = typeof v === 'number' ? 'number' : typeof v === 'boolean' ? 'boolean' : typeof v === 'string' ? 'string' : 'json';
    addRow(k, type === 'json' ? JSON.stringify(v) : String(v), type);
  }
  const chips = presets.length ? h('div', { class: 'chips' }, h('span', { class: 'muted' }, 'Add:'),
    presets.map(([key, type, hint]) => h('button', {
      type: 'button', class: 'chip', title: hint || key,
      onclick: () => {
        const existing = [...rows.querySelectorAll('.args-row')].find((r) => r.querySelector('[name=arg-key]').value === key);
        const row = existing || addRow(key, type === 'boolean' ? 'true' : '', type);
        row.querySelector('[name=arg-value]').focus();
      },
    }, key))) : null;
  const node = h('div', { class: 'field field-wide' },
    h('div', { class: 'label' }, label),
    rows,
    h('div', { class: 'args-foot' },
      h('button', { type: 'button', class: 'button small', onclick: () => addRow().querySelector('input').focus() }, icon('plus'), h('span', {}, 'Add')),
      chips));
  return {
    node,
    value() {
      const out = {};
      for (const row of rows.querySelectorAll('.args-row')) {
        const key = row.querySelector('[name=arg-key]').value.trim();
        const raw = row.querySelector('[name=arg-value]').value;
        const type = row.querySelector('[name=arg-type]').value;
        if (!key) continue;
        out[key] = parseTyped(key, raw, type);
      }
      return out;
    },
  };
}

function parseTyped(key, raw, type) {
  if (type === 'number') {
    const n = Number(raw.trim());
    if (raw.trim() === '' || Number.isNaN(n)) throw new Error(`${key}: "${raw}" is not a number`);
    return n;
  }
  if (type === 'boolean') {
    const v = raw.trim().toLowerCase();
    if (v !== 'true' && v !== 'false') throw new Error(`${key}: a boolean is true or false`);
    return v === 'true';
  }
  if (type === 'json') {
    try { return JSON.parse(raw); } catch { throw new Error(`${key}: not valid JSON (a list is written ["a", "b"])`); }
  }
  return raw;
}

// ---- tabs ------------------------------------------------------------------

/** Tabs over panels built lazily: `tabs([['Get messages', () => node], ...])`. */
export function tabs(items, { initial = 0 } = {}) {
  const bodies = items.map(() => null);
  const body = h('div', { class: 'tab-body' });
  const buttons = items.map(([label], i) => h('button', {
    type: 'button', role: 'tab', class: 'tab', 'aria-selected': 'false', tabindex: '-1',
    onclick: () => show(i),
    onkeydown: (e) => {
      if (e.key === 'ArrowRight') { show((i + 1) % items.length); buttons[(i + 1) % items.length].focus(); }
      if (e.key === 'ArrowLeft') { const j = (i + items.length - 1) % items.length; show(j); buttons[j].focus(); }
    },
  }, label));
  function show(i) {
    buttons.forEach((b, j) => { b.setAttribute('aria-selected', String(i === j)); b.tabIndex = i === j ? 0 : -1; });
    if (!bodies[i]) bodies[i] = items[i][1]();
    body.replaceChildren(bodies[i]);
  }
  show(initial);
  return h('div', { class: 'tabs' }, h('div', { class: 'tab-list', role: 'tablist' }, buttons), body);
}
