// Bindings on an exchange's page (from it and to it) and on a queue's page
// (to it): list, add, remove.

import { api, path, exchangeSegment } from '../api.js';
import { h } from '../dom.js';
import { form, field, input, select, argumentsEditor, val, toast, kvTable, errorBox, button, confirmDanger, panel } from '../ui.js';
import { dataTable } from '../table.js';
import { link } from '../session.js';

const destTypeSegment = (t) => (t === 'exchange' ? 'e' : 'q');

function unbind(b, after) {
  const what = `${b.source || '(default)'} → ${b.destination}`;
  return async () => {
    if (!(await confirmDanger('Remove binding', `Remove the binding ${what} with routing key “${b.routing_key}”?`, 'Remove'))) return;
    try {
      await api.del(`bindings/${path(b.vhost)}/e/${path(b.source)}/${destTypeSegment(b.destination_type)}/${path(b.destination)}/${path(b.properties_key)}`);
      toast('Binding removed');
      after();
    } catch (err) { toast(err.message, 'error'); }
  };
}

function objectLink(vhost, type, name) {
  if (type === 'exchange') return h('a', { href: link('exchanges', vhost, exchangeSegment(name)) }, name === '' ? '(AMQP default)' : name);
  return h('a', { href: link('queues', vhost, name) }, name);
}

function bindingTable(rows, side, after) {
  return dataTable({
    rows,
    empty: side === 'source' ? 'No bindings from this exchange.' : 'No bindings.',
    columns: [
      side === 'source'
        ? { key: 'destination', label: 'To', render: (b) => h('span', {}, objectLink(b.vhost, b.destination_type, b.destination), ' ', h('span', { class: 'muted' }, b.destination_type)) }
        : { key: 'source', label: 'From exchange', render: (b) => objectLink(b.vhost, 'exchange', b.source) },
      { key: 'routing_key', label: 'Routing key', render: (b) => h('code', {}, b.routing_key) },
      { key: 'arguments', label: 'Arguments', sort: false, render: (b) => kvTable(b.arguments) },
      { key: 'unbind', label: '', sort: false, render: (b) => (b.source === ''
        ? h('span', { class: 'muted', title: 'Every queue is bound to the default exchange by its name; this binding cannot be removed.' }, 'implicit')
        : button('Unbind', unbind(b, after), { kind: 'small' })) },
    ],
  });
}

/** Bindings of a queue, with a form to bind it to an exchange. */
export function queueBindings(vhost, queue) {
  const list = h('div', {});
  const load = async () => {
    try { list.replaceChildren(bindingTable(await api.get(`queues/${path(vhost, queue)}/bindings`), 'destination', load)); } catch (err) { list.replaceChildren(errorBox(err)); }
  };
  const args = argumentsEditor({ label: 'Arguments' });
  const f = form([
    field('From exchange', input('source', { required: true, placeholder: 'exchange name' })),
    field('Routing key', input('routing_key')),
    args.node,
  ], async (fm) => {
    await api.post(`bindings/${path(vhost)}/e/${path(val(fm, 'source'))}/q/${path(queue)}`, { routing_key: val(fm, 'routing_key'), arguments: args.value() });
    toast('Binding added');
    load();
  }, { submit: 'Bind' });
  load();
  return { node: h('div', {}, list, panel('Add binding to this queue', f, { cls: 'inset' })), refresh: load };
}

/** Bindings from and to an exchange, with a form to bind it to a queue or exchange. */
export function exchangeBindings(vhost, exchange) {
  const from = h('div', {});
  const to = h('div', {});
  const seg = path(vhost, exchangeSegment(exchange));
  const load = async () => {
    try { from.replaceChildren(bindingTable(await api.get(`exchanges/${seg}/bindings/source`), 'source', load)); } catch (err) { from.replaceChildren(errorBox(err)); }
    try { to.replaceChildren(bindingTable(await api.get(`exchanges/${seg}/bindings/destination`), 'destination', load)); } catch (err) { to.replaceChildren(errorBox(err)); }
  };
  const args = argumentsEditor({ label: 'Arguments' });
  const f = form([
    field('To', select('dtype', [['q', 'Queue'], ['e', 'Exchange']], 'q')),
    field('Name', input('destination', { required: true })),
    field('Routing key', input('routing_key')),
    args.node,
  ], async (fm) => {
    await api.post(`bindings/${path(vhost)}/e/${path(exchange)}/${val(fm, 'dtype')}/${path(val(fm, 'destination'))}`, { routing_key: val(fm, 'routing_key'), arguments: args.value() });
    toast('Binding added');
    load();
  }, { submit: 'Bind' });
  load();
  return {
    node: h('div', {},
      h('h3', { class: 'sub-head' }, 'From this exchange'), from,
      h('h3', { class: 'sub-head' }, 'To this exchange'), to,
      panel('Add binding from this exchange', f, { cls: 'inset' })),
    refresh: load,
  };
}
