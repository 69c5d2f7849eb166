// The mirror: PostgreSQL replica -> DuckDB file + one parquet file per table, and read-only queries
// over the result.
//
// One sync = one REPEATABLE READ, READ ONLY transaction on the source (a consistent snapshot of every
// table), each table streamed out with `COPY (SELECT ...) TO STDOUT (FORMAT csv)` into a staging file,
// loaded into a staging table, then ALL tables swapped in ONE DuckDB transaction: readers see the
// previous snapshot or the new one, never a mix. The DuckDB postgres extension would do this in one
// statement, but extensions are downloaded at run time and these hosts are offline.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { DuckDBInstance, StatementType } from '@duckdb/node-api';
import { planColumn, copyOutSql } from './pgtypes.mjs';
import { quoteIdent, quoteLiteral, parquetFileName, checkReadOnlySql } from './sql.mjs';
import { readerToJson } from './results.mjs';

const STAGING_PREFIX = '__homelab_load__';
// Written when a sync starts and removed when it ends, ok or not: found at start, it says the service died
// during a sync (OOM kill, docker kill), which no log line or /healthz field could say before.
const SYNC_MARKER = 'sync-in-progress.json';
// After this many syncs in a row died, the start-up sync is skipped: the next one runs at the interval or
// on POST /sync, so a sync that kills the service cannot make a crash loop of it.
export const MAX_INTERRUPTED_SYNCS = 2;
// A single CSV row (one PostgreSQL row as text) may be this long; DuckDB's default is 2 MiB.
// The read buffer must hold at least one row; 2x keeps memory bounded under a 256 MB limit.
const CSV_MAX_LINE_BYTES = 16 * 1024 * 1024;
const CSV_BUFFER_BYTES = 2 * CSV_MAX_LINE_BYTES;

const CATALOG_SQL = `
SELECT n.nspname AS schema_name, c.relname AS table_name, a.attname AS column_name,
       bt.typname, bt.typtype, bt.typcategory,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
       pg_catalog.has_table_privilege(c.oid, 'SELECT') AS readable
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
 WHERE n.nspname = ANY($1::text[])
   AND c.relkind IN ('r', 'p')      -- tables and partitioned tables (their partitions come through the parent)
   AND NOT c.relispartition
 ORDER BY n.nspname, c.relname, a.attnum`;

export class SyncError extends Error {}

/** Group catalog rows into [{ schema, table, readable, columns: [plan...] }]. Pure. */
export function planTables(catalogRows) {
  const tables = new Map();
  for (const row of catalogRows) {
    const key = `${row.schema_name}.${row.table_name}`;
    let table = tables.get(key);
    if (!table) {
      table = { key, schema: row.schema_name, table: row.table_name, readable: row.readable, columns: [] };
      tables.set(key, table);
    }
    table.columns.push(planColumn({
      name: row.column_name, typname: row.typname, typtype: row.typtype, typcategory: row.typcategory, typmod: row.typmod,
    }, table.columns.length));
  }
  return [...tables.values()];
}

/** DuckDB statement that loads one staged CSV file into a staging table. Pure. */
export function loadSql(schema, stagingTable, csvFile, columns) {
  const csvColumns = columns.map((c, i) => `${quoteLiteral(`c${i}`)}: ${quoteLiteral(c.csvType)}`).join(', ');
  const select = columns.map((c) => `CAST(${c.duckExpr} AS ${c.duckType}) AS ${quoteIdent(c.name)}`).join(', ');
  // PostgreSQL CSV: NULL is an unquoted empty field, an empty string is "" (allow_quoted_nulls=false).
  return `CREATE OR REPLACE TABLE ${quoteIdent(schema)}.${quoteIdent(stagingTable)} AS SELECT ${select} FROM read_csv(`
    + `${quoteLiteral(csvFile)}, columns = {${csvColumns}}, header = false, auto_detect = false, delim = ',', `
    + `quote = '"', escape = '"', nullstr = '', allow_quoted_nulls = false, strict_mode = true, `
    + `max_line_size = ${CSV_MAX_LINE_BYTES}, buffer_size = ${CSV_BUFFER_BYTES})`;
}

