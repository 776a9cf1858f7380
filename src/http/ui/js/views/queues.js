// Queues: the paged list (always one page from the server), adding a
// queue, and a queue's page: counts and rates, get messages, publish,
// consumers, bindings, move, purge and delete.

import { api, path } from '../api.js';
import { h, fmtNum, fmtRate, fmtBytes, fmtTime, get } from '../dom.js';
import { pageHead, panel, errorBox, facts, kvTable, features, stateBadge, button, dialog, form, field, input, select, checkbox, argumentsEditor, val, toast, tabs, confirmDanger } from '../ui.js';
import { pagedTable, dataTable } from '../table.js';
import { link, setQuery, showVhostColumn, session } from '../session.js';
import { queueBindings } from './bindings.js';
import { publishForm, getForm, moveForm } from './messages.js';
import { lineChart } from '../chart.js';
import { LENGTHS, sampleQuery, hasSamples, lengthPoints, ratePoints, currentRates, History, countFormat, rateFormat } from '../series.js';

const COLUMNS = [
  'name', 'vhost', 'type', 'durable', 'auto_delete', 'exclusive', 'arguments', 'policy', 'state', 'consumers',
  'messages_ready', 'messages_unacknowledged', 'messages', 'message_stats.publish_details.rate',
  'message_stats.deliver_get_details.rate', 'message_stats.ack_details.rate',
].join(',');

const rate = (key) => (q) => fmtRate(get(q, key));

const QUEUE_RATES = [
  { key: 'publish', label: 'Incoming', color: '#0f8a6d', from: ['publish'] },
  { key: 'deliver_get', label: 'Deliver / get', color: '#1d6fd8', from: ['deliver_get'] },
  { key: 'ack', label: 'Ack', color: '#7c3aed', from: ['ack'] },
  { key: 'redeliver', label: 'Redeliver', color: '#d97706', from: ['redeliver'] },
];
const CHART_AGE = 600;

export function render({ main, parts, query }) {
  if (parts.length >= 2) return detail(main, parts[0], parts[1]);
  const table = pagedTable({
    label: 'queues',
    query,
    onQuery: setQuery,
    source: (params, signal) => api.get(session.vhost ? `queues/${path(session.vhost)}` : 'queues', { ...params, columns: COLUMNS }, { signal }),
    rowLink: (q) => link('queues', q.vhost, q.name),
    empty: 'No queues yet.',
    columns: [
      { key: 'name', label: 'Name', cls: 'grow', render: (q) => h('a', { class: 'name', href: link('queues', q.vhost, q.name) }, q.name) },
      showVhostColumn() && { key: 'vhost', label: 'Virtual host', cls: 'nowrap' },
      { key: 'type', label: 'Type', cls: 'nowrap' },
      { key: 'features', label: 'Features', sort: false, cls: 'nowrap', render: features },
      { key: 'state', label: 'State', cls: 'nowrap', render: (q) => stateBadge(q.state) },
      { key: 'consumers', label: 'Consumers', num: true },
      { key: 'messages_ready', label: 'Ready', num: true, cls: 'group-start' },
      { key: 'messages_unacknowledged', label: 'Unacked', num: true },
      { key: 'messages', label: 'Total', num: true },
      { key: 'message_stats.publish_details.rate', label: 'Incoming', num: true, cls: 'group-start', render: rate('message_stats.publish_details.rate') },
      { key: 'message_stats.deliver_get_details.rate', label: 'Deliver', num: true, title: 'Deliveries and gets per second', render: rate('message_stats.deliver_get_details.rate') },
      { key: 'message_stats.ack_details.rate', label: 'Ack', num: true, render: rate('message_stats.ack_details.rate') },
    ],
  });
  const add = button('Add queue', () => addDialog().then((ok) => ok && table.refresh()), { kind: 'primary', iconName: 'plus', title: 'Add queue (n)' });
  add.dataset.new = '1';
  main.append(pageHead('Queues', { sub: session.vhost ? `Virtual host ${session.vhost}` : 'All virtual hosts', actions: [add] }), table.node);
  return { refresh: table.refresh, destroy: table.destroy };
}

