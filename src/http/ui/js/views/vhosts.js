// Virtual hosts (administrators): list with message counts, add, delete.

import { api, path } from '../api.js';
import { h, fmtRate, get } from '../dom.js';
import { pageHead, errorBox, button, dialog, form, field, input, select, val, toast, confirmDanger, badge } from '../ui.js';
import { dataTable } from '../table.js';
import { link, setVhost } from '../session.js';

export function render({ main }) {
  const list = h('div', { class: 'card' }, h('p', { class: 'muted pad' }, 'Loading…'));
  const add = button('Add virtual host', () => addDialog().then((ok) => ok && changed()), { kind: 'primary', iconName: 'plus', title: 'Add virtual host (n)' });
  add.dataset.new = '1';
  main.append(pageHead('Virtual hosts', { actions: [add] }), list);

  function changed() {
    window.dispatchEvent(new Event('warren:vhosts-changed'));
    return refresh();
  }

  async function refresh() {
    try {
      const rows = await api.get('vhosts');
      list.replaceChildren(dataTable({
        rows,
        columns: [
          { key: 'name', label: 'Name', render: (v) => h('span', { class: 'name' }, v.name) },
          { key: 'description', label: 'Description' },
          { key: 'tags', label: 'Tags', sort: false, render: (v) => h('span', { class: 'features' }, (v.tags || []).map((t) => badge(t, 'soft'))) },
          { key: 'default_queue_type', label: 'Default queue type', render: (v) => (v.default_queue_type && v.default_queue_type !== 'undefined' ? v.default_queue_type : 'classic') },
          { key: 'messages_ready', label: 'Ready', num: true },
          { key: 'messages_unacknowledged', label: 'Unacked', num: true },
          { key: 'messages', label: 'Total', num: true },
          { key: 'message_stats.publish_details.rate', label: 'Publish', num: true, value: (v) => get(v, 'message_stats.publish_details.rate'), render: (v) => fmtRate(get(v, 'message_stats.publish_details.rate')) },
          { key: 'queues', label: '', sort: false, render: (v) => h('span', { class: 'row-actions' },
            h('a', { href: link('queues'), onclick: () => { setVhost(v.name); window.dispatchEvent(new Event('warren:vhosts-changed')); }, title: 'Show its queues' }, 'Queues'),
            button('Delete', () => remove(v.name), { kind: 'small danger-ghost' })) },
        ],
      }));
    } catch (err) { list.replaceChildren(errorBox(err)); }
  }

  async function remove(name) {
    if (!(await confirmDanger('Delete virtual host', `Delete virtual host ${name}? Every exchange, queue, binding, policy and message in it is deleted.`))) return;
    try {
      await api.del(`vhosts/${path(name)}`);
      toast(`Virtual host ${name} deleted`);
      changed();
    } catch (err) { toast(err.message, 'error'); }
  }

  refresh();
  return { refresh };
}

function addDialog() {
  return dialog('Add virtual host', (close) => form([
    field('Name', input('name', { required: true })),
    field('Default queue type', select('default_queue_type', [['classic', 'Classic'], ['quorum', 'Quorum'], ['stream', 'Stream']], 'classic')),
    field('Description', input('description'), { wide: true }),
    field('Tags', input('tags', { placeholder: 'comma, separated' }), { wide: true }),
  ], async (f) => {
    const name = val(f, 'name');
    await api.put(`vhosts/${path(name)}`, { description: val(f, 'description'), tags: val(f, 'tags'), default_queue_type: val(f, 'default_queue_type') });
    toast(`Virtual host ${name} added`);
    close(true);
  }, { submit: 'Add virtual host', cancel: () => close(false) }));
}
