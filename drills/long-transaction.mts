// Drill: a forgotten transaction blocks the writes (docs/drills.md "long-transaction"; rehearses
// runbooks/postgres-long-transaction.md; the seeds' day-2 checklist: "long-running transaction blocking
// writes").
//
//   npx tsx drills/long-transaction.mts --stack local [--reports reports]
//
// A writer inserts into a drill table as the app user (one INSERT every 50 ms, each acknowledged write
// recorded). A second app session opens a transaction, reads the table and goes idle: it holds an ACCESS
// SHARE lock. A third runs ALTER TABLE ... ADD COLUMN: it waits for ACCESS EXCLUSIVE, and every INSERT queues
// behind it, so writes stop although nothing "heavy" runs: the lock queue of a migration behind a forgotten
// BEGIN. The drill then does what the runbook says: finds the blocker from pg_stat_activity and
// pg_blocking_pids() (as the postgres superuser on the primary), terminates it with pg_terminate_backend(),
// and measures: fault -> detection (objectives.longTransaction.detect), fault -> first write acknowledged
// again (the stall the application saw; objectives.longTransaction.rto), that the DDL went through, and that
// no acknowledged write is missing. pg_cancel_backend() is the classic wrong move: it cancels a running
// query, and an idle transaction runs none, so it ends nothing (the e2e's twin does exactly that and the
// drill fails naming it).
import type { Topology } from "../components/topology.ts";
import { assertRtoWithin, check, drillStopped, type Check } from "./lib/assert.ts";
import { DrillLog } from "./lib/log.ts";
import { formatDuration, formatSeconds, rtoPhases, type RtoBreakdown } from "./lib/measure.ts";
import { appSessions, type AppSessions } from "./lib/app-session.ts";
import { controlFor, psqlOnNode, type NodeControl } from "./lib/nodes.ts";
import { type DrillReport, concludeDrill, newRunId } from "./lib/report.ts";
import { currentPrimary } from "./lib/topology.ts";
import { waitFor } from "./lib/wait.ts";
import { runIfMain } from "./lib/main.ts";

export interface LongTransactionDrillOptions {
  topology: Topology;
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  /** How the blocker is ended: terminate (the runbook) or cancel (the mistake the fault twin makes). */
  recovery?: "terminate" | "cancel";
  /** Writes before the fault (default 2000 ms of them). */
  warmupMs?: number;
}

const WRITE_INTERVAL_MS = 50;
const DETECT_POLL_MS = 100; // docs/drills.md: drills poll at <= 100 ms

/** A backend waiting for a lock and the backends blocking it, from pg_stat_activity (pure). */
export interface BlockedBackend {
  pid: number;
  query: string;
  waitingSeconds: number;
  blockers: { pid: number; state: string; xactSeconds: number; query: string }[];
}

/** The SQL that lists blocked backends with their blockers, one JSON array (superuser or pg_monitor). */
export const BLOCKED_SQL = `SELECT coalesce(json_agg(json_build_object(
  'pid', w.pid, 'query', left(w.query, 200), 'waitingSeconds', round(extract(epoch FROM now() - w.state_change)::numeric, 1),
  'blockers', (SELECT coalesce(json_agg(json_build_object('pid', b.pid, 'state', b.state,
      'xactSeconds', round(extract(epoch FROM now() - b.xact_start)::numeric, 1), 'query', left(b.query, 200))), '[]'::json)
    FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(w.pid))))), '[]'::json)
  FROM pg_stat_activity w WHERE cardinality(pg_blocking_pids(w.pid)) > 0`;

/** The sessions at the root of the lock queue: blockers that wait for nothing themselves, idle in transaction first. */
export function rootBlockers(blocked: readonly BlockedBackend[]): { pid: number; state: string; xactSeconds: number; query: string }[] {
  const waiting = new Set(blocked.map((b) => b.pid));
  const roots = new Map<number, BlockedBackend["blockers"][number]>();
  for (const b of blocked) for (const x of b.blockers) if (!waiting.has(x.pid)) roots.set(x.pid, x);
  return [...roots.values()].sort((a, b) => Number(b.state.startsWith("idle in transaction")) - Number(a.state.startsWith("idle in transaction")) || b.xactSeconds - a.xactSeconds);
}

