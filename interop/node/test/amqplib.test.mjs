// amqplib 2 (Node.js, promise API) against the broker at AMQP_URL (run.mjs
// sets it). Connect/close cycles, publish/consume/ack, nack with requeue,
// confirm channels, prefetch, dead-lettering, TTL, mandatory returns (the
// channel's 'return' event), channel errors as rejected promises with the
// AMQP code, a 20 MB message, and the order of `queue.delete-ok` and the
// `basic.cancel` of the deleting channel's own consumer.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import amqp from 'amqplib';

const URL = process.env.AMQP_URL;
const WAIT_MS = 10_000;
const prefix = `it.node.${randomBytes(6).toString('hex')}`;
let counter = 0;
const created = { queues: [], exchanges: [] };

function queueName() {
  const name = `${prefix}.q${++counter}`;
  created.queues.push(name);
  return name;
}

function exchangeName() {
  const name = `${prefix}.x${++counter}`;
  created.exchanges.push(name);
  return name;
}

// Everything a test declared is deleted at the end, from a connection of its
// own, so the suite can run against a shared broker.
after(async () => {
  const conn = await amqp.connect(URL);
  let ch = await conn.createChannel();
  for (const [kind, name] of [...created.queues.map((q) => ['q', q]), ...created.exchanges.map((x) => ['x', x])]) {
    try {
      if (kind === 'q') await ch.deleteQueue(name);
      else await ch.deleteExchange(name);
    } catch {
      ch = await conn.createChannel();
    }
  }
  await conn.close();
});

function within(ms, promise, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms); }),
  ]);
}

// A connection whose 'error' events are recorded instead of thrown.
async function connect() {
  const conn = await amqp.connect(URL);
  conn.errors = [];
  conn.on('error', (err) => conn.errors.push(err));
  return conn;
}

async function channel(conn, confirm = false) {
  const ch = confirm ? await conn.createConfirmChannel() : await conn.createChannel();
  ch.errors = [];
  ch.on('error', (err) => ch.errors.push(err));
  return ch;
}

// Deliveries to one consumer, taken in order with a bound.
class Deliveries {
  constructor() {
    this.items = [];
    this.waiters = [];
  }

  push(msg) {
    this.items.push(msg);
    for (const wake of this.waiters.splice(0)) wake();
  }

  async take(n, ms = WAIT_MS) {
    const deadline = Date.now() + ms;
    while (this.items.length < n && Date.now() < deadline) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
    return this.items.splice(0, n);
  }
}

