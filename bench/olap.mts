// `homelab bench olap --stack <s> [--rows 10000000] [--runs 5]`: the seed's "same dataset in Postgres + DuckDB"
// compare (issue 13 item 2). One generated table of sales events (timestamps over a year, categories, regions,
// customers, amounts) is loaded into the stack's primary as the app user, streamed to the replica, mirrored by
// the stack's DuckDB host (POST /sync), and the same SQL runs on both: a point lookup by primary key and four
// analytical aggregates. PostgreSQL is timed by EXPLAIN (ANALYZE, TIMING OFF) on the primary ("Execution
// Time"), DuckDB by EXPLAIN ANALYZE on the host (`/query?explain=analyze`, "Total Time"): the servers' own
// clocks, no network in either. Median of --runs runs after one warm-up, the ratio PG/DuckDB, and the plan of
// each that explains the gap (a row store's seq scan vs a columnar, vectorised scan). The results are checked
// equal on both sides, so a fast wrong answer is a failure. The table is dropped at the end (and the DuckDB
// host synced again, so its mirror drops it too) unless --keep.
import type { Topology, TopologyNode } from "../components/topology.ts";
import { controlFor, psqlOnNode, type NodeControl } from "../drills/lib/nodes.ts";
import { valueAxis, xmlEscape, newRunId } from "../drills/lib/report.ts";
import { currentPrimary, pgNodes } from "../drills/lib/topology.ts";
import { waitFor } from "../drills/lib/wait.ts";
import { median, type BenchMetric, type BenchRun } from "./lib/history.ts";

export const OLAP_TABLE = "bench_olap_events";

export interface OlapQuery {
  name: string;
  sql: string;
}

/** The same SQL on both engines (both accept every word of it). */
export function olapQueries(table: string, rows: number): OlapQuery[] {
  const id = Math.max(1, Math.floor(rows * 0.61803));
  return [
    { name: "point lookup", sql: `SELECT id, occurred_at, category, region, customer_id, amount FROM ${table} WHERE id = ${id}` },
    { name: "revenue by category", sql: `SELECT category, count(*) AS n, round(sum(amount), 2) AS total, round(avg(amount), 4) AS mean FROM ${table} GROUP BY category ORDER BY category` },
    { name: "monthly revenue by region", sql: `SELECT date_trunc('month', occurred_at::timestamp) AS month, region, round(sum(amount), 2) AS total FROM ${table} GROUP BY 1, 2 ORDER BY 1, 2` },
    { name: "top customers", sql: `SELECT customer_id, round(sum(amount), 2) AS total, count(*) AS n FROM ${table} GROUP BY customer_id ORDER BY total DESC, customer_id LIMIT 10` },
    { name: "distinct buyers, filtered", sql: `SELECT count(DISTINCT customer_id) AS buyers, round(sum(quantity * amount), 2) AS gross FROM ${table} WHERE category = 'books' AND occurred_at >= TIMESTAMPTZ '2026-07-01 00:00:00+00'` },
  ];
}

/** Deterministic rows (setseed): a year of events, 12 categories, 8 regions, 100k customers. */
export function olapLoadSql(table: string, rows: number): string[] {
  return [
    `CREATE TABLE ${table} (id bigint PRIMARY KEY, occurred_at timestamptz NOT NULL, category text NOT NULL, region text NOT NULL, customer_id integer NOT NULL, quantity integer NOT NULL, amount numeric(12,2) NOT NULL)`,
    "SELECT setseed(0.42)",
    `INSERT INTO ${table} SELECT g, TIMESTAMPTZ '2026-01-01 00:00:00+00' + floor(random() * 365 * 86400) * interval '1 second',
       (ARRAY['books','games','garden','grocery','health','home','kids','music','office','outdoor','pets','tools'])[1 + floor(random() * 12)::int],
       (ARRAY['north','south','east','west','centre','coast','hills','islands'])[1 + floor(random() * 8)::int],
       1 + floor(random() * 100000)::int, 1 + floor(random() * 5)::int, round((1 + random() * 499)::numeric, 2)
     FROM generate_series(1, ${rows}) g`,
    `ANALYZE ${table}`,
  ];
}

