// Drill: dead tuples pile up with autovacuum off (docs/drills.md "vacuum-bloat"; rehearses
// runbooks/postgres-vacuum-bloat.md; the seeds' day-2 checklist: "dead tuples bloat (autovacuum off)").
//
//   npx tsx drills/vacuum-bloat.mts --stack local [--reports reports]
//
// A drill table with autovacuum_enabled = false gets 20,000 rows and then every row UPDATEd five times in one transaction (as the
// app user): 100,000 dead tuples, a table five to six times its live size. Detected the way the runbook does,
// from pg_stat_user_tables (dead tuples above 20% of live ones) and the table's own reloptions
// (autovacuum_enabled=false); measured exactly with pgstattuple (dead tuples, dead and free space). Recovered
// with VACUUM (held to objectives.vacuumBloat.rto) and the autovacuum setting put back; then pgstattuple
// again: at most 5% of the dead tuples may remain, their space must now be free for reuse. Plain VACUUM
// returns no space to the operating system (table_len stays; VACUUM FULL or pg_repack would, under an
// exclusive lock): the report says so with both sizes. Twin: a REPEATABLE READ transaction opened before the
// churn and left open holds the xmin horizon, VACUUM removes nothing, and the drill FAILS naming the session.
import type { Topology } from "../components/topology.ts";
import { assertRtoWithin, check, drillStopped, type Check } from "./lib/assert.ts";
import { appSessions, type AppSessions } from "./lib/app-session.ts";
import { DrillLog } from "./lib/log.ts";
import { formatSeconds, rtoPhases, type RtoBreakdown } from "./lib/measure.ts";
import { borrowExtension, controlFor, psqlOnNode, type BorrowedExtension, type NodeControl } from "./lib/nodes.ts";
import { type DrillReport, concludeDrill, newRunId } from "./lib/report.ts";
import { currentPrimary } from "./lib/topology.ts";
import { runIfMain } from "./lib/main.ts";
import { inTransaction } from "./lib/writer.ts";

export interface VacuumBloatDrillOptions {
  topology: Topology;
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  /** Fault twin: keep a snapshot open from before the churn (VACUUM then cannot remove what it still sees). */
  holdSnapshot?: boolean;
  rows?: number;
  updates?: number;
}

/** pgstattuple's view of one table (the columns the drill reads). */
export interface TupleStats { table_len: number; tuple_count: number; dead_tuple_count: number; dead_tuple_percent: number; free_space: number; free_percent: number }

/** What a VACUUM achieved, from pgstattuple before and after (pure). */
export function reclaimed(before: TupleStats, after: TupleStats): { deadRemovedRatio: number; remainingDeadRatio: number; freedBytes: number; tableLenChange: number } {
  const remainingDeadRatio = before.dead_tuple_count > 0 ? after.dead_tuple_count / before.dead_tuple_count : 0;
  return { deadRemovedRatio: 1 - remainingDeadRatio, remainingDeadRatio, freedBytes: after.free_space - before.free_space, tableLenChange: after.table_len - before.table_len };
}

/** At most this share of the dead tuples may survive the recovery. */
export const MAX_REMAINING_DEAD_RATIO = 0.05;
/** Dead tuples above this share of live ones is bloat (the runbook's query). */
export const BLOAT_DEAD_RATIO = 0.2;

/** Longest wait for the xmin horizon to pass the churn before VACUUM runs anyway (standby feedback: 10 s). */
const HORIZON_WAIT_MS = 30_000;

const mib = (b: number) => `${(b / 1024 ** 2).toFixed(1)} MiB`;

