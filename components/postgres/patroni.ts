// Patroni planners for `postgres.ha: patroni` (ADR 0017). Pure: plain values in, plain values out, no I/O.
// - planPatroniTiming: ttl / loop_wait / retry_timeout from the stack's failover RTO objective, and the budget
//   each phase of a failover gets.
// - renderPatroniConf: one node's patroni.yml from the tuner's settings, the pg_hba rules and the secrets.
// Patroni's YAML reference: https://patroni.readthedocs.io/en/latest/yaml_configuration.html
import { stringify } from "yaml";
import type { PostgresSettings } from "./conf.ts";

// Patroni's config validator refuses ttl < 20 (patroni/validator.py: IntValidator(min=20) for ttl), and
// loop_wait >= 1, retry_timeout >= 3.
export const PATRONI_MIN_TTL_SECONDS = 20;
export const PATRONI_MIN_LOOP_WAIT_SECONDS = 1;
export const PATRONI_MIN_RETRY_TIMEOUT_SECONDS = 3;
// What a failover takes besides the leader lease running out and the standby's next HA cycle:
// - the leader race: before taking the lock a standby asks every other member's REST API whether it is
//   healthier (patroni/ha.py fetch_node_status, a 2 s timeout); a killed node's address does not answer, so
//   this waits the whole 2 s (measured: lock taken 2.2 s after the lease expired, bench/ha-failover.mts);
// - Patroni's promote (pg_ctl promote, the leader key with the new timeline: well under a second here);
// - HAProxy noticing the new /primary (check inter 1s, rise 1: at most a second plus the check itself).
export const LEADER_RACE_SECONDS = 2;
export const PROMOTION_BUDGET_SECONDS = 2;
export const ENDPOINT_BUDGET_SECONDS = 2;
/** The lowest failover RTO objective Patroni can be tuned for: ttl 20 + loop_wait 1 + race + promotion + endpoint. */
export const PATRONI_RTO_FLOOR_SECONDS = PATRONI_MIN_TTL_SECONDS + PATRONI_MIN_LOOP_WAIT_SECONDS + LEADER_RACE_SECONDS + PROMOTION_BUDGET_SECONDS + ENDPOINT_BUDGET_SECONDS;

export interface PatroniTiming {
  /** Leader lease: the primary must renew it within this, or a standby takes over (and the primary demotes). */
  ttlSeconds: number;
  /** Seconds between HA loop runs. */
  loopWaitSeconds: number;
  /** DCS and PostgreSQL operation retry budget; Patroni's rule loop_wait + 2 * retry_timeout <= ttl. */
  retryTimeoutSeconds: number;
  /** Which part of the RTO objective each phase of an unplanned failover may use (worst case). */
  budget: { leaseExpirySeconds: number; electionSeconds: number; leaderRaceSeconds: number; promotionSeconds: number; endpointSeconds: number };
}

/**
 * ttl / loop_wait / retry_timeout from a failover RTO objective. The worst case of a killed primary: its lease
 * was renewed just before the kill and runs out after ttl; a standby acts on its next HA cycle (loop_wait:
 * Patroni's etcd3 watch usually wakes it at once), promotes, and HAProxy sees the new /primary. So
 * ttl = rto - leader race - promotion - endpoint - loop_wait, loop_wait about a tenth of what is left (Patroni's defaults
 * 30/10/10 keep that ratio), at least 1, and ttl >= 20. retry_timeout as large as the rule allows, at most 10
 * (Patroni's default): a primary that cannot reach etcd within it demotes.
 * Returns the problem instead when the objective is below the floor.
 */
