// Drill: a slow query found with pg_stat_statements and fixed with an index (docs/drills.md "query-tuning";
// rehearses runbooks/pg_stat_statements-tuning.md; the seeds name that runbook).
//
//   npx tsx drills/query-tuning.mts --stack local [--reports reports]
//
// An orders table of the drill's own (300,000 rows, 30,000 customers) gets an application workload as the
// app user: the lookup "a customer's 20 latest orders" (no index on customer_id: a sequential scan each
// time) among cheap primary-key lookups. The drill then does what the runbook says: reads
// pg_stat_statements (the calls and time this workload added, diffed against a snapshot taken before it, so
// the stack's own statistics are never reset), takes the query with the most total time, EXPLAIN ANALYZEs
// it (the plan says why it is slow), creates the index its WHERE and ORDER BY need (CREATE INDEX
// CONCURRENTLY: writes go on meanwhile), runs the same workload again and compares the same queryid's mean
// time. Checks: the planted query is the top one, its plan after uses the new index, and it got at least
// objectives.queryTuning.minSpeedup times faster. Twin: an index on the wrong column (created_at alone):
// the plan keeps its sequential scan, the speedup is ~1 and the drill FAILS saying which plan stayed.
import type { Topology } from "../components/topology.ts";
import { check, drillStopped, type Check } from "./lib/assert.ts";
import { appSessions, type AppSessions } from "./lib/app-session.ts";
import { DrillLog } from "./lib/log.ts";
import { formatSeconds, rtoPhases, type RtoBreakdown } from "./lib/measure.ts";
import { borrowExtension, controlFor, psqlOnNode, type BorrowedExtension, type NodeControl } from "./lib/nodes.ts";
import { type DrillReport, concludeDrill, newRunId } from "./lib/report.ts";
import { currentPrimary } from "./lib/topology.ts";
import { runIfMain } from "./lib/main.ts";

export interface QueryTuningDrillOptions {
  topology: Topology;
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  /** Fault twin: the index goes on a column the slow query does not filter by. */
  wrongIndex?: boolean;
  rows?: number;
  lookups?: number;
}

/** One pg_stat_statements row (the columns the drill reads). */
export interface StatementStats { queryid: string; query: string; calls: number; total_exec_time: number }

/** What a workload added to pg_stat_statements: `after` minus `before`, per queryid, most total time first (pure). */
export function statementDeltas(before: readonly StatementStats[], after: readonly StatementStats[]): (StatementStats & { mean_exec_time: number })[] {
  const prior = new Map(before.map((s) => [s.queryid, s]));
  return after
    .map((s) => {
      const b = prior.get(s.queryid);
      const calls = s.calls - (b?.calls ?? 0);
      const total = s.total_exec_time - (b?.total_exec_time ?? 0);
      return { ...s, calls, total_exec_time: total, mean_exec_time: calls > 0 ? total / calls : 0 };
    })
    .filter((s) => s.calls > 0)
    .sort((a, b) => b.total_exec_time - a.total_exec_time);
}

interface PlanNode { "Node Type": string; "Index Name"?: string; "Relation Name"?: string; Plans?: PlanNode[] }

/** Every scan of a plan: "Seq Scan on t", "Index Scan using i" (pure). */
export function planScans(plan: PlanNode): string[] {
  const out: string[] = [];
  const walk = (n: PlanNode) => {
    if (/Scan/.test(n["Node Type"])) out.push(`${n["Node Type"]}${n["Index Name"] ? ` using ${n["Index Name"]}` : n["Relation Name"] ? ` on ${n["Relation Name"]}` : ""}`);
    for (const c of n.Plans ?? []) walk(c);
  };
  walk(plan);
  return out;
}