const PRESETS = {
  classic: [
    ['x-message-ttl', 'number', 'ms a message may stay'], ['x-expires', 'number', 'ms unused before the queue is deleted'],
    ['x-max-length', 'number'], ['x-max-length-bytes', 'number'], ['x-overflow', 'string', 'drop-head, reject-publish or reject-publish-dlx'],
    ['x-dead-letter-exchange', 'string'], ['x-dead-letter-routing-key', 'string'], ['x-single-active-consumer', 'boolean'],
    ['x-max-priority', 'number'], ['x-queue-mode', 'string', 'lazy'],
  ],
  quorum: [
    ['x-delivery-limit', 'number'], ['x-message-ttl', 'number'], ['x-expires', 'number'], ['x-max-length', 'number'],
    ['x-max-length-bytes', 'number'], ['x-overflow', 'string'], ['x-dead-letter-exchange', 'string'],
    ['x-dead-letter-routing-key', 'string'], ['x-dead-letter-strategy', 'string', 'at-most-once or at-least-once'],
    ['x-single-active-consumer', 'boolean'], ['x-quorum-initial-group-size', 'number'],
  ],
  stream: [['x-max-length-bytes', 'number'], ['x-max-age', 'string', 'e.g. 7D, 12h'], ['x-stream-max-segment-size-bytes', 'number']],
};

function addDialog() {
  const typeSel = select('type', [['classic', 'Classic'], ['quorum', 'Quorum'], ['stream', 'Stream']], 'classic');
  const argsSlot = h('div', { class: 'field-wide' });
  let args = argumentsEditor({ presets: PRESETS.classic });
  argsSlot.append(args.node);
  const durable = checkbox('durable', 'Durable', true);
  const autoDelete = checkbox('auto_delete', 'Auto-delete', false);
  typeSel.addEventListener('change', () => {
    args = argumentsEditor({ presets: PRESETS[typeSel.value], initial: safe(args) });
    argsSlot.replaceChildren(args.node);
    const replicated = typeSel.value !== 'classic';
    durable.querySelector('input').checked = true;
    durable.querySelector('input').disabled = replicated;
    autoDelete.querySelector('input').disabled = replicated;
    if (replicated) autoDelete.querySelector('input').checked = false;
  });
  return dialog('Add queue', (close) => form([
    field('Virtual host', select('vhost', session.vhosts, session.vhost || session.vhosts[0])),
    field('Type', typeSel),
    field('Name', input('name', { required: true }), { wide: true }),
    h('div', { class: 'field checks field-wide' }, durable, autoDelete),
    argsSlot,
  ], async (f) => {
    const vhost = val(f, 'vhost');
    const name = val(f, 'name');
    const a = args.value();
    if (typeSel.value !== 'classic') a['x-queue-type'] = typeSel.value;
    await api.put(`queues/${path(vhost, name)}`, { durable: f.elements.durable.checked, auto_delete: f.elements.auto_delete.checked, arguments: a });
    toast(`Queue ${name} added`);
    close(true);
  }, { submit: 'Add queue', cancel: () => close(false) }), { wide: true });
}

function safe(editor) { try { return editor.value(); } catch { return {}; } }