export function planPatroniTiming(rtoSeconds: number): PatroniTiming | { problem: string } {
  const spare = Math.floor(rtoSeconds) - LEADER_RACE_SECONDS - PROMOTION_BUDGET_SECONDS - ENDPOINT_BUDGET_SECONDS;
  if (!Number.isFinite(rtoSeconds) || spare - PATRONI_MIN_LOOP_WAIT_SECONDS < PATRONI_MIN_TTL_SECONDS) {
    return {
      problem: `Patroni cannot fail over within ${rtoSeconds}s: its ttl is at least ${PATRONI_MIN_TTL_SECONDS}s, so the floor is ${PATRONI_RTO_FLOOR_SECONDS}s (ttl ${PATRONI_MIN_TTL_SECONDS} + loop_wait ${PATRONI_MIN_LOOP_WAIT_SECONDS} + leader race ${LEADER_RACE_SECONDS} + promotion ${PROMOTION_BUDGET_SECONDS} + endpoint check ${ENDPOINT_BUDGET_SECONDS}); expected at least ${PATRONI_RTO_FLOOR_SECONDS}s`,
    };
  }
  const loopWait = Math.max(PATRONI_MIN_LOOP_WAIT_SECONDS, Math.min(10, Math.round(spare / 11), spare - PATRONI_MIN_TTL_SECONDS));
  const ttl = spare - loopWait;
  const retryTimeout = Math.max(PATRONI_MIN_RETRY_TIMEOUT_SECONDS, Math.min(10, Math.floor((ttl - loopWait) / 2)));
  return {
    ttlSeconds: ttl,
    loopWaitSeconds: loopWait,
    retryTimeoutSeconds: retryTimeout,
    budget: { leaseExpirySeconds: ttl, electionSeconds: loopWait, leaderRaceSeconds: LEADER_RACE_SECONDS, promotionSeconds: PROMOTION_BUDGET_SECONDS, endpointSeconds: ENDPOINT_BUDGET_SECONDS },
  };
}

/** An etcd member count that keeps quorum through at least one failure: odd, at least 3. */
export function etcdMembersProblem(members: number): string | undefined {
  if (members < 3) return `etcd needs a majority (floor(n/2)+1) of its members to elect a leader: with ${members} the DCS is lost with the first failure and Patroni cannot fail over; expected an odd number of at least 3 (3, 5 or 7)`;
  if (members % 2 === 0) return `${members} members need ${members / 2 + 1} for quorum and so survive no more failures than ${members - 1} would; expected an odd number of at least 3 (3, 5 or 7)`;
  return undefined;
}

// Parameters Patroni only takes from the DCS (bootstrap.dcs.postgresql.parameters): every member must agree
// on them (Patroni docs "Dynamic configuration settings", postgresql.parameters that must be equal).
const DCS_ONLY = new Set(["max_connections", "max_locks_per_transaction", "max_worker_processes", "max_prepared_transactions", "wal_level", "track_commit_timestamp", "max_wal_senders", "max_replication_slots", "wal_log_hints", "wal_keep_size"]);
// Patroni writes these itself (listen/connect addresses, recovery, the sync standby list, the config files).
const PATRONI_OWNED = new Set(["listen_addresses", "port", "hot_standby", "synchronous_standby_names", "primary_conninfo", "primary_slot_name", "restore_command", "recovery_target_timeline", "hba_file", "ident_file", "config_file", "data_directory"]);

/** A postgresql.conf value as PostgreSQL reads it ('quoted' strings unquoted; '' -> '). */
function unquote(value: string): string {
  const m = /^'(.*)'$/s.exec(value);
  return m ? (m[1] as string).replace(/''/g, "'") : value;
}

export interface PatroniConfInput {
  /** Cluster name in the DCS (Patroni scope). */
  scope: string;
  /** This member's name (the application_name standbys stream with; the replication slot's name). */
  name: string;
  /** This node's address inside the stack network (REST API and PostgreSQL connect addresses). */
  address: string;
  /** etcd client endpoints, host:port. */
  etcdHosts: string[];
  dataDir: string;
  binDir: string;
  timing: PatroniTiming;
  /** sync: synchronous_mode (a commit waits for a standby; Patroni only promotes a synchronous standby). */
  replicationMode: "async" | "sync";
  /** A standby more than this behind is never promoted (maximum_lag_on_failover). */
  maximumLagOnFailoverBytes: number;
  /** The tuner's settings (tunePostgres); the ones Patroni owns are left out, the DCS-only ones go to the DCS. */
  settings: PostgresSettings;
  /** Rendered pg_hba.conf (renderHba): its rules, comments dropped, become postgresql.pg_hba. */
  hba: string;
  superuser: { username: string; password: string };
  replication: { username: string; password: string };
  /** pgBackRest stanza: archive-get as restore_command, and the first replica create method. */
  stanza: string;
}