interface PgPlanNode { "Node Type": string; "Relation Name"?: string; "Index Name"?: string; "Workers Planned"?: number; Plans?: PgPlanNode[] }

/** "Sort <- HashAggregate <- Seq Scan on t" from an EXPLAIN (FORMAT JSON) plan (pure). */
export function pgPlanSummary(plan: PgPlanNode): string {
  const parts: string[] = [];
  const walk = (n: PgPlanNode) => {
    const on = n["Index Name"] ? ` using ${n["Index Name"]}` : n["Relation Name"] ? ` on ${n["Relation Name"]}` : "";
    const workers = n["Workers Planned"] ? ` (${n["Workers Planned"]} workers)` : "";
    parts.push(`${n["Node Type"]}${on}${workers}`);
    for (const c of n.Plans ?? []) walk(c);
  };
  walk(plan);
  return parts.join(" <- ");
}

/** The operators of a DuckDB EXPLAIN ANALYZE tree, top down, e.g. "ORDER_BY <- HASH_GROUP_BY <- TABLE_SCAN" (pure). */
export function duckdbPlanSummary(plan: string): string {
  const ops: string[] = [];
  for (const line of plan.split("\n")) {
    for (const cell of line.split(/[│┌┐└┘─┬┴├┤┼]+/)) {
      const word = cell.trim();
      if (/^[A-Z][A-Z_]{2,}$/.test(word) && !["QUERY", "PROFILING", "TOTAL", "EXPLAIN", "ANALYZE", "EXPLAIN_ANALYZE"].includes(word) && ops.at(-1) !== word) ops.push(word);
    }
  }
  return ops.join(" <- ");
}

/** Rows of both engines the same, numbers compared to within 1e-6 relative (pure). */
export function sameResults(a: readonly Record<string, unknown>[], b: readonly Record<string, unknown>[]): { ok: boolean; detail: string } {
  if (a.length !== b.length) return { ok: false, detail: `${a.length} rows vs ${b.length}` };
  const norm = (v: unknown) => (v === null || v === undefined ? null : typeof v === "number" ? v : /^-?\d+(\.\d+)?$/.test(String(v)) ? Number(v) : String(v).replace(/[T ]/, " ").replace(/(\.0+)?(Z|\+00(:00)?)?$/, ""));
  for (let i = 0; i < a.length; i++) {
    for (const key of Object.keys(a[i]!)) {
      const x = norm(a[i]![key]);
      const y = norm(b[i]![key]);
      const same = typeof x === "number" && typeof y === "number" ? Math.abs(x - y) <= 1e-6 * Math.max(1, Math.abs(x)) : x === y;
      if (!same) return { ok: false, detail: `row ${i + 1} ${key}: ${JSON.stringify(a[i]![key])} vs ${JSON.stringify(b[i]![key])}` };
    }
  }
  return { ok: true, detail: `${a.length} rows equal` };
}

export interface OlapResult {
  query: string;
  pgMs: number[];
  duckdbMs: number[];
  pgMedianMs: number;
  duckdbMedianMs: number;
  /** PostgreSQL's median over DuckDB's: > 1 means DuckDB is that many times faster. */
  ratio: number;
  pgPlan: string;
  duckdbPlan: string;
  sameResult: { ok: boolean; detail: string };
}

export interface OlapBenchOptions {
  topology: Topology;
  rows: number;
  runs: number;
  keep?: boolean;
  nodeControl?: NodeControl;
  log?: (line: string) => void;
}

async function duckdb(base: string, sql: string, explain: boolean): Promise<Record<string, unknown>> {
  const r = await fetch(`${base}/query?sql=${encodeURIComponent(sql)}${explain ? "&explain=analyze" : ""}`, { signal: AbortSignal.timeout(300_000) });
  const body = (await r.json()) as Record<string, unknown>;
  if (!r.ok) throw new Error(`DuckDB host: ${String(body.error ?? r.status)} (query: ${sql.slice(0, 80)})`);
  if (explain && typeof body.plan !== "string") throw new Error("the DuckDB host answered rows, not a profile, to /query?explain=analyze: its image predates it; run `homelab up` for the stack with this version");
  return body;
}

