// Connections: the paged list, one connection's details and channels, and
// closing a connection with a reason (DELETE with the X-Reason header).

import { api, path } from '../api.js';
import { h, fmtNum, fmtBytes, fmtTime, get } from '../dom.js';
import { pageHead, panel, errorBox, facts, kvTable, stateBadge, button, dialog, form, field, input, val, toast } from '../ui.js';
import { pagedTable, dataTable } from '../table.js';
import { link, setQuery, showVhostColumn, session } from '../session.js';
import { channelColumns } from './channels.js';

const COLUMNS = 'name,vhost,user,state,protocol,channels,client_properties,recv_oct_details,send_oct_details,user_provided_name,peer_host,peer_port,ssl';

export function render({ main, parts, query }) {
  if (parts.length) return detail(main, parts[0]);
  const table = pagedTable({
    label: 'connections',
    query,
    onQuery: setQuery,
    source: (params, signal) => api.get(session.vhost ? `vhosts/${path(session.vhost)}/connections` : 'connections', { ...params, columns: COLUMNS }, { signal }),
    rowLink: (c) => link('connections', c.name),
    empty: 'No client is connected.',
    columns: [
      { key: 'name', label: 'Name', cls: 'grow', render: (c) => h('div', { class: 'name-cell' },
        h('a', { href: link('connections', c.name), class: 'name' }, c.user_provided_name || c.name),
        c.user_provided_name ? h('div', { class: 'sub' }, c.name) : null) },
      showVhostColumn() && { key: 'vhost', label: 'Virtual host', cls: 'nowrap' },
      { key: 'user', label: 'User', cls: 'nowrap' },
      { key: 'state', label: 'State', cls: 'nowrap', render: (c) => stateBadge(c.state) },
      { key: 'client', label: 'Client', sort: false, render: clientName },
      { key: 'channels', label: 'Channels', num: true },
      { key: 'recv_oct_details.rate', label: 'From client', num: true, render: (c) => bytesRate(get(c, 'recv_oct_details.rate')) },
      { key: 'send_oct_details.rate', label: 'To client', num: true, render: (c) => bytesRate(get(c, 'send_oct_details.rate')) },
    ],
  });
  main.append(pageHead('Connections', { sub: session.vhost ? `Virtual host ${session.vhost}` : 'All virtual hosts' }), table.node);
  return { refresh: table.refresh, destroy: table.destroy };
}

function clientName(c) {
  const p = c.client_properties || {};
  const name = [p.product, p.version].filter(Boolean).join(' ');
  return name ? h('span', { title: p.platform || '' }, name) : h('span', { class: 'muted' }, '–');
}

function bytesRate(r) { return r === undefined ? '–' : `${fmtBytes(r)}/s`; }

function detail(main, name) {
  const info = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const chans = h('div', {});
  const props = h('div', {});
  const errorSlot = h('div', {});
  main.append(
    pageHead(name, { kicker: h('a', { href: link('connections') }, 'Connections'),
      actions: [button('Close connection', () => closeDialog(name), { kind: 'danger', iconName: 'close' })] }),
    errorSlot,
    h('div', { class: 'grid-2' }, panel('Connection', info), panel('Client properties', props)),
    panel('Channels', chans));

  async function refresh() {
    try {
      const c = await api.get(`connections/${path(name)}`);
      errorSlot.replaceChildren();
      info.replaceChildren(facts([
        ['User', c.user], ['Virtual host', c.vhost], ['State', stateBadge(c.state)], ['Protocol', c.protocol],
        ['Authentication', c.auth_mechanism], ['Client address', c.peer_host ? `${c.peer_host}:${c.peer_port}` : null],
        ['Server address', c.host ? `${c.host}:${c.port}` : null], ['TLS', c.ssl ? c.ssl_protocol || 'yes' : 'no'],
        ['Connected at', fmtTime(c.connected_at)], ['Heartbeat', c.timeout !== undefined ? `${c.timeout} s` : null],
        ['Frame max', c.frame_max !== undefined ? fmtBytes(c.frame_max) : null], ['Channel max', fmtNum(c.channel_max)],
        ['Received', `${fmtBytes(c.recv_oct)} (${bytesRate(get(c, 'recv_oct_details.rate'))})`],
        ['Sent', `${fmtBytes(c.send_oct)} (${bytesRate(get(c, 'send_oct_details.rate'))})`],
      ]));
      props.replaceChildren(kvTable(c.client_properties));
    } catch (err) {
      errorSlot.replaceChildren(errorBox(err));
      return;
    }
    try {
      const list = await api.get(`connections/${path(name)}/channels`);
      chans.replaceChildren(dataTable({ rows: list, columns: channelColumns(), empty: 'No channels open.', rowLink: (ch) => link('channels', ch.name) }));
    } catch (err) { chans.replaceChildren(errorBox(err)); }
  }
  refresh();
  return { refresh };
}

/** Asks for a reason, then closes the connection; RabbitMQ sends the reason to the client. */
export function closeDialog(name) {
  return dialog('Close connection', (close) => form([
    h('p', { class: 'field-wide' }, 'The client gets connection.close (320 CONNECTION_FORCED) with this reason.'),
    field('Reason', input('reason', { value: 'Closed via management plugin' }), { wide: true }),
  ], async (f) => {
    await api.del(`connections/${path(name)}`, { headers: { 'X-Reason': val(f, 'reason') } });
    toast('Connection closed');
    close(true);
    location.hash = link('connections');
  }, { submit: 'Close connection', cancel: () => close(false), cls: 'danger-form' }));
}
