// The whole tier on a real Docker engine: PostgreSQL 17 primary + sync replica, pgBackRest repository over
// TLS, Redis 7, DuckDB. Every assertion is against the running services.
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatBytes } from "../../components/config/index.ts";
import { docker, sleep } from "../../components/platform/docker-node.ts";
import { DockerNodeControl } from "../../drills/lib/nodes.ts";
import { e2eSpec, ensureImages, leftovers, startTier, tierMemoryBytes, type Tier } from "./harness.ts";

const STACK = "e2e-tier";
let tier: Tier;

function client(node: string, opts: { user?: string; password?: string; database?: string } = {}): pg.Client {
  return new pg.Client({
    host: "127.0.0.1",
    port: tier.port(node),
    user: opts.user ?? tier.spec.postgres.appUser,
    password: opts.password ?? tier.secrets.postgresAppPassword,
    database: opts.database ?? tier.spec.postgres.database,
    connectionTimeoutMillis: 5000,
  });
}

async function withClient<T>(node: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = client(node);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function pgbackrestInfo(): Promise<Array<{ backup: Array<{ type: string; label: string }>; archive: Array<{ min: string | null; max: string | null }> }>> {
  const r = await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "--output=json", "info"], { user: "postgres" });
  return JSON.parse(r.stdout);
}

