// The real service over HTTP (node service.mjs, no PostgreSQL): its source port is closed, so the first
// sync fails; GET /metrics says so in the exposition format, and the other routes answer as before.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SERVICE = fileURLToPath(new URL('../service.mjs', import.meta.url));
const SECRET = 's3cret-metrics-test';

let dir;
let child;
let base;
let exited;
let output = '';

/** A port nothing listens on (bound, then released). */
async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function until(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`${what} not within ${timeoutMs} ms; service output:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'homelab-duckdb-service-test-'));
  await fs.writeFile(path.join(dir, 'secret'), `${SECRET}\n`);
  const [httpPort, sourcePort] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${httpPort}`;
  child = spawn(process.execPath, [SERVICE], {
    env: {
      PATH: process.env.PATH,
      HOMELAB_SOURCE_HOST: '127.0.0.1', HOMELAB_SOURCE_PORT: String(sourcePort), HOMELAB_SOURCE_DATABASE: 'app', HOMELAB_SOURCE_USER: 'ro',
      HOMELAB_SOURCE_PASSWORD_FILE: path.join(dir, 'secret'), HOMELAB_DATA_DIR: path.join(dir, 'data'),
      HOMELAB_HTTP_PORT: String(httpPort), HOMELAB_SYNC_INTERVAL_SECONDS: '3600',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  // Up, and the start-up sync against the closed port has finished (failed).
  await until('the first sync to fail', 30_000, async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    return /^homelab_duckdb_sync_failures_total 1$/m.test(text) ? true : undefined;
  });
});

after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited;
  }
  await fs.rm(dir, { recursive: true, force: true });
});

test('GET /metrics: 200, exposition format 0.0.4, every metric, the failed first sync, no error text or secret', async () => {
  const res = await fetch(`${base}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const text = await res.text();
  for (const name of ['homelab_duckdb_last_sync_success_timestamp_seconds', 'homelab_duckdb_last_sync_attempt_timestamp_seconds',
    'homelab_duckdb_last_sync_ok', 'homelab_duckdb_last_sync_duration_seconds', 'homelab_duckdb_syncs_total',
    'homelab_duckdb_sync_failures_total', 'homelab_duckdb_sync_interval_seconds', 'homelab_duckdb_table_rows']) {
    assert.match(text, new RegExp(`^# HELP ${name} `, 'm'), name);
    assert.match(text, new RegExp(`^# TYPE ${name} (gauge|counter)$`, 'm'), name);
  }
  const sample = (name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  assert.equal(sample('homelab_duckdb_last_sync_success_timestamp_seconds'), 0);
  assert.ok(sample('homelab_duckdb_last_sync_attempt_timestamp_seconds') > Date.now() / 1000 - 60);
  assert.equal(sample('homelab_duckdb_last_sync_ok'), 0);
  assert.ok(sample('homelab_duckdb_last_sync_duration_seconds') >= 0);
  assert.equal(sample('homelab_duckdb_syncs_total'), 1);
  assert.equal(sample('homelab_duckdb_sync_interval_seconds'), 3600);
  const health = await (await fetch(`${base}/healthz`)).json();
  assert.ok(health.lastError);
  assert.equal(text.includes(health.lastError), false, 'the error message stays out of the metrics');
  assert.equal(text.includes(SECRET), false);
});

test('HEAD /metrics: 200, same headers, no body', async () => {
  const res = await fetch(`${base}/metrics`, { method: 'HEAD' });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  assert.ok(Number(res.headers.get('content-length')) > 0);
  assert.equal(await res.text(), '');
});

test('the other routes still answer: /healthz 503, /query, 405 and 404 (listing /metrics)', async () => {
  const health = await fetch(`${base}/healthz`);
  assert.equal(health.status, 503);
  assert.match(health.headers.get('content-type'), /^application\/json/);
  assert.equal((await health.json()).ok, false);

  const query = await fetch(`${base}/query?sql=${encodeURIComponent('select 42 as n')}`);
  assert.equal(query.status, 200);
  assert.deepEqual((await query.json()).rows, [{ n: 42 }]);
  assert.equal((await fetch(`${base}/query?sql=${encodeURIComponent('drop table t')}`)).status, 400);

  const wrongMethod = await fetch(`${base}/metrics`, { method: 'POST' });
  assert.equal(wrongMethod.status, 405);
  assert.deepEqual(await wrongMethod.json(), { error: 'POST not allowed on /metrics' });
  assert.equal((await fetch(`${base}/sync`)).status, 405);

  const missing = await fetch(`${base}/nope`);
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), { error: 'not found: try GET /healthz, GET /metrics, POST /sync, GET /query?sql=' });
});

test('POST /sync counts a second failed attempt; SIGTERM stops the service cleanly', async () => {
  const sync = await fetch(`${base}/sync`, { method: 'POST' });
  assert.equal(sync.status, 500);
  const text = await (await fetch(`${base}/metrics`)).text();
  assert.match(text, /^homelab_duckdb_syncs_total 2$/m);
  assert.match(text, /^homelab_duckdb_sync_failures_total 2$/m);
  assert.match(text, /^homelab_duckdb_last_sync_ok 0$/m);

  child.kill('SIGTERM');
  assert.deepEqual(await exited, { code: 0, signal: null });
  assert.equal(output.includes(SECRET), false, 'the password is never logged');
});
