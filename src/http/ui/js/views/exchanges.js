// Exchanges: the paged list, adding one, and an exchange's page with its
// bindings, publishing a message to it, and deleting it.

import { api, path, exchangeSegment } from '../api.js';
import { h, fmtRate, get } from '../dom.js';
import { pageHead, panel, errorBox, facts, kvTable, features, button, dialog, form, field, input, select, checkbox, argumentsEditor, val, toast, tabs, confirmDanger } from '../ui.js';
import { pagedTable } from '../table.js';
import { link, setQuery, showVhostColumn, session, exchangeTypes } from '../session.js';
import { exchangeBindings } from './bindings.js';
import { publishForm } from './messages.js';

const COLUMNS = 'name,vhost,type,durable,auto_delete,internal,arguments,policy,message_stats.publish_in_details.rate,message_stats.publish_out_details.rate';
const displayName = (name) => (name === '' ? '(AMQP default)' : name);

export function render({ main, parts, query }) {
  if (parts.length >= 2) return detail(main, parts[0], parts[1] === 'amq.default' ? '' : parts[1]);
  const table = pagedTable({
    label: 'exchanges',
    query,
    onQuery: setQuery,
    source: (params, signal) => api.get(session.vhost ? `exchanges/${path(session.vhost)}` : 'exchanges', { ...params, columns: COLUMNS }, { signal }),
    rowLink: (x) => link('exchanges', x.vhost, exchangeSegment(x.name)),
    columns: [
      { key: 'name', label: 'Name', cls: 'grow', render: (x) => h('a', { class: 'name', href: link('exchanges', x.vhost, exchangeSegment(x.name)) }, displayName(x.name)) },
      showVhostColumn() && { key: 'vhost', label: 'Virtual host', cls: 'nowrap' },
      { key: 'type', label: 'Type', cls: 'nowrap' },
      { key: 'features', label: 'Features', sort: false, cls: 'nowrap', render: features },
      { key: 'message_stats.publish_in_details.rate', label: 'Rate in', num: true, cls: 'group-start', render: (x) => fmtRate(get(x, 'message_stats.publish_in_details.rate')) },
      { key: 'message_stats.publish_out_details.rate', label: 'Rate out', num: true, render: (x) => fmtRate(get(x, 'message_stats.publish_out_details.rate')) },
    ],
  });
  main.append(pageHead('Exchanges', {
    sub: session.vhost ? `Virtual host ${session.vhost}` : 'All virtual hosts',
    actions: [button('Add exchange', () => addDialog().then((ok) => ok && table.refresh()), { kind: 'primary', iconName: 'plus', title: 'Add exchange (n)' })],
  }), table.node);
  main.querySelector('.page-actions .button').dataset.new = '1';
  return { refresh: table.refresh, destroy: table.destroy };
}

function addDialog() {
  const args = argumentsEditor({ presets: [['alternate-exchange', 'string', 'where unroutable messages go']] });
  return dialog('Add exchange', (close) => form([
    field('Virtual host', select('vhost', session.vhosts, session.vhost || session.vhosts[0])),
    field('Name', input('name', { required: true })),
    field('Type', select('type', exchangeTypes(), 'direct')),
    h('div', { class: 'field checks' }, checkbox('durable', 'Durable', true), checkbox('auto_delete', 'Auto-delete', false), checkbox('internal', 'Internal', false)),
    args.node,
  ], async (f) => {
    const vhost = val(f, 'vhost');
    const name = val(f, 'name');
    await api.put(`exchanges/${path(vhost, name)}`, {
      type: val(f, 'type'), durable: val(f, 'durable'), auto_delete: val(f, 'auto_delete'), internal: val(f, 'internal'), arguments: args.value(),
    });
    toast(`Exchange ${name} added`);
    close(true);
  }, { submit: 'Add exchange', cancel: () => close(false) }), { wide: true });
}

function detail(main, vhost, name) {
  const seg = path(vhost, exchangeSegment(name));
  const info = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const errorSlot = h('div', {});
  const isDefault = name === '' || name.startsWith('amq.');
  const bindings = name === '' ? null : exchangeBindings(vhost, name);
  main.append(
    pageHead(displayName(name), {
      kicker: h('span', {}, h('a', { href: link('exchanges') }, 'Exchanges'), ` · virtual host ${vhost}`),
      actions: isDefault ? [] : [button('Delete', () => remove(vhost, name), { kind: 'danger', iconName: 'trash' })],
    }),
    errorSlot,
    panel('Details', info),
    panel(null, tabs([
      ['Bindings', () => (bindings ? bindings.node : h('p', { class: 'muted' }, 'The default exchange is bound to every queue by the queue’s name; it cannot be bound or unbound.'))],
      ['Publish message', () => publishForm(vhost, name)],
    ])));

  async function refresh() {
    try {
      const x = await api.get(`exchanges/${seg}`);
      errorSlot.replaceChildren();
      info.replaceChildren(
        facts([['Type', x.type], ['Features', features(x)], ['Policy', x.policy],
          ['Rate in', fmtRate(get(x, 'message_stats.publish_in_details.rate') ?? 0)], ['Rate out', fmtRate(get(x, 'message_stats.publish_out_details.rate') ?? 0)],
          ['Arguments', kvTable(x.arguments)]], { grid: true }));
    } catch (err) { errorSlot.replaceChildren(errorBox(err)); }
    if (bindings) await bindings.refresh();
  }
  refresh();
  return { refresh };
}

async function remove(vhost, name) {
  if (!(await confirmDanger('Delete exchange', `Delete exchange ${name} in ${vhost}? Its bindings go with it.`))) return;
  try {
    await api.del(`exchanges/${path(vhost, name)}`);
    toast(`Exchange ${name} deleted`);
    location.hash = link('exchanges');
  } catch (err) { toast(err.message, 'error'); }
}