async function syncDuckdb(base: string, timeoutMs: number): Promise<{ durationMs: number; tables: Record<string, number> }> {
  const r = await fetch(`${base}/sync`, { method: "POST", signal: AbortSignal.timeout(timeoutMs) });
  const body = (await r.json()) as { ok: boolean; durationMs: number; tables: Record<string, number>; error?: string };
  if (!body.ok) throw new Error(`DuckDB host sync failed: ${body.error ?? r.status}`);
  return body;
}

export async function runOlapBench(o: OlapBenchOptions): Promise<BenchRun> {
  const t = o.topology;
  const log = o.log ?? ((l: string) => console.log(l));
  const ctl = o.nodeControl ?? controlFor(t);
  const duck: TopologyNode | undefined = t.nodes.find((n) => n.role === "duckdb");
  if (!duck?.published) throw new Error(`stack ${t.stack} has no DuckDB host (duckdb.enabled: false): bench olap compares PostgreSQL with it`);
  const base = `http://${duck.published.host}:${duck.published.port}`;
  const schemas = (duck.container.env.HOMELAB_SOURCE_SCHEMAS ?? "public").split(",").map((s) => s.trim());
  const schema = schemas.includes("public") ? "public" : schemas[0]!;
  const table = `${schema}.${OLAP_TABLE}`;
  const startedAt = new Date();
  const runId = newRunId();
  const primary = await currentPrimary(t, ctl);
  const db = t.postgres.database;
  // UTC like the DuckDB host, so timestamps (and date_trunc of them) read the same on both.
  const sql = (q: string | string[], timeoutMs = 60_000) => psqlOnNode(ctl, primary, ["SET TimeZone = 'UTC'", ...(typeof q === "string" ? [q] : q)], { database: db, timeoutMs });
  const asApp = (statements: string[], timeoutMs: number) => sql([`SET ROLE ${t.postgres.appUser}`, ...statements], timeoutMs);

  if ((await sql(`SELECT to_regclass('${table}') IS NOT NULL`)) === "t") {
    throw new Error(`${table} already exists in database ${db}: a bench olap run was interrupted, or it is yours; drop it (\`DROP TABLE ${table}\`) and run again`);
  }
  const evidence: Record<string, unknown> = { table, duckdbNode: duck.name, pgNode: primary.name };
  try {
    const loadStart = Date.now();
    log(`bench olap: loading ${o.rows.toLocaleString("en")} rows into ${table} on ${primary.name} (as ${t.postgres.appUser})`);
    await asApp(olapLoadSql(table, o.rows), 6 * 3_600_000);
    const loadSeconds = (Date.now() - loadStart) / 1000;
    const pgSize = await sql(`SELECT pg_size_pretty(pg_total_relation_size('${table}'))`);
    log(`bench olap: loaded in ${loadSeconds.toFixed(1)} s (${pgSize} with its primary key)`);

    // The DuckDB host mirrors from a replica: wait until every replica has replayed the load.
    const lsn = await sql("SELECT pg_current_wal_lsn()");
    const replicas = pgNodes(t).filter((n) => n.name !== primary.name);
    const replayStart = Date.now();
    for (const r of replicas) {
      await waitFor(`replica ${r.name} replayed the load (${lsn})`, async () => (await psqlOnNode(ctl, r, `SELECT coalesce(pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn, false)`)) === "t", { timeoutMs: Math.max(0, 3_600_000 - (Date.now() - replayStart)) });
    }
    const replaySeconds = (Date.now() - replayStart) / 1000;
    const sync = await syncDuckdb(base, 6 * 3_600_000);
    const mirrored = sync.tables[table] ?? sync.tables[`${schema}.${OLAP_TABLE}`];
    if (mirrored !== o.rows) throw new Error(`the DuckDB host mirrored ${mirrored ?? "no"} rows of ${table}, expected ${o.rows}`);
    log(`bench olap: replicas replayed it ${replaySeconds.toFixed(1)} s after the load; DuckDB host synced it in ${(sync.durationMs / 1000).toFixed(1)} s`);
    Object.assign(evidence, { loadSeconds, pgSize, replaySeconds, syncSeconds: sync.durationMs / 1000, settings: await sql("SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','work_mem','max_parallel_workers_per_gather','effective_cache_size','jit')"), pgMemoryBytes: primary.container.memoryBytes, duckdbMemoryBytes: duck.container.memoryBytes, duckdbMemoryLimit: duck.container.env.HOMELAB_DUCKDB_MEMORY_LIMIT });

    const results: OlapResult[] = [];
    for (const q of olapQueries(table, o.rows)) {
      const pgJson = async (opts: string) => JSON.parse(await sql(`EXPLAIN (${opts}, FORMAT JSON) ${q.sql}`, 600_000)) as [{ Plan: PgPlanNode; "Execution Time": number }];
      // Warm-up (and the plans, with per-node timing), then the timed runs with TIMING OFF.
      const [full] = await pgJson("ANALYZE, BUFFERS");
      const duckProfile = (await duckdb(base, q.sql, true)) as { plan: string; totalSeconds: number | null };
      const pgMs: number[] = [];
      const duckdbMs: number[] = [];
      for (let i = 0; i < o.runs; i++) {
        pgMs.push((await pgJson("ANALYZE, TIMING OFF"))[0]["Execution Time"]);
        const d = (await duckdb(base, q.sql, true)) as { totalSeconds: number | null };
        if (d.totalSeconds === null) throw new Error("the DuckDB host's profile has no Total Time");
        duckdbMs.push(d.totalSeconds * 1000);
      }
      const pgRows = JSON.parse(await sql(`SELECT coalesce(json_agg(r), '[]') FROM (${q.sql}) r`, 600_000)) as Record<string, unknown>[];
      const duckRows = (await duckdb(base, q.sql, false)).rows as Record<string, unknown>[];
      const r: OlapResult = {
        query: q.name,
        pgMs,
        duckdbMs,
        pgMedianMs: median(pgMs),
        duckdbMedianMs: median(duckdbMs),
        ratio: median(pgMs) / median(duckdbMs),
        pgPlan: pgPlanSummary(full.Plan),
        duckdbPlan: duckdbPlanSummary(duckProfile.plan),
        sameResult: sameResults(pgRows, duckRows),
      };
      results.push(r);
      log(`bench olap: ${q.name}: PostgreSQL ${r.pgMedianMs.toFixed(1)} ms, DuckDB ${r.duckdbMedianMs.toFixed(1)} ms, ratio ${r.ratio.toFixed(1)}x; ${r.sameResult.ok ? "same result" : `RESULTS DIFFER: ${r.sameResult.detail}`}`);
    }
    evidence.results = results;
    const differ = results.filter((r) => !r.sameResult.ok);
    if (differ.length > 0) throw new OlapMismatch(`PostgreSQL and DuckDB answered differently: ${differ.map((r) => `${r.query} (${r.sameResult.detail})`).join("; ")}`, evidence);
    const metrics: Record<string, BenchMetric> = {};
    for (const r of results) {
      const key = r.query.replace(/[^a-z]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ""));
      metrics[`${key}PgMs`] = { value: Number(r.pgMedianMs.toFixed(3)), unit: "ms", better: "lower" };
      metrics[`${key}DuckdbMs`] = { value: Number(r.duckdbMedianMs.toFixed(3)), unit: "ms", better: "lower" };
    }
    metrics.syncSeconds = { value: Number((sync.durationMs / 1000).toFixed(2)), unit: "s", better: "lower" };
    return {
      bench: "olap",
      stack: t.stack,
      runId,
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      params: { rows: o.rows, runs: o.runs },
      metrics,
      evidence,
    };
  } finally {
    if (!o.keep) {
      await sql(`DROP TABLE IF EXISTS ${table}`, 300_000).catch((e: Error) => log(`bench olap: could not drop ${table}: ${e.message}`));
      // The mirror drops a table the source no longer has at its next sync: do it now, not in syncInterval.
      await syncDuckdb(base, 600_000).catch((e: Error) => log(`bench olap: the DuckDB host keeps its copy of ${table} until its next sync (${e.message})`));
    }
  }
}

