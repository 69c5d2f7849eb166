// The writer, the probe and the workload SQL against a real PostgreSQL: a throwaway server this file makes
// from the host's PostgreSQL binaries (initdb in a temp dir, 127.0.0.1 on a free port) and removes after.
// Skipped, saying so, when no PostgreSQL binaries are installed; the e2e layer runs these against PG 17.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { amcheckSql } from "../../drills/backup-restore.mts";
import { failoverSql } from "../../drills/failover.mts";
import { assertNoAcknowledgedWriteLost, assertRowsEqualAtTarget } from "../../drills/lib/assert.ts";
import { measureRpo } from "../../drills/lib/measure.ts";
import { Probe, pgReadProbe, pgWriteProbe } from "../../drills/lib/probe.ts";
import { waitFor } from "../../drills/lib/wait.ts";
import { AckWriter, WORKLOAD_TABLES, ensureWorkloadSchema, maxSeq, presentSeqs, workloadDigest, writeIncident } from "../../drills/lib/writer.ts";

function findBindir(): string | undefined {
  try {
    const dir = execFileSync("pg_config", ["--bindir"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    if (existsSync(path.join(dir, "initdb"))) return dir;
  } catch {
    // no pg_config on PATH
  }
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => path.join(root, v, "bin")).find((d) => existsSync(path.join(d, "initdb")));
}

const bindir = findBindir();
const asRoot = process.getuid?.() === 0;

/** argv run as the OS user postgres when we are root (initdb refuses root). */
function asPostgres(argv: string[]): [string, string[]] {
  return asRoot ? ["runuser", ["-u", "postgres", "--", ...argv]] : [argv[0]!, argv.slice(1)];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

class LocalPostgres {
  private child: ChildProcess | undefined;
  readonly dir = mkdtempSync(path.join(tmpdir(), "drills-pg-"));
  readonly data = path.join(this.dir, "data");
  port = 0;

  async init(): Promise<void> {
    if (asRoot) {
      const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
      const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
      chownSync(this.dir, uid, gid);
    }
    chmodSync(this.dir, 0o700);
    const [cmd, args] = asPostgres([path.join(bindir!, "initdb"), "-D", this.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
    execFileSync(cmd, args, { stdio: "ignore" });
    this.port = await freePort();
  }

  async start(): Promise<void> {
    const [cmd, args] = asPostgres([path.join(bindir!, "postgres"), "-D", this.data, "-p", String(this.port), "-c", "listen_addresses=127.0.0.1", "-c", `unix_socket_directories=${this.dir}`, "-c", "fsync=on"]);
    this.child = spawn(cmd, args, { stdio: "ignore" });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const c = new pg.Client(this.config());
      try {
        await c.connect();
        await c.end();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw new Error("local postgres did not start in 30 s");
  }

  /** Immediate shutdown: no checkpoint, crash recovery on the next start (what a killed primary leaves). */
  crash(): void {
    const [cmd, args] = asPostgres([path.join(bindir!, "pg_ctl"), "-D", this.data, "-m", "immediate", "-w", "stop"]);
    execFileSync(cmd, args, { stdio: "ignore" });
    this.child = undefined;
  }

  stopAndRemove(): void {
    if (existsSync(path.join(this.data, "postmaster.pid"))) {
      const pid = Number(readFileSync(path.join(this.data, "postmaster.pid"), "utf8").split("\n")[0]);
      try {
        process.kill(pid, "SIGQUIT");
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  config(): pg.ClientConfig {
    return { host: "127.0.0.1", port: this.port, user: "postgres", database: "postgres" };
  }
}

describe.skipIf(!bindir)(`workload on a real PostgreSQL (${bindir ?? "no PostgreSQL binaries: skipped"})`, () => {
  const server = new LocalPostgres();
  let admin: pg.Client;

  beforeAll(async () => {
    await server.init();
    await server.start();
    admin = await connectAdmin();
  }, 60_000);

  /** The test's own connection; a crash drops it, so it reconnects afterwards. */
  async function connectAdmin(): Promise<pg.Client> {
    const c = new pg.Client(server.config());
    c.on("error", () => {});
    await c.connect();
    return c;
  }

  afterAll(async () => {
    await admin?.end().catch(() => {});
    server.stopAndRemove();
  });

  it("creates the schema idempotently, with the seeds' constraints", async () => {
    await ensureWorkloadSchema(admin);
    await ensureWorkloadSchema(admin);
    const tables = await admin.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1");
    expect(tables.rows.map((r) => r.table_name).sort()).toEqual([...WORKLOAD_TABLES].sort());
    await expect(admin.query("INSERT INTO incidents (id, title, severity, status) VALUES (gen_random_uuid(), 'x', 5, 'open')")).rejects.toThrow(/severity_check/);
    await expect(admin.query("INSERT INTO incidents (id, title, severity, status) VALUES (gen_random_uuid(), 'x', 1, 'closed')")).rejects.toThrow(/status_check/);
    await expect(admin.query("INSERT INTO audit_log (incident_id, action, actor) VALUES (gen_random_uuid(), 'a', 'b')")).rejects.toThrow(/foreign key/);
    await expect(admin.query("INSERT INTO paging (incident_id, target, channel) VALUES (NULL, 'a', 'push')")).rejects.toThrow(/null value/);
    const probeIds = await admin.query("SELECT nextval('drill_probe_seq')::int AS a, nextval('drill_probe_seq')::int AS b");
    expect(probeIds.rows[0]).toEqual({ a: -1, b: -2 });
  });

  it("a retried write with the same idempotency key never double-creates", async () => {
    await admin.query("BEGIN");
    expect(await writeIncident(admin, "idem", 1)).toBe("created");
    await admin.query("COMMIT");
    await admin.query("BEGIN");
    expect(await writeIncident(admin, "idem", 1)).toBe("already-present");
    await admin.query("COMMIT");
    const r = await admin.query("SELECT (SELECT count(*) FROM incidents WHERE idempotency_key = 'drill-idem-1')::int AS incidents, (SELECT count(*) FROM audit_log a JOIN incidents i ON i.id = a.incident_id WHERE i.idempotency_key = 'drill-idem-1')::int AS audit, (SELECT count(*) FROM paging p JOIN incidents i ON i.id = p.incident_id WHERE i.idempotency_key = 'drill-idem-1')::int AS paging, (SELECT count(*) FROM drill_seq WHERE id = 1)::int AS seq");
    // seq 1 -> severity 2: no page
    expect(r.rows[0]).toEqual({ incidents: 1, audit: 1, paging: 0, seq: 1 });
    await admin.query("TRUNCATE drill_seq, audit_log, paging, escalation, incidents");
  });

  it("every acknowledged write survives a crash; the writer reconnects; the probe sees the outage", async () => {
    const writer = new AckWriter({ connection: server.config(), runId: "crash", writesPerSecond: 100 });
    const probe = new Probe(pgWriteProbe(server.config()), { intervalMs: 50 });
    writer.start();
    probe.start();
    await new Promise((r) => setTimeout(r, 700));
    const faultAtMs = Date.now();
    const boundary = writer.highestAttemptedSeq();
    server.crash();
    await new Promise((r) => setTimeout(r, 300));
    await server.start();
    const recoveredAt = await probe.waitForSuccessAfter(faultAtMs, 20_000);
    await new Promise((r) => setTimeout(r, 400));
    await writer.stop();
    await probe.stop();

    expect(probe.firstFailureAfter(faultAtMs)).toBeLessThan(recoveredAt);
    expect(recoveredAt - faultAtMs).toBeGreaterThan(250);
    const acked = writer.acknowledged();
    expect(acked.length).toBeGreaterThan(60);
    expect(writer.getStats().connects).toBeGreaterThanOrEqual(2);
    expect(writer.firstAcknowledgedAfter(faultAtMs)!.seq).toBeGreaterThan(boundary - 1);

    await admin.end().catch(() => {});
    admin = await connectAdmin();
    const present = await presentSeqs(admin, { fromSeq: writer.firstSeq() });
    const rpo = measureRpo({ acknowledged: acked, presentSeqs: present, uncertain: writer.uncertain() });
    expect(assertNoAcknowledgedWriteLost(rpo, 0)).toMatchObject({ ok: true });
    expect(rpo.ghostWrites).toBe(0);
    expect(await maxSeq(admin)).toBe(rpo.lastPresentSeq);
    // probe rows are negative and do not disturb the writer's seqs
    const probes = await admin.query("SELECT count(*)::int AS n FROM drill_seq WHERE id < 0");
    expect(probes.rows[0].n).toBeGreaterThan(0);
    // every drill_seq row has its incident and audit row (one transaction each)
    const orphans = await admin.query("SELECT count(*)::int AS n FROM drill_seq s WHERE s.id >= $1 AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.idempotency_key = 'drill-crash-' || s.id)", [writer.firstSeq()]);
    expect(orphans.rows[0].n).toBe(0);
    expect(assertRowsEqualAtTarget(acked.map((a) => a.seq), present.filter((s) => !writer.uncertain().includes(s))).ok).toBe(true);
  }, 60_000);

  it("a COMMIT stuck waiting for a sync standby is uncertain; its retry dedups and is then acknowledged", async () => {
    // No standby called "ghost" exists: every COMMIT commits locally, then waits (docs/drills.md: "committed locally
    // but might not have been replicated" is NOT acknowledged).
    await admin.query("ALTER SYSTEM SET synchronous_standby_names = 'ghost'");
    await admin.query("SELECT pg_reload_conf()");
    await new Promise((r) => setTimeout(r, 200));
    const writer = new AckWriter({ connection: server.config(), runId: "sync", writesPerSecond: 50, queryTimeoutMs: 300 });
    writer.start();
    const t0 = Date.now();
    while (writer.uncertain().length === 0 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    const [stuck] = writer.uncertain();
    expect(stuck).toBe(writer.firstSeq());
    expect(writer.acknowledged()).toEqual([]);
    await admin.query("ALTER SYSTEM RESET synchronous_standby_names");
    await admin.query("SELECT pg_reload_conf()");
    while (writer.acknowledged().length < 5 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 20));
    await writer.stop();
    expect(writer.acknowledged()[0]!.seq).toBe(stuck);
    expect(writer.getStats().deduplicatedRetries).toBeGreaterThanOrEqual(1);
    expect(writer.uncertain()).toEqual([]);
    const n = await admin.query("SELECT count(*)::int AS n FROM incidents WHERE idempotency_key = $1", [`drill-sync-${stuck}`]);
    expect(n.rows[0].n).toBe(1);
  }, 30_000);

  it("repoint drops a connection stuck mid-write at once, not after the query timeout", async () => {
    const lock = await connectAdmin();
    const writer = new AckWriter({ connection: server.config(), runId: "repoint", writesPerSecond: 50, queryTimeoutMs: 10_000 });
    try {
      writer.start();
      while (writer.acknowledged().length < 3) await new Promise((r) => setTimeout(r, 10));
      await lock.query("BEGIN");
      await lock.query("LOCK TABLE drill_seq IN ACCESS EXCLUSIVE MODE");
      await new Promise((r) => setTimeout(r, 200));
      const errorsBefore = writer.getStats().errors;
      const t0 = Date.now();
      writer.repoint(server.config());
      while (writer.getStats().errors === errorsBefore && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(writer.getStats().lastError).toMatch(/Connection terminated/);
      await lock.query("ROLLBACK");
      const acked = writer.acknowledged().length;
      while (writer.acknowledged().length <= acked && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
      expect(writer.acknowledged().length).toBeGreaterThan(acked);
      expect(writer.uncertain()).toEqual([]);
    } finally {
      await writer.stop();
      await lock.end();
    }
  }, 30_000);

  it("a later run starts past every earlier run's seqs (a long-lived stack keeps its drill_seq)", async () => {
    const before = (await maxSeq(admin))!;
    const writer = new AckWriter({ connection: server.config(), runId: "later", writesPerSecond: 100 });
    writer.start();
    while (writer.acknowledged().length < 5) await new Promise((r) => setTimeout(r, 10));
    await writer.stop();
    expect(writer.firstSeq()).toBe(before + 1);
    expect(writer.acknowledged()[0]!.seq).toBe(before + 1);
    const present = await presentSeqs(admin, { fromSeq: writer.firstSeq() });
    expect(measureRpo({ acknowledged: writer.acknowledged(), presentSeqs: present, uncertain: writer.uncertain() })).toMatchObject({ lostWrites: 0, ghostWrites: 0 });
  });

  it("stops itself, saying why, when the workload schema is missing (no endless retry)", async () => {
    await admin.query("DROP DATABASE IF EXISTS empty_db");
    await admin.query("CREATE DATABASE empty_db");
    const writer = new AckWriter({ connection: { ...server.config(), database: "empty_db" }, runId: "fatal" });
    writer.start();
    const t0 = Date.now();
    while (writer.isRunning() && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    const stats = await writer.stop();
    expect(stats.fatalError).toBe('relation "drill_seq" does not exist (SQLSTATE 42P01)');
    expect(stats.errors).toBe(1);
  });

  it("digests are stable and see a change", async () => {
    const a = await workloadDigest(admin);
    expect(Object.keys(a).sort()).toEqual([...WORKLOAD_TABLES].sort());
    expect(await workloadDigest(admin)).toEqual(a);
    await admin.query("UPDATE incidents SET status = 'resolved', resolved_at = now() WHERE id = (SELECT id FROM incidents ORDER BY id LIMIT 1)");
    const b = await workloadDigest(admin);
    expect(b.incidents).not.toBe(a.incidents);
    expect(b.audit_log).toBe(a.audit_log);
  });

  it("the read probe answers, and fails on a closed port", async () => {
    expect(await pgReadProbe(server.config())()).toBe(true);
    await expect(pgReadProbe({ ...server.config(), port: await freePort() })()).rejects.toThrow(/ECONNREFUSED/);
  });

  it("the SQL the failover and backup-restore drills build (quoted by pg's escapeLiteral/escapeIdentifier) runs", async () => {
    const one = async (sql: string) => Object.values((await admin.query(sql)).rows[0] ?? {})[0];
    // No standby on this server: the lag row says so, whatever quote the name holds.
    expect(await one(failoverSql.replicationLag("nobody's standby"))).toMatch(/^[0-9A-F]+\/[0-9A-F]+\|absent\|\|\|\|\|$/);
    // Promotion settings (pg_promote itself needs a standby) and their reset.
    const settings: [string, string][] = [["wal_retrieve_retry_interval", "100ms"]];
    for (const sql of failoverSql.promote(settings).slice(0, -1)) await admin.query(sql);
    // pg_reload_conf() only signals: the session sees the new value a moment later.
    const shows = (value: string) => waitFor(`wal_retrieve_retry_interval = ${value}`, async () => (await one("SHOW wal_retrieve_retry_interval")) === value, { timeoutMs: 5000, intervalMs: 20 });
    await expect(shows("100ms")).resolves.toBe(true);
    for (const sql of failoverSql.resetSettings(settings)) await admin.query(sql);
    await expect(shows("5s")).resolves.toBe(true);
    // The rejoin's slot, twice (an inactive leftover is replaced), then dropped.
    for (let i = 0; i < 2; i++) for (const sql of failoverSql.recreateSlot("drill_sql_test")) await admin.query(sql);
    expect((await admin.query("SELECT restart_lsn IS NOT NULL AS reserved FROM pg_replication_slots WHERE slot_name = 'drill_sql_test'")).rows).toEqual([{ reserved: true }]);
    await admin.query(failoverSql.dropInactiveSlot("drill_sql_test"));
    expect((await admin.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'drill_sql_test'")).rowCount).toBe(0);
    await expect(admin.query(failoverSql.timelineHistory(7))).rejects.toThrow(/pg_wal\/00000007\.history/);
    // amcheck over the workload's btree indexes (several statements: the last result is the answer).
    const results = (await admin.query(amcheckSql(WORKLOAD_TABLES))) as unknown as pg.QueryResult[];
    const [count = "0", names = ""] = String(Object.values(results.at(-1)!.rows[0]!)[0]).split(" ");
    expect(Number(count)).toBeGreaterThanOrEqual(WORKLOAD_TABLES.length);
    expect(names.split(",")).toContain("drill_seq_pkey");
  });
});
