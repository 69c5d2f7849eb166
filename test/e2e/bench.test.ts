// The baselines on a real tier (`homelab bench pg|redis|olap`, issue 13): small sizes, real pgbench,
// redis-benchmark and DuckDB host. Each must measure something plausible, record it in the bench history so
// --compare works, and leave nothing behind: no homelab_bench database, no bench table in PostgreSQL or in
// the DuckDB mirror, Redis db 15 empty and no bench ACL user. Stack e2e-bench on slot 13 (172.42.0.0/24).
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadBenchHistory, writeBenchRun } from "../../bench/lib/history.ts";
import { OLAP_TABLE, runOlapBench, type OlapResult } from "../../bench/olap.mts";
import { BENCH_DATABASE, runPgBench } from "../../bench/pg.mts";
import { BENCH_DB, runRedisBench } from "../../bench/redis.mts";
import { controlFor, psqlOnNode, type NodeControl } from "../../drills/lib/nodes.ts";
import { redisCliOnNode } from "../../drills/lib/redis.ts";
import { nodeByRole } from "../../drills/lib/topology.ts";
import { e2eSpec, ensureImages, leftovers, startTier, type Tier } from "./harness.ts";

const STACK = "e2e-bench";
const SLOT = 13;
let tier: Tier;
let ctl: NodeControl;
let reportsDir: string;
const quiet = () => {};

