// Drill: transaction IDs close to wraparound (docs/drills.md "wraparound"; rehearses
// runbooks/postgres-wraparound.md; the seeds' day-2 checklist: "wraparound on a scratch copy").
//
//   npx tsx drills/wraparound.mts --stack local [--reports reports]
//
// Never on the stack's own nodes: a disposable copy of the current primary (its identity, HOMELAB_ROLE=restore,
// a hostname of its own so the stack's DNS names keep resolving to the stack only) gets the repository's newest
// backup (`pgbackrest restore --type=immediate --target-action=promote --archive-mode=off`: consistent and
// promoted as fast as the backup allows; it also proves that backup restores). The drill runs PostgreSQL on
// it itself (pg_ctl as postgres, COPY_SETTINGS: Unix socket only, archive_mode off, no standby, no TLS), and
// once promoted takes the copy off the stack's network. Fault: the copy stopped cleanly, pg_controldata read,
// the next XID set with `pg_resetwal -x` to 25 million XIDs before the wrap limit of the oldest datfrozenxid
// (past PostgreSQL's warning limit, 40 million before it; short of the stop limit, 3 million before it), with
// the pg_xact segment that XID needs. Detected in single-user mode (nothing else runs there, not even the
// anti-wraparound autovacuum PostgreSQL forces even with autovacuum off): a new XID draws `WARNING: database "..."
// must be vacuumed within N transactions`, and age(datfrozenxid) of every database is past the warning age.
// Recovered as the runbook says: the copy started again, what holds the oldest XID listed (prepared
// transactions, sessions, replication slots), VACUUM (FREEZE) of every database (`vacuumdb --all --freeze`,
// template0 allowed connections for it and refused again); warning observed -> every database below the
// warning age and a new XID without warning, held to objectives.wraparound.rto. Twin (holdPrepared): a
// prepared transaction left behind before the advance holds the oldest XID, VACUUM cannot freeze past it, the
// warning stays and the drill FAILS naming it (gid, age).
import { docker, dockerEnv } from "../components/platform/docker-node.ts";
import type { Topology } from "../components/topology.ts";
import { pgbackrestInfoOnNode } from "./lib/archive.ts";
import { assertRtoWithin, check, drillStopped, type Check } from "./lib/assert.ts";
import { DrillLog } from "./lib/log.ts";
import { formatDuration, formatSeconds, rtoPhases, type RtoBreakdown } from "./lib/measure.ts";
import { controlFor, parseSingleUserOutput, psqlOnNode, type ControlledNode, type NodeControl } from "./lib/nodes.ts";
import { archivedSegmentsOnNode, pgbackrestError } from "./lib/pitr.ts";
import { type DrillReport, concludeDrill, newRunId } from "./lib/report.ts";
import { createNodeCopy, removeNodeCopy, snapshotDockerNode, type NodeSnapshot, type RecreatableNode } from "./lib/scratch-node.ts";
import { currentPrimary, nodeByName } from "./lib/topology.ts";
import { waitFor } from "./lib/wait.ts";
import { runIfMain } from "./lib/main.ts";

export interface WraparoundDrillOptions {
  topology: Topology;
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  /** Fault twin: a prepared transaction left behind before the XID advance (it holds the oldest XID). */
  holdPrepared?: boolean;
}

// ---------------------------------------------------------------------------------------------- XID arithmetic
// PostgreSQL's, from src/backend/access/transam/varsup.c SetTransactionIdLimit() and transam.c: XIDs are 32 bits
// and compared modulo 2^32; 0, 1 and 2 are special (invalid, bootstrap, frozen) and skipped by the counter.

export const XID_SPACE = 2 ** 32;
export const FIRST_NORMAL_XID = 3;
/** MaxTransactionId >> 1: the wrap limit is this far past the oldest datfrozenxid. */
export const XID_HALF = 2 ** 31 - 1;
/** Warnings on every XID assignment this close to the wrap limit. */
export const XID_WARN_MARGIN = 40_000_000;
/** New XIDs refused (outside single-user mode) this close to it. */
export const XID_STOP_MARGIN = 3_000_000;
/** age(datfrozenxid) at which the warning starts: every database must be below it again. */
export const WARN_AGE = XID_HALF - XID_WARN_MARGIN;
/** Where the drill puts the next XID: this many before the wrap limit (past the warning, short of the stop). */
export const XIDS_BEFORE_WRAP = 25_000_000;
/** Transactions per pg_xact segment: 4 per byte, 8192-byte pages, 32 pages a segment (256 KiB). */
export const XACT_SEGMENT_XIDS = 1_048_576;
export const XACT_SEGMENT_BYTES = 262_144;

const u32 = (n: number): number => ((n % XID_SPACE) + XID_SPACE) % XID_SPACE;
const isNormal = (xid: number): boolean => xid >= FIRST_NORMAL_XID;

/** xid + n the way varsup.c computes a limit: modulo 2^32, landing on a special XID moves past them. */
export function xidAdd(xid: number, n: number): number {
  const r = u32(xid + n);
  return r < FIRST_NORMAL_XID ? r + FIRST_NORMAL_XID : r;
}

