// Messages through the API: publish to an exchange (or a queue, through the
// default exchange), get messages from a queue, and move messages from one
// queue to another by getting and republishing them.

import { api, path, exchangeSegment } from '../api.js';
import { h, fmtNum, fmtBytes } from '../dom.js';
import { form, field, input, select, argumentsEditor, val, toast, kvTable, badge, errorBox, describeError } from '../ui.js';

const PROPERTY_PRESETS = [
  ['content_type', 'string', 'MIME type, e.g. application/json'], ['content_encoding', 'string'],
  ['correlation_id', 'string'], ['reply_to', 'string'], ['expiration', 'string', 'per-message TTL in ms, as a string'],
  ['message_id', 'string'], ['timestamp', 'number', 'seconds since 1970'], ['type', 'string'], ['user_id', 'string'],
  ['app_id', 'string'], ['priority', 'number'],
];

/**
 * The publish form. For a queue, `queue` is its name and the message goes
 * through the default exchange with the queue's name as routing key.
 */
export function publishForm(vhost, exchange, { queue } = {}) {
  const headers = argumentsEditor({ label: 'Headers' });
  const props = argumentsEditor({ label: 'Properties', presets: PROPERTY_PRESETS });
  const payload = h('textarea', { name: 'payload', rows: 6, spellcheck: 'false', placeholder: 'Message body' });
  const f = form([
    queue === undefined
      ? field('Routing key', input('routing_key'))
      : h('p', { class: 'field-wide muted' }, 'Published to the default exchange with the queue’s name as routing key.'),
    field('Delivery mode', select('delivery_mode', [['1', '1 — Non-persistent'], ['2', '2 — Persistent']], '2')),
    field('Payload encoding', select('payload_encoding', [['string', 'String (UTF-8)'], ['base64', 'Base64']], 'string')),
    field('Payload', payload, { wide: true }),
    headers.node,
    props.node,
  ], async (fm) => {
    const properties = { ...props.value(), delivery_mode: Number(val(fm, 'delivery_mode')) };
    const hv = headers.value();
    if (Object.keys(hv).length) properties.headers = hv;
    const answer = await api.post(`exchanges/${path(vhost, exchangeSegment(exchange))}/publish`, {
      properties,
      routing_key: queue === undefined ? val(fm, 'routing_key') : queue,
      payload: val(fm, 'payload'),
      payload_encoding: val(fm, 'payload_encoding'),
    });
    if (answer && answer.routed === false) toast('Published, but the message was not routed to any queue', 'warn');
    else toast('Message published');
  }, { submit: 'Publish message', cls: 'cols-3' });
  return f;
}

const ACKMODES = [
  ['ack_requeue_true', 'Nack, requeue: messages stay in the queue'],
  ['reject_requeue_true', 'Reject, requeue: messages stay in the queue'],
  ['ack_requeue_false', 'Ack: messages are removed'],
  ['reject_requeue_false', 'Reject, no requeue: removed or dead-lettered'],
];

/** Get messages: ackmode, encoding, truncate and count as the API takes them. */
export function getForm(vhost, queue) {
  const results = h('div', { class: 'messages' });
  const f = form([
    field('Ack mode', select('ackmode', ACKMODES, 'ack_requeue_true')),
    field('Encoding', select('encoding', [['auto', 'Auto: string when valid UTF-8'], ['base64', 'Base64']], 'auto')),
    field('Messages', input('count', { type: 'number', min: '1', max: '10000', value: '1', required: true })),
    field('Truncate at (bytes)', input('truncate', { type: 'number', min: '1', value: '50000' })),
  ], async (fm) => {
    const body = { count: Number(val(fm, 'count')), ackmode: val(fm, 'ackmode'), encoding: val(fm, 'encoding') };
    if (val(fm, 'truncate')) body.truncate = Number(val(fm, 'truncate'));
    const messages = await api.post(`queues/${path(vhost, queue)}/get`, body);
    showMessages(results, messages);
  }, { submit: 'Get messages', cls: 'cols-4' });
  return h('div', {}, f, results);
}

