// The ONE schema of a stack's config (stacks/Pulumi.<stack>.yaml, keys under `homelab-data:`).
// docs/architecture.md "Data flow" step 1: read once, validate here into a typed HomelabSpec, and create
// nothing when it fails. Every problem names the key, the bad value and what is accepted, all at once.
import { CronPattern } from "croner";
import { z } from "zod";
import { parseCidr } from "../postgres/hba.ts";
import { etcdMembersProblem, planPatroniTiming } from "../postgres/patroni.ts";
import { extraSettingRefusal } from "../postgres/tune.ts";
import { DUCKDB_MIN_MEMORY_LIMIT_BYTES, DUCKDB_MIN_NODE_MEMORY_BYTES, DUCKDB_SERVICE_RESERVE_BYTES } from "../duckdb/tune.ts";
import { DURATION_FORMAT_HINT, MEMORY_FORMAT_HINT, formatBytes, parseBytes, parseDurationSeconds } from "./units.ts";

export const PROJECT = "homelab-data";

/** Platforms a stack can name (after the `docker-cli` alias is folded into `docker`). */
export const PLATFORMS = ["docker", "docker-api", "libvirt"] as const;
export type Platform = (typeof PLATFORMS)[number];

// PostgreSQL's own memory floor is far lower, but a node that also runs pgBackRest with archive-async
// and a streaming replica does not start reliably below this (ADR 0002 "memory floor").
export const MIN_POSTGRES_MEMORY_BYTES = 256 * 1024 ** 2;
export const MIN_NODE_MEMORY_BYTES = 32 * 1024 ** 2;
// Redis forks for AOF rewrite and RDB saves; copy-on-write can touch every page, so maxmemory must leave
// headroom inside the container (redis.io "Memory optimization" / "Persistence" docs).
export const REDIS_MAXMEMORY_SHARE_OF_NODE = 0.75;

const memory = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const bytes = parseBytes(value);
  if (bytes === undefined) {
    ctx.addIssue({ code: "custom", message: `expected ${MEMORY_FORMAT_HINT}`, input: value });
    return z.NEVER;
  }
  return bytes;
});

const durationSeconds = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const seconds = parseDurationSeconds(value);
  if (seconds === undefined) {
    ctx.addIssue({ code: "custom", message: `expected ${DURATION_FORMAT_HINT}`, input: value });
    return z.NEVER;
  }
  return seconds;
});

// PostgreSQL identifiers we create ourselves: lower case, unquoted-safe, at most NAMEDATALEN-1 = 63 bytes.
const identifier = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, {
    message: "expected a lower-case identifier: letters, digits, underscore, not starting with a digit, at most 63 chars",
  });

// A host a stack places nodes on (`hosts:`): a short lower-case name.
const hostName = z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, { message: "expected a host name: lower-case letters, digits and '-', starting with a letter, at most 31 chars" });

/** Where a section's nodes live: a key of `hosts:`. Without `hosts:`, every node is on the stack's `platform`. */
const placedOn = hostName.optional();

// zod's own address checks; the union reports one line instead of one per family.
const cidr = z.union([z.cidrv4(), z.cidrv6()], {
  error: 'expected a CIDR such as "192.168.1.0/24" or "fd00::/64" (IPv4 prefix 0-32, IPv6 prefix 0-128)',
});