export class Mirror {
  /**
   * @param {ReturnType<import('./config.mjs').readConfig>} config
   * @param {(level: string, msg: string, fields?: object) => void} log
   */
  constructor(config, log) {
    this.config = config;
    this.log = log;
    this.instance = undefined;
    this.writer = undefined;
    this.inFlight = undefined; // the running sync's promise: concurrent callers share it
    this.activeSource = undefined; // pg client of the running sync, ended on shutdown
    this.closing = false;
    this.state = { lastSyncAt: null, lastAttemptAt: null, lastError: null, lastDurationMs: null, tables: {}, syncs: 0, failures: 0 };
    this.interruptedSyncs = 0; // syncs in a row that the service did not live to finish
  }

  get markerFile() {
    return path.join(this.config.dataDir, SYNC_MARKER);
  }

  /** Whether to sync at start: not after MAX_INTERRUPTED_SYNCS syncs in a row died with the service. */
  shouldSyncAtStart() {
    return this.interruptedSyncs < MAX_INTERRUPTED_SYNCS;
  }

  async readInterruptedSync() {
    let marker;
    try {
      marker = JSON.parse(await fsp.readFile(this.markerFile, 'utf8'));
    } catch (err) {
      if (err.code === 'ENOENT') return;
      marker = {}; // unreadable: a sync still died during its write
    }
    this.interruptedSyncs = (Number.isInteger(marker.interruptedSyncs) ? marker.interruptedSyncs : 0) + 1;
    const startedAt = typeof marker.startedAt === 'string' ? marker.startedAt : null;
    this.state.lastAttemptAt = startedAt;
    this.state.lastError = `the sync started at ${startedAt ?? 'an unknown time'} did not finish: the service died during it (killed, or out of memory: see docker inspect's State.OOMKilled); ${this.interruptedSyncs} in a row`;
    this.log('error', 'the previous sync did not finish', { startedAt, interruptedSyncs: this.interruptedSyncs, reason: marker.reason ?? null });
  }

