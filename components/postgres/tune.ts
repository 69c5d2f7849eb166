// postgresql.conf settings for a replicated, WAL-archived PostgreSQL node.
// Memory/planner/parallel settings follow PGTune (le0pard/pgtune, src/features/configuration/
// configurationSlice.js, commit 01bb6447; formatting from src/common/components/configurationView/index.jsx).
// Replication, archiving and safety settings are this project's own, see adrs/0002-tuning-formulas.md.
// Pure: no I/O, no Pulumi.
import { formatPgDuration, formatPgMemory, GUC_NAME, hasControlCharacter, type PostgresSettings } from "./conf.ts";

export const STORAGE_TYPES = ["hdd", "ssd", "nvme"] as const;
export const PROFILES = ["web", "oltp", "dw", "mixed"] as const;
export type StorageType = (typeof STORAGE_TYPES)[number];
export type Profile = (typeof PROFILES)[number];

export const MIN_VERSION = 13;
export const MAX_VERSION = 17;
export const DEFAULT_VERSION = 17;

/** Below this PostgreSQL plus the OS do not fit (PGTune warns under 256MB too). */
export const MIN_MEMORY_BYTES = 256 * 1024 ** 2;
/** Above this shared_buffers (1/4) or effective_cache_size (3/4) would pass PostgreSQL's maximum (INT_MAX 8kB pages = 16TiB). */
export const MAX_MEMORY_BYTES = 16 * 1024 ** 4;
/** max_parallel_workers and max_parallel_workers_per_gather stop at 1024 (MAX_PARALLEL_WORKER_LIMIT); PGTune sets them to the cpu count. */
export const MAX_CPUS = 1024;
/** MAX_BACKENDS (2^18 - 1): max_connections + autovacuum_max_workers + max_worker_processes + max_wal_senders + 1 must stay below it. */
export const MAX_BACKENDS = 262_143;
/** PostgreSQL refuses to start unless max_connections > superuser_reserved_connections (3 by default) + reserved_connections (0). */
export const MIN_CONNECTIONS = 4;

export const DEFAULT_STANZA = "main";
export const DEFAULT_ARCHIVE_TIMEOUT_SECONDS = 60;
export const MAX_ARCHIVE_TIMEOUT_SECONDS = 86_400;
export const DEFAULT_MAX_WAL_SENDERS = 10;
export const DEFAULT_MAX_REPLICATION_SLOTS = 10;
export const DEFAULT_IDLE_IN_TRANSACTION_SESSION_TIMEOUT_MS = 10 * 60_000;
/** Floor of the max_slot_wal_keep_size rule max(2 * max_wal_size, 1GiB). */
export const MIN_DEFAULT_SLOT_WAL_KEEP_BYTES = 1024 ** 3;
/** max_slot_wal_keep_size must hold at least one 16MiB WAL segment to be useful. */
export const MIN_SLOT_WAL_KEEP_BYTES = 16 * 1024 ** 2;

/** PGTune's max_connections default per workload (selectMaxConnections). */
export const DEFAULT_MAX_CONNECTIONS: Readonly<Record<Profile, number>> = { web: 200, oltp: 300, dw: 40, mixed: 100 };

export interface TuneInput {
  /** RAM the PostgreSQL node may use, in bytes (at least 256MiB). */
  memoryBytes: number;
  /** CPUs of the node, a whole number >= 1. */
  cpus: number;
  /** Storage under the data directory. */
  storage: StorageType;
  /** PGTune workload type. */
  profile: Profile;
  /** PostgreSQL major version, 13..17; default 17. */
  version?: number;
  /** Default by profile as PGTune: web 200, oltp 300, dw 40, mixed 100. */
  maxConnections?: number;
  /** pgBackRest archiving; default stanza "main", archive_timeout 60s. */
  archive?: { stanza: string; timeoutSeconds: number };
  /** Streaming replication; defaults: 10 WAL senders, 10 slots, slot WAL kept max(2 * max_wal_size, 1GiB). */
  replication?: {
    maxWalSenders?: number;
    maxReplicationSlots?: number;
    maxSlotWalKeepSizeBytes?: number;
    synchronousStandbyNames?: string;
  };
  /** idle_in_transaction_session_timeout in ms; default 10 minutes; 0 disables. */
  idleInTransactionSessionTimeoutMs?: number;
  /** Further settings, written last; may not weaken the safety settings (see SAFETY_GUARDS). */
  extraSettings?: Record<string, string | number | boolean>;
}

