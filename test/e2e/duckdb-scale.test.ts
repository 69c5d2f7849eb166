// The DuckDB host at size (issue 13): a table larger than the host's node, loaded into the primary, reaches
// the replica and is mirrored by the DuckDB host on its default memory (256MiB, memory_limit planned by
// components/duckdb/tune.ts) with no restart, no OOM kill, and the rows DuckDB holds equal to the source's.
// Before the planner, DuckDB's memory_limit was the node's whole limit and such a sync was OOM-killed at
// every start (a crash loop). Stack e2e-duckdbscale on slot 8 (172.37.0.0/24). The acceptance size is 6M
// rows: HOMELAB_E2E_DUCKDB_ROWS=6000000 npx vitest run test/e2e/duckdb-scale.test.ts (CI runs 3M, ~1.4x
// the node's memory in PostgreSQL).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../../components/platform/docker-node.ts";
import { e2eSpec, ensureImages, leftovers, startTier, withMemorySampling, type Tier } from "./harness.ts";

const ROWS = Number(process.env.HOMELAB_E2E_DUCKDB_ROWS ?? "3000000");
const STACK = "e2e-duckdbscale";
const SLOT = 8;
let tier: Tier;
let duckdbUrl: string;
const mib = (b: number) => `${(b / 1024 ** 2).toFixed(0)} MiB`;

interface Health { ok: boolean; syncing: boolean; lastAttemptAt: string | null; lastError: string | null; lastDurationMs: number | null; tables: Record<string, number> }
const health = async () => (await (await fetch(`${duckdbUrl}/healthz`)).json()) as Health;

describe(`DuckDB host mirrors a ${ROWS}-row table larger than its node`, () => {
  beforeAll(async () => {
    ensureImages();
    // The node's default memory (the schema's 256MiB, not the e2e specs' usual override) and no scheduled
    // sync during the load: the test starts the sync itself.
    tier = await startTier(e2eSpec(STACK, { redis: { enabled: false }, duckdb: { syncInterval: "1h", node: { memory: "256MiB" } } }, SLOT));
    duckdbUrl = `http://127.0.0.1:${tier.spec.docker.basePort + 30}`;
  }, 900_000);

  afterAll(async () => {
    await tier?.teardown();
    expect(await leftovers(STACK)).toEqual([]);
  }, 300_000);

  it("syncs it with no restart, DuckDB's memory_limit below the node's, and every row", async () => {
    const db = tier.spec.postgres.database;
    const duckdb = tier.plan.nodes.find((n) => n.role === "duckdb")!;
    expect(duckdb.memoryBytes).toBe(256 * 1024 ** 2);
    expect(duckdb.env.HOMELAB_DUCKDB_MEMORY_LIMIT).toBe("72MiB");
    const t0 = Date.now();
    // Realistic columns: a timestamp, a category, an amount, a customer id and free text.
    await tier.sql("pg-1", `CREATE TABLE orders AS SELECT g AS id, timestamptz '2026-01-01' + g * interval '7 seconds' AS placed_at,
      (ARRAY['books','games','garden','kitchen','music','toys','tools','travel'])[1 + g % 8] AS category,
      round((random() * 500)::numeric, 2) AS amount, (g::bigint * 7919) % 100000 AS customer_id,
      md5(g::text) || ' ' || md5((g + 1)::text) AS note
      FROM generate_series(1, ${ROWS}) g`, db);
    const [[bytes]] = (await tier.sql("pg-1", "SELECT pg_total_relation_size('orders')", db)) as [[string]];
    const loadSeconds = (Date.now() - t0) / 1000;
    console.log(`[e2e] orders: ${ROWS} rows, ${mib(Number(bytes))} in PostgreSQL, loaded in ${loadSeconds.toFixed(1)} s; DuckDB node ${mib(duckdb.memoryBytes!)}, memory_limit ${duckdb.env.HOMELAB_DUCKDB_MEMORY_LIMIT}`);
    expect(Number(bytes)).toBeGreaterThan(duckdb.memoryBytes!);
    // The replica has it (the DuckDB host reads the replica).
    await tier.sql("pg-1", "SELECT pg_switch_wal()");
    for (let i = 0; ; i++) {
      const rows = await tier.sql("pg-2", "SELECT count(*) FROM orders", db).catch(() => [["0"]]);
      if (Number(rows[0]?.[0]) === ROWS) break;
      if (i > 120) throw new Error("the replica did not get the table in 120 s");
      await new Promise((r) => setTimeout(r, 1000));
    }

    const startedAt = new Date().toISOString();
    const { result, idleBytes, peakBytes, samples } = await withMemorySampling(duckdb.hostname, async () => {
      // Started over HTTP, followed on /healthz: a sync may outlast fetch's 300 s wait for headers.
      void fetch(`${duckdbUrl}/sync`, { method: "POST" }).catch(() => {});
      for (;;) {
        await new Promise((r) => setTimeout(r, 1000));
        const h = await health().catch(() => undefined);
        if (h && !h.syncing && h.lastAttemptAt !== null && h.lastAttemptAt >= startedAt) return h;
      }
    }, 200);
    const syncSeconds = (result.lastDurationMs ?? NaN) / 1000;
    const inspect = JSON.parse((await docker(["inspect", duckdb.hostname])).stdout) as { RestartCount: number; State: { OOMKilled: boolean; Running: boolean } }[];
    console.log(`[e2e] DuckDB sync of ${ROWS} rows: ${syncSeconds.toFixed(1)} s, memory ${mib(idleBytes)} idle, peak ${mib(peakBytes)} of ${mib(duckdb.memoryBytes!)} (${samples} samples); restarts ${inspect[0]?.RestartCount}, OOMKilled ${inspect[0]?.State.OOMKilled}`);
    expect(result.lastError).toBeNull();
    expect(result.ok).toBe(true);
    expect(result.tables["public.orders"]).toBe(ROWS);
    expect(inspect[0]).toMatchObject({ RestartCount: 0, State: { OOMKilled: false, Running: true } });
    expect(peakBytes).toBeLessThan(duckdb.memoryBytes!);
    expect(samples).toBeGreaterThan(2);
    // Served from the mirror: the analytical answer equals PostgreSQL's.
    const sql = "SELECT category, count(*) AS n, sum(amount) AS total FROM orders GROUP BY category ORDER BY category";
    const fromDuck = (await (await fetch(`${duckdbUrl}/query?sql=${encodeURIComponent(sql)}`)).json()) as { rows: { category: string; n: number | string; total: number | string }[] };
    const fromPg = await tier.sql("pg-2", sql, db);
    expect(fromDuck.rows.map((r) => [r.category, String(r.n), Number(r.total).toFixed(2)])).toEqual(fromPg.map(([c, n, t]) => [c, n, Number(t).toFixed(2)]));
  }, 1_800_000);
});
