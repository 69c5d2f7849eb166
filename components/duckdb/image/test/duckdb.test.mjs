// The DuckDB side without a PostgreSQL: load PostgreSQL-style CSV through loadSql, swap, export
// parquet, and the read-only query path (GET /query) with its guards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readConfig } from '../lib/config.mjs';
import { Mirror, QueryRejected, planTables, loadSql } from '../lib/mirror.mjs';

let dir;
let mirror;
const logs = [];

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'homelab-duckdb-test-'));
  const config = readConfig({
    HOMELAB_SOURCE_HOST: 'unused', HOMELAB_SOURCE_DATABASE: 'app', HOMELAB_SOURCE_USER: 'ro',
    HOMELAB_DATA_DIR: path.join(dir, 'data'), HOMELAB_SOURCE_PASSWORD_FILE: path.join(dir, 'secret'),
    HOMELAB_QUERY_MAX_ROWS: '5', HOMELAB_QUERY_TIMEOUT_SECONDS: '1',
  });
  await fs.writeFile(path.join(dir, 'secret'), 's3cret-not-in-data-dir\n');
  mirror = new Mirror(config, (level, msg, fields) => logs.push({ level, msg, fields }));
  await mirror.open();
});

after(async () => {
  await mirror.close(1000);
  await fs.rm(dir, { recursive: true, force: true });
});

const catalogRow = (column_name, typname, extra = {}) => ({ schema_name: 'public', table_name: 'incidents', column_name, typname, typtype: 'b', typcategory: 'X', typmod: -1, readable: true, ...extra });

test('PostgreSQL CSV (NULL vs empty string, quotes, newlines, every mapped type) loads, swaps and exports', async () => {
  const [table] = planTables([
    catalogRow('id', 'uuid'), catalogRow('title', 'text'), catalogRow('severity', 'int2'), catalogRow('opened_at', 'timestamptz'),
    catalogRow('details', 'jsonb'), catalogRow('cost', 'numeric', { typmod: ((10 << 16) | 2) + 4 }), catalogRow('payload', 'bytea'),
    catalogRow('open_for', 'interval'), catalogRow('tags', '_text', { typcategory: 'A' }), catalogRow('resolved', 'bool'),
  ]);
  // What `COPY (SELECT <pgExpr>...) TO STDOUT (FORMAT csv)` prints with TimeZone=UTC, DateStyle=ISO.
  const csv = [
    '6f1c7a52-8a1e-4f57-9d44-3b7b5a0c1e01,"disk ""full""\non nas",3,2024-01-02 03:04:05.123456+00,"{""a"": 1}",12.50,00ff41,-2 months -1 days 7200000000 microseconds,"[""x"",""y""]",t',
    '6f1c7a52-8a1e-4f57-9d44-3b7b5a0c1e02,"",1,infinity,,,,,,f',
    '6f1c7a52-8a1e-4f57-9d44-3b7b5a0c1e03,,2,2024-06-30 23:59:59+00,[],0.00,,0 months 0 days 0 microseconds,[],',
  ].join('\n') + '\n';
  const file = path.join(mirror.config.stagingDir, '0.csv');
  await fs.writeFile(file, csv);
  await mirror.writer.run(loadSql('public', '__homelab_load__incidents', file, table.columns));
  await mirror.swap([{ ...table, stagingTable: '__homelab_load__incidents', rows: 3 }]);
  await mirror.exportParquet([{ ...table }], []);

  const r = await mirror.query(`select count(*) as n, sum(severity) as s, count(title) as titled, count(*) filter (where title = '') as empty_titles,
    sum(cost) as cost, max(octet_length(payload)) as bytes, min(open_for) as shortest, max(opened_at) as latest, bool_or(resolved) as any_resolved,
    max(json_array_length(tags)) as tags, max(details->>'a') as a from incidents`);
  // sum(DECIMAL(10,2)) is DECIMAL(38,2): too wide for a double, so it stays an exact string.
  assert.deepEqual(r.rows[0], { n: 3, s: 6, titled: 2, empty_titles: 1, cost: '12.50', bytes: 3, shortest: { months: -2, days: -1, micros: '7200000000' },
    latest: 'infinity', any_resolved: true, tags: 2, a: '1' });
  const types = Object.fromEntries((await mirror.query('select * from public.incidents limit 0')).columns.map((c) => [c.name, c.type]));
  assert.deepEqual(types, { id: 'UUID', title: 'VARCHAR', severity: 'SMALLINT', opened_at: 'TIMESTAMP WITH TIME ZONE', details: 'JSON', cost: 'DECIMAL(10,2)',
    payload: 'BLOB', open_for: 'INTERVAL', tags: 'JSON', resolved: 'BOOLEAN' });
  const title = await mirror.query("select title from incidents where id = '6f1c7a52-8a1e-4f57-9d44-3b7b5a0c1e01'");
  assert.equal(title.rows[0].title, 'disk "full"\non nas');

  const parquet = path.join(mirror.config.parquetDir, 'public.incidents.parquet');
  const fromParquet = await mirror.query(`select count(*) as n from read_parquet('${parquet}')`);
  assert.equal(fromParquet.rows[0].n, 3);
});