export async function runVacuumBloatDrill(opts: VacuumBloatDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const ctl = opts.nodeControl ?? controlFor(t);
  const startedAtMs = Date.now();
  const runId = newRunId();
  const table = `drill_bloat_${runId.replace(/-/g, "_")}`;
  const rows = opts.rows ?? 20_000;
  const updates = opts.updates ?? 5;
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { table, rows, updates, holdSnapshot: Boolean(opts.holdSnapshot) };
  const objective = t.objectives.vacuumBloat;
  const objectives = { rtoSeconds: objective?.rto ?? NaN, maxRemainingDeadRatio: MAX_REMAINING_DEAD_RATIO };
  let rto: RtoBreakdown | null = null;
  let sessions: AppSessions | undefined;
  let extension: BorrowedExtension | undefined;
  log.info(`drill vacuum-bloat on stack ${t.stack} (run ${runId}): objectives VACUUM <= ${formatSeconds(objectives.rtoSeconds)}, at most ${MAX_REMAINING_DEAD_RATIO * 100}% of dead tuples left`);

  const primary = await currentPrimary(t, ctl).catch((e: Error) => {
    checks.push(check("drill ran to completion", false, e.message));
    return undefined;
  });
  const db = t.postgres.database;
  const sql = (q: string, timeoutMs = 60_000) => psqlOnNode(ctl, primary!, q, { database: db, timeoutMs });
  const stats = async () => JSON.parse(await sql(`SELECT row_to_json(s) FROM pgstattuple('${table}') s`)) as TupleStats;
  try {
    if (!primary) throw new Error("no primary");
    if (!objective) throw new Error(`the topology of stack ${t.stack} has no objectives.vacuumBloat: re-run \`homelab up --stack ${t.stack}\` with this version`);
    sessions = await appSessions(t, ctl, primary, "homelab-drill-bloat");
    const app = await sessions.open("app");

    // ------------------------------------------------------------------------------------ preflight + load
    extension = await log.step("preflight: pgstattuple in the app database", () => borrowExtension(ctl, primary, "pgstattuple", db), (e) => (e.created ? "created (dropped again at the end)" : "already there"));
    await app.query(`CREATE TABLE ${table} (id int PRIMARY KEY, n int NOT NULL, payload text NOT NULL) WITH (autovacuum_enabled = false)`);
    await app.query(`INSERT INTO ${table} SELECT g, 0, repeat(md5(g::text), 4) FROM generate_series(1, ${rows}) g`);

    // ------------------------------------------------------------------------------------ fault
    if (opts.holdSnapshot) {
      const old = await sessions.open("old-snapshot");
      await old.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      await old.query(`SELECT count(*) FROM ${table}`);
      log.info("twin: a REPEATABLE READ transaction opened before the churn stays open");
    }
    await log.step(`churn: every row UPDATEd ${updates} times, autovacuum off on the table`, async () => {
      // One transaction: a later UPDATE's scan prunes (HOT page pruning) the versions an earlier, committed
      // one left dead as soon as the xmin horizon passes it (standby feedback moves it every 10 s), which
      // would leave a random share of the dead tuples for VACUUM. Versions the churn itself deleted cannot
      // be pruned before it commits: all of them are there for detection and measurement.
      await inTransaction(app, async () => {
        for (let i = 0; i < updates; i++) await app.query(`UPDATE ${table} SET n = n + 1`);
      });
    });

    // ------------------------------------------------------------------------------------ detect
    const detected = await log.step("detect: pg_stat_user_tables dead tuples, the table's reloptions", async () => {
      await sql(`ANALYZE ${table}`);
      const out = JSON.parse(await sql(`SELECT json_build_object('live', n_live_tup, 'dead', n_dead_tup, 'lastAutovacuum', last_autovacuum, 'reloptions', (SELECT reloptions FROM pg_class WHERE oid = '${table}'::regclass)) FROM pg_stat_user_tables WHERE relid = '${table}'::regclass`)) as { live: number; dead: number; lastAutovacuum: string | null; reloptions: string[] | null };
      return out;
    }, (d) => `${d.dead} dead for ${d.live} live tuples; reloptions ${JSON.stringify(d.reloptions)}; last autovacuum ${d.lastAutovacuum ?? "never"}`);
    evidence.detected = detected;
    const bloated = detected.dead > detected.live * BLOAT_DEAD_RATIO;
    const autovacuumOff = (detected.reloptions ?? []).includes("autovacuum_enabled=false");
    checks.push(check("bloat detected", bloated && autovacuumOff, `${detected.dead} dead tuples for ${detected.live} live (> ${BLOAT_DEAD_RATIO * 100}%: ${bloated}); autovacuum_enabled=false on the table: ${autovacuumOff}`));
    const before = await log.step("measure: pgstattuple before", stats, (s) => `table ${mib(s.table_len)}, ${s.dead_tuple_count} dead tuples (${s.dead_tuple_percent}%), free ${s.free_percent}%`);
    evidence.before = before;

    // ------------------------------------------------------------------------------------ recover
    // VACUUM removes only tuples no snapshot can see: not while a session, or a standby through
    // hot_standby_feedback on its slot (reported every wal_receiver_status_interval, 10 s), still holds an
    // xmin from before the churn. Wait for that horizon first (bounded); a holder that stays is named below.
    const faultAtMs = Date.now();
    const churnXid = await sql("SELECT pg_current_xact_id()::text::bigint % 4294967296");
    const holdersSql = `SELECT count(*) FROM (SELECT backend_xmin AS x FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
      UNION ALL SELECT xmin FROM pg_replication_slots WHERE xmin IS NOT NULL) h WHERE age(x) >= age('${churnXid}'::xid)`;
    await log.step("wait: no snapshot older than the churn (sessions, standby feedback on the slots)", async () => {
      const deadline = Date.now() + HORIZON_WAIT_MS;
      while ((await sql(holdersSql)) !== "0" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      return sql(holdersSql);
    }, (n) => (n === "0" ? `horizon past the churn after ${formatSeconds((Date.now() - faultAtMs) / 1000)}` : `${n} holder(s) still older than the churn after ${formatSeconds(HORIZON_WAIT_MS / 1000)}`));
    const horizonAtMs = Date.now();
    const verbose = await log.step(`recover: VACUUM (VERBOSE) ${table}, autovacuum back on`, async () => {
      const r = await ctl.exec(primary, ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", `VACUUM (VERBOSE) ${table}`], { user: "postgres", allowFailure: true, timeoutMs: Math.max(60_000, objectives.rtoSeconds * 2000) });
      if (r.code !== 0) throw new Error(`VACUUM failed: ${r.stderr.trim().split("\n").slice(-2).join(" | ")}`);
      await sql(`ALTER TABLE ${table} RESET (autovacuum_enabled)`);
      // VERBOSE's INFO lines go to stderr: the one that says what VACUUM could remove.
      return /tuples: \d+ removed, \d+ remain, \d+ are dead but not yet removable/.exec(r.stderr)?.[0] ?? null;
    }, (line) => line ?? "");
    const vacuumedAtMs = Date.now();
    rto = rtoPhases([{ name: "horizon", atMs: horizonAtMs }, { name: "vacuum", atMs: vacuumedAtMs }], faultAtMs);
    evidence.vacuumVerbose = verbose;
    checks.push(assertRtoWithin(rto.totalSeconds, objectives.rtoSeconds, "recovery time (horizon wait + VACUUM)"));

    // ------------------------------------------------------------------------------------ verify
    const after = await log.step("measure: pgstattuple after", stats, (s) => `table ${mib(s.table_len)}, ${s.dead_tuple_count} dead tuples (${s.dead_tuple_percent}%), free ${s.free_percent}%`);
    evidence.after = after;
    const r = reclaimed(before, after);
    evidence.reclaimed = r;
    let holder = "";
    if (r.remainingDeadRatio > MAX_REMAINING_DEAD_RATIO) {
      const rows = JSON.parse(await sql(`SELECT coalesce(json_agg(x), '[]') FROM (SELECT pid, usename, application_name, state, age(backend_xmin) AS xmin_age, now() - xact_start AS open_for FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() ORDER BY age(backend_xmin) DESC LIMIT 3) x`)) as { pid: number; usename: string; application_name: string; state: string; xmin_age: number; open_for: string }[];
      const slots = JSON.parse(await sql(`SELECT coalesce(json_agg(json_build_object('slot', slot_name, 'xmin_age', age(xmin))), '[]') FROM pg_replication_slots WHERE xmin IS NOT NULL`)) as { slot: string; xmin_age: number }[];
      evidence.xminHolders = { sessions: rows, slots };
      const top = rows[0];
      holder = top ? `; the xmin horizon is held by pid ${top.pid} (${top.usename}, ${top.application_name || "no application_name"}, ${top.state}, transaction open ${top.open_for}): VACUUM cannot remove tuples a snapshot may still see`
        : slots.length ? `; the xmin horizon is held by replication slot ${slots[0]!.slot} (hot_standby_feedback from a standby's query, xmin age ${slots[0]!.xmin_age})` : "";
    }
    checks.push(check("dead tuples removed", r.remainingDeadRatio <= MAX_REMAINING_DEAD_RATIO,
      `${before.dead_tuple_count - after.dead_tuple_count} of ${before.dead_tuple_count} dead tuples removed, ${after.dead_tuple_count} remain (${(r.remainingDeadRatio * 100).toFixed(1)}%, at most ${MAX_REMAINING_DEAD_RATIO * 100}%)${holder}`,
      { objective: MAX_REMAINING_DEAD_RATIO, measured: Number(r.remainingDeadRatio.toFixed(4)), unit: "ratio" }));
    checks.push(check("space free for reuse", after.free_space > before.free_space, `free space ${mib(before.free_space)} -> ${mib(after.free_space)} (${after.free_percent}% of the table); the file stays ${mib(after.table_len)} (was ${mib(before.table_len)}): plain VACUUM keeps it for new rows, VACUUM FULL or pg_repack would return it`));
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

  return concludeDrill({ drill: "vacuum-bloat", stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo: null, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

// ---------------------------------------------------------------------------------------------------- main
// `npx tsx drills/vacuum-bloat.mts --stack <stack> | --topology <file.json> [--reports <dir>]`: the flags and
// the runner of `homelab drill vacuum-bloat`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "vacuum-bloat");
