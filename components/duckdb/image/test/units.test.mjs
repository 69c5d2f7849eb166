// Pure parts: configuration, type mapping, SQL guard and quoting, the metrics page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readConfig, ConfigError } from '../lib/config.mjs';
import { planColumn, numericTypmod, copyOutSql } from '../lib/pgtypes.mjs';
import { checkReadOnlySql, quoteIdent, quoteLiteral, parquetFileName } from '../lib/sql.mjs';
import { Mirror, planTables, loadSql, describeError } from '../lib/mirror.mjs';
import { renderMetrics, escapeLabelValue, formatValue, METRICS_CONTENT_TYPE } from '../lib/metrics.mjs';

const baseEnv = { HOMELAB_SOURCE_HOST: 'pg-replica', HOMELAB_SOURCE_DATABASE: 'app', HOMELAB_SOURCE_USER: 'analytics_ro' };

test('config: defaults from the contract', () => {
  const c = readConfig(baseEnv);
  assert.equal(c.source.port, 5432);
  assert.deepEqual(c.source.schemas, ['public']);
  assert.equal(c.source.passwordFile, '/etc/homelab/secrets/source.password');
  assert.equal(c.syncIntervalSeconds, 300);
  assert.equal(c.httpPort, 8080);
  assert.equal(c.databaseFile, '/var/lib/duckdb/homelab.duckdb');
  assert.equal(c.parquetDir, '/var/lib/duckdb/parquet');
  assert.equal('password' in c.source, false);
});

test('config: schemas list, interval 0 allowed', () => {
  const c = readConfig({ ...baseEnv, HOMELAB_SOURCE_SCHEMAS: ' public , app ', HOMELAB_SYNC_INTERVAL_SECONDS: '0' });
  assert.deepEqual(c.source.schemas, ['public', 'app']);
  assert.equal(c.syncIntervalSeconds, 0);
});

test('config: every problem named with variable, value and what is accepted', () => {
  assert.throws(() => readConfig({ HOMELAB_SOURCE_PORT: 'x', HOMELAB_SYNC_INTERVAL_SECONDS: '-1', HOMELAB_SOURCE_SSLMODE: 'prefer' }), (err) => {
    assert.ok(err instanceof ConfigError);
    for (const needle of ['HOMELAB_SOURCE_HOST is not set', 'HOMELAB_SOURCE_DATABASE is not set', 'HOMELAB_SOURCE_USER is not set',
      'HOMELAB_SOURCE_PORT="x" is invalid: expected an integer from 1 to 65535', 'HOMELAB_SYNC_INTERVAL_SECONDS="-1"',
      'HOMELAB_SOURCE_SSLMODE="prefer" is invalid: expected one of disable, require, verify-full']) {
      assert.ok(err.message.includes(needle), `missing "${needle}" in:\n${err.message}`);
    }
    return true;
  });
});

test('config: a password in the environment is refused, never used', () => {
  for (const name of ['HOMELAB_SOURCE_PASSWORD', 'PGPASSWORD']) {
    assert.throws(() => readConfig({ ...baseEnv, [name]: 'hunter2' }), (err) => {
      assert.match(err.message, /must not be set: the password is read only from the file/);
      assert.equal(err.message.includes('hunter2'), false);
      return true;
    });
  }
});

test('config: system schemas and duplicates refused', () => {
  assert.throws(() => readConfig({ ...baseEnv, HOMELAB_SOURCE_SCHEMAS: 'pg_catalog' }), /system schema/);
  assert.throws(() => readConfig({ ...baseEnv, HOMELAB_SOURCE_SCHEMAS: 'a,a' }), /lists a schema twice/);
});

const col = (typname, extra = {}) => ({ name: 'x', typname, typtype: 'b', typcategory: 'N', typmod: -1, ...extra });

test('types: the common PostgreSQL types map to their DuckDB peers', () => {
  const expected = { uuid: 'UUID', text: 'VARCHAR', varchar: 'VARCHAR', int2: 'SMALLINT', int4: 'INTEGER', int8: 'BIGINT', bool: 'BOOLEAN',
    float8: 'DOUBLE', timestamptz: 'TIMESTAMPTZ', timestamp: 'TIMESTAMP', date: 'DATE', jsonb: 'JSON', json: 'JSON', bytea: 'BLOB', interval: 'INTERVAL', inet: 'VARCHAR' };
  for (const [pgType, duckType] of Object.entries(expected)) assert.equal(planColumn(col(pgType), 0).duckType, duckType, pgType);
});

