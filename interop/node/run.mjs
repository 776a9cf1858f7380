// Runs the amqplib suite (test/*.test.mjs, node's test runner) against one
// broker: the one at AMQP_URL, or else a `warren` binary (WARREN_BIN,
// default target/debug/warren) started here on a free loopback port with a
// temporary data directory, and stopped (SIGTERM, SIGKILL after 10 s) when
// the tests end. Exits with the test runner's code. Extra arguments go to
// `node --test` (e.g. --test-name-pattern=confirm).
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const STARTUP_MS = 30_000;
const STOP_MS = 10_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// The broker is up when it answers the protocol header with connection.start
// (a method frame: its first byte is 1).
function answersAmqp(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const done = (ok) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(1000, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')));
    sock.on('data', (data) => done(data[0] === 1));
  });
}

async function startWarren() {
  const binary = process.env.WARREN_BIN || path.join(repo, 'target', 'debug', 'warren');
  const workdir = mkdtempSync(path.join(tmpdir(), 'warren-interop-node-'));
  const logPath = path.join(workdir, 'warren.log');
  const port = await freePort();
  const log = openSync(logPath, 'w');
  const child = spawn(binary, ['--listen', `127.0.0.1:${port}`, '--data-dir', path.join(workdir, 'data'),
    '--log-level', process.env.WARREN_LOG_LEVEL || 'info'],
  // Metrics on an ephemeral loopback port, not 0.0.0.0:15692.
  { stdio: ['ignore', log, log], env: { WARREN_PROMETHEUS_LISTEN: '127.0.0.1:0', ...process.env, NO_COLOR: '1' } });
  let exited = null;
  child.on('exit', (code, signal) => { exited = code ?? signal; });
  const deadline = Date.now() + STARTUP_MS;
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`warren exited (${exited}) before accepting connections:\n${readFileSync(logPath, 'utf8')}`);
    if (await answersAmqp(port)) return { child, workdir, logPath, url: `amqp://guest:guest@127.0.0.1:${port}/%2f`, exitedRef: () => exited };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`warren did not accept AMQP connections within ${STARTUP_MS / 1000} s`);
}

function stopWarren(broker) {
  return new Promise((resolve) => {
    if (broker.exitedRef() !== null) return resolve();
    const timer = setTimeout(() => broker.child.kill('SIGKILL'), STOP_MS);
    broker.child.on('exit', () => { clearTimeout(timer); resolve(); });
    broker.child.kill('SIGTERM');
  });
}

let broker = null;
let url = process.env.AMQP_URL;
if (!url) {
  broker = await startWarren();
  url = broker.url;
  console.log(`# broker: ${process.env.WARREN_BIN || 'target/debug/warren'} at ${url} (started for this run)`);
} else {
  console.log(`# broker: AMQP_URL=${url}`);
}

const tests = readdirSync(path.join(here, 'test')).filter((f) => f.endsWith('.test.mjs')).sort()
  .map((f) => path.join('test', f));
const runner = spawn(process.execPath, ['--test', '--test-concurrency=1', '--test-timeout=30000',
  ...process.argv.slice(2), ...tests], { cwd: here, stdio: 'inherit', env: { ...process.env, AMQP_URL: url } });
const code = await new Promise((resolve) => runner.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
if (broker) {
  await stopWarren(broker);
  if (code !== 0) {
    const lines = readFileSync(broker.logPath, 'utf8').trimEnd().split('\n');
    console.log('# warren log (tail):');
    for (const line of lines.slice(-40)) console.log(`# ${line}`);
  }
  if (!process.env.WARREN_KEEP_DATA) rmSync(broker.workdir, { recursive: true, force: true });
}
process.exit(code);
