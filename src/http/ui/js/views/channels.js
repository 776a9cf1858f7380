// Channels: the paged list and one channel's details with its consumers.

import { api, path } from '../api.js';
import { h, fmtNum, fmtRate, get } from '../dom.js';
import { pageHead, panel, errorBox, facts, stateBadge, badge, kvTable } from '../ui.js';
import { pagedTable, dataTable } from '../table.js';
import { link, setQuery, showVhostColumn, session } from '../session.js';

const rate = (key) => (c) => fmtRate(get(c, key));

/** Channel columns, shared with the connection page's channel table. */
export function channelColumns() {
  return [
    { key: 'name', label: 'Channel', cls: 'grow', render: (c) => h('a', { href: link('channels', c.name), class: 'name', title: c.name }, shortChannel(c.name)) },
    showVhostColumn() && { key: 'vhost', label: 'Virtual host', cls: 'nowrap' },
    { key: 'user', label: 'User', cls: 'nowrap' },
    { key: 'mode', label: 'Mode', sort: false, title: 'C: publisher confirms, T: transactional', render: mode },
    { key: 'state', label: 'State', cls: 'nowrap', render: (c) => stateBadge(c.state) },
    { key: 'prefetch_count', label: 'Prefetch', num: true, cls: 'group-start' },
    { key: 'messages_unacknowledged', label: 'Unacked', num: true },
    { key: 'messages_unconfirmed', label: 'Unconf.', num: true, title: 'Published, not yet confirmed' },
    { key: 'consumer_count', label: 'Consumers', num: true },
    { key: 'message_stats.publish_details.rate', label: 'Publish', num: true, cls: 'group-start', render: rate('message_stats.publish_details.rate') },
    { key: 'message_stats.deliver_get_details.rate', label: 'Deliver', num: true, title: 'Deliveries and gets per second', render: rate('message_stats.deliver_get_details.rate') },
    { key: 'message_stats.ack_details.rate', label: 'Ack', num: true, render: rate('message_stats.ack_details.rate') },
  ];
}

/** `127.0.0.1:43260 -> 127.0.0.1:5672 (1)` is shown as `127.0.0.1:43260 (1)`. */
function shortChannel(name) {
  const m = /^(.*) -> .* \((\d+)\)$/.exec(name);
  return m ? `${m[1]} (${m[2]})` : name;
}

function mode(c) {
  const out = [];
  if (c.confirm) out.push(badge('C', 'soft'));
  if (c.transactional) out.push(badge('T', 'soft'));
  return out.length ? h('span', { class: 'features' }, out) : h('span', { class: 'muted' }, '–');
}

export function render({ main, parts, query }) {
  if (parts.length) return detail(main, parts[0]);
  const table = pagedTable({
    label: 'channels',
    query,
    onQuery: setQuery,
    source: (params, signal) => api.get(session.vhost ? `vhosts/${path(session.vhost)}/channels` : 'channels', params, { signal }),
    rowLink: (c) => link('channels', c.name),
    empty: 'No channels are open.',
    columns: channelColumns(),
  });
  main.append(pageHead('Channels', { sub: session.vhost ? `Virtual host ${session.vhost}` : 'All virtual hosts' }), table.node);
  return { refresh: table.refresh, destroy: table.destroy };
}

function detail(main, name) {
  const info = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const consumers = h('div', {});
  const errorSlot = h('div', {});
  const kicker = h('a', { href: link('channels') }, 'Channels');
  main.append(pageHead(name, { kicker }), errorSlot,
    panel('Channel', info), panel('Consumers', consumers));

  async function refresh() {
    try {
      const c = await api.get(`channels/${path(name)}`);
      errorSlot.replaceChildren();
      const conn = get(c, 'connection_details.name');
      info.replaceChildren(facts([
        ['Connection', conn ? h('a', { href: link('connections', conn) }, conn) : null],
        ['User', c.user], ['Virtual host', c.vhost], ['State', stateBadge(c.state)], ['Mode', mode(c)],
        ['Prefetch (consumer)', fmtNum(c.prefetch_count)], ['Prefetch (channel)', fmtNum(c.global_prefetch_count)],
        ['Unacked', fmtNum(c.messages_unacknowledged)], ['Unconfirmed', fmtNum(c.messages_unconfirmed)],
        ['Uncommitted', fmtNum(c.messages_uncommitted)], ['Publish', fmtRate(get(c, 'message_stats.publish_details.rate'))],
        ['Deliver / get', fmtRate(get(c, 'message_stats.deliver_get_details.rate'))], ['Ack', fmtRate(get(c, 'message_stats.ack_details.rate'))],
      ], { grid: true }));
      consumers.replaceChildren(dataTable({
        rows: c.consumer_details || [],
        empty: 'No consumers on this channel.',
        columns: [
          { key: 'queue.name', label: 'Queue', render: (x) => h('a', { href: link('queues', get(x, 'queue.vhost'), get(x, 'queue.name')) }, get(x, 'queue.name')) },
          { key: 'consumer_tag', label: 'Consumer tag' },
          { key: 'ack_required', label: 'Ack required', render: (x) => (x.ack_required ? 'yes' : 'no') },
          { key: 'exclusive', label: 'Exclusive', render: (x) => (x.exclusive ? 'yes' : 'no') },
          { key: 'prefetch_count', label: 'Prefetch', num: true },
          { key: 'arguments', label: 'Arguments', sort: false, render: (x) => kvTable(x.arguments) },
        ],
      }));
    } catch (err) {
      errorSlot.replaceChildren(errorBox(err));
    }
  }
  refresh();
  return { refresh };
}