test('types: numeric(p,s) -> DECIMAL(p,s) with NaN as NULL; unconstrained or too wide -> DOUBLE', () => {
  const typmod = (p, s) => ((p << 16) | (s & 0x7ff)) + 4;
  assert.deepEqual(numericTypmod(typmod(10, 2)), { precision: 10, scale: 2 });
  assert.deepEqual(numericTypmod(typmod(5, -2)), { precision: 5, scale: -2 });
  assert.equal(numericTypmod(-1), undefined);
  const money = planColumn(col('numeric', { typmod: typmod(10, 2) }), 3);
  assert.equal(money.duckType, 'DECIMAL(10,2)');
  assert.equal(money.pgExpr, `NULLIF("x", 'NaN'::numeric)`);
  assert.equal(planColumn(col('numeric'), 0).duckType, 'DOUBLE');
  assert.equal(planColumn(col('numeric', { typmod: typmod(60, 2) }), 0).duckType, 'DOUBLE');
  assert.equal(planColumn(col('numeric', { typmod: typmod(5, -2) }), 0).duckType, 'DOUBLE');
});

test('types: arrays -> JSON, enums -> VARCHAR, bytea through hex', () => {
  assert.deepEqual(
    [planColumn(col('_int4', { typcategory: 'A' }), 0).duckType, planColumn(col('mood', { typtype: 'e', typcategory: 'E' }), 0).duckType],
    ['JSON', 'VARCHAR'],
  );
  const blob = planColumn(col('bytea'), 7);
  assert.equal(blob.pgExpr, `encode("x", 'hex')`);
  assert.equal(blob.duckExpr, 'unhex(c7)');
});

test('COPY statement quotes identifiers', () => {
  const columns = [planColumn({ ...col('text'), name: 'we"ird' }, 0)];
  assert.equal(copyOutSql('my schema', 'T', columns), 'COPY (SELECT "we""ird" FROM "my schema"."T") TO STDOUT WITH (FORMAT csv)');
});

test('planTables groups columns per table in order and numbers CSV columns', () => {
  const rows = [
    { schema_name: 'public', table_name: 'a', column_name: 'id', typname: 'int4', typtype: 'b', typcategory: 'N', typmod: -1, readable: true },
    { schema_name: 'public', table_name: 'a', column_name: 'v', typname: 'text', typtype: 'b', typcategory: 'S', typmod: -1, readable: true },
    { schema_name: 'public', table_name: 'b', column_name: 'id', typname: 'uuid', typtype: 'b', typcategory: 'U', typmod: -1, readable: false },
  ];
  const tables = planTables(rows);
  assert.deepEqual(tables.map((t) => [t.key, t.readable, t.columns.map((c) => c.name)]), [['public.a', true, ['id', 'v']], ['public.b', false, ['id']]]);
  assert.match(loadSql('public', '__homelab_load__a', '/d/0.csv', tables[0].columns), /columns = \{'c0': 'INTEGER', 'c1': 'VARCHAR'\}.*allow_quoted_nulls = false/);
});

test('query guard: SELECT and WITH only', () => {
  for (const ok of ['select 1', '  SELECT count(*) FROM t', 'with a as (select 1) select * from a', '-- note\nselect 1', '/* c */ (select 1)']) {
    assert.equal(checkReadOnlySql(ok).ok, true, ok);
  }
  for (const bad of ['', 'drop table t', 'insert into t values (1)', 'COPY t TO \'/tmp/x\'', 'attach \'/x\'', 'pragma version', '/* select */ delete from t', 'set x=1']) {
    assert.equal(checkReadOnlySql(bad).ok, false, bad);
  }
});

test('quoting and parquet file names', () => {
  assert.equal(quoteIdent('a"b'), '"a""b"');
  assert.equal(quoteLiteral("it's"), "'it''s'");
  assert.equal(parquetFileName('public', 'incidents'), 'public.incidents.parquet');
  assert.equal(parquetFileName('a.b', '../x/y'), 'a%2Eb.%2E%2E%2Fx%2Fy.parquet');
});