/** xid - n the way varsup.c computes the stop and warn limits: landing on a special XID moves below them. */
export function xidSub(xid: number, n: number): number {
  const r = u32(xid - n);
  return r < FIRST_NORMAL_XID ? u32(r - FIRST_NORMAL_XID) : r;
}

/** TransactionIdPrecedes (transam.c): modulo-2^31 order for normal XIDs, plain order when one is special. */
export function xidPrecedes(a: number, b: number): boolean {
  if (!isNormal(a) || !isNormal(b)) return a < b;
  return ((a - b) | 0) < 0;
}

export interface XidLimits {
  /** The oldest datfrozenxid the limits are computed from (pg_control's oldestXID). */
  oldestXid: number;
  wrapLimit: number;
  /** From here on, PostgreSQL refuses new XIDs outside single-user mode. */
  stopLimit: number;
  /** From here on, every XID assignment warns. */
  warnLimit: number;
}

/** SetTransactionIdLimit(): the wrap, stop and warn limits of a cluster whose oldest datfrozenxid is `oldestXid`. */
export function xidLimits(oldestXid: number): XidLimits {
  if (!Number.isInteger(oldestXid) || oldestXid < FIRST_NORMAL_XID || oldestXid >= XID_SPACE) throw new RangeError(`oldest XID ${oldestXid} is not a normal transaction ID`);
  const wrapLimit = xidAdd(oldestXid, XID_HALF);
  return { oldestXid, wrapLimit, stopLimit: xidSub(wrapLimit, XID_STOP_MARGIN), warnLimit: xidSub(wrapLimit, XID_WARN_MARGIN) };
}

/** The pg_xact segment holding `xid`'s commit status: its file name (4 hex digits, pg_xact/<name>). */
export function xactSegmentName(xid: number): string {
  return Math.floor(u32(xid) / XACT_SEGMENT_XIDS).toString(16).toUpperCase().padStart(4, "0");
}

/** Bytes of pg_subtrans a start zeroes from a prepared transaction's XID to the next XID, `xids` apart (4 bytes each, 8 KiB pages). */
export function subtransZeroBytes(xids: number): number {
  return Math.ceil(Math.max(0, xids) / 2048) * 8192;
}

export interface XidAdvance extends XidLimits {
  nextXid: number;
  epoch: number;
  /** What `pg_resetwal -x` sets (with `-e targetEpoch` when the advance passes 2^32). */
  targetXid: number;
  targetEpoch: number;
  /** Normal XIDs skipped by the advance. */
  advancedBy: number;
  /** What the warning on the first new XID says: "must be vacuumed within N transactions". */
  warningRemaining: number;
  /** age(datfrozenxid) of the oldest database right after the advance. */
  ageAfter: number;
  /** The pg_xact segment the new next XID needs (created zero-filled when missing). */
  xactSegment: string;
}

/**
 * Where to move the next XID so a cluster whose oldest datfrozenxid is `oldestXid` is `xidsBeforeWrap` XIDs
 * from its wrap limit: past the warning limit, short of the stop limit (pure). Refuses a cluster already past
 * the warning, and a margin outside (stop margin, warn margin].
 */
export function planXidAdvance(current: { nextXid: number; epoch: number; oldestXid: number }, xidsBeforeWrap = XIDS_BEFORE_WRAP): XidAdvance {
  const { nextXid, epoch, oldestXid } = current;
  if (!Number.isInteger(xidsBeforeWrap) || xidsBeforeWrap <= XID_STOP_MARGIN || xidsBeforeWrap > XID_WARN_MARGIN) {
    throw new RangeError(`XIDs before wraparound must be more than the stop margin (${XID_STOP_MARGIN}) and at most the warning margin (${XID_WARN_MARGIN}); got ${xidsBeforeWrap}`);
  }
  if (!Number.isInteger(nextXid) || nextXid < FIRST_NORMAL_XID || nextXid >= XID_SPACE) throw new RangeError(`next XID ${nextXid} is not a normal transaction ID`);
  if (!Number.isInteger(epoch) || epoch < 0 || epoch >= XID_SPACE - 1) throw new RangeError(`XID epoch ${epoch} is out of range`);
  const limits = xidLimits(oldestXid);
  if (!xidPrecedes(nextXid, limits.warnLimit)) {
    throw new Error(`the cluster is already past its wraparound warning limit (next XID ${nextXid}, warning from ${limits.warnLimit}, oldest datfrozenxid ${oldestXid}): run runbooks/postgres-wraparound.md on it, not this drill`);
  }
  const targetXid = xidSub(limits.wrapLimit, xidsBeforeWrap);
  // Ahead of nextXid by less than 2^31, so numerically smaller only when the counter passed 2^32.
  const wrapped = targetXid < nextXid;
  return {
    ...limits,
    nextXid,
    epoch,
    targetXid,
    targetEpoch: wrapped ? epoch + 1 : epoch,
    advancedBy: u32(targetXid - nextXid) - (wrapped ? FIRST_NORMAL_XID : 0),
    warningRemaining: u32(limits.wrapLimit - targetXid),
    ageAfter: u32(targetXid - oldestXid),
    xactSegment: xactSegmentName(targetXid),
  };
}