async function getOne(ch, queue) {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    const msg = await ch.get(queue);
    if (msg) return msg;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no message on ${queue} within ${WAIT_MS} ms`);
}

async function waitForCount(ch, queue, want) {
  const deadline = Date.now() + WAIT_MS;
  let count;
  for (;;) {
    ({ messageCount: count } = await ch.checkQueue(queue));
    if (count === want || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(count, want, `messages in ${queue}`);
}

test('connect and close many times', async () => {
  for (let i = 0; i < 40; i++) {
    const conn = await connect();
    const ch = await channel(conn);
    await ch.assertQueue('', { exclusive: true });
    await ch.close();
    await conn.close();
    assert.deepEqual(conn.errors, [], `cycle ${i}`);
  }
});

test('published messages are consumed in order with their properties, then acked', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn);
    const q = queueName();
    await ch.assertQueue(q, { durable: true });
    for (let i = 0; i < 10; i++) {
      ch.sendToQueue(q, Buffer.from(`m${i}`), {
        persistent: true, contentType: 'text/plain', headers: { i, who: 'amqplib' }, messageId: `id-${i}`,
      });
    }
    const got = new Deliveries();
    await ch.consume(q, (msg) => got.push(msg));
    const msgs = await got.take(10);
    assert.deepEqual(msgs.map((m) => m.content.toString()), [...Array(10).keys()].map((i) => `m${i}`));
    assert.equal(msgs[4].properties.contentType, 'text/plain');
    assert.equal(msgs[4].properties.deliveryMode, 2);
    assert.equal(msgs[4].properties.messageId, 'id-4');
    assert.deepEqual(msgs[4].properties.headers, { i: 4, who: 'amqplib' });
    assert.equal(msgs[0].fields.redelivered, false);
    ch.ack(msgs[9], true);
    await waitForCount(ch, q, 0);
  } finally {
    await conn.close();
  }
});

test('nack with requeue redelivers with the flag set; without, drops', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn);
    const q = queueName();
    await ch.assertQueue(q);
    ch.sendToQueue(q, Buffer.from('again'));
    const first = await getOne(ch, q);
    assert.equal(first.fields.redelivered, false);
    ch.nack(first, false, true);
    const second = await getOne(ch, q);
    assert.equal(second.content.toString(), 'again');
    assert.equal(second.fields.redelivered, true);
    ch.nack(second, false, false);
    await waitForCount(ch, q, 0);
  } finally {
    await conn.close();
  }
});

test('a confirm channel confirms every publish', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn, true);
    const q = queueName();
    await ch.assertQueue(q);
    const acks = [];
    for (let i = 0; i < 25; i++) {
      acks.push(new Promise((resolve, reject) => {
        ch.sendToQueue(q, Buffer.from(`c${i}`), {}, (err) => (err ? reject(err) : resolve()));
      }));
    }
    await within(WAIT_MS, Promise.all(acks), 'confirms');
    await within(WAIT_MS, ch.waitForConfirms(), 'waitForConfirms');
    assert.equal((await ch.checkQueue(q)).messageCount, 25);
  } finally {
    await conn.close();
  }
});

test('prefetch bounds the unacked deliveries', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn);
    const q = queueName();
    await ch.assertQueue(q);
    for (let i = 0; i < 5; i++) ch.sendToQueue(q, Buffer.from(`p${i}`));
    await ch.prefetch(2);
    const got = new Deliveries();
    await ch.consume(q, (msg) => got.push(msg));
    const first = await got.take(2);
    assert.deepEqual(first.map((m) => m.content.toString()), ['p0', 'p1']);
    assert.deepEqual(await got.take(1, 500), []);
    ch.ack(first[0]);
    const third = await got.take(1);
    assert.deepEqual(third.map((m) => m.content.toString()), ['p2']);
  } finally {
    await conn.close();
  }
});

test('a rejected message is dead-lettered with x-death', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn);
    const dlx = exchangeName();
    const dlq = queueName();
    const q = queueName();
    await ch.assertExchange(dlx, 'fanout', { durable: false });
    await ch.assertQueue(dlq);
    await ch.bindQueue(dlq, dlx, '');
    await ch.assertQueue(q, { deadLetterExchange: dlx });
    ch.sendToQueue(q, Buffer.from('bad'));
    ch.reject(await getOne(ch, q), false);
    const dead = await getOne(ch, dlq);
    assert.equal(dead.content.toString(), 'bad');
    const [death, ...more] = dead.properties.headers['x-death'];
    assert.equal(more.length, 0);
    assert.equal(death.reason, 'rejected');
    assert.equal(death.queue, q);
    assert.equal(death.count, 1);
  } finally {
    await conn.close();
  }
});

test('queue TTL and per-message expiration drop messages', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn);
    const ttlQueue = queueName();
    const plain = queueName();
    await ch.assertQueue(ttlQueue, { messageTtl: 50 });
    await ch.assertQueue(plain);
    ch.sendToQueue(ttlQueue, Buffer.from('short'));
    ch.sendToQueue(plain, Buffer.from('expires'), { expiration: '50' });
    await waitForCount(ch, ttlQueue, 0);
    // An expired message at the head is dropped without a consumer asking.
    await waitForCount(ch, plain, 0);
    assert.equal(await ch.get(plain), false);
  } finally {
    await conn.close();
  }
});

test('a mandatory message with no route comes back as a return', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn, true);
    const returned = new Promise((resolve) => ch.once('return', resolve));
    const confirmed = new Promise((resolve, reject) => {
      ch.publish('', queueName(), Buffer.from('lost'), { mandatory: true }, (err) => (err ? reject(err) : resolve()));
    });
    const msg = await within(WAIT_MS, returned, 'basic.return');
    assert.equal(msg.fields.replyCode, 312);
    assert.equal(msg.fields.replyText, 'NO_ROUTE');
    assert.equal(msg.content.toString(), 'lost');
    await within(WAIT_MS, confirmed, 'the confirm after the return');
  } finally {
    await conn.close();
  }
});

test('channel errors reject with the AMQP code and close only the channel', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn);
    const q = queueName();
    await assert.rejects(ch.checkQueue(q), (err) => {
      assert.equal(err.code, 404);
      assert.match(err.message, new RegExp(`NOT_FOUND - no queue '${q.replaceAll('.', '\\.')}' in vhost '/'`));
      return true;
    });
    const other = await channel(conn);
    await other.assertQueue(q, { arguments: { 'x-max-length': 10 } });
    await assert.rejects(other.assertQueue(q, { arguments: { 'x-max-length': 20 } }), (err) => {
      assert.equal(err.code, 406);
      assert.match(err.message, /inequivalent arg 'x-max-length'/);
      return true;
    });
    const third = await channel(conn);
    await third.checkQueue(q);
    assert.deepEqual(conn.errors, []);
  } finally {
    await conn.close();
  }
});

test('a 20 MB message round-trips', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn, true);
    const q = queueName();
    await ch.assertQueue(q);
    const body = Buffer.alloc(20 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4096) body[i] = i % 251;
    await within(30_000, new Promise((resolve, reject) => {
      ch.sendToQueue(q, body, {}, (err) => (err ? reject(err) : resolve()));
    }), 'confirm of the 20 MB message');
    const msg = await getOne(ch, q);
    assert.equal(msg.content.length, body.length);
    assert.ok(msg.content.equals(body));
    ch.ack(msg);
  } finally {
    await conn.close();
  }
});

test('deleting a queue from its consuming channel: delete-ok comes before the consumer cancel', async () => {
  const conn = await connect();
  try {
    const ch = await channel(conn);
    const q = queueName();
    await ch.assertQueue(q);
    // The order on the wire: amqplib resolves an RPC's promise in a later
    // microtask but calls a consumer at once, so the frames are recorded
    // as the channel accepts them.
    const QUEUE_DELETE_OK = (50 << 16) | 41;
    const BASIC_CANCEL = (60 << 16) | 30;
    const events = [];
    const accept = ch.accept.bind(ch);
    ch.accept = (f) => {
      if (f.id === QUEUE_DELETE_OK) events.push('queue.delete-ok');
      if (f.id === BASIC_CANCEL) events.push('basic.cancel');
      return accept(f);
    };
    const cancelled = new Promise((resolve) => {
      ch.consume(q, (msg) => { if (msg === null) resolve(); });
    });
    const deleted = await ch.deleteQueue(q);
    assert.equal(deleted.messageCount, 0);
    await within(WAIT_MS, cancelled, 'basic.cancel');
    assert.deepEqual(events, ['queue.delete-ok', 'basic.cancel']);
    assert.deepEqual(ch.errors, []);
  } finally {
    await conn.close();
  }
});