test('describeError keeps one line and the SQLSTATE only', () => {
  assert.equal(describeError(Object.assign(new Error('password authentication failed for user "ro"\ndetail'), { code: '28P01' })),
    'password authentication failed for user "ro" (SQLSTATE 28P01)');
  assert.equal(describeError(Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:5432'), { code: 'ECONNREFUSED' })), 'connect ECONNREFUSED 10.0.0.1:5432');
});

const METRIC_NAMES = ['homelab_duckdb_last_sync_success_timestamp_seconds', 'homelab_duckdb_last_sync_attempt_timestamp_seconds',
  'homelab_duckdb_last_sync_ok', 'homelab_duckdb_last_sync_duration_seconds', 'homelab_duckdb_syncs_total',
  'homelab_duckdb_sync_failures_total', 'homelab_duckdb_sync_interval_seconds', 'homelab_duckdb_table_rows'];
const COUNTERS = ['homelab_duckdb_syncs_total', 'homelab_duckdb_sync_failures_total'];

/**
 * Parse a metrics page strictly enough to catch format mistakes: every family has # HELP then # TYPE
 * before its samples, families are not repeated, every sample line is `name{labels} value`.
 * Returns { families: Map(name -> type), samples: Map('name{labels}' -> number) }.
 */
function parseMetrics(text) {
  assert.ok(text.endsWith('\n'), 'the page ends with a line feed');
  const families = new Map();
  const samples = new Map();
  let current;
  let pendingHelp;
  for (const line of text.slice(0, -1).split('\n')) {
    let m;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (\S.*)$/.exec(line))) {
      assert.equal(families.has(m[1]), false, `family ${m[1]} repeated`);
      pendingHelp = m[1];
    } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (gauge|counter)$/.exec(line))) {
      assert.equal(m[1], pendingHelp, `# TYPE ${m[1]} must follow its # HELP`);
      families.set(m[1], m[2]);
      current = m[1];
      pendingHelp = undefined;
    } else if ((m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$/.exec(line))) {
      assert.equal(m[1], current, `sample ${line} outside its family`);
      const value = Number(m[3]);
      assert.ok(Number.isFinite(value), `value of ${line}`);
      samples.set(`${m[1]}${m[2] ?? ''}`, value);
    } else {
      assert.fail(`not exposition format 0.0.4: ${JSON.stringify(line)}`);
    }
  }
  return { families, samples };
}

const syncedState = {
  lastSyncAt: '2024-12-03T14:00:01.250Z', lastAttemptAt: '2024-12-03T14:00:00.000Z', lastError: null, lastDurationMs: 1250,
  tables: { 'public.incidents': 1000, 'ops.deploys': 40 }, syncs: 3, failures: 1,
};