// ---------------------------------------------------------------------------------------------- parsing

export interface ControlData {
  state: string;
  nextXid: number;
  epoch: number;
  oldestXid: number;
  oldestXidDatabase: number;
  timeline: number;
}

/** The fields of "pg_controldata" output the drill reads (pure); throws naming a missing one. */
export function parseControlData(text: string): ControlData {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const get = (key: string): string => {
    const v = fields.get(key);
    if (v === undefined) throw new Error(`pg_controldata printed no "${key}"`);
    return v;
  };
  const int = (key: string): number => {
    const v = get(key);
    if (!/^\d+$/.test(v)) throw new Error(`pg_controldata "${key}" is ${JSON.stringify(v)}, not a number`);
    return Number(v);
  };
  const next = /^(\d+):(\d+)$/.exec(get("Latest checkpoint's NextXID"));
  if (!next) throw new Error(`pg_controldata NextXID is ${JSON.stringify(get("Latest checkpoint's NextXID"))}, expected <epoch>:<xid>`);
  return {
    state: get("Database cluster state"),
    epoch: Number(next[1]),
    nextXid: Number(next[2]),
    oldestXid: int("Latest checkpoint's oldestXID"),
    oldestXidDatabase: int("Latest checkpoint's oldestXID's DB"),
    timeline: int("Latest checkpoint's TimeLineID"),
  };
}

export interface WraparoundWarning {
  /** `database "app" must be vacuumed within 24999999 transactions` */
  text: string;
  /** Named when the backend could look the database up; at start-up PostgreSQL names only its OID. */
  database?: string;
  databaseOid?: number;
  remaining: number;
}

/** Every wraparound warning in PostgreSQL output (server log or a client's stderr), in order (pure). */
export function parseWraparoundWarnings(text: string): WraparoundWarning[] {
  const out: WraparoundWarning[] = [];
  for (const m of text.matchAll(/WARNING:\s+(database (?:"([^"]*)"|with OID (\d+)) must be vacuumed within (\d+) transactions)/g)) {
    out.push({ text: m[1]!, ...(m[2] !== undefined ? { database: m[2] } : {}), ...(m[3] !== undefined ? { databaseOid: Number(m[3]) } : {}), remaining: Number(m[4]) });
  }
  return out;
}

/** Tables the server's anti-wraparound autovacuum processed, per database, from the copy's log (log_autovacuum_min_duration=0). */
export function autovacuumWraparoundTables(serverLog: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of serverLog.matchAll(/automatic aggressive vacuum to prevent wraparound of table "([^".]+)\./g)) out[m[1]!] = (out[m[1]!] ?? 0) + 1;
  return out;
}

// ---------------------------------------------------------------------------------------------- the copy's server

/**
 * What the copy's PostgreSQL runs with, over the restored configuration (pg_ctl -o / postgres --single -c): it
 * answers nobody on the network, never archives into the stack's repository, never streams from or waits for
 * the stack's nodes, needs no certificate (local connections only), can hold the twin's prepared transaction,
 * and logs every autovacuum run (who froze what). Autovacuum stays as the stack configures it. Off would not
 * keep autovacuum out: past autovacuum_freeze_max_age PostgreSQL starts anti-wraparound workers at once
 * (they froze the whole e2e copy within 0.1 s of start-up). On, the launcher reaches the first database one
 * autovacuum_naptime (60 s) after start-up, so within the objective the drill's VACUUM (FREEZE) is what
 * freezes; the report counts the tables autovacuum did from the log (evidence.autovacuumWraparoundTables).
 */
export const COPY_SETTINGS: Readonly<Record<string, string>> = {
  listen_addresses: "",
  archive_mode: "off",
  primary_conninfo: "",
  primary_slot_name: "",
  synchronous_standby_names: "",
  ssl: "off",
  log_autovacuum_min_duration: "0",
  logging_collector: "off",
  log_destination: "stderr",
};

/** `-c name=value` pairs for the copy (pure); values are plain words, so pg_ctl's shell passes them as they are. */
export function copySettingArgs(extra: Record<string, string> = {}): string[] {
  return Object.entries({ ...COPY_SETTINGS, ...extra }).flatMap(([k, v]) => {
    if (!/^[a-z_]+$/.test(k) || !/^[A-Za-z0-9_.]*$/.test(v)) throw new Error(`copy setting ${k}=${JSON.stringify(v)} is not a plain word`);
    return ["-c", `${k}=${v}`];
  });
}

/** The image's PGDATA (components/postgres/image/Dockerfile); its PATH has PostgreSQL 17's programs. */
const PGDATA = "/var/lib/postgresql/data";
const SERVER_LOG = "/tmp/homelab-wraparound.log";
const PREPARED_GID = "homelab-drill-forgotten";

