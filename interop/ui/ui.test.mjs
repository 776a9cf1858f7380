// Browser test of the management UI: Debian's chromium driven by Playwright
// (playwright-core) against a running management server at UI_BASE_URL
// (Warren's management port, or interop/ui/devserver.py in front of
// RabbitMQ). Every object it creates has a unique name and is deleted at the
// end. Screenshots go to target/ui-screenshots/.
//
//   UI_BASE_URL=http://127.0.0.1:8088/ UI_USER=guest UI_PASSWORD=guest \
//   UI_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f node --test ui.test.mjs
// (interop/ui/run.sh sets this up.) Without UI_AMQP_URL the connection test is skipped.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = new URL(process.env.UI_BASE_URL || 'http://127.0.0.1:8088/');
const USER = process.env.UI_USER || 'guest';
const PASSWORD = process.env.UI_PASSWORD || 'guest';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const AMQP_URL = process.env.UI_AMQP_URL || ''; // the same broker's AMQP port, for the connection test
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHOTS = process.env.UI_SCREENSHOTS || join(ROOT, 'target', 'ui-screenshots');
const RUN = `wui-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
const TIMEOUT = 30000;

let context;
let page;
let profile;
const pageErrors = [];
const cleanup = []; // [method, api path] run at the end, whatever happened

// ---- the API, straight (set-up, checks, cleanup) -------------------------------

const AUTH = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
async function apiCall(method, path, body) {
  const res = await fetch(new URL(`api/${path}`, BASE), {
    method,
    headers: { Authorization: AUTH, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(60000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
const enc = encodeURIComponent;

/** Runs fn over items with at most `width` calls in flight. */
async function pool(items, width, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) { const i = next; next += 1; await fn(items[i], i); }
  }));
}

async function shot(name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

/** Waits until the element's text matches. */
async function expectText(selector, pattern, timeout = TIMEOUT) {
  await page.waitForFunction(([sel, src, flags]) => {
    const el = document.querySelector(sel);
    return el && new RegExp(src, flags).test(el.textContent);
  }, [selector, pattern.source, pattern.flags], { timeout });
}

async function login(user, password) {
  await page.goto(BASE.href);
  await page.fill('#login-user', user);
  await page.fill('#login-pass', password);
  await page.click('.login-form button[type=submit]');
  await page.waitForSelector('.side .nav-link', { timeout: TIMEOUT });
}

async function logout() {
  await page.click('.who button[aria-label="Log out"]');
  await page.waitForSelector('#login-user');
}

/** Opens a page of the UI by its route, e.g. go('queues?name=x'). */
async function go(route) {
  await page.goto(new URL(`#/${route}`, BASE).href);
  await page.waitForSelector('main .page-head, main .empty-state', { timeout: TIMEOUT });
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), 'warren-ui-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
    viewport: { width: 1366, height: 768 },
    acceptDownloads: true,
  });
  context.setDefaultTimeout(TIMEOUT);
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => d.dismiss());
});