describe("data tier on a real Docker engine", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(e2eSpec(STACK, { postgres: { replicationMode: "sync" } }));
    const mem = await tierMemoryBytes(STACK);
    console.log(`[e2e] tier memory in use once healthy: ${formatBytes(mem.total)} (${Object.entries(mem.perContainer).map(([n, b]) => `${n.replace(`homelab-${STACK}-`, "")} ${formatBytes(b)}`).join(", ")})`);
  }, 900_000);

  afterAll(async () => {
    await tier?.teardown();
    expect(await leftovers(STACK)).toEqual([]);
  }, 120_000);

  it("primary accepts writes", async () => {
    const rows = await withClient("pg-1", async (c) => {
      await c.query("CREATE TABLE IF NOT EXISTS e2e_probe (id bigint PRIMARY KEY, note text NOT NULL)");
      await c.query("INSERT INTO e2e_probe VALUES (1, 'hello') ON CONFLICT DO NOTHING");
      return (await c.query("SELECT note FROM e2e_probe WHERE id = 1")).rows;
    });
    expect(rows).toEqual([{ note: "hello" }]);
  });

  it("replica streams, and replay lag drops to 0 bytes after a write burst", async () => {
    // pg_stat_replication details are visible to superusers / pg_read_all_stats only: ask as postgres.
    expect(await tier.sql("pg-1", "SELECT application_name, state, sync_state FROM pg_stat_replication")).toEqual([["pg_2", "streaming", "quorum"]]);
    await withClient("pg-1", async (c) => {
      await c.query("CREATE TABLE IF NOT EXISTS e2e_burst (id bigint PRIMARY KEY, payload text NOT NULL)");
      await c.query("INSERT INTO e2e_burst SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g ON CONFLICT DO NOTHING");
    });
    let lag = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 100 && lag !== 0; i++) {
      const rows = await tier.sql("pg-1", "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint FROM pg_stat_replication WHERE application_name = 'pg_2'");
      lag = Number(rows[0]?.[0]);
      if (lag !== 0) await sleep(100);
    }
    expect(lag).toBe(0);
    const count = await withClient("pg-2", async (c) => (await c.query("SELECT count(*)::int AS n FROM e2e_burst")).rows[0].n);
    expect(count).toBe(20000);
  });

  it("in sync mode a commit waits for the replica", async () => {
    const replica = tier.plan.nodes.find((n) => n.name === "pg-2")!.hostname;
    const writer = client("pg-1");
    const watcher = client("pg-1");
    await writer.connect();
    await watcher.connect();
    try {
      await docker(["pause", replica]);
      let committed = false;
      const commit = writer.query("INSERT INTO e2e_probe VALUES (2, 'waits for the replica')").then(() => {
        committed = true;
      });
      await sleep(1500);
      const waiting = await watcher.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'SyncRep'");
      expect(committed).toBe(false);
      expect(waiting.rows[0].n).toBe(1);
      await docker(["unpause", replica]);
      await commit;
      expect(committed).toBe(true);
    } finally {
      await docker(["unpause", replica], { allowFailure: true });
      await writer.end();
      await watcher.end();
    }
  });

  it("pgbackrest check passes and info shows a full backup and archived WAL", async () => {
    const check = await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "check"], { user: "postgres", allowFailure: true });
    expect(check.code, check.stderr + check.stdout).toBe(0);
    const [stanza] = await pgbackrestInfo();
    expect(stanza?.backup.some((b) => b.type === "full")).toBe(true);
    expect(stanza?.archive[0]?.max).toMatch(/^[0-9A-F]{24}$/);
  });

  it("a forced WAL switch reaches the repository", async () => {
    await withClient("pg-1", (c) => c.query("INSERT INTO e2e_probe VALUES (3, 'before the switch') ON CONFLICT DO NOTHING"));
    const segment = (await tier.sql("pg-1", "SELECT pg_walfile_name(pg_switch_wal())"))[0]?.[0] ?? "";
    expect(segment).toMatch(/^[0-9A-F]{24}$/);
    let archived = "";
    for (let i = 0; i < 60 && archived < segment; i++) {
      archived = (await pgbackrestInfo())[0]?.archive[0]?.max ?? "";
      if (archived < segment) await sleep(500);
    }
    expect(archived >= segment, `segment ${segment} not in the repo (newest archived: ${archived})`).toBe(true);
  });

  it("pg_hba refuses a client from a network that is not allowed, and a wrong password", async () => {
    const ip = tier.plan.network.subnet.replace(/\.0\/\d+$/, ".200");
    const primary = tier.plan.nodes.find((n) => n.name === "pg-1")!;
    const r = await docker(
      ["run", "--rm", "--network", tier.plan.network.name, "--ip", ip, "--label", `dev.homelab-data.stack=${STACK}`, "--entrypoint", "psql", primary.image.name, "-w", "-h", primary.hostname, "-U", tier.spec.postgres.appUser, "-d", tier.spec.postgres.database, "-c", "select 1"],
      { allowFailure: true },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/pg_hba\.conf rejects connection for host "172\.\d+\.0\.200"/);

    const wrong = client("pg-1", { password: "not-the-password" });
    await expect(wrong.connect()).rejects.toMatchObject({ code: "28P01" });
  });

  it("Redis requires auth and keeps acknowledged writes across kill -9 (AOF everysec)", async () => {
    const port = tier.port("redis");
    // The default user is off: an unauthenticated client gets NOAUTH; a wrong password WRONGPASS.
    const anonymous = await tier.exec("redis", ["redis-cli", "SET", "app:x", "1"], { allowFailure: true });
    expect(anonymous.stdout + anonymous.stderr).toMatch(/NOAUTH/);
    const wrong = await tier.exec("redis", ["redis-cli", "--user", "app", "--pass", "not-the-password", "--no-auth-warning", "SET", "app:x", "1"], { allowFailure: true });
    expect(wrong.stdout + wrong.stderr).toMatch(/WRONGPASS|NOAUTH/);

    // The app user may not run INFO (least privilege), so no ready check.
    const app = new Redis({ host: "127.0.0.1", port, username: "app", password: tier.secrets.redisAppPassword, maxRetriesPerRequest: 1, enableReadyCheck: false });
    let acknowledged = 0;
    for (let i = 0; i < 2000; i++) acknowledged = await app.incr("app:counter");
    await app.xadd("app:events", "*", "n", String(acknowledged));
    app.disconnect();
    await sleep(1500); // appendfsync everysec: acknowledged writes older than ~1 s are on disk

    const redis = tier.plan.nodes.find((n) => n.name === "redis")!.hostname;
    await docker(["kill", "--signal", "KILL", redis]);
    await docker(["start", redis]);
    await new DockerNodeControl().waitHealthy({ name: "redis", handle: { kind: "docker", container: redis }, dataVolumes: [] }, 30_000);
    const again = new Redis({ host: "127.0.0.1", port, username: "app", password: tier.secrets.redisAppPassword, maxRetriesPerRequest: 3, enableReadyCheck: false });
    try {
      expect(Number(await again.get("app:counter"))).toBe(acknowledged);
      expect(await again.xlen("app:events")).toBe(1);
    } finally {
      again.disconnect();
    }
  });

  it("DuckDB host holds the replica's tables and answers an aggregate query", async () => {
    await withClient("pg-1", async (c) => {
      await c.query("CREATE TABLE IF NOT EXISTS e2e_sales (id bigint PRIMARY KEY, region text NOT NULL, amount numeric(10,2) NOT NULL)");
      await c.query("INSERT INTO e2e_sales SELECT g, CASE WHEN g % 2 = 0 THEN 'north' ELSE 'south' END, g * 1.5 FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING");
    });
    const expected = await withClient("pg-2", async (c) => {
      for (let i = 0; i < 50; i++) {
        const r = await c.query("SELECT to_regclass('public.e2e_sales') IS NOT NULL AS present");
        if (r.rows[0].present && (await c.query("SELECT count(*)::int AS n FROM e2e_sales")).rows[0].n === 1000) break;
        await sleep(100);
      }
      return (await c.query("SELECT count(*)::int AS n, sum(amount)::float8 AS total FROM e2e_sales")).rows[0];
    });
    const base = `http://127.0.0.1:${tier.port("duckdb")}`;
    const sync = await fetch(`${base}/sync`, { method: "POST" });
    expect(sync.status).toBe(200);
    const q = await fetch(`${base}/query?sql=${encodeURIComponent("SELECT count(*)::INTEGER AS n, sum(amount)::DOUBLE AS total FROM e2e_sales")}`);
    expect(q.status).toBe(200);
    const body = (await q.json()) as { rows: Array<{ n: number; total: number }> } | Array<{ n: number; total: number }>;
    const rows = Array.isArray(body) ? body : body.rows;
    expect(rows[0]).toEqual({ n: expected.n, total: expected.total });
  });
});