function showMessages(box, messages) {
  if (!messages || !messages.length) {
    box.replaceChildren(h('div', { class: 'alert alert-info' }, 'The queue is empty.'));
    return;
  }
  const left = messages[messages.length - 1].message_count;
  box.replaceChildren(
    h('div', { class: 'messages-head' }, `${fmtNum(messages.length)} message${messages.length === 1 ? '' : 's'}`,
      left !== undefined ? h('span', { class: 'muted', title: 'message_count: ready messages behind the last one fetched' }, ` · ${fmtNum(left)} more behind it`) : null),
    ...messages.map((m, i) => h('article', { class: 'message' },
      h('header', {},
        h('strong', {}, `#${i + 1}`),
        h('span', { class: 'muted' }, `${fmtBytes(m.payload_bytes)} · ${m.payload_encoding}`),
        m.redelivered ? badge('redelivered', 'warn') : null,
        h('span', { class: 'spacer' }),
        h('span', { class: 'muted' }, 'exchange '), h('code', {}, m.exchange === '' ? '(default)' : m.exchange),
        h('span', { class: 'muted' }, ' routing key '), h('code', {}, m.routing_key)),
      h('div', { class: 'message-body' },
        h('pre', { class: 'payload', tabindex: '0' }, readable(m)),
        h('div', { class: 'message-props' }, h('div', { class: 'label' }, 'Properties'), kvTable(m.properties, 'none'))))));
}

/** A JSON payload longer than a line is shown indented; anything else as it came. */
function readable(m) {
  if (m.payload_encoding !== 'string' || m.payload.length < 80) return m.payload;
  const t = m.payload.trimStart()[0];
  if (t !== '{' && t !== '[') return m.payload;
  try { return JSON.stringify(JSON.parse(m.payload), null, 2); } catch { return m.payload; }
}

/**
 * Moves messages to another queue in batches: get with ack (removed from this
 * queue), then republish each with its properties to the target through
 * the default exchange. Stops at the first failure and shows what was
 * fetched but not republished, so nothing is lost silently.
 */
export function moveForm(vhost, queue) {
  const status = h('div', {});
  const f = form([
    h('p', { class: 'field-wide muted' }, 'Messages pass through this browser: each batch is taken from this queue and published to the target queue in the same virtual host. Keep the page open until it finishes.'),
    field('Target queue', input('target', { required: true })),
    field('Messages to move', input('count', { type: 'number', min: '1', value: '100', required: true })),
  ], async (fm) => {
    const target = val(fm, 'target');
    if (target === queue) throw new Error('The target is this queue.');
    await api.get(`queues/${path(vhost, target)}`, { columns: 'name' }); // 404 before anything moves
    let moved = 0;
    const want = Number(val(fm, 'count'));
    while (moved < want) {
      const batch = await api.post(`queues/${path(vhost, queue)}/get`, { count: Math.min(100, want - moved), ackmode: 'ack_requeue_false', encoding: 'base64' });
      if (!batch || !batch.length) break;
      for (let i = 0; i < batch.length; i += 1) {
        const m = batch[i];
        try {
          const r = await api.post(`exchanges/${path(vhost, 'amq.default')}/publish`, {
            properties: m.properties || {}, routing_key: target, payload: m.payload, payload_encoding: 'base64',
          });
          if (r && r.routed === false) throw new Error(`queue ${target} no longer routes`);
        } catch (err) {
          status.replaceChildren(errorBox(new Error(`Moved ${moved}; stopped: ${describeError(err)}. ${batch.length - i} fetched message(s) were not republished; their payloads (base64) are below.`)),
            h('pre', { class: 'payload' }, JSON.stringify(batch.slice(i), null, 2)));
          return;
        }
        moved += 1;
        status.replaceChildren(h('div', { class: 'alert alert-info' }, `Moved ${fmtNum(moved)}…`));
      }
    }
    status.replaceChildren(h('div', { class: 'alert alert-ok' }, `Moved ${fmtNum(moved)} message${moved === 1 ? '' : 's'} to ${target}.`));
    toast(`Moved ${fmtNum(moved)} messages`);
  }, { submit: 'Move messages' });
  return h('div', {}, f, status);
}