test('metrics: content type, every family with HELP and TYPE, counters named _total', () => {
  assert.equal(METRICS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8');
  const { families } = parseMetrics(renderMetrics(syncedState, 300));
  assert.deepEqual([...families.keys()], METRIC_NAMES);
  for (const [name, type] of families) assert.equal(type, COUNTERS.includes(name) ? 'counter' : 'gauge', name);
});

test('metrics: a never-synced mirror is stale from the epoch (success timestamp 0), not ok, with no row or duration samples', () => {
  const fresh = new Mirror(readConfig({ ...baseEnv, HOMELAB_SYNC_INTERVAL_SECONDS: '120' }), () => {});
  const text = renderMetrics(fresh.state, fresh.config.syncIntervalSeconds);
  const { families, samples } = parseMetrics(text);
  assert.deepEqual([...families.keys()], METRIC_NAMES);
  assert.deepEqual(Object.fromEntries(samples), {
    homelab_duckdb_last_sync_success_timestamp_seconds: 0,
    homelab_duckdb_last_sync_attempt_timestamp_seconds: 0,
    homelab_duckdb_last_sync_ok: 0,
    homelab_duckdb_syncs_total: 0,
    homelab_duckdb_sync_failures_total: 0,
    homelab_duckdb_sync_interval_seconds: 120,
  });
});

test('metrics: a successful sync, exactly as exposed', () => {
  assert.equal(renderMetrics(syncedState, 300), [
    '# HELP homelab_duckdb_last_sync_success_timestamp_seconds Unix time the last successful sync finished; 0 if none succeeded since the service started.',
    '# TYPE homelab_duckdb_last_sync_success_timestamp_seconds gauge',
    'homelab_duckdb_last_sync_success_timestamp_seconds 1733234401.25',
    '# HELP homelab_duckdb_last_sync_attempt_timestamp_seconds Unix time the last sync attempt started (it may still be running); 0 if none was made.',
    '# TYPE homelab_duckdb_last_sync_attempt_timestamp_seconds gauge',
    'homelab_duckdb_last_sync_attempt_timestamp_seconds 1733234400',
    '# HELP homelab_duckdb_last_sync_ok 1 if the last finished sync attempt succeeded, 0 if it failed or no sync has succeeded yet.',
    '# TYPE homelab_duckdb_last_sync_ok gauge',
    'homelab_duckdb_last_sync_ok 1',
    '# HELP homelab_duckdb_last_sync_duration_seconds How long the last finished sync attempt (successful or not) took.',
    '# TYPE homelab_duckdb_last_sync_duration_seconds gauge',
    'homelab_duckdb_last_sync_duration_seconds 1.25',
    '# HELP homelab_duckdb_syncs_total Sync attempts finished since the service started, successful or not.',
    '# TYPE homelab_duckdb_syncs_total counter',
    'homelab_duckdb_syncs_total 4',
    '# HELP homelab_duckdb_sync_failures_total Sync attempts that failed (or were aborted by shutdown) since the service started.',
    '# TYPE homelab_duckdb_sync_failures_total counter',
    'homelab_duckdb_sync_failures_total 1',
    '# HELP homelab_duckdb_sync_interval_seconds Configured seconds between the end of one sync and the start of the next (HOMELAB_SYNC_INTERVAL_SECONDS); 0 = only at start and on POST /sync.',
    '# TYPE homelab_duckdb_sync_interval_seconds gauge',
    'homelab_duckdb_sync_interval_seconds 300',
    '# HELP homelab_duckdb_table_rows Rows of each mirrored table ("<schema>.<table>") as of the last successful sync.',
    '# TYPE homelab_duckdb_table_rows gauge',
    'homelab_duckdb_table_rows{table="ops.deploys"} 40',
    'homelab_duckdb_table_rows{table="public.incidents"} 1000',
    '',
  ].join('\n'));
});

test('metrics: the real Mirror state through success, failure, success (syncs counts successes; the metric counts attempts)', async () => {
  const mirror = new Mirror(readConfig({ ...baseEnv, HOMELAB_SYNC_INTERVAL_SECONDS: '60' }), () => {});
  let fail = false;
  mirror.pullAndSwap = async () => {
    if (fail) throw Object.assign(new Error('password authentication failed for user "analytics_ro"'), { code: '28P01' });
    return [{ key: 'public.incidents', rows: 7 }, { key: 'ops.deploys', rows: 2 }];
  };
  mirror.dropStaging = async () => {};
  mirror.clearStagingFiles = async () => {};
  const scrape = () => Object.fromEntries(parseMetrics(renderMetrics(mirror.state, mirror.config.syncIntervalSeconds)).samples);

  const before = Date.now() / 1000;
  assert.equal((await mirror.sync('test')).ok, true);
  const ok = scrape();
  assert.equal(ok.homelab_duckdb_last_sync_ok, 1);
  assert.ok(ok.homelab_duckdb_last_sync_success_timestamp_seconds >= before && ok.homelab_duckdb_last_sync_success_timestamp_seconds <= Date.now() / 1000);
  assert.ok(ok.homelab_duckdb_last_sync_attempt_timestamp_seconds <= ok.homelab_duckdb_last_sync_success_timestamp_seconds);
  assert.ok(ok.homelab_duckdb_last_sync_duration_seconds >= 0);
  assert.equal(ok.homelab_duckdb_syncs_total, 1);
  assert.equal(ok.homelab_duckdb_sync_failures_total, 0);
  assert.equal(ok.homelab_duckdb_sync_interval_seconds, 60);
  assert.equal(ok['homelab_duckdb_table_rows{table="public.incidents"}'], 7);
  assert.equal(ok['homelab_duckdb_table_rows{table="ops.deploys"}'], 2);

  await new Promise((resolve) => setTimeout(resolve, 5)); // a later attempt timestamp
  fail = true;
  assert.equal((await mirror.sync('test')).ok, false);
  const failed = scrape();
  assert.equal(failed.homelab_duckdb_last_sync_ok, 0);
  assert.equal(failed.homelab_duckdb_last_sync_success_timestamp_seconds, ok.homelab_duckdb_last_sync_success_timestamp_seconds, 'a failure keeps the last success');
  assert.ok(failed.homelab_duckdb_last_sync_attempt_timestamp_seconds > ok.homelab_duckdb_last_sync_success_timestamp_seconds);
  assert.equal(failed.homelab_duckdb_syncs_total, 2);
  assert.equal(failed.homelab_duckdb_sync_failures_total, 1);
  assert.equal(failed['homelab_duckdb_table_rows{table="public.incidents"}'], 7, 'row counts stay those of the last success');
  assert.equal(mirror.state.syncs, 1, 'Mirror.state.syncs counts successes only');
  const text = renderMetrics(mirror.state, 60);
  for (const leak of ['password', 'analytics_ro', '28P01', mirror.state.lastError]) assert.equal(text.includes(leak), false, `metrics contain ${leak}`);

  fail = false;
  assert.equal((await mirror.sync('test')).ok, true);
  const again = scrape();
  assert.equal(again.homelab_duckdb_last_sync_ok, 1);
  assert.ok(again.homelab_duckdb_last_sync_success_timestamp_seconds > ok.homelab_duckdb_last_sync_success_timestamp_seconds);
  assert.equal(again.homelab_duckdb_syncs_total, 3);
  assert.equal(again.homelab_duckdb_sync_failures_total, 1);
});

test('metrics: a first attempt that fails leaves the success timestamp at 0', () => {
  const { samples } = parseMetrics(renderMetrics({ ...syncedState, lastSyncAt: null, lastError: 'connect ECONNREFUSED', tables: {}, syncs: 0, failures: 1 }, 300));
  assert.equal(samples.get('homelab_duckdb_last_sync_success_timestamp_seconds'), 0);
  assert.equal(samples.get('homelab_duckdb_last_sync_ok'), 0);
  assert.equal(samples.get('homelab_duckdb_syncs_total'), 1);
  assert.equal([...samples.keys()].some((k) => k.startsWith('homelab_duckdb_table_rows')), false);
});

test('metrics: table label values escape backslash, double quote and line feed', () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(escapeLabelValue('public.incidents'), 'public.incidents');
  const text = renderMetrics({ ...syncedState, tables: { 'we"ird.t\\1': 1, 'multi\nline.x': 2, 'plain.ünïcode': 3 } }, 300);
  assert.ok(text.includes('homelab_duckdb_table_rows{table="multi\\nline.x"} 2\n'));
  assert.ok(text.includes('homelab_duckdb_table_rows{table="plain.ünïcode"} 3\n'));
  assert.ok(text.includes('homelab_duckdb_table_rows{table="we\\"ird.t\\\\1"} 1\n'));
  const { samples } = parseMetrics(text);
  assert.equal([...samples.keys()].filter((k) => k.startsWith('homelab_duckdb_table_rows')).length, 3);
});