/** One node's patroni.yml. Holds passwords: the plan ships it as a secret file, mode 0600. */
export function renderPatroniConf(input: PatroniConfInput): string {
  const dcsParameters: Record<string, string> = {};
  const localParameters: Record<string, string> = {};
  for (const [key, value] of Object.entries(input.settings)) {
    if (PATRONI_OWNED.has(key)) continue;
    (DCS_ONLY.has(key) ? dcsParameters : localParameters)[key] = unquote(value);
  }
  // PostgreSQL 17 sleeps wal_retrieve_retry_interval (5s) between attempts to get WAL once streaming broke,
  // and acts on a promote request only after that sleep (ADR 0009 measured it); 1s keeps the promotion
  // inside its budget without calling archive-get ten times a second.
  localParameters.wal_retrieve_retry_interval ??= "1s";
  const restoreCommand = input.settings.restore_command !== undefined ? unquote(input.settings.restore_command) : `pgbackrest --stanza=${input.stanza} archive-get %f "%p"`;
  const hbaLines = input.hba
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.replace(/\s+#.*$/, "").replace(/\s+/g, " "));
  const t = input.timing;
  const conf = {
    scope: input.scope,
    namespace: "/homelab/",
    name: input.name,
    log: { level: "INFO", format: "%(asctime)s %(levelname)s: %(message)s" },
    restapi: { listen: "0.0.0.0:8008", connect_address: `${input.address}:8008` },
    etcd3: { hosts: input.etcdHosts },
    bootstrap: {
      dcs: {
        ttl: t.ttlSeconds,
        loop_wait: t.loopWaitSeconds,
        retry_timeout: t.retryTimeoutSeconds,
        maximum_lag_on_failover: input.maximumLagOnFailoverBytes,
        synchronous_mode: input.replicationMode === "sync",
        // With no synchronous standby left the primary keeps accepting writes (ADR 0009's manual rule too).
        synchronous_mode_strict: false,
        // A node failing over does not wait for a crashed primary to come back first.
        primary_start_timeout: 0,
        postgresql: { use_pg_rewind: true, use_slots: true, parameters: dcsParameters },
      },
      initdb: ["data-checksums", { encoding: "UTF8" }, { locale: "C.UTF-8" }, { "locale-provider": "builtin" }, { "builtin-locale": "C.UTF-8" }, { "auth-local": "peer" }, { "auth-host": "scram-sha-256" }],
    },
    postgresql: {
      listen: "0.0.0.0:5432",
      connect_address: `${input.address}:5432`,
      data_dir: input.dataDir,
      bin_dir: input.binDir,
      // Patroni's own pgpass: ~/.pgpass stays the entrypoint's (pgBackRest, drills).
      pgpass: "/etc/patroni/pgpass",
      use_unix_socket: true,
      authentication: {
        superuser: input.superuser,
        replication: input.replication,
        // pg_rewind as the replication role (granted the functions it needs by homelab-sync-roles), no superuser over the network.
        rewind: input.replication,
      },
      parameters: localParameters,
      recovery_conf: { restore_command: restoreCommand },
      pg_hba: hbaLines,
      // A new or rebuilt standby restores from the repository when it holds a backup (no load on the
      // primary), else clones the primary (a fresh stack has no backup until the post-up full backup).
      create_replica_methods: ["pgbackrest", "basebackup"],
      pgbackrest: { command: `/usr/bin/pgbackrest --stanza=${input.stanza} --delta --type=standby restore`, keep_data: true, no_params: true },
      basebackup: [{ checkpoint: "fast" }],
    },
    // No /dev/watchdog in a container: fencing is the leader lease (a primary that cannot renew it within
    // ttl demotes itself). ADR 0017 says what that leaves open.
    watchdog: { mode: "off" },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
  return `# patroni.yml of ${input.name} (${input.scope}), rendered by homelab-data (components/postgres/patroni.ts)\n${stringify(conf, { lineWidth: 0 })}`;
}
