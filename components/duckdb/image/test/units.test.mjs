// Pure parts: configuration, type mapping, SQL guard and quoting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readConfig, ConfigError } from '../lib/config.mjs';
import { planColumn, numericTypmod, copyOutSql } from '../lib/pgtypes.mjs';
import { checkReadOnlySql, quoteIdent, quoteLiteral, parquetFileName } from '../lib/sql.mjs';
import { planTables, loadSql, describeError } from '../lib/mirror.mjs';

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