after(async () => {
  for (const [method, path] of cleanup.reverse()) {
    try { await apiCall(method, path); } catch { /* best effort */ }
  }
  if (context) await context.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('a wrong password is refused and the right one opens the overview', async () => {
  await page.goto(BASE.href);
  await page.waitForSelector('#login-user');
  await shot('00-login');
  await page.fill('#login-user', USER);
  await page.fill('#login-pass', `${PASSWORD}-wrong`);
  await page.click('.login-form button[type=submit]');
  await expectText('.login-form .alert-error', /Login failed/);

  await page.fill('#login-pass', PASSWORD);
  await page.click('.login-form button[type=submit]');
  await page.waitForSelector('.stat-group');
  await expectText('.who-name', new RegExp(USER));
  for (const label of ['Connections', 'Channels', 'Exchanges', 'Queues', 'Consumers', 'Ready', 'Unacked', 'Total messages']) {
    assert.ok(await page.locator('.stat-label', { hasText: label }).count(), `overview shows ${label}`);
  }
  await page.waitForSelector('.chart svg path.line, .chart .chart-empty', { state: 'attached' });
  assert.equal(await page.locator('.legend-item').count(), 3 + 7, 'three length series and seven rate series');
  // The credentials live in sessionStorage, as RabbitMQ's UI keeps them.
  assert.ok(await page.evaluate(() => sessionStorage.getItem('warren.credentials')));
  await page.waitForTimeout(600);
  await shot('01-overview');
});

test('create a queue, publish to it, get the message back, purge and delete it', async () => {
  const q = `${RUN}-orders`;
  cleanup.push(['DELETE', `queues/%2F/${enc(q)}`]);
  await go('queues');
  await page.click('main [data-new]');
  const dlg = page.locator('dialog[open]');
  await dlg.locator('select[name=vhost]').selectOption('/');
  await dlg.locator('input[name=name]').fill(q);
  await dlg.locator('.chip', { hasText: 'x-max-length' }).first().click();
  await dlg.locator('.args-row input[name=arg-value]').first().fill('1000');
  await dlg.locator('.args-row select[name=arg-type]').first().selectOption('number');
  await shot('02-queue-add');
  await dlg.locator('button[type=submit]').click();
  await page.waitForSelector('dialog[open]', { state: 'detached' });
  const made = await apiCall('GET', `queues/%2F/${enc(q)}`);
  assert.equal(made.status, 200);
  assert.equal(made.body.arguments['x-max-length'], 1000);
  assert.equal(made.body.durable, true);

  // Declaring it again with other properties is refused; the API's error is shown.
  await page.click('main [data-new]');
  await dlg.locator('select[name=vhost]').selectOption('/');
  await dlg.locator('input[name=name]').fill(q);
  await dlg.locator('input[name=durable]').uncheck();
  await dlg.locator('button[type=submit]').click();
  await expectText('dialog[open] .alert-error', /precondition|inequivalent|durable/i);
  await dlg.locator('button', { hasText: 'Cancel' }).click();

  // Find it through the server-side filter and open it.
  await page.fill('[data-filter]', q);
  await page.waitForSelector(`main table.data a.name:text-is("${q}")`);
  await page.click(`main table.data a.name:text-is("${q}")`);
  await expectText('main .page-title h1', new RegExp(q));

  const payload = `{"order": 42, "note": "héllo from ${RUN}"}`;
  await page.click('.tab:text-is("Publish message")');
  await page.fill('textarea[name=payload]', payload);
  await page.click('.chip:text-is("content_type")');
  await page.locator('.tab-body .args-row input[name=arg-value]').last().fill('application/json');
  await page.click('.tab-body button[type=submit]:text-is("Publish message")');
  await expectText('.toasts', /Message published/);
  await expectText('.stat-total .stat-value', /^1$/);

  await page.click('.tab:text-is("Get messages")');
  await page.click('.tab-body button[type=submit]:text-is("Get messages")');
  await page.waitForSelector('.message .payload');
  assert.equal(await page.textContent('.message .payload'), payload);
  assert.match(await page.textContent('.message .message-props'), /application\/json/);
  await expectText('.messages-head', /0 more behind it/);
  await page.mouse.move(0, 0);
  await shot('03-queue-get');

  // Purge: the message (requeued by the get) goes.
  await page.click('main .page-actions button:has-text("Purge")');
  await page.click('dialog[open] button:text-is("Purge")');
  await expectText('.toasts', /purged/);
  // (Counts in GET /api/queues lag by the stats interval; a get is exact.)
  const left = await apiCall('POST', `queues/%2F/${enc(q)}/get`, { count: 1, ackmode: 'ack_requeue_true', encoding: 'auto' });
  assert.deepEqual(left.body, []);

  await page.click('main .page-actions button:has-text("Delete")');
  await page.click('dialog[open] button[type=submit]');
  await page.waitForFunction(() => location.hash === '#/queues');
  assert.equal((await apiCall('GET', `queues/%2F/${enc(q)}`)).status, 404);
});

test('an exchange: add it, bind it to a queue, publish through it, delete it', async () => {
  const x = `${RUN}-events`;
  const q = `${RUN}-sink`;
  cleanup.push(['DELETE', `exchanges/%2F/${enc(x)}`], ['DELETE', `queues/%2F/${enc(q)}`]);
  assert.equal((await apiCall('PUT', `queues/%2F/${enc(q)}`, { durable: false, auto_delete: false, arguments: {} })).status, 201);
  await go('exchanges');
  await page.click('main [data-new]');
  const dlg = page.locator('dialog[open]');
  await dlg.locator('select[name=vhost]').selectOption('/');
  await dlg.locator('input[name=name]').fill(x);
  await dlg.locator('select[name=type]').selectOption('topic');
  await dlg.locator('button[type=submit]').click();
  await page.waitForSelector('dialog[open]', { state: 'detached' });
  await go(`exchanges/%2F/${enc(x)}`);
  await page.fill('.tab-body input[name=destination]', q);
  await page.fill('.tab-body input[name=routing_key]', 'order.*');
  await page.click('.tab-body button[type=submit]:text-is("Bind")');
  await page.waitForSelector(`.tab-body table.data a:text-is("${q}")`);
  await page.click('.tab:text-is("Publish message")');
  await page.fill('.tab-body input[name=routing_key]', 'order.created');
  await page.fill('textarea[name=payload]', 'routed');
  await page.click('.tab-body button[type=submit]:text-is("Publish message")');
  await expectText('.toasts', /Message published/);
  await page.fill('.tab-body input[name=routing_key]', 'nothing.matches.this');
  await page.click('.tab-body button[type=submit]:text-is("Publish message")');
  await expectText('.toasts', /not routed/);
  const sink = await apiCall('POST', `queues/%2F/${enc(q)}/get`, { count: 5, ackmode: 'ack_requeue_false', encoding: 'auto' });
  assert.deepEqual(sink.body.map((m) => m.payload), ['routed']);
  await page.click('.tab:text-is("Bindings")');
  await page.click('.tab-body table.data button:has-text("Unbind")');
  await page.click('dialog[open] button:text-is("Remove")');
  await expectText('.toasts', /Binding removed/);
  await page.click('main .page-actions button:has-text("Delete")');
  await page.click('dialog[open] button:text-is("Delete")');
  await page.waitForFunction(() => location.hash === '#/exchanges');
  assert.equal((await apiCall('GET', `exchanges/%2F/${enc(x)}`)).status, 404);
});

test('messages move from one queue to another, with their properties', async () => {
  const from = `${RUN}-move-from`;
  const to = `${RUN}-move-to`;
  cleanup.push(['DELETE', `queues/%2F/${enc(from)}`], ['DELETE', `queues/%2F/${enc(to)}`]);
  for (const q of [from, to]) assert.equal((await apiCall('PUT', `queues/%2F/${enc(q)}`, { durable: false, auto_delete: false, arguments: {} })).status, 201);
  for (const i of [1, 2, 3]) {
    const r = await apiCall('POST', 'exchanges/%2F/amq.default/publish', {
      routing_key: from, payload: `m${i}`, payload_encoding: 'string', properties: { headers: { n: i }, content_type: 'text/plain' },
    });
    assert.equal(r.body.routed, true);
  }
  await go(`queues/%2F/${enc(from)}`);
  await page.click('.tab:text-is("Move messages")');
  await page.fill('.tab-body input[name=target]', to);
  await page.fill('.tab-body input[name=count]', '10');
  await page.click('.tab-body button[type=submit]:text-is("Move messages")');
  await expectText('.tab-body .alert-ok', /Moved 3 messages/);
  const moved = await apiCall('POST', `queues/%2F/${enc(to)}/get`, { count: 10, ackmode: 'ack_requeue_false', encoding: 'auto' });
  assert.deepEqual(moved.body.map((m) => m.payload), ['m1', 'm2', 'm3']);
  assert.deepEqual(moved.body.map((m) => m.properties.headers.n), [1, 2, 3]);
  assert.equal(moved.body[0].properties.content_type, 'text/plain');
  assert.deepEqual((await apiCall('POST', `queues/%2F/${enc(from)}/get`, { count: 1, ackmode: 'ack_requeue_true', encoding: 'auto' })).body, []);
  // A target that does not exist is refused before anything moves.
  await page.fill('.tab-body input[name=target]', `${RUN}-no-such-queue`);
  await page.click('.tab-body button[type=submit]:text-is("Move messages")');
  await expectText('.tab-body .alert-error', /404/);
});

test('300 queues are paged, sorted and filtered by the server', async () => {
  const prefix = `${RUN}-page-`;
  const names = Array.from({ length: 300 }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);
  for (const n of names) cleanup.push(['DELETE', `queues/%2F/${enc(n)}`]);
  await pool(names, 8, async (n) => {
    const r = await apiCall('PUT', `queues/%2F/${enc(n)}`, { durable: false, auto_delete: false, arguments: {} });
    assert.ok(r.status === 201 || r.status === 204, `PUT ${n}: ${r.status}`);
  });
  const requests = [];
  const onRequest = (r) => { if (r.url().includes('/api/queues')) requests.push(new URL(r.url())); };
  page.on('request', onRequest);
  await go(`queues?name=${enc(prefix)}`);
  await expectText('.paged .count', /1–50 of 300/);
  assert.equal(await page.locator('main table.data tbody tr').count(), 50);
  const first = requests.find((u) => u.searchParams.get('name') === prefix);
  assert.ok(first, 'the list asks the server for a filtered page');
  assert.equal(first.searchParams.get('pagination'), 'true');
  assert.equal(first.searchParams.get('page_size'), '50');

  await page.click('[data-page-next]');
  await expectText('.paged .count', /51–100 of 300/);
  assert.equal(await page.textContent('main table.data tbody tr:first-child a.name'), `${prefix}050`);
  await page.keyboard.press(']'); // keyboard: next page
  await expectText('.paged .count', /101–150 of 300/);
  await page.click('button[aria-label="Last page"]');
  await expectText('.paged .count', /251–300 of 300/);
  assert.equal(await page.inputValue('.page-input'), '6');

  await page.click('th[data-sort-key=name] button'); // sort by name, ascending, back to page 1
  await page.click('th[data-sort-key=name] button'); // and descending
  await expectText('main table.data tbody tr:first-child a.name', new RegExp(`${prefix}299`));
  const sorted = requests[requests.length - 1];
  assert.equal(sorted.searchParams.get('sort'), 'name');
  assert.equal(sorted.searchParams.get('sort_reverse'), 'true');
  assert.equal(sorted.searchParams.get('page'), '1');

  await page.selectOption('.pager select', '100');
  await expectText('.paged .count', /1–100 of 300/);
  await page.fill('[data-filter]', `${prefix}1[0-4]`);
  await page.check('.toolbar input[type=checkbox]');
  await expectText('.paged .count', /1–50 of 50 \(filtered from/);
  // Never more than one page is asked for.
  assert.ok(requests.every((u) => Number(u.searchParams.get('page_size') || 0) <= 100), 'every list request is paged');
  page.off('request', onRequest);
  await page.fill('[data-filter]', prefix);
  await page.uncheck('.toolbar input[type=checkbox]');
  await page.selectOption('.pager select', '20');
  await expectText('.paged .count', /1–20 of 300/);
  await shot('04-queues-paged');
  await pool(names, 8, (n) => apiCall('DELETE', `queues/%2F/${enc(n)}`));
});

test('a user with tags and permissions; a management user sees no admin pages', async () => {
  const user = `${RUN}-alice`;
  const password = `pw-${RUN}`;
  cleanup.push(['DELETE', `users/${enc(user)}`]);
  await go('users');
  await page.click('main [data-new]');
  const dlg = page.locator('dialog[open]');
  await dlg.locator('input[name=name]').fill(user);
  await dlg.locator('input[name=password]').fill(password);
  await dlg.locator('button[type=submit]').click();
  await page.waitForSelector('dialog[open]', { state: 'detached' });
  await page.click(`main a.name:text-is("${user}")`);
  await expectText('main .page-title h1', new RegExp(user));
  await page.selectOption('main select[name=vhost]', '/');
  await page.fill('main input[name=configure]', '^wui-.*');
  await page.click('main button[type=submit]:text-is("Set permission")');
  await page.waitForSelector('main table.data code:text-is("^wui-.*")');
  const perm = await apiCall('GET', `permissions/%2F/${enc(user)}`);
  assert.equal(perm.status, 200);
  assert.equal(perm.body.configure, '^wui-.*');
  assert.equal(perm.body.write, '.*');
  const made = await apiCall('GET', `users/${enc(user)}`);
  assert.deepEqual(made.body.tags, ['management']);
  await shot('05-user');

  // Changing tags keeps the password.
  await page.check('main .checks input[value=monitoring]');
  await page.click('main button[type=submit]:text-is("Update user")');
  await expectText('.toasts', /updated/);
  assert.deepEqual((await apiCall('GET', `users/${enc(user)}`)).body.tags.sort(), ['management', 'monitoring']);
  await page.uncheck('main .checks input[value=monitoring]');
  await page.click('main button[type=submit]:text-is("Update user")');
  await expectText('.toasts', /updated/);

  await logout();
  await login(user, password);
  const nav = await page.locator('.side .nav-link').allTextContents();
  assert.deepEqual(nav, ['Overview', 'Connections', 'Channels', 'Exchanges', 'Queues']);
  await page.waitForSelector('.stat-group');
  assert.equal(await page.locator('.panel-head h2:text-is("Node")').count(), 0, 'no node panel without monitoring');
  await go('users');
  await expectText('main', /does not exist or needs other user tags/);
  await logout();
  await login(USER, PASSWORD);

  await go(`users/${enc(user)}`);
  await page.click('main table.data button:has-text("Clear")');
  await page.click('dialog[open] button:text-is("Clear")');
  await expectText('main', /No permissions/);
  assert.equal((await apiCall('GET', `permissions/%2F/${enc(user)}`)).status, 404);
  await page.click('main .page-actions button:has-text("Delete")');
  await page.click('dialog[open] button:text-is("Delete")');
  await page.waitForFunction(() => location.hash === '#/users');
  assert.equal((await apiCall('GET', `users/${enc(user)}`)).status, 404);
});

test('definitions download as JSON', async () => {
  await go('definitions');
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 60000 }),
    page.click('main button[type=submit]:text-is("Download")'),
  ]);
  assert.match(download.suggestedFilename(), /^warren-definitions-.*\.json$/);
  const file = join(profile, 'definitions.json');
  await download.saveAs(file);
  const defs = JSON.parse(readFileSync(file, 'utf8'));
  for (const key of ['users', 'vhosts', 'permissions', 'queues', 'exchanges', 'bindings']) assert.ok(Array.isArray(defs[key]), `definitions have ${key}`);
  assert.ok(defs.users.some((u) => u.name === USER));
  await expectText('main .alert-ok', /Downloaded/);
  await shot('06-definitions');
});

