// `homelab bench pg --stack <s>`: a pgbench baseline on the stack's primary (issue 13 item 4). pgbench runs
// on the primary's node (its own client, over the local socket: the number is the server's, not the LAN's)
// against a scratch database `homelab_bench` made and dropped by the run: `pgbench -i -s <scale>`, then the
// built-in TPC-B-like script for --duration seconds with --clients clients, every transaction logged
// (--log) so the latency percentiles are computed from all of them, not from pgbench's average.
// The stack's settings stay as they are: that is what is measured (synchronous_commit and replication mode
// included, recorded in the evidence).
import type { Topology } from "../components/topology.ts";
import { controlFor, psqlOnNode, type NodeControl } from "../drills/lib/nodes.ts";
import { currentPrimary } from "../drills/lib/topology.ts";
import { newRunId } from "../drills/lib/report.ts";
import { percentile, type BenchRun } from "./lib/history.ts";

export const BENCH_DATABASE = "homelab_bench";
const MARK = "made by homelab bench pg; dropped when the run ends";
const PGBENCH = "/usr/lib/postgresql/17/bin/pgbench";

export interface PgBenchOptions {
  topology: Topology;
  scale: number;
  clients: number;
  durationSeconds: number;
  nodeControl?: NodeControl;
  log?: (line: string) => void;
}

export interface PgbenchSummary {
  tps: number;
  transactions: number;
  failed: number;
  latencyAverageMs: number | null;
}

/** The numbers of pgbench's closing summary (pure). */
export function parsePgbenchSummary(text: string): PgbenchSummary {
  const tps = /^tps = ([\d.]+) \(without initial connection time\)/m.exec(text);
  const tx = /^number of transactions actually processed: (\d+)/m.exec(text);
  if (!tps || !tx) throw new Error(`pgbench printed no summary: ${text.trim().split("\n").slice(-3).join(" | ") || "(nothing)"}`);
  const failed = /^number of failed transactions: (\d+)/m.exec(text);
  const avg = /^latency average = ([\d.]+) ms/m.exec(text);
  return { tps: Number(tps[1]), transactions: Number(tx[1]), failed: failed ? Number(failed[1]) : 0, latencyAverageMs: avg ? Number(avg[1]) : null };
}

/**
 * Per-transaction latencies (ms) from pgbench --log lines `client_id transaction_no time_us script_no
 * time_epoch time_us_frac [...]` (pure). Failed transactions (time "failed"/"skipped") are left out.
 */
export function pgbenchLatenciesMs(text: string): number[] {
  const out: number[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    const us = Number(f[2]);
    if (Number.isFinite(us)) out.push(us / 1000);
  }
  return out;
}

export async function runPgBench(o: PgBenchOptions): Promise<BenchRun> {
  const t = o.topology;
  const log = o.log ?? ((l: string) => console.log(l));
  const ctl = o.nodeControl ?? controlFor(t);
  const startedAt = new Date();
  const runId = newRunId();
  const primary = await currentPrimary(t, ctl);
  const sql = (q: string, timeoutMs?: number) => psqlOnNode(ctl, primary, q, { timeoutMs });
  const logDir = `/tmp/homelab-bench-${runId}`;
  const sh = (script: string, timeoutMs: number) => ctl.exec(primary, ["bash", "-c", script], { user: "postgres", allowFailure: true, timeoutMs });

  const existing = await sql(`SELECT coalesce((SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '${BENCH_DATABASE}'), 'absent')`);
  if (existing !== "absent" && existing !== MARK) throw new Error(`database ${BENCH_DATABASE} exists on ${primary.name} and was not made by homelab bench (comment: ${JSON.stringify(existing)}): refusing to drop it; rename it, or pick another primary`);
  if (existing === MARK) {
    log(`bench pg: dropping ${BENCH_DATABASE} left by an interrupted run`);
    await sql(`DROP DATABASE ${BENCH_DATABASE} WITH (FORCE)`, 60_000);
  }
  const settings = Object.fromEntries((await sql("SELECT name || '=' || setting FROM pg_settings WHERE name IN ('shared_buffers','work_mem','synchronous_commit','synchronous_standby_names','max_wal_size','checkpoint_timeout','effective_io_concurrency','wal_compression') ORDER BY name")).split("\n").map((l) => l.split("=") as [string, string]));
  const version = await sql("SHOW server_version");
  try {
    await sql(`CREATE DATABASE ${BENCH_DATABASE}`);
    await sql(`COMMENT ON DATABASE ${BENCH_DATABASE} IS '${MARK}'`);
    const initStart = Date.now();
    const init = await sh(`${PGBENCH} -i -s ${o.scale} -q ${BENCH_DATABASE} 2>&1`, 3_600_000);
    if (init.code !== 0) throw new Error(`pgbench -i failed (exit ${init.code}): ${init.stdout.trim().split("\n").slice(-2).join(" | ")}`);
    const initSeconds = (Date.now() - initStart) / 1000;
    const size = await sql(`SELECT pg_size_pretty(pg_database_size('${BENCH_DATABASE}'))`);
    log(`bench pg: pgbench -i -s ${o.scale} on ${primary.name}: ${size} in ${initSeconds.toFixed(1)} s`);
    await sql("CHECKPOINT", 300_000);

    log(`bench pg: ${o.clients} clients for ${o.durationSeconds} s (TPC-B-like, prepared statements)`);
    const run = await sh(`mkdir -p ${logDir} && cd ${logDir} && ${PGBENCH} -c ${o.clients} -j 1 -T ${o.durationSeconds} -M prepared --log --log-prefix=${logDir}/tx ${BENCH_DATABASE} 2>&1`, (o.durationSeconds + 600) * 1000);
    if (run.code !== 0) throw new Error(`pgbench failed (exit ${run.code}): ${run.stdout.trim().split("\n").slice(-3).join(" | ")}`);
    const summary = parsePgbenchSummary(run.stdout);
    const logs = await sh(`cat ${logDir}/tx*`, 120_000);
    const latencies = pgbenchLatenciesMs(logs.stdout);
    if (latencies.length === 0) throw new Error("pgbench logged no transaction");
    const p = (q: number) => Number(percentile(latencies, q).toFixed(3));
    return {
      bench: "pg",
      stack: t.stack,
      runId,
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      params: { scale: o.scale, clients: o.clients, durationSeconds: o.durationSeconds, node: primary.name },
      metrics: {
        tps: { value: Number(summary.tps.toFixed(1)), unit: "tps", better: "higher" },
        latencyP50: { value: p(50), unit: "ms", better: "lower" },
        latencyP95: { value: p(95), unit: "ms", better: "lower" },
        latencyP99: { value: p(99), unit: "ms", better: "lower" },
        initSeconds: { value: Number(initSeconds.toFixed(2)), unit: "s", better: "lower" },
      },
      evidence: { version, databaseSize: size, transactions: summary.transactions, failedTransactions: summary.failed, loggedTransactions: latencies.length, latencyAverageMs: summary.latencyAverageMs, settings, replicationMode: t.postgres.replicationMode, memoryBytes: primary.container.memoryBytes, cpus: primary.container.cpus },
    };
  } finally {
    await sh(`rm -rf ${logDir}`, 30_000).catch(() => undefined);
    await sql(`DROP DATABASE IF EXISTS ${BENCH_DATABASE} WITH (FORCE)`, 120_000).catch((e: Error) => log(`bench pg: could not drop ${BENCH_DATABASE}: ${e.message}`));
  }
}