describe("bench pg, redis, olap on a real tier", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(e2eSpec(STACK, { postgres: { replicas: 1 }, duckdb: { syncInterval: "1h" } }, SLOT));
    ctl = controlFor(tier.topology);
    reportsDir = await mkdtemp(path.join(tmpdir(), "bench-e2e-"));
  }, 600_000);

  afterAll(async () => {
    await tier?.teardown();
    if (reportsDir) await rm(reportsDir, { recursive: true, force: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 120_000);

  it("pg: pgbench TPS and latency percentiles from every logged transaction; the scratch database dropped", async () => {
    const run = await runPgBench({ topology: tier.topology, scale: 2, clients: 2, durationSeconds: 5, log: quiet });
    const m = run.metrics;
    console.log(`[e2e] bench pg: ${m.tps!.value} tps, p50 ${m.latencyP50!.value} ms, p95 ${m.latencyP95!.value} ms, p99 ${m.latencyP99!.value} ms (${run.evidence.loggedTransactions} transactions)`);
    expect(m.tps!.value).toBeGreaterThan(10);
    expect(m.latencyP50!.value).toBeGreaterThan(0);
    expect(m.latencyP50!.value).toBeLessThanOrEqual(m.latencyP95!.value);
    expect(m.latencyP95!.value).toBeLessThanOrEqual(m.latencyP99!.value);
    // Every transaction pgbench counted was logged, so the percentiles are over all of them.
    expect(run.evidence.loggedTransactions).toBe(run.evidence.transactions);
    expect(run.evidence.failedTransactions).toBe(0);
    await writeBenchRun(run, reportsDir, "md");
    const primary = nodeByRole(tier.topology, "postgres-primary");
    expect(await psqlOnNode(ctl, primary, `SELECT count(*) FROM pg_database WHERE datname = '${BENCH_DATABASE}'`)).toBe("0");
  }, 300_000);

  it("redis: GET/SET/INCR rates and latencies through `homelab bench redis --topology`, --compare with the run before; nothing left", async () => {
    const first = await runRedisBench({ topology: tier.topology, requests: 5_000, clients: 10, valueBytes: 64, log: quiet });
    expect(Object.keys(first.metrics).sort()).toEqual(["getP50", "getP99", "getRps", "incrP50", "incrP99", "incrRps", "setP50", "setP99", "setRps"]);
    for (const [k, v] of Object.entries(first.metrics)) expect(v.value, k).toBeGreaterThan(0);
    await writeBenchRun(first, reportsDir, "md");
    // The CLI, as a user runs it (topology from a file: the e2e tier is not a Pulumi stack).
    const topologyFile = path.join(reportsDir, "topology.json");
    await writeFile(topologyFile, JSON.stringify(tier.topology));
    const cli = await promisify(execFile)(process.execPath, ["--import", "tsx", "bin/homelab.mjs", "bench", "redis", "--topology", topologyFile, "--reports", reportsDir, "--requests", "5000", "--clients", "10", "--compare", "previous"], { cwd: path.resolve(import.meta.dirname, "../.."), timeout: 240_000 });
    console.log(`[e2e] bench redis:\n${cli.stdout}`);
    expect(cli.stdout).toContain(`compared with run ${first.runId}:`);
    expect(cli.stdout).toMatch(/ {2}getRps: \d+ -> \d+ req\/s \(\d+\.\d\dx (better|worse)\)/);
    const history = await loadBenchHistory(reportsDir);
    expect(history.filter((h) => h.bench === "redis")).toHaveLength(2);
    const redis = nodeByRole(tier.topology, "redis");
    const admin = { user: tier.topology.redis!.adminUser, passwordFile: tier.topology.redis!.passwordFiles[tier.topology.redis!.adminUser]! };
    expect(await redisCliOnNode(ctl, redis, admin, ["-n", String(BENCH_DB), "DBSIZE"])).toBe("0");
    expect(await redisCliOnNode(ctl, redis, admin, ["ACL", "USERS"])).not.toContain("homelab-bench");
    // The replica replicated the bench and its FLUSHDB: it holds nothing of it either.
    const replica = tier.topology.nodes.find((n) => n.role === "redis-replica");
    if (replica) expect(await redisCliOnNode(ctl, replica, admin, ["-n", String(BENCH_DB), "DBSIZE"])).toBe("0");
  }, 300_000);

  it("olap: the same answers from PostgreSQL and the DuckDB host, DuckDB ahead on aggregates, PostgreSQL on the point lookup; table gone from both", async () => {
    const run = await runOlapBench({ topology: tier.topology, rows: 200_000, runs: 3, log: (l) => console.log(`[e2e] ${l}`) });
    const results = run.evidence.results as OlapResult[];
    expect(results.map((r) => r.query)).toEqual(["point lookup", "revenue by category", "monthly revenue by region", "top customers", "distinct buyers, filtered"]);
    for (const r of results) {
      expect(r.sameResult.ok, r.query).toBe(true);
      expect(r.pgMs).toHaveLength(3);
      expect(r.duckdbMs).toHaveLength(3);
    }
    const byName = Object.fromEntries(results.map((r) => [r.query, r]));
    expect(byName["point lookup"]!.pgPlan).toMatch(/Index Scan using/);
    expect(byName["point lookup"]!.ratio).toBeLessThan(1);
    expect(byName["revenue by category"]!.pgPlan).toMatch(/Seq Scan on/);
    expect(byName["revenue by category"]!.duckdbPlan).toMatch(/HASH_GROUP_BY/);
    expect(byName["revenue by category"]!.ratio).toBeGreaterThan(1);
    expect(byName["top customers"]!.ratio).toBeGreaterThan(1);
    const primary = nodeByRole(tier.topology, "postgres-primary");
    expect(await psqlOnNode(ctl, primary, `SELECT to_regclass('public.${OLAP_TABLE}') IS NULL`, { database: tier.spec.postgres.database })).toBe("t");
    const duck = tier.topology.nodes.find((n) => n.role === "duckdb")!;
    const health = (await (await fetch(`http://${duck.published!.host}:${duck.published!.port}/healthz`)).json()) as { tables: Record<string, number> };
    expect(Object.keys(health.tables)).not.toContain(`public.${OLAP_TABLE}`);
    const w = await writeBenchRun(run, reportsDir, "md");
    expect(JSON.parse(await readFile(w.json, "utf8")).metrics.syncSeconds.value).toBeGreaterThan(0);
  }, 600_000);
});