export async function runLongTransactionDrill(opts: LongTransactionDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const ctl = opts.nodeControl ?? controlFor(t);
  const recovery = opts.recovery ?? "terminate";
  const startedAtMs = Date.now();
  const runId = newRunId();
  const table = `drill_long_tx_${runId.replace(/-/g, "_")}`;
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { recovery, table };
  const objective = t.objectives.longTransaction;
  const objectives = { detectSeconds: objective?.detect ?? NaN, rtoSeconds: objective?.rto ?? NaN };
  let rto: RtoBreakdown | null = null;
  let sessions: AppSessions | undefined;
  let writing = false;
  let writerDone: Promise<void> | undefined;
  const acks: number[] = []; // ack time of every acknowledged write, in order; row id = index + 1
  let writerError: string | undefined;
  log.info(`drill long-transaction on stack ${t.stack} (run ${runId}): objectives detect <= ${formatSeconds(objectives.detectSeconds)}, write stall <= ${formatSeconds(objectives.rtoSeconds)}`);

  let primaryNode: Awaited<ReturnType<typeof currentPrimary>> | undefined;
  try {
    if (!objective) throw new Error(`the topology of stack ${t.stack} has no objectives.longTransaction: re-run \`homelab up --stack ${t.stack}\` with this version`);
    const primary = (primaryNode = await currentPrimary(t, ctl));
    const app = (sessions = await appSessions(t, ctl, primary, "homelab-drill-long-tx"));

    // ------------------------------------------------------------------------------------ preflight + load
    const settings = await log.step("preflight: primary, the timeouts that would end a forgotten transaction", async () => {
      const out = await psqlOnNode(ctl, primary, "SELECT json_object_agg(name, setting) FROM pg_settings WHERE name IN ('idle_in_transaction_session_timeout', 'lock_timeout', 'statement_timeout')", { database: t.postgres.database });
      return JSON.parse(out) as Record<string, string>;
    }, (s) => `${primary.name}: idle_in_transaction_session_timeout=${s.idle_in_transaction_session_timeout}, lock_timeout=${s.lock_timeout}`);
    evidence.settings = settings;
    const writer = await app.open("writer");
    await writer.query(`CREATE TABLE ${table} (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`);
    writing = true;
    writerDone = (async () => {
      while (writing) {
        try {
          await writer.query(`INSERT INTO ${table} (id) VALUES ($1)`, [acks.length + 1]);
          acks.push(Date.now());
        } catch (e) {
          writerError = (e as Error).message;
          return;
        }
        await sleep(WRITE_INTERVAL_MS);
      }
    })();
    await log.step(`writer: an INSERT every ${WRITE_INTERVAL_MS} ms as ${t.postgres.appUser}`, async () => {
      await sleep(opts.warmupMs ?? 2000);
      if (acks.length === 0) throw new Error(`no write acknowledged before the fault${writerError ? `: ${writerError}` : ""}`);
      return acks.length;
    }, (n) => `${n} acknowledged`);

    // ------------------------------------------------------------------------------------ fault
    const forgotten = await app.open("forgotten");
    await forgotten.query("BEGIN");
    await forgotten.query(`SELECT count(*) FROM ${table}`);
    const ddl = await app.open("migration");
    const faultAtMs = Date.now();
    const acksBeforeFault = acks.length;
    let ddlError: string | undefined;
    let ddlDoneAtMs: number | undefined;
    const ddlDone = ddl.query(`ALTER TABLE ${table} ADD COLUMN note text`).then(() => { ddlDoneAtMs = Date.now(); }, (e: Error) => { ddlError = e.message; });
    log.info(`fault: a transaction left idle after reading ${table}, then ALTER TABLE ... ADD COLUMN queued behind it`);

    // ------------------------------------------------------------------------------------ detect
    let found: ReturnType<typeof rootBlockers> = [];
    let blocked: BlockedBackend[] = [];
    const detectedAtMs = await log.step("detect: pg_stat_activity + pg_blocking_pids() on the primary", async () => {
      await waitFor("a blocked backend whose blocker is idle in transaction", async () => {
        blocked = JSON.parse(await psqlOnNode(ctl, primary, BLOCKED_SQL, { database: t.postgres.database })) as BlockedBackend[];
        found = rootBlockers(blocked).filter((b) => b.state.startsWith("idle in transaction"));
        return found.length > 0;
      }, { timeoutMs: Math.max(30_000, objectives.detectSeconds * 3000), intervalMs: DETECT_POLL_MS, state: () => `${blocked.length} blocked backends` });
      return Date.now();
    }, () => `${blocked.length} backends waiting (${blocked.map((b) => `pid ${b.pid}: ${b.query.split(/\s+/).slice(0, 3).join(" ")}`).join("; ")}); root blocker pid ${found.map((f) => `${f.pid} ${f.state} for ${f.xactSeconds}s`).join(", ")}`);
    evidence.blocked = blocked;
    evidence.rootBlockers = found;
    const detectSeconds = (detectedAtMs - faultAtMs) / 1000;
    checks.push(check("forgotten transaction detected", detectSeconds <= objectives.detectSeconds, `root blocker idle in transaction found ${formatSeconds(detectSeconds)} after the fault (objective ${formatSeconds(objectives.detectSeconds)})`, { objective: objectives.detectSeconds, measured: detectSeconds, unit: "s" }));

    // ------------------------------------------------------------------------------------ recover
    const fn = recovery === "terminate" ? "pg_terminate_backend" : "pg_cancel_backend";
    await log.step(`recover: ${fn}() on the root blocker`, async () => {
      await psqlOnNode(ctl, primary, `SELECT ${fn}(pid) FROM unnest(ARRAY[${found.map((f) => f.pid).join(",")}]::int[]) AS pid`, { database: t.postgres.database });
    });
    const firstWriteAtMs = await log.step("first write acknowledged after the fault", async () => {
      await waitFor("a write acknowledged", async () => acks.length > acksBeforeFault || writerError !== undefined, { timeoutMs: Math.max(10_000, objectives.rtoSeconds * 1000 - (Date.now() - faultAtMs)), intervalMs: 20 }).catch(() => undefined);
      return acks.length > acksBeforeFault ? acks[acksBeforeFault] : undefined;
    }, (at) => (at === undefined ? `none: writes still stalled ${formatDuration(Date.now() - faultAtMs)} after the fault` : `${formatDuration(at - faultAtMs)} after the fault`));
    // Two phases: fault -> blocker found, then found -> the first write acknowledged (the recovery and the
    // queue draining behind it; the ack can come before psql returns from pg_terminate_backend).
    if (firstWriteAtMs !== undefined) rto = rtoPhases([{ name: "detection", atMs: detectedAtMs }, { name: "recovery", atMs: Math.max(detectedAtMs, firstWriteAtMs) }], faultAtMs);
    const stillBlocked = firstWriteAtMs === undefined ? (JSON.parse(await psqlOnNode(ctl, primary, BLOCKED_SQL, { database: t.postgres.database })) as BlockedBackend[]) : [];
    checks.push({
      ...assertRtoWithin(rto?.totalSeconds, objectives.rtoSeconds, "write stall (fault -> first acknowledged write)"),
      ...(firstWriteAtMs === undefined ? { detail: `writes still stalled ${formatDuration(Date.now() - faultAtMs)} after the fault: ${fn}() left ${rootBlockers(stillBlocked).map((b) => `pid ${b.pid} ${b.state}`).join(", ") || "the blockers"} in place${recovery === "cancel" ? " (pg_cancel_backend cancels a running query; an idle transaction runs none: terminate it)" : ""}` } : {}),
    });

    // ------------------------------------------------------------------------------------ verify
    if (firstWriteAtMs !== undefined) {
      await Promise.race([ddlDone, sleep(10_000)]);
      checks.push(check("the migration went through", ddlDoneAtMs !== undefined, ddlDoneAtMs !== undefined ? `ALTER TABLE ... ADD COLUMN done ${formatDuration(ddlDoneAtMs - faultAtMs)} after it was queued` : `ALTER TABLE ${ddlError ? `failed: ${ddlError}` : "still waiting"}`));
      const ended = await forgotten.query("SELECT 1").then(() => false, () => true);
      checks.push(check("the forgotten session was ended", ended, ended ? "its connection is closed (pg_terminate_backend)" : "it still answers: its transaction is still open"));
      writing = false;
      await writerDone;
      const r = await writer.query(`SELECT count(*)::int AS n, max(id)::int AS m FROM ${table}`);
      const { n, m } = r.rows[0] as { n: number; m: number };
      checks.push(check("no acknowledged write lost", n >= acks.length, `${n} rows for ${acks.length} acknowledged writes (max id ${m})`, { objective: 0, measured: Math.max(0, acks.length - n), unit: "writes" }));
      evidence.writes = { acknowledged: acks.length, beforeFault: acksBeforeFault, rows: n };
    }
  } catch (e) {
    checks.push(drillStopped(log, e));
  } finally {
    writing = false;
    // Cleanup: end every session the drill opened (the stalled ones by pg_terminate_backend), drop the table.
    if (primaryNode) {
      const node = primaryNode;
      await log.step("cleanup: end the drill's sessions, drop its table", async () => {
        await sessions?.endAll();
        await writerDone?.catch(() => undefined);
        await psqlOnNode(ctl, node, `DROP TABLE IF EXISTS ${table}`, { database: t.postgres.database, timeoutMs: 30_000 });
      }).catch((e: Error) => checks.push(check("cleanup", false, e.message)));
    }
  }

  return concludeDrill({ drill: "long-transaction", stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo: null, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------- main
// `npx tsx drills/long-transaction.mts --stack <stack> | --topology <file.json> [--reports <dir>]`: the flags
// and the runner of `homelab drill long-transaction`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "long-transaction");
