// Users (administrators): list, add with tags and password, delete; a
// user's page to change tags or password and to set or clear permissions.

import { api, path, tagsOf } from '../api.js';
import { h } from '../dom.js';
import { pageHead, panel, errorBox, button, dialog, form, field, input, select, val, toast, confirmDanger, badge, facts } from '../ui.js';
import { dataTable } from '../table.js';
import { link, session } from '../session.js';

const KNOWN_TAGS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'];

export function render({ main, parts }) {
  if (parts.length) return detail(main, parts[0]);
  const list = h('div', { class: 'card' }, h('p', { class: 'muted pad' }, 'Loading…'));
  const add = button('Add user', () => addDialog().then((ok) => ok && refresh()), { kind: 'primary', iconName: 'plus', title: 'Add user (n)' });
  add.dataset.new = '1';
  main.append(pageHead('Users', { actions: [add] }), list);

  async function refresh() {
    try {
      const [users, perms] = await Promise.all([api.get('users'), api.get('permissions')]);
      const access = new Map();
      for (const p of perms) access.set(p.user, [...(access.get(p.user) || []), p.vhost]);
      list.replaceChildren(dataTable({
        rows: users,
        rowLink: (u) => link('users', u.name),
        columns: [
          { key: 'name', label: 'Name', render: (u) => h('a', { class: 'name', href: link('users', u.name) }, u.name) },
          { key: 'tags', label: 'Tags', value: (u) => tagsOf(u).join(','), render: (u) => tagBadges(tagsOf(u)) },
          { key: 'vhosts', label: 'Can access virtual hosts', value: (u) => (access.get(u.name) || []).join(','), render: (u) => {
            const v = access.get(u.name) || [];
            return v.length ? v.join(', ') : h('span', { class: 'warn-text' }, 'No access');
          } },
          { key: 'password', label: 'Password', value: (u) => Boolean(u.password_hash), render: (u) => (u.password_hash ? '●●●●' : h('span', { class: 'muted' }, 'none')) },
          { key: 'delete', label: '', sort: false, render: (u) => (u.name === session.user.name ? h('span', { class: 'muted' }, 'you')
            : button('Delete', () => remove(u.name, refresh), { kind: 'small danger-ghost' })) },
        ],
      }));
    } catch (err) { list.replaceChildren(errorBox(err)); }
  }
  refresh();
  return { refresh };
}

function tagBadges(tags) {
  if (!tags.length) return h('span', { class: 'muted' }, 'none');
  return h('span', { class: 'features' }, tags.map((t) => badge(t, t === 'administrator' ? 'admin' : 'soft')));
}

/** Tag checkboxes plus a free field for other tags; value() is RabbitMQ's comma-separated form. */
function tagPicker(current = []) {
  const others = current.filter((t) => !KNOWN_TAGS.includes(t));
  const boxes = KNOWN_TAGS.map((t) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: t, checked: current.includes(t) }), h('span', {}, t)));
  const extra = input('other_tags', { value: others.join(', '), placeholder: 'other tags, comma separated', 'aria-label': 'Other tags' });
  return {
    node: h('div', { class: 'field field-wide' }, h('div', { class: 'label' }, 'Tags'), h('div', { class: 'checks' }, boxes), extra),
    value() {
      const picked = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      return [...picked, ...extra.value.split(',').map((s) => s.trim()).filter(Boolean)].join(',');
    },
  };
}

function addDialog() {
  const tags = tagPicker(['management']);
  return dialog('Add user', (close) => form([
    field('Username', input('name', { required: true })),
    field('Password', input('password', { type: 'password', autocomplete: 'new-password', required: true })),
    tags.node,
  ], async (f) => {
    const name = val(f, 'name');
    await api.put(`users/${path(name)}`, { password: val(f, 'password'), tags: tags.value() });
    toast(`User ${name} added`);
    close(true);
  }, { submit: 'Add user', cancel: () => close(false) }), { wide: true });
}