/** One row of pg_database as the drill reads it (AGES_SQL). */
export interface DatabaseAge { datname: string; age: number; datfrozenxid: number; datallowconn: boolean }
/** What can hold the oldest XID back, from pg_prepared_xacts, pg_stat_activity and pg_replication_slots (HOLDERS_SQL). */
export interface Holders {
  prepared: { gid: string; age: number; prepared: string; owner: string; database: string }[];
  sessions: { pid: number; usename: string | null; application_name: string; state: string | null; xmin_age: number | null; xid_age: number | null; xact_start: string | null }[];
  slots: { slot: string; active: boolean; xmin_age: number | null; catalog_xmin_age: number | null }[];
}

/** age(datfrozenxid) of every database, oldest first, as one jsonb value. */
const AGES_JSONB = "(SELECT coalesce(jsonb_agg(jsonb_build_object('datname', datname, 'age', age(datfrozenxid), 'datfrozenxid', datfrozenxid::text::bigint, 'datallowconn', datallowconn) ORDER BY age(datfrozenxid) DESC), '[]') FROM pg_database)";
const AGES_SQL = `SELECT ${AGES_JSONB}::text`;
const HOLDERS_SQL = `SELECT jsonb_build_object(
  'prepared', (SELECT coalesce(jsonb_agg(jsonb_build_object('gid', gid, 'age', age(transaction), 'prepared', prepared, 'owner', owner, 'database', database) ORDER BY age(transaction) DESC), '[]') FROM pg_prepared_xacts),
  'sessions', (SELECT coalesce(jsonb_agg(jsonb_build_object('pid', pid, 'usename', usename, 'application_name', application_name, 'state', state, 'xmin_age', age(backend_xmin), 'xid_age', age(backend_xid), 'xact_start', xact_start) ORDER BY greatest(age(backend_xmin), age(backend_xid)) DESC), '[]') FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)),
  'slots', (SELECT coalesce(jsonb_agg(jsonb_build_object('slot', slot_name, 'active', active, 'xmin_age', age(xmin), 'catalog_xmin_age', age(catalog_xmin))), '[]') FROM pg_replication_slots WHERE xmin IS NOT NULL OR catalog_xmin IS NOT NULL))::text`;

/** The oldest of the holders, named the way the runbook finds it, with what ends it (pure); undefined when nothing holds an XID. */
export function oldestHolder(h: Holders): { kind: "prepared" | "session" | "slot"; name: string; age: number; detail: string; fix: string } | undefined {
  const age = (...xs: (number | null)[]) => Math.max(0, ...xs.map((x) => x ?? 0));
  const all = [
    ...h.prepared.map((p) => ({ kind: "prepared" as const, name: `prepared transaction '${p.gid}'`, age: p.age, detail: `prepared ${p.prepared} by ${p.owner} in database ${p.database}`, fix: "COMMIT PREPARED or ROLLBACK PREPARED it" })),
    ...h.sessions.map((s) => ({ kind: "session" as const, name: `session pid ${s.pid}`, age: age(s.xmin_age, s.xid_age), detail: `${s.usename ?? "?"}, ${s.application_name || "no application_name"}, ${s.state ?? "?"}, transaction since ${s.xact_start ?? "?"}`, fix: "end it (pg_terminate_backend)" })),
    ...h.slots.map((s) => ({ kind: "slot" as const, name: `replication slot ${s.slot}`, age: age(s.xmin_age, s.catalog_xmin_age), detail: `${s.active ? "active" : "inactive"}, xmin age ${s.xmin_age ?? "-"}, catalog_xmin age ${s.catalog_xmin_age ?? "-"}`, fix: "drop it if nothing consumes it" })),
  ];
  return all.sort((a, b) => b.age - a.age)[0];
}

const n = (x: number) => x.toLocaleString("en-US");