export class TuneError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid PostgreSQL tuning input:\n- ${problems.join("\n- ")}`);
    this.name = "TuneError";
    this.problems = problems;
  }
}

const KB = 1024;
const MB_IN_KB = 1024;
const GB_IN_KB = 1024 * 1024;

/** PGTune selectCheckpointSegments, in kB. */
const WAL_SIZE_KB: Readonly<Record<Profile, { min: number; max: number }>> = {
  web: { min: 1024 * MB_IN_KB, max: 4096 * MB_IN_KB },
  oltp: { min: 2048 * MB_IN_KB, max: 8192 * MB_IN_KB },
  dw: { min: 4096 * MB_IN_KB, max: 16384 * MB_IN_KB },
  mixed: { min: 1024 * MB_IN_KB, max: 4096 * MB_IN_KB },
};

/** PGTune selectRandomPageCost / selectEffectiveIoConcurrency (linux). */
const STORAGE_COSTS: Readonly<Record<StorageType, { randomPageCost: string; effectiveIoConcurrency: number }>> = {
  hdd: { randomPageCost: "4", effectiveIoConcurrency: 2 },
  ssd: { randomPageCost: "1.1", effectiveIoConcurrency: 200 },
  nvme: { randomPageCost: "1.1", effectiveIoConcurrency: 1000 },
};

/** PostgreSQL's own defaults, which PGTune leaves in place (and uses in work_mem) below 4 cpus. */
const PG_DEFAULT_PARALLEL = { maxWorkerProcesses: 8, maxParallelWorkers: 8, perGather: 2, maintenance: 2 };

const truthy = new Set(["on", "true", "yes", "1"]);
const isOn = (v: string) => truthy.has(v.toLowerCase());

/** Why extraSettings may not set `name` to `value` (the tuner's own input names), or undefined when it may. */
export function extraSettingRefusal(name: string, value: string | number | boolean): string | undefined {
  const v = typeof value === "boolean" ? (value ? "on" : "off") : String(value);
  return SAFETY_GUARDS[name.toLowerCase()]?.(v.trim());
}

/**
 * Settings extraSettings may not weaken. Each returns a reason when the value is refused, undefined when fine.
 * Keys set from a typed field must go through that field, so there is one place per decision.
 */
const SAFETY_GUARDS: Readonly<Record<string, (value: string) => string | undefined>> = {
  wal_level: (v) => (["replica", "logical"].includes(v.toLowerCase()) ? undefined : "replication and archiving need wal_level replica or logical (never minimal)"),
  archive_mode: (v) => (["on", "always"].includes(v.toLowerCase()) ? undefined : "WAL archiving is what backups and point-in-time recovery stand on: accepted on or always"),
  archive_command: () => "the archive command is pgBackRest's (set archive.stanza instead)",
  archive_library: () => "archiving goes through archive_command to pgBackRest; an archive_library would replace it",
  archive_timeout: () => "set archive.timeoutSeconds instead (it bounds the RPO of archive-only recovery)",
  max_connections: () => "set maxConnections instead",
  max_wal_senders: () => "set replication.maxWalSenders instead",
  max_replication_slots: () => "set replication.maxReplicationSlots instead",
  max_slot_wal_keep_size: () => "set replication.maxSlotWalKeepSizeBytes instead (unlimited, -1, lets an inactive slot fill the disk)",
  synchronous_standby_names: () => "set replication.synchronousStandbyNames instead",
  idle_in_transaction_session_timeout: () => "set idleInTransactionSessionTimeoutMs instead",
  hot_standby: (v) => (isOn(v) ? undefined : "replicas must accept read-only queries: accepted on"),
  wal_log_hints: (v) => (isOn(v) ? undefined : "pg_rewind needs wal_log_hints to rejoin a demoted primary: accepted on"),
  fsync: (v) => (isOn(v) ? undefined : "fsync off loses committed data on a crash: accepted on"),
  full_page_writes: (v) => (isOn(v) ? undefined : "full_page_writes off risks torn pages and breaks pg_rewind: accepted on"),
  password_encryption: (v) => (v.toLowerCase() === "scram-sha-256" ? undefined : "pg_hba uses scram-sha-256, so passwords must be stored as scram-sha-256"),
  data_checksums: () => "data checksums are chosen at initdb time (initdb --data-checksums), not in postgresql.conf",
  shared_preload_libraries: (v) =>
    v.split(",").map((s) => s.trim().replace(/^"|"$/g, "")).includes("pg_stat_statements")
      ? undefined
      : "monitoring needs pg_stat_statements preloaded: the list must include pg_stat_statements",
};

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === undefined || value === null) return String(value);
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function checkInteger(problems: string[], field: string, value: unknown, min: number, max: number, accepted?: string): value is number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    problems.push(`${field}: ${describe(value)} is not accepted; expected ${accepted ?? `a whole number from ${min} to ${max}`}`);
    return false;
  }
  return true;
}

/** Parallel settings per PGTune selectParallelSettings (v13+ always has max_parallel_workers and maintenance workers). */
function parallelSettings(cpus: number, profile: Profile) {
  if (cpus < 4) return { ...PG_DEFAULT_PARALLEL, fromPgTune: false };
  const half = Math.ceil(cpus / 2);
  return {
    maxWorkerProcesses: cpus,
    maxParallelWorkers: cpus,
    // "no clear evidence, that each new worker will provide big benefit for each new core": capped at 4 except dw.
    perGather: profile === "dw" ? half : Math.min(half, 4),
    maintenance: Math.min(half, 4),
    fromPgTune: true,
  };
}

function autovacuumMaxWorkers(cpus: number): number | undefined {
  if (cpus >= 32) return 5;
  if (cpus >= 16) return 4;
  return undefined; // PostgreSQL default 3
}

/**
 * Turns a node description into postgresql.conf settings: PGTune's formulas for memory, WAL sizing, planner
 * and parallelism, plus what a streaming-replicated, pgBackRest-archived node needs. Every problem with
 * the input is collected and thrown at once as a TuneError.
 */
export function tunePostgres(input: TuneInput): PostgresSettings {
  const problems: string[] = [];
  const version = input.version ?? DEFAULT_VERSION;

  const memoryOk = checkInteger(problems, "memoryBytes", input.memoryBytes, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES,
    `a whole number of bytes from ${MIN_MEMORY_BYTES} (256MiB, the smallest node PostgreSQL and PGTune's formulas are meant for) to ${MAX_MEMORY_BYTES} (16TiB)`);
  const cpusOk = checkInteger(problems, "cpus", input.cpus, 1, MAX_CPUS, `a whole number of cpus from 1 to ${MAX_CPUS}`);
  if (!(STORAGE_TYPES as readonly unknown[]).includes(input.storage)) {
    problems.push(`storage: ${describe(input.storage)} is not accepted; expected one of ${STORAGE_TYPES.join(", ")}`);
  }
  const profileOk = (PROFILES as readonly unknown[]).includes(input.profile);
  if (!profileOk) {
    problems.push(`profile: ${describe(input.profile)} is not accepted; expected one of ${PROFILES.join(", ")} (PGTune's desktop type is not offered)`);
  }
  checkInteger(problems, "version", version, MIN_VERSION, MAX_VERSION, `a PostgreSQL major version from ${MIN_VERSION} to ${MAX_VERSION}`);

  const maxConnections = input.maxConnections ?? (profileOk ? DEFAULT_MAX_CONNECTIONS[input.profile] : 100);
  const connectionsOk = checkInteger(problems, "maxConnections", maxConnections, MIN_CONNECTIONS, MAX_BACKENDS,
    `a whole number from ${MIN_CONNECTIONS} (more than the 3 superuser_reserved_connections) to ${MAX_BACKENDS} (PostgreSQL's MAX_BACKENDS)`);

  const stanza = input.archive?.stanza ?? DEFAULT_STANZA;
  // The stanza is pasted into a shell command line (archive_command): only characters with no shell meaning.
  if (typeof stanza !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(stanza)) {
    problems.push(`archive.stanza: ${describe(stanza)} is not accepted; expected 1..64 letters, digits, "_", "-", "." starting with a letter or digit`);
  }
  const archiveTimeoutSeconds = input.archive?.timeoutSeconds ?? DEFAULT_ARCHIVE_TIMEOUT_SECONDS;
  checkInteger(problems, "archive.timeoutSeconds", archiveTimeoutSeconds, 1, MAX_ARCHIVE_TIMEOUT_SECONDS,
    `a whole number of seconds from 1 to ${MAX_ARCHIVE_TIMEOUT_SECONDS} (0 would disable the bound on archive-only RPO)`);

  const replication = input.replication ?? {};
  const maxWalSenders = replication.maxWalSenders ?? DEFAULT_MAX_WAL_SENDERS;
  const sendersOk = checkInteger(problems, "replication.maxWalSenders", maxWalSenders, 1, MAX_BACKENDS,
    `a whole number from 1 (a streaming replica needs one) to ${MAX_BACKENDS}`);
  const maxReplicationSlots = replication.maxReplicationSlots ?? DEFAULT_MAX_REPLICATION_SLOTS;
  checkInteger(problems, "replication.maxReplicationSlots", maxReplicationSlots, 1, MAX_BACKENDS,
    `a whole number from 1 (each replica holds a slot) to ${MAX_BACKENDS}`);
  if (replication.maxSlotWalKeepSizeBytes !== undefined) {
    const v = replication.maxSlotWalKeepSizeBytes;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < MIN_SLOT_WAL_KEEP_BYTES || v % (1024 * 1024) !== 0) {
      problems.push(`replication.maxSlotWalKeepSizeBytes: ${describe(v)} is not accepted; expected a whole number of MiB (the setting's unit), at least ${MIN_SLOT_WAL_KEEP_BYTES} (one 16MiB WAL segment); unlimited (-1) is refused so an inactive slot cannot fill the disk`);
    }
  }
  const syncNames = replication.synchronousStandbyNames;
  if (syncNames !== undefined && (typeof syncNames !== "string" || syncNames.trim() === "" || hasControlCharacter(syncNames))) {
    problems.push(`replication.synchronousStandbyNames: ${describe(syncNames)} is not accepted; expected a non-empty one-line list such as "FIRST 1 (replica1)" or "ANY 1 (replica1, replica2)", or leave it out for asynchronous replication`);
  }

  const idleMs = input.idleInTransactionSessionTimeoutMs ?? DEFAULT_IDLE_IN_TRANSACTION_SESSION_TIMEOUT_MS;
  checkInteger(problems, "idleInTransactionSessionTimeoutMs", idleMs, 0, 2_147_483_647, "a whole number of milliseconds from 0 (disabled) to 2147483647");

  const extras: Array<[string, string]> = [];
  if (input.extraSettings !== undefined) {
    if (typeof input.extraSettings !== "object" || input.extraSettings === null || Array.isArray(input.extraSettings)) {
      problems.push(`extraSettings: ${describe(input.extraSettings)} is not accepted; expected an object of setting name to string, number or boolean`);
    } else {
      for (const [name, raw] of Object.entries(input.extraSettings)) {
        const field = `extraSettings.${name}`;
        if (!GUC_NAME.test(name)) {
          problems.push(`${field}: ${describe(name)} is not a PostgreSQL parameter name; expected letters, digits and "_" with an optional "extension." prefix`);
          continue;
        }
        let value: string;
        if (typeof raw === "boolean") value = raw ? "on" : "off";
        else if (typeof raw === "number" && Number.isFinite(raw)) value = String(raw);
        else if (typeof raw === "string" && !hasControlCharacter(raw)) value = raw;
        else {
          problems.push(`${field}: ${describe(raw)} is not accepted; expected a one-line string, a finite number or a boolean`);
          continue;
        }
        const guard = SAFETY_GUARDS[name.toLowerCase()];
        const refusal = guard?.(value.trim());
        if (refusal !== undefined) {
          problems.push(`${field}: ${describe(raw)} is not accepted; ${refusal}`);
          continue;
        }
        extras.push([name.toLowerCase(), value]);
      }
    }
  }

  // MAX_BACKENDS check (postmaster.c / InitializeMaxBackends): every process slot must fit.
  if (connectionsOk && sendersOk && cpusOk) {
    const workers = parallelSettings(input.cpus, profileOk ? input.profile : "web").maxWorkerProcesses;
    const total = maxConnections + (autovacuumMaxWorkers(input.cpus) ?? 3) + 1 + workers + maxWalSenders;
    if (total > MAX_BACKENDS) {
      problems.push(`maxConnections: ${maxConnections} is not accepted with replication.maxWalSenders ${maxWalSenders} and ${workers} worker processes; together with autovacuum workers they must stay within ${MAX_BACKENDS} (MAX_BACKENDS)`);
    }
  }

  if (problems.length > 0 || !memoryOk || !cpusOk || !profileOk) throw new TuneError(problems);

  const profile = input.profile;
  const cpus = input.cpus;
  const storage = STORAGE_COSTS[input.storage];

  // --- PGTune (configurationSlice.js), everything in kB as PGTune computes it ---
  const totalMemoryKb = Math.floor(input.memoryBytes / KB);
  // selectSharedBuffers: 1/4 of RAM for every non-desktop type.
  const sharedBuffersKb = Math.floor(totalMemoryKb / 4);
  // selectEffectiveCacheSize: 3/4 of RAM.
  const effectiveCacheSizeKb = Math.floor((totalMemoryKb * 3) / 4);
  // selectMaintenanceWorkMem: RAM/16 (dw RAM/8), capped at 8GB (linux).
  const maintenanceWorkMemKb = Math.min(Math.floor(totalMemoryKb / (profile === "dw" ? 8 : 16)), 8 * GB_IN_KB);
  // selectHugePages: try once shared_buffers reaches 2GB (linux); 'try' falls back when no huge pages exist.
  const hugePages = sharedBuffersKb >= 2 * GB_IN_KB ? "try" : "off";
  // selectWalBuffers: 3% of shared_buffers, max 16MB, rounded up to 16MB above 14MB, min 32kB.
  let walBuffersKb = Math.min(Math.floor((3 * sharedBuffersKb) / 100), 16 * MB_IN_KB);
  if (walBuffersKb > 14 * MB_IN_KB && walBuffersKb < 16 * MB_IN_KB) walBuffersKb = 16 * MB_IN_KB;
  if (walBuffersKb < 32) walBuffersKb = 32;
  const walSize = WAL_SIZE_KB[profile];
  const parallel = parallelSettings(cpus, profile);
  // selectWorkMem: (RAM - shared_buffers) / ((max_connections + max_worker_processes) * 3),
  // halved for dw and mixed, floored at 4MB ("prevent disk-spill for simple queries").
  const workMemBase = (totalMemoryKb - sharedBuffersKb) / ((maxConnections + parallel.maxWorkerProcesses) * 3);
  const workMemKb = Math.max(Math.floor(profile === "dw" || profile === "mixed" ? workMemBase / 2 : workMemBase), 4 * MB_IN_KB);
  // selectAutovacuumWorkMem: keep 3-5 autovacuum workers from each taking an 8GB maintenance_work_mem.
  const autovacuumWorkMemKb = maintenanceWorkMemKb >= 2 * GB_IN_KB ? 2 * GB_IN_KB : undefined;
  const avWorkers = autovacuumMaxWorkers(cpus);

  // --- this project: replication, archiving, safety (adrs/0002-tuning-formulas.md) ---
  // Inactive slots must not fill the disk: keep at most max(2 * max_wal_size, 1GiB) of WAL for them.
  const slotWalKeepBytes = replication.maxSlotWalKeepSizeBytes ?? Math.max(2 * walSize.max * KB, MIN_DEFAULT_SLOT_WAL_KEEP_BYTES);

  const mem = (kb: number) => formatPgMemory(kb * KB);
  const settings: PostgresSettings = {};
  const set = (name: string, value: string | number | undefined) => {
    if (value !== undefined) settings[name] = String(value);
  };

  // connections
  set("listen_addresses", "*");
  set("max_connections", maxConnections);
  set("password_encryption", "scram-sha-256");
  set("idle_in_transaction_session_timeout", formatPgDuration(idleMs));
  // memory
  set("shared_buffers", mem(sharedBuffersKb));
  set("huge_pages", hugePages);
  set("effective_cache_size", mem(effectiveCacheSizeKb));
  set("maintenance_work_mem", mem(maintenanceWorkMemKb));
  set("autovacuum_work_mem", autovacuumWorkMemKb === undefined ? undefined : mem(autovacuumWorkMemKb));
  set("work_mem", mem(workMemKb));
  // wal / checkpoints
  set("wal_level", "replica");
  set("wal_log_hints", "on");
  set("wal_buffers", mem(walBuffersKb));
  // selectWalCompression: lz4 from PG 15 (Debian builds have lz4), pglz ("on") before.
  set("wal_compression", version >= 15 ? "lz4" : "on");
  set("min_wal_size", mem(walSize.min));
  set("max_wal_size", mem(walSize.max));
  // selectCheckpointCompletionTarget: 0.9 (postgres commit bbcc4eb2 made it the default in 14).
  set("checkpoint_completion_target", "0.9");
  // planner
  set("random_page_cost", storage.randomPageCost);
  set("effective_io_concurrency", storage.effectiveIoConcurrency);
  // selectDefaultStatisticsTarget: 500 for dw, 100 otherwise.
  set("default_statistics_target", profile === "dw" ? 500 : 100);
  // selectJit: off for short-query workloads (PG 12+); dw keeps PostgreSQL's default.
  set("jit", profile === "dw" ? undefined : "off");
  // parallelism
  set("max_worker_processes", parallel.maxWorkerProcesses);
  set("max_parallel_workers", parallel.maxParallelWorkers);
  set("max_parallel_workers_per_gather", parallel.perGather);
  set("max_parallel_maintenance_workers", parallel.maintenance);
  set("autovacuum_max_workers", avWorkers);
  // replication
  set("max_wal_senders", maxWalSenders);
  set("max_replication_slots", maxReplicationSlots);
  set("max_slot_wal_keep_size", formatPgMemory(slotWalKeepBytes));
  set("hot_standby", "on");
  set("hot_standby_feedback", "on");
  set("synchronous_standby_names", syncNames);
  // archiving
  set("archive_mode", "on");
  set("archive_command", `pgbackrest --stanza=${stanza} archive-push %p`);
  set("archive_timeout", formatPgDuration(archiveTimeoutSeconds * 1000));
  // monitoring
  set("shared_preload_libraries", "pg_stat_statements");
  // extra: an override of a key above keeps that key's place; new keys come last, in the caller's order.
  for (const [name, value] of extras) settings[name] = value;

  return settings;
}