async function remove(name, after) {
  if (!(await confirmDanger('Delete user', `Delete user ${name}? Their permissions go too; their open connections stay until closed.`))) return;
  try {
    await api.del(`users/${path(name)}`);
    toast(`User ${name} deleted`);
    after();
  } catch (err) { toast(err.message, 'error'); }
}

function detail(main, name) {
  const errorSlot = h('div', {});
  const info = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const perms = h('div', {});
  const editSlot = h('div', {});
  let user = null;
  main.append(
    pageHead(name, {
      kicker: h('a', { href: link('users') }, 'Users'),
      actions: name === session.user.name ? [] : [button('Delete', () => remove(name, () => { location.hash = link('users'); }), { kind: 'danger', iconName: 'trash' })],
    }),
    errorSlot,
    h('div', { class: 'grid-2' }, panel('User', info), panel('Change tags or password', editSlot)),
    panel('Permissions', h('div', {}, perms, panel('Set permission', permissionForm(), { cls: 'inset' }))));

  function permissionForm() {
    return form([
      field('Virtual host', select('vhost', session.vhosts, session.vhost || session.vhosts[0])),
      field('Configure', input('configure', { value: '.*' }), { hint: 'regular expression over resource names' }),
      field('Write', input('write', { value: '.*' })),
      field('Read', input('read', { value: '.*' })),
    ], async (f) => {
      await api.put(`permissions/${path(val(f, 'vhost'), name)}`, { configure: val(f, 'configure'), write: val(f, 'write'), read: val(f, 'read') });
      toast(`Permission set on ${val(f, 'vhost')}`);
      loadPerms();
    }, { submit: 'Set permission' });
  }

  async function loadPerms() {
    try {
      const rows = await api.get(`users/${path(name)}/permissions`);
      perms.replaceChildren(dataTable({
        rows,
        empty: 'No permissions: this user cannot use any virtual host.',
        columns: [
          { key: 'vhost', label: 'Virtual host' },
          { key: 'configure', label: 'Configure', render: (p) => h('code', {}, p.configure) },
          { key: 'write', label: 'Write', render: (p) => h('code', {}, p.write) },
          { key: 'read', label: 'Read', render: (p) => h('code', {}, p.read) },
          { key: 'clear', label: '', sort: false, render: (p) => button('Clear', async () => {
            if (!(await confirmDanger('Clear permission', `Remove ${name}’s permission on ${p.vhost}?`, 'Clear'))) return;
            try { await api.del(`permissions/${path(p.vhost, name)}`); toast('Permission cleared'); loadPerms(); } catch (err) { toast(err.message, 'error'); }
          }, { kind: 'small danger-ghost' }) },
        ],
      }));
    } catch (err) { perms.replaceChildren(errorBox(err)); }
  }

  async function refresh() {
    try {
      user = await api.get(`users/${path(name)}`);
      errorSlot.replaceChildren();
      info.replaceChildren(facts([['Name', user.name], ['Tags', tagBadges(tagsOf(user))],
        ['Password', user.password_hash ? 'set' : 'none (cannot log in with a password)'], ['Hashing', user.hashing_algorithm]]));
      if (!editSlot.firstChild) editSlot.append(editForm());
    } catch (err) { errorSlot.replaceChildren(errorBox(err)); }
    await loadPerms();
  }

  // PUT /api/users/{name} replaces the user: without a new password the
  // current hash is sent back, so changing tags keeps the password.
  function editForm() {
    const tags = tagPicker(tagsOf(user));
    return form([
      tags.node,
      field('New password', input('password', { type: 'password', autocomplete: 'new-password', placeholder: 'leave empty to keep the current one' }), { wide: true }),
    ], async (f) => {
      const body = { tags: tags.value() };
      const pw = val(f, 'password');
      if (pw) body.password = pw;
      else if (user.password_hash) { body.password_hash = user.password_hash; body.hashing_algorithm = user.hashing_algorithm; }
      await api.put(`users/${path(name)}`, body);
      toast(`User ${name} updated`);
      f.elements.password.value = '';
      refresh();
    }, { submit: 'Update user' });
  }

  refresh();
  return {};
}