function detail(main, vhost, name) {
  const seg = path(vhost, name);
  const errorSlot = h('div', {});
  const stats = h('div', { class: 'totals' });
  const info = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const consumers = h('div', {});
  const bindings = queueBindings(vhost, name);
  const lengths = lineChart({ series: LENGTHS, format: countFormat, label: 'Messages in this queue over time', minTop: 4, height: 150 });
  const rates = lineChart({ series: QUEUE_RATES, format: rateFormat, label: 'Message rates of this queue over time', minTop: 4, height: 150 });
  const history = new History();
  let last = null;

  main.append(
    pageHead(name, {
      kicker: h('span', {}, h('a', { href: link('queues') }, 'Queues'), ` · virtual host ${vhost}`),
      actions: [
        button('Purge', () => purge(vhost, name).then(refresh), { iconName: 'broom', title: 'Remove all ready messages' }),
        button('Delete', () => remove(vhost, name, last), { kind: 'danger', iconName: 'trash' }),
      ],
    }),
    errorSlot,
    stats,
    panel('Details', info),
    panel(null, tabs([
      ['Get messages', () => getForm(vhost, name)],
      ['Publish message', () => publishForm(vhost, '', { queue: name })],
      ['Consumers', () => consumers],
      ['Bindings', () => bindings.node],
      ['Move messages', () => moveForm(vhost, name)],
    ])),
    h('div', { class: 'grid-2' },
      panel('Messages · last 10 minutes', lengths.node, { cls: 'chart-panel' }),
      panel('Rates · last 10 minutes', rates.node, { cls: 'chart-panel' })));

  async function refresh() {
    try {
      const q = await api.get(`queues/${seg}`, sampleQuery(CHART_AGE));
      last = q;
      drawCharts(q);
      errorSlot.replaceChildren();
      const card = (label, value, cls = '') => h('div', { class: `stat ${cls}`.trim() }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
      stats.replaceChildren(
        h('div', { class: 'stat-group' },
          card('Ready', fmtNum(q.messages_ready ?? 0), 'stat-ready'),
          card('Unacked', fmtNum(q.messages_unacknowledged ?? 0), 'stat-unacked'),
          card('Total', fmtNum(q.messages ?? 0), 'stat-total'),
          card('Bytes', fmtBytes(q.message_bytes ?? 0)),
          card('Consumers', fmtNum(q.consumers ?? 0))),
        h('div', { class: 'stat-group' },
          card('Incoming', fmtRate(get(q, 'message_stats.publish_details.rate') ?? 0)),
          card('Deliver / get', fmtRate(get(q, 'message_stats.deliver_get_details.rate') ?? 0)),
          card('Ack', fmtRate(get(q, 'message_stats.ack_details.rate') ?? 0))));
      const owner = get(q, 'owner_pid_details.name');
      info.replaceChildren(
        facts([
          ['Type', q.type], ['State', stateBadge(q.state)], ['Features', features(q)], ['Node', q.node],
          ['Policy', q.policy], ['Operator policy', q.operator_policy],
          ['Exclusive owner', owner ? h('a', { href: link('connections', owner) }, owner) : null],
          ['Consumer capacity', q.consumer_capacity !== undefined ? `${Math.round(q.consumer_capacity * 100)}%` : null],
          ['Idle since', q.idle_since ? fmtTime(Date.parse(q.idle_since)) : null],
        ], { grid: true }),
        h('div', { class: 'detail-args' },
          h('div', {}, h('div', { class: 'label' }, 'Arguments'), kvTable(q.arguments)),
          h('div', {}, h('div', { class: 'label' }, 'Effective policy definition'), kvTable(q.effective_policy_definition))));
      consumers.replaceChildren(dataTable({
        rows: q.consumer_details || [],
        empty: 'No consumers.',
        columns: [
          { key: 'channel_details.name', label: 'Channel', render: (c) => h('a', { href: link('channels', get(c, 'channel_details.name')) }, get(c, 'channel_details.name')) },
          { key: 'consumer_tag', label: 'Consumer tag' },
          { key: 'ack_required', label: 'Ack required', render: (c) => (c.ack_required ? 'yes' : 'no') },
          { key: 'exclusive', label: 'Exclusive', render: (c) => (c.exclusive ? 'yes' : 'no') },
          { key: 'prefetch_count', label: 'Prefetch', num: true },
          { key: 'active', label: 'Active', render: (c) => (c.active === false ? 'no' : 'yes') },
          { key: 'arguments', label: 'Arguments', sort: false, render: (c) => kvTable(c.arguments) },
        ],
      }));
    } catch (err) { errorSlot.replaceChildren(errorBox(err)); }
    await bindings.refresh();
  }

  function drawCharts(q) {
    if (hasSamples(q, 'messages')) {
      const lp = lengthPoints(q, LENGTHS);
      const rp = ratePoints(q.message_stats, QUEUE_RATES);
      lengths.update(lp);
      rates.update(rp.length ? rp : lp.map((p) => ({ t: p.t, v: {} })));
      return;
    }
    const v = currentRates(q.message_stats, QUEUE_RATES);
    for (const s of LENGTHS) v[s.key] = q[s.key] || 0;
    history.add(v);
    lengths.update(history.since(CHART_AGE * 1000));
    rates.update(history.since(CHART_AGE * 1000));
  }

  refresh();
  return { refresh, destroy() { lengths.destroy(); rates.destroy(); } };
}

async function purge(vhost, name) {
  if (!(await confirmDanger('Purge queue', `Remove all ready messages from ${name}? Unacknowledged messages stay.`, 'Purge'))) return;
  try {
    await api.del(`queues/${path(vhost, name)}/contents`);
    toast(`Queue ${name} purged`);
  } catch (err) { toast(err.message, 'error'); }
}

function remove(vhost, name, q) {
  const busy = q && (q.consumers || q.messages);
  return dialog('Delete queue', (close) => form([
    h('p', { class: 'field-wide' }, `Delete queue ${name} in ${vhost}`,
      busy ? ` (${fmtNum(q.messages || 0)} messages, ${fmtNum(q.consumers || 0)} consumers)` : '', '? Its messages are lost.'),
    h('div', { class: 'field checks field-wide' },
      checkbox('if_unused', 'Only if it has no consumers', false), checkbox('if_empty', 'Only if it is empty', false)),
  ], async (f) => {
    await api.del(`queues/${path(vhost, name)}`, { query: { 'if-unused': val(f, 'if_unused') || '', 'if-empty': val(f, 'if_empty') || '' } });
    toast(`Queue ${name} deleted`);
    close(true);
    location.hash = link('queues');
  }, { submit: 'Delete queue', cancel: () => close(false), cls: 'danger-form' }));
}