test('a vhost with a policy and imported definitions; deleting the vhost removes them', async () => {
  const vhost = `${RUN}-vh`;
  const policy = `${RUN}-ttl`;
  cleanup.push(['DELETE', `vhosts/${enc(vhost)}`]);
  await go('vhosts');
  await page.click('main [data-new]');
  const dlg = page.locator('dialog[open]');
  await dlg.locator('input[name=name]').fill(vhost);
  await dlg.locator('input[name=description]').fill('made by the UI test');
  await dlg.locator('button[type=submit]').click();
  await page.waitForSelector(`main table.data span.name:text-is("${vhost}")`);
  await page.waitForSelector(`#vhost-select option[value="${vhost}"]`, { state: 'attached' });
  assert.equal((await apiCall('GET', `vhosts/${enc(vhost)}`)).body.description, 'made by the UI test');
  // RabbitMQ grants the user who created a vhost full permissions on it; make sure either way.
  assert.ok([201, 204].includes((await apiCall('PUT', `permissions/${enc(vhost)}/${enc(USER)}`, { configure: '.*', write: '.*', read: '.*' })).status));

  await go('policies');
  await page.click('main [data-new]');
  await dlg.locator('select[name=vhost]').selectOption(vhost);
  await dlg.locator('input[name=name]').fill(policy);
  await dlg.locator('input[name=pattern]').fill('^short\\.');
  await dlg.locator('.chip:text-is("message-ttl")').click();
  await dlg.locator('.args-row input[name=arg-value]').fill('60000');
  await dlg.locator('button[type=submit]').click();
  await page.waitForSelector('dialog[open]', { state: 'detached' });
  await page.waitForSelector(`main table.data span.name:text-is("${policy}")`);
  const made = await apiCall('GET', `policies/${enc(vhost)}/${enc(policy)}`);
  assert.deepEqual(made.body.definition, { 'message-ttl': 60000 });
  assert.equal(made.body['apply-to'], 'queues');

  // Import a queue into the vhost from a definitions file; the policy applies to it.
  await go('definitions');
  const defs = { queues: [{ name: 'short.lived', vhost, durable: true, auto_delete: false, arguments: {} }] };
  await page.setInputFiles('main input[type=file]', { name: 'defs.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(defs)) });
  await page.locator('main form').nth(1).locator('select[name=vhost]').selectOption(vhost);
  await page.click('main button[type=submit]:text-is("Import")');
  await expectText('.toasts', /Definitions imported/);
  assert.equal((await apiCall('GET', `queues/${enc(vhost)}/short.lived`)).status, 200);

  await go('policies');
  await page.locator('main tr', { hasText: policy }).locator('button:has-text("Delete")').click();
  await page.click('dialog[open] button:text-is("Delete")');
  await page.waitForSelector(`main table.data span.name:text-is("${policy}")`, { state: 'detached' });
  assert.equal((await apiCall('GET', `policies/${enc(vhost)}/${enc(policy)}`)).status, 404);

  await go('vhosts');
  await page.locator('main tr', { hasText: vhost }).locator('button:has-text("Delete")').click();
  await page.click('dialog[open] button:text-is("Delete")');
  await page.waitForSelector(`main table.data span.name:text-is("${vhost}")`, { state: 'detached', timeout: 60000 });
  assert.equal((await apiCall('GET', `vhosts/${enc(vhost)}`)).status, 404);
  await page.waitForSelector(`#vhost-select option[value="${vhost}"]`, { state: 'detached' });
});

test('an AMQP connection: listed, its page shows client and channel, closing it sends the reason', { skip: !AMQP_URL && 'UI_AMQP_URL not set' }, async () => {
  const { default: amqp } = await import('amqplib');
  const clientName = `${RUN}-client`;
  const conn = await amqp.connect(AMQP_URL, { clientProperties: { connection_name: clientName } });
  const closed = new Promise((resolve) => { conn.on('close', (err) => resolve(err)); conn.on('error', () => {}); });
  try {
    await conn.createChannel();
    // The broker lists a connection once its stats are in (RabbitMQ: within the 5 s stats interval).
    let listed;
    for (let i = 0; i < 60 && !listed; i += 1) {
      const all = (await apiCall('GET', 'connections?columns=name,client_properties')).body || [];
      listed = all.find((c) => c.client_properties && c.client_properties.connection_name === clientName);
      if (!listed) await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(listed, 'the connection is listed by the API');
    await go(`connections?name=${enc(listed.name)}`);
    await page.waitForSelector(`main table.data a.name:text-is("${clientName}")`, { timeout: 60000 });
    await page.click(`main table.data a.name:text-is("${clientName}")`);
    await expectText('main .page-title h1', new RegExp(listed.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    await expectText('main table.kv', new RegExp(clientName));
    await page.waitForSelector('main table.data tbody tr a.name', { timeout: 60000 }); // its channel
    await shot('07-connection');
    await page.click('main .page-actions button:has-text("Close connection")');
    await page.fill('dialog[open] input[name=reason]', 'closed by the UI test');
    await page.click('dialog[open] button[type=submit]');
    const err = await Promise.race([closed, new Promise((r) => setTimeout(() => r(new Error('no close within 15 s')), 15000))]);
    assert.match(String(err && err.message), /CONNECTION_FORCED - closed by the UI test/);
    await page.waitForFunction(() => location.hash === '#/connections');
  } finally {
    try { await conn.close(); } catch { /* closed by the test */ }
  }
});

test('no script errors on any page', async () => {
  for (const route of ['', 'connections', 'channels', 'exchanges', 'queues', 'vhosts', 'users', 'policies', 'definitions']) {
    await go(route);
    await page.waitForTimeout(300);
  }
  assert.deepEqual(pageErrors, []);
});