// A pg_hba client network: pg_hba's own rules (host bits zero, never the whole internet), the ones the hba
// planner enforces, from the same function (components/postgres/hba.ts parseCidr), reported here by key.
const clientCidr = cidr.superRefine((value, ctx) => {
  const parsed = parseCidr(value);
  if ("problem" in parsed) ctx.addIssue({ code: "custom", input: value, message: parsed.problem.replace(/^"[^"]*" /, "") });
  else if (parsed.cidr.endsWith("/0")) ctx.addIssue({ code: "custom", input: value, message: "opens PostgreSQL to every address; expected the networks clients really connect from" });
});

// Five-field cron, as homelab-cron runs pgBackRest's schedules on the repository host
// (components/postgres/image/bin/homelab-cron). croner (5-part mode) decides what each field means and
// whether it is in range; CRON_SYNTAX only keeps out what croner reads but homelab-cron does not (names
// such as MON or JAN, L, W, #, ?). test/unit/config.test.ts runs homelab-cron --check to prove both agree.
const CRON_FIELDS = [
  { name: "minute", range: "0-59" },
  { name: "hour", range: "0-23" },
  { name: "day-of-month", range: "1-31" },
  { name: "month", range: "1-12" },
  { name: "day-of-week", range: "0-7" },
] as const;
const CRON_SYNTAX = /^(?:\*|\d+(?:-\d+)?)(?:\/\d+)?$/;

/** What is wrong with a five-field cron expression, naming the field; empty when homelab-cron runs it. */
function cronProblems(expression: string): string[] {
  // homelab-cron splits its lines on spaces and tabs; any other blank (a newline) would split the crontab line.
  const trimmed = expression.replace(/^[ \t]+|[ \t]+$/g, "");
  const fields = trimmed === "" ? [] : trimmed.split(/[ \t]+/);
  if (fields.length !== CRON_FIELDS.length) {
    return [`expected a five-field cron expression (${CRON_FIELDS.map((f) => f.name).join(" ")}) such as "0 3 * * 0", got ${fields.length} field${fields.length === 1 ? "" : "s"}`];
  }
  const parse = (pattern: string) => new CronPattern(pattern, undefined, { mode: "5-part" });
  const problems: string[] = [];
  fields.forEach((field, i) => {
    const { name, range } = CRON_FIELDS[i] as (typeof CRON_FIELDS)[number];
    for (const item of field.split(",")) {
      if (!CRON_SYNTAX.test(item)) {
        problems.push(`${name} ${JSON.stringify(field)} is not accepted; expected numbers ${range}, *, ranges a-b, steps */n or a-b/n, lists a,b (homelab-cron reads no names such as MON, nor L, W, # or ?)`);
        return;
      }
      // One item alone in its field, every other field "*": croner's verdict is about this item only.
      try {
        parse(fields.map((f, j) => (j === i ? item : "*")).join(" "));
      } catch (err) {
        problems.push(err instanceof RangeError
          ? `${name} ${item} is out of range ${range}`
          : `${name} ${item} is not accepted: ${String((err as Error).message).replace(/^CronPattern: /, "")}`);
        return;
      }
    }
  });
  if (problems.length === 0) {
    try {
      parse(fields.join(" "));
    } catch (err) {
      problems.push(String((err as Error).message).replace(/^CronPattern: /, ""));
    }
  }
  return problems;
}

const cron = z.string().check((ctx) => {
  const problems = cronProblems(ctx.value);
  if (problems.length > 0) ctx.issues.push({ code: "custom", message: problems.join("; "), input: ctx.value });
});

const storageClass = z.enum(["hdd", "ssd", "nvme"]);

function nodeResources(defaults: { memory: string; cpus: number; storage: "hdd" | "ssd" | "nvme" }) {
  return z
    .object({
      /** Memory limit of the node (container or VM). */
      memory: memory.prefault(defaults.memory),
      /** CPUs of the node: a whole number from 1 to 64. */
      cpus: z.number().int().min(1).max(64).default(defaults.cpus),
      /** Storage class of the node's data volume; drives random_page_cost and effective_io_concurrency. */
      storage: storageClass.default(defaults.storage),
    })
    .strict()
    .prefault({});
}

// Settings a stack key decides: postgres.settings may not set them (one place per decision), and the
// refusal names the key a user can set (the tuner's own messages name its input fields).
const STACK_KEY_OF_SETTING: Readonly<Record<string, string>> = {
  idle_in_transaction_session_timeout: "set postgres.idleInTransactionSessionTimeout instead",
  archive_timeout: "set postgres.archiveTimeout instead (it bounds the RPO of archive-only recovery)",
  archive_command: "the archive command is pgBackRest's archive-push for pgbackrest.stanza",
  max_connections: "set postgres.maxConnections instead",
  max_slot_wal_keep_size: "set postgres.maxSlotWalKeepSize instead (unlimited, -1, lets an inactive slot fill the disk)",
  synchronous_standby_names: "set postgres.replicationMode instead (sync names every other node)",
  max_wal_senders: "planned from postgres.replicas",
  max_replication_slots: "planned from postgres.replicas",
};

const postgres = z
  .object({
    /** Major version; the images ship PostgreSQL 17 (Debian trixie). */
    version: z.literal(17).default(17),
    /** PGTune workload profile. */
    profile: z.enum(["web", "oltp", "dw", "mixed"]).default("mixed"),
    /** max_connections; PGTune's per-profile default when absent. */
    maxConnections: z.number().int().min(10).max(10000).optional(),
    /** Streaming replicas besides the primary. */
    replicas: z.number().int().min(0).max(5).default(1),
    /** async, or sync: a commit waits until a replica has flushed it (synchronous_standby_names). */
    replicationMode: z.enum(["async", "sync"]).default("async"),
    /** Client networks allowed to reach app databases (pg_hba scram-sha-256 rules). */
    allowedClientCidrs: z.array(clientCidr).min(1).default(["172.28.0.0/24"]),
    /** Application database created on the primary. */
    database: identifier.default("app"),
    /** Application role owning that database. */
    appUser: identifier.default("app"),
    /** archive_timeout: upper bound on the RPO of an archive-only recovery. */
    archiveTimeout: durationSeconds.prefault("60s"),
    /** max_slot_wal_keep_size; the tuner's rule when absent (ADR 0002). */
    maxSlotWalKeepSize: memory.optional(),
    /** How a new primary with an empty data directory gets its data: auto (the default) restores the
     *  repository's latest backup + archived WAL when the repository holds this stack's stanza, and runs
     *  initdb otherwise, so `homelab down` + `up` brings the data back; initdb and backup force one way. A
     *  primary never initdb's over an existing stanza (the entrypoint refuses, naming the ways out). */
    bootstrapFrom: z.enum(["auto", "initdb", "backup"]).default("auto"),
    /** idle_in_transaction_session_timeout: a transaction left idle longer is ended by PostgreSQL (it holds
     *  its locks until then: runbooks/postgres-long-transaction.md); 0 disables. */
    idleInTransactionSessionTimeout: durationSeconds.prefault("10min"),
    /** Extra postgresql.conf settings, applied after tuning (safety settings cannot be overridden). */
    settings: z.record(z.string().regex(/^[a-z_][a-z0-9_.]*$/), z.union([z.string(), z.number(), z.boolean()])).default({}).superRefine((settings, ctx) => {
      for (const [name, value] of Object.entries(settings)) {
        const refusal = STACK_KEY_OF_SETTING[name.toLowerCase()] ?? extraSettingRefusal(name, value);
        if (refusal) ctx.addIssue({ code: "custom", path: [name], input: value, message: `not accepted; ${refusal}` });
      }
    }),
    /** The host (a key of `hosts:`) the nodes of this section are made on. Default: the host of kind `platform`. */
    host: placedOn,
    /** Resources of each PostgreSQL node. */
    node: nodeResources({ memory: "512MiB", cpus: 1, storage: "ssd" }),
    /** manual (the default): failover is the operator's act, rehearsed by the failover drill (ADR 0009);
     *  patroni: Patroni + a 3-member etcd DCS fail over by themselves, HAProxy gives clients a stable
     *  primary and replicas endpoint (ADR 0017). */
    ha: z.enum(["manual", "patroni"]).default("manual"),
    /** Only with ha: patroni. */
    patroni: z
      .object({
        /** etcd members of the DCS (one small node each): odd, at least 3. */
        etcdMembers: z.number().int().min(1).max(7).default(3),
        /** A standby further behind than this is never promoted (Patroni maximum_lag_on_failover). */
        maximumLagOnFailover: memory.prefault("1MiB"),
        /** Resources of each etcd node and of the HAProxy node. */
        node: nodeResources({ memory: "96MiB", cpus: 1, storage: "ssd" }),
      })
      .strict()
      .optional(),
  })
  .strict()
  .prefault({});

/** One repository's retention (pgBackRest repoN-retention-full / repoN-retention-diff). */
function retention() {
  return z
    .object({
      /** Full backups to keep. */
      full: z.number().int().min(1).max(9999).default(2),
      /** Differential backups to keep. */
      diff: z.number().int().min(1).max(9999).optional(),
    })
    .strict()
    .prefault({});
}

// pgBackRest's second repository (repo2, ADR 0013): an SFTP server off the machine (a NAS), encrypted with
// aes-256-cbc under a generated passphrase (the Pulumi secret homelab-data:repo2CipherPass). Without
// sftp.host the stack runs a stand-in SFTP server node itself (homelab/sftp:1, its own retained volume).
const sftpHost = z.string().regex(/^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$/, {
  message: "expected a host name (letters, digits, '-', '_', dots) or an IP address",
});
const repo2 = z
  .object({
    /** Only sftp today (pgBackRest repo-type=sftp); s3 is a planned second kind. */
    type: z.literal("sftp", { error: 'expected "sftp" (the only repo2 type built so far)' }),
    sftp: z
      .object({
        /** The NAS to log in to (repo2-sftp-host); absent: the stack runs its own stand-in SFTP node. */
        host: sftpHost.optional(),
        /** SSH port (repo2-sftp-host-port). */
        port: z.number().int().min(1).max(65535).default(22),
        /** SSH login (repo2-sftp-host-user); the stack's public key must be in its authorized_keys. */
        user: z.string().regex(/^[a-z_][a-z0-9_.-]{0,31}$/, { message: "expected a POSIX user name (lower-case letters, digits, '_', '.', '-'; at most 32 chars)" }).default("pgbackrest"),
        /** Repository path on the server (repo2-path). */
        path: z.string().regex(/^\/(?:[A-Za-z0-9._-]+\/)*[A-Za-z0-9._-]+$/, { message: "expected an absolute path of letters, digits, '.', '_', '-' (no trailing '/', no '//')" }).default("/srv/pgbackrest"),
        /** SHA-256 of the server's host key blob, 64 hex digits (repo2-sftp-host-fingerprint): needed with host;
         *  `ssh-keyscan -t ed25519 <host> | awk '{print $3}' | base64 -d | sha256sum`. The stand-in's is derived. */
        hostKeyFingerprint: z.string().regex(/^[0-9a-f]{64}$/, { message: "expected 64 lower-case hex digits: ssh-keyscan -t ed25519 <host> | awk '{print $3}' | base64 -d | sha256sum" }).optional(),
      })
      .strict()
      .prefault({}),
    /** Backups to keep in repo2 (repo2-retention-full / -diff). */
    retention: retention(),
    /** Resources of the stand-in SFTP node (only without sftp.host). */
    node: nodeResources({ memory: "64MiB", cpus: 1, storage: "hdd" }),
  })
  .strict();

const pgbackrest = z
  .object({
    /** pgBackRest stanza name. */
    stanza: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, { message: "expected letters, digits, '-' or '_' (at most 64 chars)" }).default("main"),
    /** Backups to keep in repo1 (repo1-retention-full / -diff). */
    retention: retention(),
    schedules: z
      .object({
        full: cron.default("0 3 * * 0"),
        diff: cron.default("0 3 * * 1-6"),
        incr: cron.optional(),
      })
      .strict()
      .prefault({}),
    compression: z
      .object({
        type: z.enum(["zst", "lz4", "gz", "bz2", "none"]).default("zst"),
        level: z.number().int().min(-5).max(22).optional(),
      })
      .strict()
      .prefault({}),
    /** pgBackRest process-max for backup/restore. */
    processMax: z.number().int().min(1).max(64).default(2),
    /** Newest backup may not be older than this (the drills fail when it is). */
    maxBackupAge: durationSeconds.prefault("26h"),
    /** The scheduled restore test on the repository host (ADR 0014): the newest backup restored into scratch
     *  space, started, pg_amcheck'ed, timed; one line per run in the history `homelab status`/`report` show. */
    restoreTest: z
      .object({
        /** Run it on the schedule (default true); `homelab-restore-test` on the repository host works either way. */
        enabled: z.boolean().default(true),
        /** When (cron, container time = UTC): default Sunday 05:00, two hours after the weekly full backup. */
        schedule: cron.default("0 5 * * 0"),
        /** A run that takes longer fails (restore, recovery and amcheck together); default 1h, at least 1min. */
        budget: durationSeconds.prefault("1h"),
      })
      .strict()
      .prefault({}),
    /** Delete the backup repository's volume (and the repo2 stand-in's) on `pulumi destroy` (default: keep it). */
    purgeBackupsOnDestroy: z.boolean().default(false),
    /** The host (a key of `hosts:`) the nodes of this section are made on. Default: the host of kind `platform`. */
    host: placedOn,
    node: nodeResources({ memory: "256MiB", cpus: 1, storage: "hdd" }),
    /** A second repository off the machine, encrypted (ADR 0013); absent: repo1 only. */
    repo2: repo2.optional(),
  })
  .strict()
  .prefault({});

const redis = z
  .object({
    enabled: z.boolean().default(true),
    maxmemory: memory.prefault("64MiB"),
    /** Eviction policy; noeviction keeps Redis a store, not a cache: writes fail loudly when full. */
    policy: z
      .enum(["noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"])
      .default("noeviction"),
    persistence: z
      .object({
        aof: z.boolean().default(true),
        appendfsync: z.enum(["always", "everysec", "no"]).default("everysec"),
        save: z
          .array(z.tuple([z.number().int().min(1), z.number().int().min(1)]))
          .default([[3600, 1], [300, 100], [60, 10000]]),
      })
      .strict()
      .prefault({}),
    /** Run a Redis replica beside the primary. */
    replica: z.boolean().default(false),
    /** The host (a key of `hosts:`) the nodes of this section are made on. Default: the host of kind `platform`. */
    host: placedOn,
    node: nodeResources({ memory: "128MiB", cpus: 1, storage: "ssd" }),
  })
  .strict()
  .prefault({});

const duckdb = z
  .object({
    enabled: z.boolean().default(true),
    syncInterval: durationSeconds.prefault("5min"),
    schemas: z.array(identifier).min(1).default(["public"]),
    /** The host (a key of `hosts:`) the nodes of this section are made on. Default: the host of kind `platform`. */
    host: placedOn,
    node: nodeResources({ memory: "256MiB", cpus: 1, storage: "ssd" }),
  })
  .strict()
  .prefault({});

// The monitoring node (issue 12, ADR 0016): Prometheus and its exporters. The alert thresholds follow the
// objectives above; these keys are only what the objectives do not say.
const monitoring = z
  .object({
    /** Run the monitoring node (default true; the e2e specs turn it off unless a test is about it). */
    enabled: z.boolean().default(true),
    /** How often Prometheus scrapes and evaluates the rules. */
    scrapeInterval: durationSeconds.prefault("15s"),
    /** How long Prometheus keeps samples (storage.tsdb.retention.time). */
    retention: durationSeconds.prefault("7d"),
    alerts: z
      .object({
        /** How long a fast signal (archiving, streaming, lag, slot, Redis persistence) holds before it fires. */
        pendingFor: durationSeconds.prefault("1min"),
        /** Share of a filesystem in use above which HomelabDiskFilling fires. */
        diskUsedRatio: z.number().gt(0).lt(1).default(0.85),
        /** Share of max_slot_wal_keep_size a replication slot may hold before HomelabSlotWalRetained fires. */
        slotWalRetainedRatio: z.number().gt(0).lt(1).default(0.8),
        /** A drill that ran once must run again within this (HomelabDrillOverdue). */
        drillMaxAge: durationSeconds.prefault("8d"),
        /** Replication lag that fires HomelabReplicationLagHigh; default objectives.failover.rpo, else postgres.archiveTimeout. */
        replicationLagMax: durationSeconds.optional(),
      })
      .strict()
      .prefault({}),
    /** Alertmanager on the monitoring node: where firing and resolved alerts are POSTed. */
    alerting: z
      .object({
        /** Webhook receiver (Alertmanager webhook_config; Prometheus' webhook JSON); none: alerts are only shown. */
        webhookUrl: z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" }).optional(),
        /** How long Alertmanager waits to group a new alert with others before the first notification. */
        groupWait: durationSeconds.prefault("30s"),
        /** How often a still-firing alert is sent again. */
        repeatInterval: durationSeconds.prefault("4h"),
      })
      .strict()
      .prefault({}),
    /** The host (a key of `hosts:`) the nodes of this section are made on. Default: the host of kind `platform`. */
    host: placedOn,
    node: nodeResources({ memory: "192MiB", cpus: 1, storage: "ssd" }),
  })
  .strict()
  .prefault({});

const objectives = z
  .object({
    failover: z
      .object({
        /** Acknowledged writes that may be lost (sync mode: 0). */
        rpoWrites: z.number().int().min(0).default(0),
        /** Time of acknowledged writes that may be lost (useful in async mode); unset: only rpoWrites counts. */
        rpo: durationSeconds.optional(),
        rto: durationSeconds.prefault("10s"),
        redundancyRestored: durationSeconds.prefault("120s"),
      })
      .strict()
      .prefault({}),
    backupRestore: z
      .object({
        /** "latest" restore: time of acknowledged writes that may be missing (bounded by archive_timeout). */
        rpo: durationSeconds.prefault("60s"),
        rto: durationSeconds.prefault("180s"),
      })
      .strict()
      .prefault({}),
    redis: z
      .object({
        rpo: durationSeconds.prefault("1s"),
        rto: durationSeconds.prefault("10s"),
      })
      .strict()
      .prefault({}),
    recreate: z
      .object({
        rpo: durationSeconds.prefault("60s"),
        rto: durationSeconds.prefault("300s"),
      })
      .strict()
      .prefault({}),
    /** An idle-in-transaction session blocks a DDL and the writes queued behind it (the long-transaction
     *  drill): detect is fault -> the blocker found in pg_stat_activity; rto is fault -> the first write
     *  acknowledged again (the write stall the application sees). */
    longTransaction: z
      .object({
        detect: durationSeconds.prefault("10s"),
        rto: durationSeconds.prefault("30s"),
      })
      .strict()
      .prefault({}),
    /** Dead tuples piled up with autovacuum off (the vacuum-bloat drill): rto is how long the VACUUM that
     *  removes them may take. */
    vacuumBloat: z
      .object({
        rto: durationSeconds.prefault("60s"),
      })
      .strict()
      .prefault({}),
    /** A planned switchover in postgres.ha: patroni (the switchover drill, `patronictl switchover`): rto is the
     *  command -> the first write acknowledged by the new primary through the endpoint. */
    switchover: z
      .object({
        rto: durationSeconds.prefault("20s"),
      })
      .strict()
      .prefault({}),
    /** XIDs past PostgreSQL's wraparound warning on a scratch copy (the wraparound drill): rto is the warning
     *  observed -> every database frozen below the warning threshold again (VACUUM (FREEZE)). */
    wraparound: z
      .object({
        rto: durationSeconds.prefault("120s"),
      })
      .strict()
      .prefault({}),
    /** The Redis replica's link throttled while the app writes (the redis-replication-lag drill): detect is
     *  fault -> the lag seen in the primary's INFO replication; rto is fault -> the replica caught up again. */
    redisReplicationLag: z
      .object({
        detect: durationSeconds.prefault("10s"),
        rto: durationSeconds.prefault("30s"),
      })
      .strict()
      .prefault({}),
    /** The query-tuning drill (runbooks/pg_stat_statements-tuning.md): the top query of its workload, found in
     *  pg_stat_statements, must run at least minSpeedup times faster with the index than without. */
    queryTuning: z
      .object({
        minSpeedup: z.number().min(1, { message: "must be at least 1 (1 = no faster)" }).prefault(10),
      })
      .strict()
      .prefault({}),
    /** Every PostgreSQL node and repo1 lost, rebuilt from repo2 only (the site-loss drill). RPO: what the
     *  archive to repo2 can lose (archive_timeout plus a push); RTO: a restore over SFTP plus a new stanza in
     *  repo1 and a replica clone, so it is looser than recreate's. */
    siteLoss: z
      .object({
        rpo: durationSeconds.prefault("90s"),
        rto: durationSeconds.prefault("600s"),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .prefault({});

const docker = z
  .object({
    /** Docker engine; DOCKER_HOST form (unix:///var/run/docker.sock, ssh://user@nuc). Default: the local engine. */
    host: z.string().regex(/^(unix|tcp|ssh|npipe):\/\/\S+$/, { message: "expected unix://, tcp:// or ssh:// URL" }).optional(),
    /** Subnet of the stack's bridge network. */
    subnet: cidr.default("172.28.0.0/24"),
    /** Publish service ports on this host address (127.0.0.1 keeps them off the LAN). */
    publishAddress: z.ipv4({ error: 'expected an IPv4 address such as "127.0.0.1"' }).default("127.0.0.1"),
    /** First host port; services get consecutive ports from here. */
    basePort: z.number().int().min(1024).max(65000).default(15432),
  })
  .strict()
  .prefault({});

const libvirt = z
  .object({
    /** The hypervisor. Only the local one today; a remote KVM host (qemu+ssh://) needs the image there too. */
    uri: z
      .string()
      .refine((u) => u === "qemu:///system", { message: 'expected "qemu:///system" (the local hypervisor; remote qemu+ssh:// hosts are not supported yet)' })
      .default("qemu:///system"),
    /** Subnet of the stack's libvirt NAT network: the host is .1, nodes get the same offsets as on Docker. */
    subnet: cidr.default("192.168.251.0/24"),
    /** qemu: software emulation (TCG), works everywhere, ~10x slower CPU; kvm: only where the CPU has vmx/svm and KVM runs guests. */
    emulation: z.enum(["qemu", "kvm"]).default("qemu"),
    /** Size of each VM's data disk (sparse qcow2: only what is written takes space). */
    dataDisk: memory.default(4 * 1024 ** 3),
    /** How long a new VM may take from `virsh start` to answering SSH. */
    bootTimeout: durationSeconds.default(600),
    /** How long a configured node may take to report healthy (a primary restoring from backups first). */
    readyTimeout: durationSeconds.default(1800),
    /** Where overlays and data disks live (qemu runs as libvirt-qemu: not under /root). */
    imageDir: z.string().regex(/^\/[A-Za-z0-9_./-]*$/, { message: "expected an absolute path of letters, digits, '_', '.', '-', '/'" }).default("/var/lib/libvirt/images"),
  })
  .strict()
  .transform(({ dataDisk, bootTimeout, readyTimeout, ...rest }) => ({ ...rest, dataDiskBytes: dataDisk, bootTimeoutSeconds: bootTimeout, readyTimeoutSeconds: readyTimeout }))
  .optional();

/** What a host is: this machine's Docker engine, this machine's hypervisor, or (not built yet) a Debian machine over SSH. */
export const HOST_KINDS = ["docker", "libvirt", "ssh"] as const;
const hosts = z
  .record(
    hostName,
    z
      .object({
        /** docker: the engine of `docker:` (this machine's by default); libvirt: the hypervisor of `libvirt:`; ssh: not built yet. */
        kind: z.enum(HOST_KINDS),
        /** ssh hosts only (user@address). */
        address: z.string().optional(),
      })
      .strict(),
  )
  .optional();

/** The sections whose nodes a stack places on a host (`<section>.host`). */
export const PLACED_SECTIONS = ["postgres", "pgbackrest", "redis", "duckdb", "monitoring"] as const;
export type PlacedSection = (typeof PLACED_SECTIONS)[number];
/** Where the nodes of a section are made: the host's name and the platform that makes them. */
export interface Placement {
  host: string;
  kind: Platform;
}
type PlacementInput = Pick<z.output<typeof homelabConfigObject>, "platform" | "hosts" | "docker" | PlacedSection>;
interface PlacementProblem {
  path: (string | number)[];
  input: unknown;
  message: string;
}

/**
 * Each section's host, from `hosts:` and `<section>.host` (the one place these rules live: the schema reports
 * the problems, the planner and the platforms read `spec.placement`). Without `hosts:` every section is on
 * the stack's `platform`, as before hosts existed.
 */
export function resolvePlacement(spec: PlacementInput): { placement: Record<PlacedSection, Placement>; problems: PlacementProblem[] } {
  const problems: PlacementProblem[] = [];
  const defaultKind: Platform = spec.platform;
  if (!spec.hosts) {
    for (const section of PLACED_SECTIONS) {
      const host = spec[section].host;
      if (host !== undefined) problems.push({ path: [section, "host"], input: host, message: `the stack has no hosts: section to name it in (hosts: { ${host}: { kind: docker | libvirt } })` });
    }
    const all = { host: defaultKind, kind: defaultKind };
    return { placement: Object.fromEntries(PLACED_SECTIONS.map((s) => [s, all])) as Record<PlacedSection, Placement>, problems };
  }
  const names = Object.keys(spec.hosts);
  const seen = new Map<string, string>();
  for (const [name, h] of Object.entries(spec.hosts)) {
    if (h.kind === "ssh") {
      problems.push({ path: ["hosts", name, "kind"], input: "ssh", message: "ssh hosts (an existing Debian machine configured over SSH) are not built yet: expected docker or libvirt" });
      continue;
    }
    if (h.address !== undefined) problems.push({ path: ["hosts", name, "address"], input: h.address, message: `only for ssh hosts: a ${h.kind} host is reached as ${h.kind === "docker" ? "docker.host" : "libvirt.uri"} says` });
    const other = seen.get(h.kind);
    if (other) {
      problems.push({ path: ["hosts", name], input: h.kind, message: `a second ${h.kind} host beside ${other}: one Docker engine and one hypervisor per stack today (remote engines and hypervisors as further hosts are not built yet)` });
    }
    seen.set(h.kind, name);
  }
  const kindOf = (name: string): Platform => {
    const k = spec.hosts![name]!.kind;
    return k === "docker" && spec.platform === "docker-api" ? "docker-api" : (k as Platform);
  };
  const wanted = defaultKind === "docker-api" ? "docker" : defaultKind;
  const fallback = names.find((n) => spec.hosts![n]!.kind === wanted);
  const placement = {} as Record<PlacedSection, Placement>;
  const enabled = (section: PlacedSection) => !("enabled" in spec[section]) || (spec[section] as { enabled: boolean }).enabled;
  for (const section of PLACED_SECTIONS) {
    const host = spec[section].host ?? fallback;
    // A section that makes no node needs no host; it is recorded on the first one.
    if (host === undefined && !enabled(section)) {
      placement[section] = { host: names[0]!, kind: kindOf(names[0]!) };
      continue;
    }
    if (host === undefined) {
      problems.push({ path: [section, "host"], input: undefined, message: `required: hosts has no ${wanted} host (the stack's platform) to put ${section} on by default; expected one of: ${names.join(", ")}` });
      continue;
    }
    if (!spec.hosts[host]) {
      problems.push({ path: [section, "host"], input: host, message: `expected one of: ${names.join(", ")} (the keys of hosts)` });
      continue;
    }
    placement[section] = { host, kind: kindOf(host) };
  }
  const kinds = new Set(Object.values(placement).map((p) => p.kind));
  if (kinds.has("libvirt") && kinds.size > 1 && spec.docker.host !== undefined) {
    problems.push({ path: ["docker", "host"], input: spec.docker.host, message: "with nodes on both the Docker engine and the hypervisor, the engine must be this machine's (the two stack networks are routed to each other here): leave docker.host out" });
  }
  return { placement, problems };
}

const homelabConfigObject = z
  .object({
    /** docker (default): the docker CLI driven by @pulumi/command through the one node applier (no docker
     *  plugin needed: air-gapped machines; what CI runs for real); docker-api: @pulumi/docker (mock-tested
     *  only, ADR 0010); docker-cli: the old name of docker; libvirt: KVM VMs (planned). */
    platform: z
      .enum(["docker", "docker-api", "docker-cli", "libvirt"])
      .default("docker")
      .transform((p) => (p === "docker-cli" ? "docker" : p)),
    docker,
    libvirt,
    /** The machines the stack places nodes on (`<section>.host`); without it every node is on `platform`. */
    hosts,
    postgres,
    pgbackrest,
    redis,
    duckdb,
    monitoring,
    objectives,
  })
  .strict();

/** Every top-level key of a stack's config (platform, docker, libvirt, hosts, postgres, ...). */
export const CONFIG_KEYS = Object.keys(homelabConfigObject.shape);

export const homelabConfigSchema = homelabConfigObject
  .superRefine((spec, ctx) => {
    // Cross-field rules: each names the keys involved.
    if (spec.postgres.replicationMode === "sync" && spec.postgres.replicas < 1) {
      ctx.addIssue({ code: "custom", path: ["postgres", "replicationMode"], input: "sync", message: "sync replication needs postgres.replicas >= 1 (got 0)" });
    }
    if (spec.postgres.ha === "patroni") {
      if (spec.postgres.replicas < 1) {
        ctx.addIssue({ code: "custom", path: ["postgres", "ha"], input: "patroni", message: "patroni needs postgres.replicas >= 1 (got 0): with no standby there is nothing to fail over to" });
      }
      const timing = planPatroniTiming(spec.objectives.failover.rto);
      if ("problem" in timing) {
        ctx.addIssue({ code: "custom", path: ["objectives", "failover", "rto"], input: `${spec.objectives.failover.rto}s`, message: `with postgres.ha: patroni, ${timing.problem}` });
      }
      const members = spec.postgres.patroni?.etcdMembers ?? 3;
      const quorum = etcdMembersProblem(members);
      if (quorum) ctx.addIssue({ code: "custom", path: ["postgres", "patroni", "etcdMembers"], input: members, message: quorum });
    } else if (spec.postgres.patroni !== undefined) {
      ctx.addIssue({ code: "custom", path: ["postgres", "patroni"], input: "{...}", message: "only with postgres.ha: patroni (postgres.ha is manual)" });
    }
    if (spec.postgres.node.memory < MIN_POSTGRES_MEMORY_BYTES) {
      ctx.addIssue({
        code: "custom",
        path: ["postgres", "node", "memory"],
        input: formatBytes(spec.postgres.node.memory),
        message: `PostgreSQL with archiving and replication needs at least ${formatBytes(MIN_POSTGRES_MEMORY_BYTES)}`,
      });
    }
    for (const key of ["pgbackrest", "redis", "duckdb", "monitoring"] as const) {
      if (spec[key].node.memory < MIN_NODE_MEMORY_BYTES) {
        ctx.addIssue({ code: "custom", path: [key, "node", "memory"], input: formatBytes(spec[key].node.memory), message: `expected at least ${formatBytes(MIN_NODE_MEMORY_BYTES)}` });
      }
    }
    const redisLimit = Math.floor(spec.redis.node.memory * REDIS_MAXMEMORY_SHARE_OF_NODE);
    if (spec.redis.maxmemory > redisLimit) {
      ctx.addIssue({
        code: "custom",
        path: ["redis", "maxmemory"],
        input: formatBytes(spec.redis.maxmemory),
        message: `expected at most 75% of redis.node.memory (${formatBytes(redisLimit)}) to leave room for the fork of AOF rewrites`,
      });
    }
    if (spec.redis.replica && !spec.redis.enabled) {
      ctx.addIssue({ code: "custom", path: ["redis", "replica"], input: true, message: "a Redis replica needs redis.enabled: true" });
    }
    if (spec.duckdb.enabled && spec.duckdb.node.memory < DUCKDB_MIN_NODE_MEMORY_BYTES) {
      ctx.addIssue({
        code: "custom",
        path: ["duckdb", "node", "memory"],
        input: formatBytes(spec.duckdb.node.memory),
        message: `the DuckDB host needs at least ${formatBytes(DUCKDB_MIN_NODE_MEMORY_BYTES)}: ${formatBytes(DUCKDB_SERVICE_RESERVE_BYTES)} for the service and a DuckDB memory_limit of ${formatBytes(DUCKDB_MIN_MEMORY_LIMIT_BYTES)}`,
      });
    }
    if (spec.duckdb.enabled && spec.postgres.replicas < 1) {
      ctx.addIssue({ code: "custom", path: ["duckdb", "enabled"], input: true, message: "the DuckDB host reads from a replica: set postgres.replicas >= 1 or duckdb.enabled: false" });
    }
    const { placement, problems } = resolvePlacement(spec);
    for (const p of problems) ctx.addIssue({ code: "custom", path: p.path, input: p.input, message: p.message });
    const onVms = (section: PlacedSection) => placement[section]?.kind === "libvirt";
    if (PLACED_SECTIONS.some(onVms) && !spec.libvirt) {
      ctx.addIssue({ code: "custom", path: ["libvirt"], input: undefined, message: `${spec.platform === "libvirt" ? "platform libvirt" : "a libvirt host"} needs a libvirt: { uri } section` });
    }
    // VMs run the PostgreSQL image's role scripts today (ADR 0018); the other images come next.
    const notYet: [string[], boolean, string][] = [
      [["redis", "enabled"], spec.redis.enabled && onVms("redis"), "Redis"],
      [["duckdb", "enabled"], spec.duckdb.enabled && onVms("duckdb"), "the DuckDB host"],
      [["monitoring", "enabled"], spec.monitoring.enabled && PLACED_SECTIONS.some(onVms), "the monitoring node (and its exporters on VM nodes)"],
      [["pgbackrest", "repo2"], spec.pgbackrest.repo2 !== undefined && spec.pgbackrest.repo2.sftp.host === undefined && onVms("pgbackrest"), "the stand-in repo2 SFTP node"],
      [["postgres", "ha"], spec.postgres.ha === "patroni" && onVms("postgres"), "postgres.ha: patroni (Patroni, etcd and HAProxy)"],
    ];
    for (const [key, on, what] of notYet) {
      if (on) ctx.addIssue({ code: "custom", path: key, input: true, message: `VMs (libvirt) hold PostgreSQL and the backup repository; ${what} is not built on VMs yet: turn it off, or place it on a docker host (hosts:, ${key[0]}.host)` });
    }
    if (spec.monitoring.scrapeInterval < 1) {
      ctx.addIssue({ code: "custom", path: ["monitoring", "scrapeInterval"], input: spec.monitoring.scrapeInterval, message: "expected at least 1s" });
    }
    if (spec.pgbackrest.restoreTest.budget < 60) {
      ctx.addIssue({ code: "custom", path: ["pgbackrest", "restoreTest", "budget"], input: spec.pgbackrest.restoreTest.budget, message: "expected at least 1min (a restore, a start and amcheck of even an empty cluster take seconds)" });
    }
    const r2 = spec.pgbackrest.repo2;
    if (r2?.sftp.host !== undefined && r2.sftp.hostKeyFingerprint === undefined) {
      ctx.addIssue({ code: "custom", path: ["pgbackrest", "repo2", "sftp", "hostKeyFingerprint"], input: undefined, message: `repo2 on ${r2.sftp.host} needs its host key pinned (pgBackRest never connects unchecked): ssh-keyscan -t ed25519 ${r2.sftp.host} | awk '{print $3}' | base64 -d | sha256sum` });
    }
    if (r2 && r2.sftp.host === undefined && r2.sftp.hostKeyFingerprint !== undefined) {
      ctx.addIssue({ code: "custom", path: ["pgbackrest", "repo2", "sftp", "hostKeyFingerprint"], input: r2.sftp.hostKeyFingerprint, message: "only with pgbackrest.repo2.sftp.host: the stand-in SFTP node's fingerprint comes from its generated host key" });
    }
    if (spec.pgbackrest.compression.level !== undefined) {
      const ranges = { zst: [-5, 22], lz4: [-5, 12], gz: [0, 9], bz2: [1, 9], none: [0, 0] } as const;
      const [lo, hi] = ranges[spec.pgbackrest.compression.type];
      const level = spec.pgbackrest.compression.level;
      if (level < lo || level > hi) {
        ctx.addIssue({ code: "custom", path: ["pgbackrest", "compression", "level"], input: level, message: `expected ${lo}..${hi} for compression type ${spec.pgbackrest.compression.type}` });
      }
    }
  })
  // Each section's host, resolved once by the rules above (which refused every problem).
  .transform((spec) => ({ ...spec, placement: resolvePlacement(spec).placement }));

export type HomelabConfig = z.output<typeof homelabConfigSchema>;
export type StorageClass = z.output<typeof storageClass>;
export type NodeResources = HomelabConfig["postgres"]["node"];

/** The validated stack: config plus the stack's name. */
export interface HomelabSpec extends HomelabConfig {
  stack: string;
}

/**
 * Secret config keys (`pulumi config set --secret homelab-data:<key>`), generated by `homelab init`.
 * They never enter the schema above: the program reads them with config.requireSecret so they stay
 * Pulumi secrets end to end.
 */
export const SECRET_KEYS = {
  postgresSuperuserPassword: "password of the postgres superuser (local peer auth is used; kept for break-glass)",
  postgresAppPassword: "password of the application role",
  postgresReplicationPassword: "password of the replication role (replicas' primary_conninfo)",
  postgresReadonlyPassword: "password of the read-only role the DuckDB host pulls with",
  redisAppPassword: "password of the Redis app user",
  redisReplicaPassword: "password of the Redis replication user",
  redisHealthPassword: "password of the Redis health-check user",
  redisAdminPassword: "password of the Redis admin user (operators at the console; the redis drill's INFO, CONFIG GET and REPLICAOF)",
  tls: "pgBackRest TLS material (CA + per-node certificates and keys, JSON)",
  repo2CipherPass: "passphrase of repo2's aes-256-cbc encryption (repo2-cipher-pass; without it repo2 cannot be restored)",
  repo2Ssh: "SSH keys of repo2 over SFTP (JSON: pgBackRest's login key pair, the stand-in server's host key pair)",
  postgresMonitorPassword: "password of the PostgreSQL monitor role postgres_exporter logs in with (pg_monitor)",
  redisMonitorPassword: "password of the Redis monitor user redis_exporter logs in with (INFO, CONFIG GET)",
} as const;
export type SecretKey = keyof typeof SECRET_KEYS;