test('metrics: special values in Go float syntax', () => {
  assert.deepEqual([NaN, Infinity, -Infinity, 0, 1.5, 1733234401.25].map(formatValue), ['NaN', '+Inf', '-Inf', '0', '1.5', '1733234401.25']);
});

test('a sync the service did not live to finish is named at the next start; two in a row skip the start-up sync', async () => {
  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'duckdb-marker-'));
  try {
    const logs = [];
    const make = () => new Mirror(readConfig({ ...baseEnv, HOMELAB_DATA_DIR: dataDir }), (level, msg, fields) => logs.push({ level, msg, fields }));
    const marker = path.join(dataDir, 'sync-in-progress.json');
    // A clean start: nothing to say.
    const clean = make();
    await clean.readInterruptedSync();
    assert.equal(clean.state.lastError, null);
    assert.equal(clean.shouldSyncAtStart(), true);
    // The marker a sync leaves while it runs, as if the service died then (what an OOM kill leaves).
    await fsp.writeFile(marker, JSON.stringify({ startedAt: '2026-12-04T01:00:00.000Z', reason: 'start', interruptedSyncs: 0 }));
    const once = make();
    await once.readInterruptedSync();
    assert.match(once.state.lastError, /^the sync started at 2026-12-04T01:00:00.000Z did not finish: the service died during it \(killed, or out of memory.*1 in a row$/);
    assert.equal(once.health().ok, false);
    assert.equal(once.shouldSyncAtStart(), true);
    assert.ok(logs.some((l) => l.level === 'error' && l.msg === 'the previous sync did not finish'));
    // It starts a sync, which dies too: its marker carries the count.
    once.pullAndSwap = () => new Promise(() => {}); // never ends, like a sync killed midway
    once.dropStaging = async () => {};
    once.clearStagingFiles = async () => {};
    void once.sync('start');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(JSON.parse(await fsp.readFile(marker, 'utf8')).interruptedSyncs, 1);
    const twice = make();
    await twice.readInterruptedSync();
    assert.match(twice.state.lastError, /2 in a row$/);
    assert.equal(twice.shouldSyncAtStart(), false);
    // A sync that ends, even failing, clears the marker and the count.
    twice.pullAndSwap = async () => { throw new Error('connection refused'); };
    twice.dropStaging = async () => {};
    twice.clearStagingFiles = async () => {};
    const r = await twice.sync('schedule');
    assert.equal(r.ok, false);
    assert.equal(twice.shouldSyncAtStart(), true);
    await assert.rejects(fsp.access(marker), { code: 'ENOENT' });
  } finally {
    await fsp.rm(dataDir, { recursive: true, force: true });
  }
});
