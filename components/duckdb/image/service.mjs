#!/usr/bin/env node
// homelab DuckDB analytics host: mirrors the PostgreSQL replica into DuckDB + parquet on a schedule
// and answers read-only queries over HTTP. Contract: README.md beside this file.
import http from 'node:http';
import { readConfig, ConfigError } from './lib/config.mjs';
import { Mirror, QueryRejected, describeError } from './lib/mirror.mjs';
import { renderMetrics, METRICS_CONTENT_TYPE } from './lib/metrics.mjs';

// docker stop waits 10 s before SIGKILL: leave time to close DuckDB cleanly after aborting a sync.
const SHUTDOWN_WAIT_MS = 6_000;

/** One JSON line per event on stdout. Nothing secret is ever passed in. */
function log(level, msg, fields = {}) {
  process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields })}\n`);
}

function send(res, status, body) {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function sendText(res, status, contentType, text) {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function router(mirror) {
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = `${req.method} ${url.pathname}`;
    try {
      switch (route) {
        case 'GET /healthz':
        case 'HEAD /healthz': {
          const health = mirror.health();
          return send(res, health.ok ? 200 : 503, health);
        }
        case 'GET /metrics':
        case 'HEAD /metrics':
          return sendText(res, 200, METRICS_CONTENT_TYPE, renderMetrics(mirror.state, mirror.config.syncIntervalSeconds));
        case 'POST /sync': {
          const result = await mirror.sync('http');
          return send(res, result.ok ? 200 : 500, result);
        }
        case 'GET /query': {
          try {
            const explain = url.searchParams.get('explain');
            if (explain !== null && explain !== 'analyze') return send(res, 400, { error: `explain: got ${JSON.stringify(explain)}; accepted: analyze (or leave it out)` });
            return send(res, 200, await mirror.query(url.searchParams.get('sql') ?? '', { explain: explain === 'analyze' }));
          } catch (err) {
            if (err instanceof QueryRejected) return send(res, 400, { error: err.message });
            throw err;
          }
        }
        default: {
          const known = ['/healthz', '/metrics', '/sync', '/query'].includes(url.pathname);
          return send(res, known ? 405 : 404, { error: known ? `${req.method} not allowed on ${url.pathname}` : 'not found: try GET /healthz, GET /metrics, POST /sync, GET /query?sql=' });
        }
      }
    } catch (err) {
      log('error', 'request failed', { route, error: describeError(err) });
      if (!res.headersSent) send(res, 500, { error: describeError(err) });
      else res.destroy();
    }
  };
}

async function main() {
  let config;
  try {
    config = readConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      log('error', err.message);
      process.exit(2);
    }
    throw err;
  }

  const mirror = new Mirror(config, log);
  await mirror.open();

  const server = http.createServer(router(mirror));
  server.requestTimeout = config.query.timeoutMs + 30_000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.httpPort, resolve);
  });
  log('info', 'started', {
    port: config.httpPort,
    source: `${config.source.user}@${config.source.host}:${config.source.port}/${config.source.database}`,
    schemas: config.source.schemas,
    syncIntervalSeconds: config.syncIntervalSeconds,
    database: config.databaseFile,
    node: process.version,
  });

  // Once at start, then every interval after the previous sync ended (syncs never overlap).
  let timer;
  let stopping = false;
  const scheduleNext = () => {
    if (stopping || config.syncIntervalSeconds === 0) return;
    timer = setTimeout(tick, config.syncIntervalSeconds * 1000);
  };
  const tick = () => { mirror.sync(timer ? 'schedule' : 'start').then(scheduleNext); };
  if (mirror.shouldSyncAtStart()) tick();
  else {
    // The last syncs died with the service: serve the last good copy and try again at the interval.
    log('warn', 'start-up sync skipped: the previous syncs did not finish', { interruptedSyncs: mirror.interruptedSyncs, nextInSeconds: config.syncIntervalSeconds || null });
    scheduleNext();
  }

  const shutdown = async (signal) => {
    if (stopping) return;
    stopping = true;
    log('info', 'shutting down', { signal });
    clearTimeout(timer);
    server.close();
    server.closeIdleConnections?.();
    try {
      await mirror.close(SHUTDOWN_WAIT_MS);
      log('info', 'stopped');
      process.exit(0);
    } catch (err) {
      log('error', 'unclean shutdown', { error: describeError(err) });
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  log('error', 'fatal', { error: describeError(err) });
  process.exit(1);
});