export class OlapMismatch extends Error {
  constructor(message: string, readonly evidence: Record<string, unknown>) {
    super(message);
  }
}

/** The Markdown of a run: the comparison table with plans. */
export function renderOlapMarkdown(run: BenchRun): string {
  const results = (run.evidence.results ?? []) as OlapResult[];
  const e = run.evidence as { table?: string; loadSeconds?: number; pgSize?: string; syncSeconds?: number; settings?: string; duckdbMemoryLimit?: string };
  return [
    `# bench olap: PostgreSQL vs DuckDB, ${Number(run.params.rows).toLocaleString("en")} rows`,
    "",
    `Stack \`${run.stack}\`, run \`${run.runId}\`, ${run.started_at}. Table \`${e.table}\`: ${e.pgSize} in PostgreSQL, loaded in ${e.loadSeconds?.toFixed(1)} s; DuckDB host synced it in ${e.syncSeconds?.toFixed(1)} s (memory_limit ${e.duckdbMemoryLimit ?? "?"}). Median of ${run.params.runs} runs after a warm-up; PostgreSQL: EXPLAIN (ANALYZE, TIMING OFF) execution time on the primary (${e.settings ?? ""}); DuckDB: EXPLAIN ANALYZE total time on the host.`,
    "",
    "| query | PostgreSQL | DuckDB | PG / DuckDB | PostgreSQL plan | DuckDB plan |",
    "| --- | --- | --- | --- | --- | --- |",
    ...results.map((r) => `| ${r.query} | ${r.pgMedianMs.toFixed(1)} ms | ${r.duckdbMedianMs.toFixed(1)} ms | ${r.ratio.toFixed(1)}x | ${r.pgPlan} | ${r.duckdbPlan} |`),
    "",
    "A ratio above 1: DuckDB answered that many times faster. PostgreSQL reads whole rows, one tuple at a time, from its heap (or one row through the primary key's B-tree: the point lookup); DuckDB reads only the columns a query names, compressed, in vectors of 2048 values.",
    "",
    "![PostgreSQL vs DuckDB](chart.svg)",
    "",
  ].join("\n");
}