export async function runWraparoundDrill(opts: WraparoundDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const ctl = opts.nodeControl ?? controlFor(t);
  const startedAtMs = Date.now();
  const runId = newRunId();
  const stanza = t.pgbackrest.stanza;
  const db = t.postgres.database;
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = { holdPrepared: Boolean(opts.holdPrepared), xidsBeforeWrap: XIDS_BEFORE_WRAP, warnAge: WARN_AGE };
  const objective = t.objectives.wraparound;
  const objectives = { rtoSeconds: objective?.rto ?? NaN };
  let rto: RtoBreakdown | null = null;
  let copy: RecreatableNode | undefined;
  log.info(`drill wraparound on stack ${t.stack} (run ${runId}): objective warning -> every database below the warning age (${n(WARN_AGE)}) <= ${formatSeconds(objectives.rtoSeconds)}`);

  const sql = (q: string | readonly string[], database = db, timeoutMs = 60_000) => psqlOnNode(ctl, copy!, q, { database, timeoutMs });
  /** A program on the copy as the OS user postgres; rejects with its last lines of output. */
  const asPostgres = async (argv: string[], timeoutMs = 600_000) => {
    const r = await ctl.exec(copy!, argv, { user: "postgres", allowFailure: true, timeoutMs });
    if (r.code !== 0) throw new Error(`${argv[0]} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`);
    return r;
  };
  const controlData = async () => parseControlData((await asPostgres(["pg_controldata", "-D", PGDATA])).stdout);
  let extraSettings: Record<string, string> = {};
  const startCopy = async () => {
    const options = copySettingArgs(extraSettings).join(" ");
    await asPostgres(["pg_ctl", "-D", PGDATA, "-w", "-t", "3600", "-l", SERVER_LOG, "-o", options, "start"], 3_700_000);
    // pg_ctl -w returns once connections are accepted, which with hot_standby can be before promotion.
    await waitFor("the copy promoted and accepting connections", async () => (await sql("SELECT pg_is_in_recovery()", "postgres", 10_000)) === "f", { timeoutMs: 3_600_000, intervalMs: 100 });
  };
  const stopCopy = () => asPostgres(["pg_ctl", "-D", PGDATA, "-w", "-t", "600", "-m", "fast", "stop"], 700_000);
  const serverLog = async () => (await ctl.exec(copy!, ["cat", SERVER_LOG], { allowFailure: true, timeoutMs: 30_000 })).stdout;

  let primary: Awaited<ReturnType<typeof currentPrimary>> | undefined;
  try {
    if (!objective) throw new Error(`the topology of stack ${t.stack} has no objectives.wraparound: re-run \`homelab up --stack ${t.stack}\` with this version`);
    primary = await currentPrimary(t, ctl);
    if (primary.handle.kind !== "docker") throw new Error(`the wraparound drill makes its scratch copy as a container: node ${primary.name} has a ${primary.handle.kind} handle`);
    const container = primary.handle.container;
    const name = `${container}-wraparound-${runId}`;

    // ------------------------------------------------------------------------------------ scratch copy
    const copyStartedAtMs = Date.now();
    copy = await log.step(`scratch copy: ${name} with ${primary.name}'s identity, HOMELAB_ROLE=restore`, async () => {
      const snapshot = await snapshotDockerNode(primary!);
      // Its own hostname: the stack's DNS name (the primary's hostname, a network alias) must keep resolving
      // to the primary alone. The repository trusts the copy by its certificate, which the snapshot carries.
      const own: NodeSnapshot = { ...snapshot, node: { ...snapshot.node, container: { ...snapshot.node.container, hostname: name.slice(0, 63) } } };
      const node = await createNodeCopy(own, { name, nodeLabel: `${primary!.name}-wraparound`, env: { HOMELAB_ROLE: "restore" }, timeoutSeconds: 120 });
      copy = node;
      await ctl.waitHealthy(node, 120_000);
      return node;
    }, () => `idle, empty data volume ${copy?.dataVolumes.join(", ")}`);
    const backup = await log.step("restore: the newest backup in the repository, to consistency, promoted", async () => {
      const state = await pgbackrestInfoOnNode(ctl, copy!, stanza, { timeoutMs: 60_000 });
      const newest = state.newestBackup;
      if (!newest) throw new Error(`the repository holds no backup of stanza ${stanza} (${state.statusMessage || `status ${state.statusCode}`}): the drill copies the primary from its newest backup`);
      const r = await ctl.exec(copy!, ["pgbackrest", `--stanza=${stanza}`, `--set=${newest.label}`, "restore", "--type=immediate", "--target-action=promote", "--archive-mode=off"], { allowFailure: true, timeoutMs: 6 * 3_600_000 });
      if (r.code !== 0) throw new Error(`pgbackrest restore of ${newest.label} failed (exit ${r.code}): ${pgbackrestError(r.stdout + r.stderr)}`);
      const size = /restore size = ([^,]+), file total = (\d+)/.exec(r.stdout + r.stderr);
      return { label: newest.label, ageSeconds: Math.round((Date.now() - newest.stopMs) / 1000), size: size ? `${size[1]} in ${size[2]} files` : null };
    }, (b) => `${b.label} (${formatSeconds(b.ageSeconds)} old)${b.size ? `, ${b.size}` : ""}`);
    evidence.backup = backup;
    const configured = Number((await asPostgres(["postgres", "-D", PGDATA, "-C", "max_prepared_transactions"])).stdout.trim());
    extraSettings = { max_prepared_transactions: String(Math.max(2, Number.isFinite(configured) ? configured : 0)) };
    await log.step("start the copy: pg_ctl as postgres, Unix socket only, archive_mode off; recovery to consistency, promotion", startCopy);
    const isolation = await log.step("isolate: the copy leaves the stack's network", async () => {
      const h = copy!.handle as { container: string; dockerHost?: string };
      await docker(["network", "disconnect", copy!.container.network, h.container], { env: dockerEnv(h.dockerHost) });
      const networks = (await docker(["inspect", "--format", "{{len .NetworkSettings.Networks}}", h.container], { env: dockerEnv(h.dockerHost) })).stdout.trim();
      const settings = JSON.parse(await sql("SELECT json_object_agg(name, setting)::text FROM pg_settings WHERE name IN ('archive_mode', 'listen_addresses', 'primary_conninfo', 'synchronous_standby_names', 'autovacuum', 'max_prepared_transactions')", "postgres")) as Record<string, string>;
      const timeline = Number(await sql("SELECT timeline_id FROM pg_control_checkpoint()", "postgres"));
      return { networks: Number(networks), settings, timeline };
    }, (i) => `networks ${i.networks}; archive_mode=${i.settings.archive_mode}, listen_addresses='${i.settings.listen_addresses}', autovacuum=${i.settings.autovacuum}; timeline ${i.timeline}`);
    evidence.isolation = isolation;
    evidence.copySeconds = (Date.now() - copyStartedAtMs) / 1000;
    const isolated = isolation.networks === 0 && isolation.settings.archive_mode === "off" && isolation.settings.listen_addresses === "" && isolation.settings.primary_conninfo === "";
    checks.push(check("the copy is isolated from the stack", isolated, `on ${isolation.networks} network(s), archive_mode=${isolation.settings.archive_mode}, listen_addresses='${isolation.settings.listen_addresses}', primary_conninfo '${isolation.settings.primary_conninfo}'; the copy ready in ${formatSeconds(evidence.copySeconds as number)} from backup ${backup.label}`));
    if (!isolated) throw new Error("the copy is not isolated from the stack: not injecting anything");

    // ------------------------------------------------------------------------------------ fault
    if (opts.holdPrepared) {
      await log.step(`twin: a prepared transaction left behind ('${PREPARED_GID}')`, async () => {
        await sql("CREATE TABLE drill_wraparound_2pc (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())");
        await sql(["BEGIN", "INSERT INTO drill_wraparound_2pc (id) VALUES (1)", `PREPARE TRANSACTION '${PREPARED_GID}'`]);
      });
    }
    const prepared = Number(await sql("SELECT count(*) FROM pg_prepared_xacts", "postgres"));
    await log.step("stop the copy cleanly (pg_ctl stop -m fast)", stopCopy);
    const plan = await log.step(`fault: pg_resetwal -x to ${n(XIDS_BEFORE_WRAP)} XIDs before the wrap limit`, async () => {
      const before = await controlData();
      if (before.state !== "shut down") throw new Error(`pg_controldata says the copy is "${before.state}", not "shut down": pg_resetwal needs a clean shutdown`);
      const p = planXidAdvance(before);
      // Every start after the advance zeroes pg_subtrans from the oldest prepared transaction's XID on.
      if (prepared > 0) {
        const need = subtransZeroBytes(p.advancedBy) + 1024 ** 3;
        const avail = Number((await asPostgres(["df", "-B1", "--output=avail", PGDATA])).stdout.trim().split("\n").pop());
        if (!(avail >= need)) throw new Error(`the copy holds ${prepared} prepared transaction(s): each start after the advance writes about ${(need / 1024 ** 3).toFixed(1)} GiB of pg_subtrans, the copy's volume has ${(avail / 1024 ** 3).toFixed(1)} GiB free`);
      }
      const segment = `${PGDATA}/pg_xact/${p.xactSegment}`;
      const made = (await asPostgres(["sh", "-c", `[ -e "$1" ] && echo kept && exit 0; head -c ${XACT_SEGMENT_BYTES} /dev/zero > "$1.tmp" && chmod 0600 "$1.tmp" && mv "$1.tmp" "$1" && echo created`, "sh", segment])).stdout.trim();
      await asPostgres(["pg_resetwal", "-x", String(p.targetXid), ...(p.targetEpoch !== p.epoch ? ["-e", String(p.targetEpoch)] : []), "-D", PGDATA]);
      const after = await controlData();
      if (after.nextXid !== p.targetXid || after.epoch !== p.targetEpoch || after.oldestXid !== before.oldestXid) {
        throw new Error(`pg_controldata after pg_resetwal: next XID ${after.epoch}:${after.nextXid}, oldest ${after.oldestXid}; expected ${p.targetEpoch}:${p.targetXid}, oldest ${before.oldestXid}`);
      }
      return { ...p, segment: `${p.xactSegment} ${made}` };
    }, (p) => `next XID ${p.epoch}:${n(p.nextXid)} -> ${p.targetEpoch}:${n(p.targetXid)} (advanced by ${n(p.advancedBy)}); oldest datfrozenxid ${n(p.oldestXid)}: warn limit ${n(p.warnLimit)}, stop ${n(p.stopLimit)}, wrap ${n(p.wrapLimit)}; pg_xact/${p.segment}`);
    evidence.xid = plan;

    // ------------------------------------------------------------------------------------ detect
    // Single-user mode: no postmaster, so no autovacuum of any kind: the drill sees what pg_resetwal left,
    // whatever the stack's autovacuum settings (with autovacuum off, PostgreSQL's forced anti-wraparound workers
    // froze the e2e copy within 0.1 s of start-up, before a client could see the warning).
    const detected = await log.step("detect: a new XID in single-user mode, age(datfrozenxid) of every database", async () => {
      const q = `SELECT jsonb_build_object('xid', txid_current(), 'databases', ${AGES_JSONB}, 'prepared', (SELECT count(*) FROM pg_prepared_xacts), 'oldestTables', (SELECT coalesce(jsonb_agg(x), '[]') FROM (SELECT c.oid::regclass::text AS relation, age(c.relfrozenxid) AS age FROM pg_class c WHERE c.relkind IN ('r', 'm', 't') ORDER BY age(c.relfrozenxid) DESC LIMIT 3) x))::text AS j`;
      const r = await ctl.exec(copy!, ["postgres", "--single", "-D", PGDATA, ...copySettingArgs(extraSettings), db], { user: "postgres", input: `${q}\n`, allowFailure: true, timeoutMs: 3_600_000 });
      const error = /\b(?:ERROR|FATAL|PANIC):\s+.*$/m.exec(`${r.stdout}\n${r.stderr}`);
      if (r.code !== 0 || error) throw new Error(`postgres --single failed (exit ${r.code}): ${error?.[0] ?? r.stderr.trim().split("\n").slice(-2).join(" | ")}`);
      const row = parseSingleUserOutput(r.stdout)[0]?.j;
      if (!row) throw new Error("postgres --single printed no row");
      const out = JSON.parse(row) as { xid: number; databases: DatabaseAge[]; prepared: number; oldestTables: { relation: string; age: number }[] };
      const warnings = parseWraparoundWarnings(r.stderr);
      return { ...out, warning: warnings.find((w) => w.database !== undefined) ?? warnings[warnings.length - 1], startupWarning: warnings.find((w) => w.databaseOid !== undefined), atMs: Date.now() };
    }, (d) => `${d.warning ? `WARNING: ${d.warning.text}` : "no warning"}; max age(datfrozenxid) ${n(d.databases[0]?.age ?? 0)} (${d.databases[0]?.datname})`);
    const detectedAtMs = detected.atMs;
    const maxAgeBefore = Math.max(...detected.databases.map((d) => d.age));
    evidence.warning = detected.warning ?? null;
    evidence.agesBefore = detected.databases;
    evidence.maxAgeBefore = maxAgeBefore;
    evidence.oldestTables = detected.oldestTables;
    const warned = detected.warning !== undefined && detected.warning.remaining <= XID_WARN_MARGIN && detected.warning.remaining > XID_STOP_MARGIN;
    checks.push(check("wraparound warning observed", warned, detected.warning ? `a new XID (${n(detected.xid)}) drew "WARNING: ${detected.warning.text}" (the advance planned ${n(plan.warningRemaining)}; warning within ${n(XID_WARN_MARGIN)}, refusal within ${n(XID_STOP_MARGIN)})` : `a new XID (${n(detected.xid)}) drew no wraparound warning although the next XID is ${n(plan.warningRemaining)} from the wrap limit`));
    checks.push(check("XID age past the warning age", maxAgeBefore >= WARN_AGE, `max age(datfrozenxid) ${n(maxAgeBefore)} (${detected.databases.map((d) => `${d.datname} ${n(d.age)}`).join(", ")}); the warning starts at ${n(WARN_AGE)}`, { objective: WARN_AGE, measured: maxAgeBefore, unit: "XIDs" }));

    // ------------------------------------------------------------------------------------ recover
    const startedCopyAtMs = await log.step("recover: start the copy", async () => {
      await startCopy();
      return Date.now();
    }, (at) => `accepting connections ${formatDuration(at - detectedAtMs)} after the warning`);
    const holders = await log.step("recover: what holds the oldest XID (prepared transactions, sessions, replication slots)", async () => JSON.parse(await sql(HOLDERS_SQL, "postgres")) as Holders, (h) => `${h.prepared.length} prepared, ${h.sessions.length} sessions, ${h.slots.length} slots${oldestHolder(h) ? `; the oldest: ${oldestHolder(h)!.name}, age ${n(oldestHolder(h)!.age)}` : ""}`);
    evidence.holders = holders;
    const vacuum = await log.step("recover: VACUUM (FREEZE) of every database (vacuumdb --all --freeze; template0 allowed connections for it)", async () => {
      const t0 = Date.now();
      await sql("ALTER DATABASE template0 ALLOW_CONNECTIONS true", "postgres");
      try {
        const r = await ctl.exec(copy!, ["vacuumdb", "--all", "--freeze"], { user: "postgres", allowFailure: true, timeoutMs: Math.max(120_000, objectives.rtoSeconds * 2000) });
        if (r.code !== 0) throw new Error(`vacuumdb failed (exit ${r.code}): ${r.stderr.split("\n").filter((l) => /ERROR|FATAL|error:/.test(l)).slice(-2).join(" | ") || r.stderr.trim().split("\n").slice(-1)[0]}`);
        const databases = [...r.stdout.matchAll(/vacuuming database "([^"]+)"/g), ...r.stderr.matchAll(/vacuuming database "([^"]+)"/g)].map((m) => m[1]!);
        return { databases, failsafeTables: (r.stderr.match(/bypassing nonessential maintenance of table/g) ?? []).length, ms: Date.now() - t0, doneAtMs: Date.now() };
      } finally {
        await sql("ALTER DATABASE template0 ALLOW_CONNECTIONS false", "postgres");
      }
    }, (v) => `${v.databases.join(", ")} in ${formatDuration(v.ms)}; VACUUM's failsafe (no index vacuuming, no cost delay) on ${v.failsafeTables} tables`);
    evidence.vacuumdb = vacuum;
    evidence.freezeSeconds = vacuum.ms / 1000;

    // ------------------------------------------------------------------------------------ verify
    const verified = await log.step("verify: age(datfrozenxid) of every database, a new XID without warning", async () => {
      const ages = JSON.parse(await sql(AGES_SQL, "postgres")) as DatabaseAge[];
      const r = await ctl.exec(copy!, ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", "SELECT txid_current()"], { user: "postgres", allowFailure: true, timeoutMs: 30_000 });
      if (r.code !== 0) throw new Error(`SELECT txid_current() failed (exit ${r.code}): ${r.stderr.trim().split("\n").slice(-2).join(" | ")}`);
      return { ages, xid: Number(r.stdout.trim()), warnings: parseWraparoundWarnings(r.stderr), atMs: Date.now() };
    }, (v) => `max age ${n(Math.max(...v.ages.map((a) => a.age)))}; ${v.warnings.length ? `WARNING: ${v.warnings[0]!.text}` : "no warning"}`);
    const maxAgeAfter = Math.max(...verified.ages.map((a) => a.age));
    evidence.agesAfter = verified.ages;
    evidence.maxAgeAfter = maxAgeAfter;
    evidence.autovacuumWraparoundTables = autovacuumWraparoundTables(await serverLog());
    const frozen = maxAgeAfter < WARN_AGE;
    const quiet = verified.warnings.length === 0;
    let cause = "";
    if (!frozen || !quiet) {
      const now = JSON.parse(await sql(HOLDERS_SQL, "postgres")) as Holders;
      evidence.holdersAfter = now;
      const top = oldestHolder(now);
      cause = top ? `; VACUUM cannot freeze past the oldest XID still held: ${top.name} (age ${n(top.age)} XIDs, ${top.detail}): ${top.fix}` : "";
    }
    checks.push(check("every database below the warning age", frozen, `max age(datfrozenxid) ${n(maxAgeBefore)} -> ${n(maxAgeAfter)} (${verified.ages.map((a) => `${a.datname} ${n(a.age)}`).join(", ")}; warning from ${n(WARN_AGE)})${cause}`, { objective: WARN_AGE, measured: maxAgeAfter, unit: "XIDs" }));
    checks.push(check("a new XID draws no warning", quiet, quiet ? `txid_current() = ${n(verified.xid)}, no warning` : `txid_current() = ${n(verified.xid)} still drew "WARNING: ${verified.warnings[0]!.text}"${cause}`));
    if (frozen && quiet) rto = rtoPhases([{ name: "start", atMs: startedCopyAtMs }, { name: "freeze", atMs: vacuum.doneAtMs }, { name: "verify", atMs: verified.atMs }], detectedAtMs);
    checks.push(assertRtoWithin(rto?.totalSeconds, objectives.rtoSeconds, "recovery time (warning -> every database frozen)"));

    // ------------------------------------------------------------------------------------ the stack's repository
    const repository = nodeByName(t, t.pgbackrest.repositoryNode);
    const listing = await archivedSegmentsOnNode(ctl, repository, stanza);
    const tl = isolation.timeline;
    const hex = tl.toString(16).toUpperCase().padStart(8, "0");
    const own = listing.segments.filter((s) => s.segment.startsWith(hex)).map((s) => s.segment);
    const ownHistory = listing.timelineHistories.includes(tl);
    checks.push(check("the copy archived nothing into the stack's repository", own.length === 0 && !ownHistory, own.length === 0 && !ownHistory ? `no segment and no history file of the copy's timeline ${tl} in archive/${stanza}` : `archive/${stanza} holds ${own.length} segment(s) of the copy's timeline ${tl} (${own.slice(0, 3).join(", ")})${ownHistory ? " and its history file" : ""}`));
  } catch (e) {
    checks.push(drillStopped(log, e));
  } finally {
    if (copy) {
      const node: ControlledNode = copy;
      await log.step(`cleanup: remove the scratch copy ${node.handle.kind === "docker" ? node.handle.container : node.name} and its volume`, () => removeNodeCopy(node)).catch((e: Error) => checks.push(check("cleanup", false, e.message)));
    }
  }

  return concludeDrill({ drill: "wraparound", stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo: null, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

// ---------------------------------------------------------------------------------------------------- main
// `npx tsx drills/wraparound.mts --stack <stack> | --topology <file.json> [--reports <dir>]`: the flags and the
// runner of `homelab drill wraparound`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "wraparound");