test('a table the source dropped disappears from DuckDB and parquet; staging leftovers are cleaned', async () => {
  await mirror.writer.run('CREATE TABLE public.old_table AS SELECT 1 AS x');
  await fs.writeFile(path.join(mirror.config.parquetDir, 'public.old_table.parquet'), 'x');
  await mirror.writer.run('CREATE TABLE public.__homelab_load__crashed AS SELECT 1 AS x');
  const gone = await mirror.swap([]);
  assert.deepEqual(gone.map((t) => t.table).sort(), ['incidents', 'old_table']);
  await mirror.exportParquet([], gone);
  assert.deepEqual(await fs.readdir(mirror.config.parquetDir), []);
  await mirror.dropStaging();
  const left = await mirror.query("select count(*) as n from duckdb_tables() where schema_name = 'public'");
  assert.equal(left.rows[0].n, 0);
});

test('GET /query refuses writes, several statements, and files outside the data directory', async () => {
  await mirror.writer.run('CREATE TABLE public.t AS SELECT range AS i FROM range(20)');
  const rejected = async (sql, pattern) => {
    await assert.rejects(mirror.query(sql), (err) => err instanceof QueryRejected && pattern.test(err.message), sql);
  };
  await rejected('drop table t', /only SELECT or WITH/);
  await rejected('select 1; drop table t', /exactly one statement/);
  await rejected('with x as (select 1) delete from t', /only SELECT queries|read-only|Parser/i);
  await rejected(`select * from read_text('${mirror.config.source.passwordFile}')`, /Permission Error|disabled by configuration/);
  await rejected("select * from read_csv('/etc/passwd')", /Permission Error|disabled by configuration/);
  await rejected('select * from no_such_table', /Catalog Error/);
  await rejected('select count(*) from range(100000000000) a, range(1000000) b', /cancelled after 1s/);
  const r = await mirror.query('select i from t order by i');
  assert.equal(r.rowCount, 5);
  assert.equal(r.truncated, true);
  assert.equal((await mirror.query('select count(*) as n from t')).rows[0].n, 20);
  // explain: the same guards, then DuckDB's profile of the SELECT instead of its rows.
  const profile = await mirror.query('select i % 3 as k, count(*) as n from t group by k', { explain: true });
  assert.match(profile.plan, /HASH_GROUP_BY/);
  assert.match(profile.plan, /SCAN/);
  assert.equal(typeof profile.totalSeconds, 'number');
  assert.ok(profile.totalSeconds >= 0 && profile.totalSeconds < 5, String(profile.totalSeconds));
  await assert.rejects(mirror.query('drop table t', { explain: true }), (err) => err instanceof QueryRejected && /only SELECT or WITH/.test(err.message));
  await assert.rejects(mirror.query('with x as (select 1) delete from t', { explain: true }), (err) => err instanceof QueryRejected);
  assert.equal((await mirror.query('select count(*) as n from t')).rows[0].n, 20);
});

test('health is 503-shaped before any sync', () => {
  const h = mirror.health();
  assert.equal(h.ok, false);
  assert.equal(h.lastSyncAt, null);
});

test('a sync without a reachable source fails cleanly, says why, and leaks no password', async () => {
  const result = await mirror.sync('test');
  assert.equal(result.ok, false);
  assert.ok(result.error.length > 0);
  assert.equal(mirror.health().lastError, result.error);
  assert.equal(JSON.stringify(logs).includes('s3cret'), false);
});