  async open() {
    const { config } = this;
    for (const dir of [config.dataDir, config.parquetDir, config.stagingDir, config.tempDir]) {
      await fsp.mkdir(dir, { recursive: true, mode: 0o750 });
    }
    this.instance = await DuckDBInstance.create(config.databaseFile, {
      memory_limit: config.duckdb.memoryLimit,
      threads: String(config.duckdb.threads),
      temp_directory: config.tempDir,
      // Offline hosts: never try to download extensions (json and parquet are built in).
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
    });
    this.writer = await this.instance.connect();
    // GET /query runs arbitrary SELECTs, and SELECT can read files (read_text('/etc/...')). Confine
    // every file access of this instance to the data directory, then freeze the configuration.
    // Both settings are instance-wide; external access cannot be switched back on while running.
    await this.writer.run(`SET allowed_directories = [${quoteLiteral(`${config.dataDir}/`)}]`);
    await this.writer.run('SET enable_external_access = false');
    await this.writer.run('SET lock_configuration = true');
    for (const schema of config.source.schemas) {
      await this.writer.run(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    }
    await this.dropStaging();
    await this.clearStagingFiles();
    await this.readInterruptedSync();
  }

  health() {
    return {
      ok: this.state.lastSyncAt !== null && this.state.lastError === null,
      lastSyncAt: this.state.lastSyncAt,
      lastAttemptAt: this.state.lastAttemptAt,
      lastError: this.state.lastError,
      lastDurationMs: this.state.lastDurationMs,
      syncing: this.inFlight !== undefined,
      tables: this.state.tables,
    };
  }

  /** Run a sync, or join the one already running. Never rejects: the result says ok or not. */
  sync(reason) {
    if (this.closing) return Promise.resolve({ ok: false, error: 'shutting down' });
    if (!this.inFlight) {
      this.inFlight = this.runSync(reason).finally(() => { this.inFlight = undefined; });
    }
    return this.inFlight;
  }

  async runSync(reason) {
    const startedAt = Date.now();
    this.state.lastAttemptAt = new Date(startedAt).toISOString();
    await fsp.writeFile(this.markerFile, JSON.stringify({ startedAt: this.state.lastAttemptAt, reason, interruptedSyncs: this.interruptedSyncs }), { mode: 0o600 })
      .catch((err) => this.log('warn', 'could not write the sync marker', { file: this.markerFile, error: describeError(err) }));
    try {
      let tables;
      for (let attempt = 1; ; attempt++) {
        try {
          tables = await this.pullAndSwap();
          break;
        } catch (err) {
          // A hot standby cancels long snapshots that block WAL replay ("conflict with recovery",
          // SQLSTATE 40001, see max_standby_streaming_delay). Try once more before reporting it.
          if (err?.code !== '40001' || attempt >= 2 || this.closing) throw err;
          this.log('warn', 'sync cancelled by the standby, retrying', { reason, error: describeError(err) });
          await this.dropStaging();
        }
      }
      const durationMs = Date.now() - startedAt;
      const counts = Object.fromEntries(tables.map((t) => [t.key, t.rows]));
      Object.assign(this.state, { lastSyncAt: new Date().toISOString(), lastError: null, lastDurationMs: durationMs, tables: counts });
      this.state.syncs += 1;
      const rows = tables.reduce((sum, t) => sum + t.rows, 0);
      this.log('info', 'sync ok', { reason, durationMs, tableCount: tables.length, rows, tables: counts });
      return { ok: true, syncedAt: this.state.lastSyncAt, durationMs, tables: counts };
    } catch (err) {
      const durationMs = Date.now() - startedAt;
      const error = describeError(err);
      Object.assign(this.state, { lastError: error, lastDurationMs: durationMs });
      this.state.failures += 1;
      if (this.closing) this.log('warn', 'sync aborted by shutdown', { reason, durationMs, error });
      else this.log('error', 'sync failed', { reason, durationMs, error });
      await this.dropStaging().catch((e) => this.log('warn', 'could not drop staging tables', { error: describeError(e) }));
      return { ok: false, durationMs, error };
    } finally {
      await this.clearStagingFiles().catch(() => {});
      // The service lived to see this sync end: it was not interrupted, whatever its result.
      this.interruptedSyncs = 0;
      await fsp.rm(this.markerFile, { force: true }).catch(() => {});
    }
  }

  async readPassword() {
    const file = this.config.source.passwordFile;
    let raw;
    try {
      raw = await fsp.readFile(file, 'utf8');
    } catch (err) {
      throw new SyncError(`cannot read the source password file ${file}: ${err.code ?? err.message}`);
    }
    const password = raw.replace(/\r?\n$/, '');
    if (password === '') throw new SyncError(`the source password file ${file} is empty`);
    return password;
  }

  async sslOptions() {
    const { sslMode, sslRootCertFile, host } = this.config.source;
    if (sslMode === 'disable') return false;
    if (sslMode === 'require') return { rejectUnauthorized: false };
    return { rejectUnauthorized: true, ca: await fsp.readFile(sslRootCertFile, 'utf8'), servername: host };
  }

  async pullAndSwap() {
    const { source } = this.config;
    const client = new pg.Client({
      host: source.host,
      port: source.port,
      database: source.database,
      user: source.user,
      password: await this.readPassword(),
      ssl: await this.sslOptions(),
      application_name: 'homelab-duckdb',
      connectionTimeoutMillis: 10_000,
      keepAlive: true,
    });
    client.on('error', () => {}); // surfaced by the failing query instead
    this.activeSource = client;
    const loaded = [];
    try {
      await client.connect();
      if (this.closing) throw new SyncError('shutting down');
      // Read-only session, fixed text formats (the CSV is parsed by DuckDB), pg_catalog first so no
      // user object can shadow a function we call.
      await client.query(`SET default_transaction_read_only = on; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD';
        SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET search_path = pg_catalog`);
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');

      const found = await client.query('SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::text[])', [source.schemas]);
      const missing = source.schemas.filter((s) => !found.rows.some((r) => r.nspname === s));
      if (missing.length > 0) throw new SyncError(`source schema(s) not found in database ${source.database}: ${missing.join(', ')}`);

      const { rows } = await client.query(CATALOG_SQL, [source.schemas]);
      const tables = planTables(rows);
      const unreadable = tables.filter((t) => !t.readable).map((t) => t.key);
      if (unreadable.length > 0) {
        throw new SyncError(`role ${source.user} may not SELECT from ${unreadable.join(', ')}: GRANT SELECT to it (or pg_read_all_data)`);
      }

      for (const [i, table] of tables.entries()) {
        if (this.closing) throw new SyncError('shutting down');
        const csvFile = path.join(this.config.stagingDir, `${i}.csv`);
        const copy = client.query(copyStreams.to(copyOutSql(table.schema, table.table, table.columns)));
        await pipeline(copy, fs.createWriteStream(csvFile, { mode: 0o600 }));
        const stagingTable = `${STAGING_PREFIX}${table.table}`;
        try {
          await this.writer.run(loadSql(table.schema, stagingTable, csvFile, table.columns));
        } catch (err) {
          throw new SyncError(`loading ${table.key} into DuckDB failed: ${err.message.split('\n')[0]}`);
        }
        await fsp.rm(csvFile, { force: true });
        const rows = await this.scalar(`SELECT count(*) FROM ${quoteIdent(table.schema)}.${quoteIdent(stagingTable)}`);
        if (rows !== copy.rowCount) throw new SyncError(`${table.key}: PostgreSQL sent ${copy.rowCount} rows, DuckDB loaded ${rows}`);
        loaded.push({ ...table, stagingTable, rows });
      }
      await client.query('COMMIT');
    } finally {
      this.activeSource = undefined;
      await client.end().catch(() => {});
    }

    const gone = await this.swap(loaded);
    await this.exportParquet(loaded, gone);
    await this.writer.run('CHECKPOINT');
    return loaded;
  }

  /** Swap every staging table into place in ONE transaction, dropping tables the source no longer has. */
  async swap(loaded) {
    const wanted = new Set(loaded.map((t) => t.key));
    const existing = await this.writer.runAndReadAll(
      `SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()
         AND list_contains([${this.config.source.schemas.map(quoteLiteral).join(', ')}], schema_name)
         AND NOT starts_with(table_name, ${quoteLiteral(STAGING_PREFIX)})`,
    );
    const gone = existing.getRowObjectsJson()
      .map((r) => ({ schema: String(r.schema_name), table: String(r.table_name) }))
      .filter((t) => !wanted.has(`${t.schema}.${t.table}`));

    await this.writer.run('BEGIN TRANSACTION');
    try {
      for (const t of loaded) {
        const schema = quoteIdent(t.schema);
        await this.writer.run(`DROP TABLE IF EXISTS ${schema}.${quoteIdent(t.table)}`);
        await this.writer.run(`ALTER TABLE ${schema}.${quoteIdent(t.stagingTable)} RENAME TO ${quoteIdent(t.table)}`);
      }
      for (const t of gone) await this.writer.run(`DROP TABLE ${quoteIdent(t.schema)}.${quoteIdent(t.table)}`);
      await this.writer.run('COMMIT');
    } catch (err) {
      await this.writer.run('ROLLBACK').catch(() => {});
      throw err;
    }
    if (gone.length > 0) this.log('info', 'dropped tables the source no longer has', { tables: gone.map((t) => `${t.schema}.${t.table}`) });
    return gone;
  }

  /** Write <schema>.<table>.parquet next to a temporary name and rename it: readers never see half a file. */
  async exportParquet(loaded, gone) {
    for (const t of loaded) {
      const file = path.join(this.config.parquetDir, parquetFileName(t.schema, t.table));
      const partial = `${file}.partial`;
      await fsp.rm(partial, { force: true });
      await this.writer.run(`COPY (${parquetSelect(t)}) TO ${quoteLiteral(partial)} (FORMAT parquet, COMPRESSION zstd)`);
      await fsp.rename(partial, file);
    }
    for (const t of gone) await fsp.rm(path.join(this.config.parquetDir, parquetFileName(t.schema, t.table)), { force: true });
  }

  async scalar(sql) {
    const reader = await this.writer.runAndReadAll(sql);
    return Number(reader.getRows()[0][0]);
  }

  async dropStaging() {
    const leftovers = await this.writer.runAndReadAll(
      `SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() AND starts_with(table_name, ${quoteLiteral(STAGING_PREFIX)})`,
    );
    for (const r of leftovers.getRowObjectsJson()) {
      await this.writer.run(`DROP TABLE IF EXISTS ${quoteIdent(String(r.schema_name))}.${quoteIdent(String(r.table_name))}`);
    }
  }

  async clearStagingFiles() {
    for (const name of await fsp.readdir(this.config.stagingDir)) {
      await fsp.rm(path.join(this.config.stagingDir, name), { force: true, recursive: true });
    }
  }

  /**
   * Run one read-only query. Throws a QueryRejected (HTTP 400) for anything but a single SELECT,
   * for SQL errors, and on timeout.
   */
  /**
   * One read-only SELECT (see the README's /query). With `explain: true` the SELECT is run under EXPLAIN
   * ANALYZE instead and the answer is DuckDB's profile: `{plan, totalSeconds}` (what `homelab bench olap`
   * times and shows beside PostgreSQL's plan). The statement is checked as a SELECT either way.
   */
  async query(sql, { explain = false } = {}) {
    const guard = checkReadOnlySql(sql);
    if (!guard.ok) throw new QueryRejected(guard.reason);
    const { timeoutMs, maxRows } = this.config.query;
    const conn = await this.instance.connect();
    let timer;
    let timedOut = false;
    try {
      // Unqualified names resolve in the mirrored schemas first: `select count(*) from incidents`.
      await conn.run(`SET search_path = ${quoteLiteral([...this.config.source.schemas, 'main'].join(','))}`);
      await conn.run('BEGIN TRANSACTION READ ONLY');
      let statement;
      try {
        const extracted = await conn.extractStatements(sql);
        if (extracted.count !== 1) throw new QueryRejected(`exactly one statement is allowed, got ${extracted.count}`);
        statement = await extracted.prepare(0);
      } catch (err) {
        if (err instanceof QueryRejected) throw err;
        throw new QueryRejected(err.message.split('\n')[0]);
      }
      if (statement.statementType !== StatementType.SELECT) throw new QueryRejected('only SELECT queries are allowed');
      timer = setTimeout(() => { timedOut = true; conn.interrupt(); }, timeoutMs);
      try {
        if (explain) {
          statement.destroySync?.();
          const result = await conn.runAndReadAll(`EXPLAIN ANALYZE ${sql}`);
          const plan = result.getRowObjects().map((r) => String(r.explain_value ?? '')).join('\n');
          const total = /Total Time:\s*([\d.]+)s/.exec(plan);
          return { plan, totalSeconds: total ? Number(total[1]) : null };
        }
        const reader = await statement.streamAndReadUntil(maxRows + 1);
        return readerToJson(reader, maxRows);
      } catch (err) {
        if (timedOut) throw new QueryRejected(`query cancelled after ${timeoutMs / 1000}s (HOMELAB_QUERY_TIMEOUT_SECONDS)`);
        throw new QueryRejected(err.message.split('\n')[0]);
      }
    } finally {
      clearTimeout(timer);
      await conn.run('ROLLBACK').catch(() => {});
      conn.closeSync();
    }
  }

  /** Stop: abort a running sync (its staging work is dropped), wait for it briefly, close DuckDB. */
  async close(waitMs) {
    this.closing = true;
    const running = this.inFlight;
    if (running) {
      this.activeSource?.end().catch(() => {});
      this.writer?.interrupt();
      await Promise.race([running, new Promise((resolve) => setTimeout(resolve, waitMs).unref())]);
    }
    this.writer?.closeSync();
    this.instance?.closeSync();
  }
}

export class QueryRejected extends Error {}

/**
 * What goes into a table's parquet file. Parquet's INTERVAL is unsigned (months, days, millis) and
 * DuckDB refuses to write a negative one, so intervals go out as DuckDB's text form, which
 * `CAST(x AS INTERVAL)` reads back. Everything else is written as is. Pure.
 */
export function parquetSelect(table) {
  const intervals = table.columns.filter((c) => c.duckType === 'INTERVAL').map((c) => quoteIdent(c.name));
  const replace = intervals.length > 0 ? ` REPLACE (${intervals.map((c) => `CAST(${c} AS VARCHAR) AS ${c}`).join(', ')})` : '';
  return `SELECT *${replace} FROM ${quoteIdent(table.schema)}.${quoteIdent(table.table)}`;
}

/** One line, no stack, nothing but the message and the SQLSTATE: safe to log and to return over HTTP. */
export function describeError(err) {
  const message = String(err?.message ?? err).split('\n')[0];
  return err?.code && /^[0-9A-Z]{5}$/.test(err.code) ? `${message} (SQLSTATE ${err.code})` : message;
}