/** Bars per query, PostgreSQL beside DuckDB, on valueAxis (log when they differ by decades) (pure). */
export function renderOlapChartSvg(results: readonly OlapResult[]): string {
  const W = 760;
  const H = 320;
  const left = 60;
  const bottom = 60;
  const top = 30;
  const axis = valueAxis(results.flatMap((r) => [r.pgMedianMs, r.duckdbMedianMs]));
  const plotH = H - top - bottom;
  const group = (W - left - 20) / Math.max(1, results.length);
  const y = (v: number) => top + plotH * (1 - axis.fraction(v));
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`, `<text x="${left}" y="18" font-size="13">median ms per query (${axis.kind} scale): PostgreSQL vs DuckDB</text>`];
  for (const tick of axis.ticks) parts.push(`<line x1="${left}" x2="${W - 20}" y1="${y(tick)}" y2="${y(tick)}" stroke="#ddd"/><text x="${left - 6}" y="${y(tick) + 4}" text-anchor="end">${tick}</text>`);
  results.forEach((r, i) => {
    const x = left + i * group + group * 0.15;
    const w = group * 0.33;
    for (const [j, v, color] of [[0, r.pgMedianMs, "#336791"], [1, r.duckdbMedianMs, "#e0a526"]] as const) {
      parts.push(`<rect x="${x + j * w}" y="${y(v)}" width="${w - 2}" height="${Math.max(0, H - bottom - y(v))}" fill="${color}"><title>${xmlEscape(`${r.query}: ${j ? "DuckDB" : "PostgreSQL"} ${v.toFixed(1)} ms`)}</title></rect>`);
    }
    parts.push(`<text x="${x + w}" y="${H - bottom + 14}" text-anchor="middle">${xmlEscape(r.query)}</text><text x="${x + w}" y="${H - bottom + 28}" text-anchor="middle">${r.ratio.toFixed(1)}x</text>`);
  });
  parts.push(`<rect x="${W - 200}" y="8" width="10" height="10" fill="#336791"/><text x="${W - 186}" y="17">PostgreSQL</text><rect x="${W - 110}" y="8" width="10" height="10" fill="#e0a526"/><text x="${W - 96}" y="17">DuckDB</text>`, "</svg>");
  return `${parts.join("\n")}\n`;
}