export async function runQueryTuningDrill(opts: QueryTuningDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const ctl = opts.nodeControl ?? controlFor(t);
  const startedAtMs = Date.now();
  const runId = newRunId();
  const table = `drill_tuning_${runId.replace(/-/g, "_")}`;
  const index = `${table}_fix`;
  const rows = opts.rows ?? 300_000;
  const customers = Math.max(10, Math.floor(rows / 10));
  const lookups = opts.lookups ?? 150;
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { table, rows, customers, lookups, wrongIndex: Boolean(opts.wrongIndex) };
  const minSpeedup = t.objectives.queryTuning?.minSpeedup ?? NaN;
  const objectives = { minSpeedup };
  let rto: RtoBreakdown | null = null;
  let sessions: AppSessions | undefined;
  let extension: BorrowedExtension | undefined;
  log.info(`drill query-tuning on stack ${t.stack} (run ${runId}): objective the top query at least ${minSpeedup}x faster after the fix`);

  const primary = await currentPrimary(t, ctl).catch((e: Error) => {
    checks.push(check("drill ran to completion", false, e.message));
    return undefined;
  });
  const db = t.postgres.database;
  const sql = (q: string, timeoutMs = 120_000) => psqlOnNode(ctl, primary!, q, { database: db, timeoutMs });
  const statements = async () => JSON.parse(await sql(`SELECT coalesce(json_agg(json_build_object('queryid', queryid::text, 'query', query, 'calls', calls, 'total_exec_time', total_exec_time)), '[]') FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND query LIKE '%${table}%'`)) as StatementStats[];
  const explain = async (q: string) => (JSON.parse(await sql(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${q}`)) as [{ Plan: PlanNode & { "Shared Hit Blocks"?: number; "Shared Read Blocks"?: number }; "Execution Time": number }])[0];
  try {
    if (!primary) throw new Error("no primary");
    if (!t.objectives.queryTuning) throw new Error(`the topology of stack ${t.stack} has no objectives.queryTuning: re-run \`homelab up --stack ${t.stack}\` with this version`);
    extension = await log.step("preflight: pg_stat_statements loaded and in the app database", async () => {
      const preload = await sql("SHOW shared_preload_libraries");
      if (!preload.split(",").map((s) => s.trim()).includes("pg_stat_statements")) throw new Error(`pg_stat_statements is not in shared_preload_libraries (${preload || "empty"}): the stack's postgresql.conf must preload it`);
      return borrowExtension(ctl, primary, "pg_stat_statements", db);
    }, (e) => (e.created ? "extension created (dropped again at the end)" : "already there"));
    sessions = await appSessions(t, ctl, primary, "homelab-drill-tuning");
    const app = await sessions.open("app");
    await log.step(`load: ${rows} orders of ${customers} customers (as ${t.postgres.appUser})`, async () => {
      await app.query(`CREATE TABLE ${table} (id bigint PRIMARY KEY, customer_id integer NOT NULL, created_at timestamptz NOT NULL, status text NOT NULL, total numeric(10,2) NOT NULL)`);
      await app.query(`INSERT INTO ${table} SELECT g, 1 + (g::bigint * 7919) % ${customers}, now() - (g % 100000) * interval '1 minute', (ARRAY['new','paid','shipped','returned'])[1 + g % 4], (g % 50000) / 100.0 FROM generate_series(1, ${rows}) g`);
      await app.query(`ANALYZE ${table}`);
    });

    const slowSql = `SELECT id, total, status FROM ${table} WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20`;
    const fastSql = `SELECT status FROM ${table} WHERE id = $1`;
    const workload = async (label: string) => {
      const t0 = Date.now();
      for (let i = 0; i < lookups; i++) {
        await app.query({ name: `slow-${label}`, text: slowSql, values: [1 + ((i * 104729) % customers)] });
        for (let j = 0; j < 3; j++) await app.query({ name: `fast-${label}`, text: fastSql, values: [1 + ((i * 31 + j) % rows)] });
      }
      return (Date.now() - t0) / 1000;
    };

    // ---------------------------------------------------------------------------------------- workload + find
    const snap0 = await statements();
    const before = await log.step(`workload: ${lookups} customer lookups among ${lookups * 3} primary-key lookups`, () => workload("before"), (s) => formatSeconds(s));
    const detectAtMs = Date.now();
    const top = await log.step("find: pg_stat_statements, the workload's statements by total time", async () => statementDeltas(snap0, await statements()), (d) => d.slice(0, 3).map((s) => `${s.calls} calls, ${s.total_exec_time.toFixed(1)} ms total, ${s.mean_exec_time.toFixed(3)} ms mean: ${s.query.slice(0, 70)}`).join(" | "));
    evidence.workloadSeconds = { before };
    evidence.topBefore = top.slice(0, 3);
    const worst = top[0];
    const planted = worst !== undefined && /WHERE customer_id = \$1/.test(worst.query);
    checks.push(check("slow query found", planted, worst ? `top by total time: ${worst.query.slice(0, 90)} (${worst.calls} calls, ${worst.total_exec_time.toFixed(1)} ms, ${(worst.total_exec_time / Math.max(1e-9, top.reduce((a, s) => a + s.total_exec_time, 0)) * 100).toFixed(0)}% of the workload's time)` : "pg_stat_statements recorded none of the workload"));
    if (!worst || !planted) throw new Error("the workload's slow query is not the top of pg_stat_statements");
    const sample = `SELECT id, total, status FROM ${table} WHERE customer_id = 42 ORDER BY created_at DESC LIMIT 20`;
    const planBefore = await log.step("explain: EXPLAIN (ANALYZE, BUFFERS) before", () => explain(sample), (p) => `${planScans(p.Plan).join(", ")}; ${p["Execution Time"].toFixed(2)} ms; buffers hit ${p.Plan["Shared Hit Blocks"] ?? 0} read ${p.Plan["Shared Read Blocks"] ?? 0}`);

    // ---------------------------------------------------------------------------------------- fix
    const definition = opts.wrongIndex ? `(created_at)` : `(customer_id, created_at DESC)`;
    await log.step(`fix: CREATE INDEX CONCURRENTLY ${index} ON ${table} ${definition}`, async () => {
      await app.query(`CREATE INDEX CONCURRENTLY ${index} ON ${table} ${definition}`);
      await app.query(`ANALYZE ${table}`);
    });
    const fixedAtMs = Date.now();
    rto = rtoPhases([{ name: "index built", atMs: fixedAtMs }], detectAtMs);
    const planAfter = await log.step("explain: EXPLAIN (ANALYZE, BUFFERS) after", () => explain(sample), (p) => `${planScans(p.Plan).join(", ")}; ${p["Execution Time"].toFixed(2)} ms; buffers hit ${p.Plan["Shared Hit Blocks"] ?? 0} read ${p.Plan["Shared Read Blocks"] ?? 0}`);
    const snap1 = await statements();
    const after = await log.step("workload again, the same statements", () => workload("after"), (s) => formatSeconds(s));
    (evidence.workloadSeconds as Record<string, number>).after = after;
    const again = statementDeltas(snap1, await statements()).find((s) => s.queryid === worst.queryid);
    evidence.plans = { before: { scans: planScans(planBefore.Plan), executionMs: planBefore["Execution Time"] }, after: { scans: planScans(planAfter.Plan), executionMs: planAfter["Execution Time"] } };
    evidence.index = { name: index, definition };

    // ---------------------------------------------------------------------------------------- verify
    const scansAfter = planScans(planAfter.Plan);
    checks.push(check("the plan uses the new index", scansAfter.some((s) => s.includes(index)), `before: ${planScans(planBefore.Plan).join(", ")}; after: ${scansAfter.join(", ")}`));
    const speedup = again ? worst.mean_exec_time / again.mean_exec_time : 0;
    evidence.meanExecMs = { before: worst.mean_exec_time, after: again?.mean_exec_time ?? null, speedup };
    checks.push(check("the top query got faster", speedup >= minSpeedup,
      again ? `mean ${worst.mean_exec_time.toFixed(3)} ms -> ${again.mean_exec_time.toFixed(3)} ms over ${again.calls} calls: ${speedup.toFixed(1)}x (at least ${minSpeedup}x); EXPLAIN ANALYZE ${planBefore["Execution Time"].toFixed(2)} -> ${planAfter["Execution Time"].toFixed(2)} ms${speedup < minSpeedup ? `; the plan still reads ${scansAfter.join(", ")}: the index does not serve WHERE customer_id = $1 ORDER BY created_at` : ""}`
        : "the second workload's statement is missing from pg_stat_statements",
      { objective: minSpeedup, measured: Number(speedup.toFixed(2)), unit: "x" }));
  } catch (e) {
    checks.push(drillStopped(log, e));
  } finally {
    if (primary) {
      await log.step("cleanup: end the drill's sessions, drop its table", async () => {
        await sessions?.endAll();
        await sql(`DROP TABLE IF EXISTS ${table}`);
        await extension?.release();
      }).catch((e: Error) => checks.push(check("cleanup", false, e.message)));
    }
  }

  return concludeDrill({ drill: "query-tuning", stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo: null, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

// ---------------------------------------------------------------------------------------------------- main
// `npx tsx drills/query-tuning.mts --stack <stack> | --topology <file.json> [--reports <dir>]`: the flags and
// the runner of `homelab drill query-tuning`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "query-tuning");
