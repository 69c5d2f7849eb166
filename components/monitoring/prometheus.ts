// What the monitoring node runs, as files (issue 12, ADR 0016): Prometheus' scrape config, the exporters it
// starts (one postgres_exporter per PostgreSQL node, one redis_exporter per Redis node), the SQL those
// exporters ask, and Alertmanager's routing to the stack's webhook. Pure: plain values in, file contents out (yaml package); components/plan.ts places them.
import { stringify } from "yaml";
import { promDuration } from "./rules.ts";

export const PROMETHEUS_PORT = 9090;
/** node_exporter on every node built from homelab/postgres (textfile collector for pgBackRest state). */
export const NODE_EXPORTER_PORT = 9100;
/** Alertmanager on the monitoring node (loopback only: Prometheus is its one client). */
export const ALERTMANAGER_PORT = 9093;
/**
 * node_exporter on the monitoring node itself, textfile collector only: the drill results `homelab drill`
 * writes there (drills/lib/metrics.ts), on the node the drills never break. Loopback only.
 */
export const DRILL_METRICS_PORT = 9101;
/** Where the drill results textfile lives on the monitoring node (on its data volume: survives a re-create). */
export const DRILL_METRICS_DIR = "/var/lib/prometheus/textfile";
const ALERTMANAGER_DATA_DIR = "/var/lib/prometheus/alertmanager";
/** The DuckDB host's HTTP port (components/duckdb/image: GET /metrics). */
export const DUCKDB_HTTP_PORT = 8080;
const POSTGRES_EXPORTER_BASE_PORT = 9187;
const REDIS_EXPORTER_BASE_PORT = 9121;

export interface MonitoredPostgres {
  /** Node name (pg-1): the `node` label of its series. */
  node: string;
  host: string;
  port: number;
}
export interface MonitoredRedis {
  node: string;
  host: string;
  port: number;
}

export interface MonitoredDuckdb {
  node: string;
  host: string;
  port: number;
}

export interface MonitoringInput {
  stack: string;
  scrapeIntervalSeconds: number;
  postgres: MonitoredPostgres[];
  redis: MonitoredRedis[];
  /** DuckDB hosts, scraped at GET /metrics (their sync state: HomelabAnalyticsStale). */
  duckdb: MonitoredDuckdb[];
  /** Nodes running node_exporter on NODE_EXPORTER_PORT (node name -> host). */
  nodeExporters: { node: string; host: string }[];
  /** The monitor roles' names, and where the PostgreSQL one's password file is on the monitoring node. */
  postgresUser: string;
  postgresPasswordFile: string;
  redisUser: string;
  /** Rule files Prometheus loads (paths on the monitoring node). */
  ruleFiles: string[];
}

/** One exporter process the monitoring node's entrypoint starts: its argv (no secret in it) and its port. */
export interface ExporterProcess {
  name: string;
  port: number;
  argv: string[];
  /** Non-secret environment: a DSN without password, the PASS_FILE path. */
  env: Record<string, string>;
}

/**
 * The Go runtime of every exporter and of Alertmanager: collect garbage at 50% heap growth (Go's default is
 * 100%) on one OS thread. Measured side by side on a live tier (ADR 0016): 2-3.5 MiB less resident per
 * process (postgres_exporter 7.2 -> 4.5 MiB anonymous, Alertmanager 16.8 -> 13.3), for CPU these
 * processes barely use. Prometheus gets GOGC=50 too (the monitoring image's entrypoint), not one thread.
 */
export const GO_RUNTIME_ENV: Readonly<Record<string, string>> = { GOGC: "50", GOMAXPROCS: "1" };

/**
 * Every process the monitoring node's entrypoint starts and keeps running beside Prometheus: the exporters,
 * the drill results' textfile exporter and Alertmanager.
 */
export function planExporters(m: MonitoringInput, paths: { postgresQueries: string; redisPasswordMap: string; alertmanagerConfig: string }): ExporterProcess[] {
  const pg = m.postgres.map((p, i): ExporterProcess => {
    const port = POSTGRES_EXPORTER_BASE_PORT + i;
    return {
      name: `postgres-exporter-${p.node}`,
      port,
      argv: ["prometheus-postgres-exporter", `--web.listen-address=:${port}`, `--extend.query-path=${paths.postgresQueries}`, "--no-collector.stat_bgwriter", "--log.level=warn"],
      // postgres_exporter reads the password from DATA_SOURCE_PASS_FILE: only the file's path is in the env.
      env: {
        ...GO_RUNTIME_ENV,
        DATA_SOURCE_URI: `${p.host}:${p.port}/postgres?sslmode=disable&application_name=homelab_monitor`,
        DATA_SOURCE_USER: m.postgresUser,
        DATA_SOURCE_PASS_FILE: m.postgresPasswordFile,
      },
    };
  });
  const redis = m.redis.map((r, i): ExporterProcess => {
    const port = REDIS_EXPORTER_BASE_PORT + i;
    return {
      name: `redis-exporter-${r.node}`,
      port,
      // -redis.password-file is a JSON map of address -> password (redis_exporter README "Authenticating").
      argv: ["prometheus-redis-exporter", `-web.listen-address=:${port}`, `-redis.addr=${redisAddress(r)}`, `-redis.user=${m.redisUser}`, `-redis.password-file=${paths.redisPasswordMap}`],
      env: { ...GO_RUNTIME_ENV },
    };
  });
  // The drill results: textfile collector only (no host metrics of the monitoring node's own: the tier's
  // nodes carry those), so it costs a few MiB.
  const drills: ExporterProcess = {
    name: "drill-metrics",
    port: DRILL_METRICS_PORT,
    argv: ["prometheus-node-exporter", `--web.listen-address=127.0.0.1:${DRILL_METRICS_PORT}`, "--collector.disable-defaults", "--collector.textfile", `--collector.textfile.directory=${DRILL_METRICS_DIR}`, "--log.level=warn"],
    env: { ...GO_RUNTIME_ENV },
  };
  // Alertmanager: one instance, no cluster (--cluster.listen-address empty), silences and the notification
  // log on the data volume.
  const alertmanager: ExporterProcess = {
    name: "alertmanager",
    port: ALERTMANAGER_PORT,
    argv: ["prometheus-alertmanager", `--config.file=${paths.alertmanagerConfig}`, `--storage.path=${ALERTMANAGER_DATA_DIR}`, `--web.listen-address=127.0.0.1:${ALERTMANAGER_PORT}`, "--cluster.listen-address=", "--log.level=warn"],
    env: { ...GO_RUNTIME_ENV },
  };
  return [...pg, ...redis, drills, alertmanager];
}

/** The address redis_exporter is given (-redis.addr) for one Redis node. */
function redisAddress(r: MonitoredRedis): string {
  return `redis://${r.host}:${r.port}`;
}

/**
 * The JSON map redis_exporter's -redis.password-file reads: every Redis address -> the monitor password.
 * With -redis.user set the exporter looks the password up under the address WITH the user in it
 * (exporter/redis.go lookupPasswordInPasswordMap: url.User(user), "redis://monitor@host:port"); a key
 * without the user is never found and the exporter connects unauthenticated (NOAUTH). Address and user come
 * from the same input as the exporter's argv (planExporters), so the two cannot drift apart.
 */
export function renderRedisPasswordMap(m: Pick<MonitoringInput, "redis" | "redisUser">, password: string): string {
  const key = (r: MonitoredRedis) => {
    const u = new URL(redisAddress(r));
    u.username = m.redisUser;
    return u.toString().replace(/\/$/, "");
  };
  return `${JSON.stringify(Object.fromEntries(m.redis.map((r) => [key(r), password])), null, 2)}\n`;
}

/** The exporters file the entrypoint reads: one JSON object per line (name, port, argv, env). */
export function renderExporters(exporters: ExporterProcess[]): string {
  return exporters.map((e) => JSON.stringify(e)).join("\n") + (exporters.length ? "\n" : "");
}

export interface AlertingInput {
  /** Where Alertmanager POSTs alerts (its webhook_config), or none: alerts stay visible in Prometheus and Alertmanager only. */
  webhookUrl?: string;
  groupWaitSeconds: number;
  repeatIntervalSeconds: number;
}

/**
 * Alertmanager's config: every alert of the stack to one webhook receiver (the Prometheus webhook payload,
 * version 4), grouped per alert and node; resolved alerts are sent too. Without a webhook the route ends at
 * a receiver with no integration (Alertmanager still shows and groups them: `amtool alert query`).
 */
export function renderAlertmanagerConfig(a: AlertingInput): string {
  const receiver = a.webhookUrl ? "webhook" : "none";
  const config = {
    route: {
      receiver,
      group_by: ["alertname", "node"],
      group_wait: promDuration(a.groupWaitSeconds),
      group_interval: promDuration(Math.max(a.groupWaitSeconds, 5)),
      repeat_interval: promDuration(a.repeatIntervalSeconds),
    },
    receivers: [a.webhookUrl ? { name: "webhook", webhook_configs: [{ url: a.webhookUrl, send_resolved: true }] } : { name: "none" }],
  };
  return `# Rendered by components/monitoring/prometheus.ts renderAlertmanagerConfig.\n${stringify(config, { lineWidth: 0 })}`;
}

export function renderPrometheusConfig(m: MonitoringInput): string {
  const interval = promDuration(m.scrapeIntervalSeconds);
  const exporters = planExporters(m, { postgresQueries: "", redisPasswordMap: "", alertmanagerConfig: "" });
  const target = (port: number) => `localhost:${port}`;
  const pgJobs = m.postgres.map((p, i) => ({ targets: [target((exporters[i] as ExporterProcess).port)], labels: { node: p.node } }));
  const redisJobs = m.redis.map((r, i) => ({ targets: [target((exporters[m.postgres.length + i] as ExporterProcess).port)], labels: { node: r.node } }));
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: promDuration(Math.max(1, Math.min(10, m.scrapeIntervalSeconds - 1))), external_labels: { stack: m.stack } },
    rule_files: m.ruleFiles,
    scrape_configs: [
      { job_name: "prometheus", static_configs: [{ targets: [target(PROMETHEUS_PORT)], labels: { node: "monitoring" } }] },
      ...(pgJobs.length ? [{ job_name: "postgres", static_configs: pgJobs }] : []),
      ...(redisJobs.length ? [{ job_name: "redis", static_configs: redisJobs }] : []),
      ...(m.nodeExporters.length ? [{ job_name: "node", static_configs: m.nodeExporters.map((n) => ({ targets: [`${n.host}:${NODE_EXPORTER_PORT}`], labels: { node: n.node } })) }] : []),
      ...(m.duckdb.length ? [{ job_name: "duckdb", static_configs: m.duckdb.map((d) => ({ targets: [`${d.host}:${d.port}`], labels: { node: d.node } })) }] : []),
      { job_name: "drills", static_configs: [{ targets: [target(DRILL_METRICS_PORT)], labels: { node: "monitoring" } }] },
    ],
    alerting: { alertmanagers: [{ static_configs: [{ targets: [target(ALERTMANAGER_PORT)] }] }] },
  };
  return `# Rendered by components/monitoring/prometheus.ts renderPrometheusConfig.\n${stringify(config, { lineWidth: 0 })}`;
}

/**
 * postgres_exporter custom queries (--extend.query-path): exactly what the alert rules read. Each query runs
 * on every node (primary or replica), so nothing here calls pg_current_wal_lsn() outside a CASE that
 * excludes recovery. The monitor role is a member of pg_monitor (pg_ls_archive_statusdir, pg_stat_* rows).
 */
export function renderPostgresQueries(): string {
  const gauge = (description: string) => ({ usage: "GAUGE", description });
  const queries = {
    homelab_pg_archiver: {
      query: [
        "SELECT a.archived_count, a.failed_count,",
        "  (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name ~ '\\.ready$') AS ready_count,",
        "  coalesce((SELECT extract(epoch FROM now() - min(modification)) FROM pg_ls_archive_statusdir() WHERE name ~ '\\.ready$'), 0) AS oldest_ready_age_seconds",
        "FROM pg_stat_archiver a",
      ].join(" "),
      metrics: [
        { archived_count: { usage: "COUNTER", description: "WAL files archived (pg_stat_archiver)" } },
        { failed_count: { usage: "COUNTER", description: "Failed archive_command runs (pg_stat_archiver)" } },
        { ready_count: gauge("Finished WAL segments waiting to be archived (.ready in pg_wal/archive_status)") },
        { oldest_ready_age_seconds: gauge("Age of the oldest WAL segment waiting to be archived") },
      ],
    },
    homelab_pg_recovery: {
      query: "SELECT pg_is_in_recovery()::int AS in_recovery, (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming') AS wal_receiver_streaming",
      metrics: [
        { in_recovery: gauge("1 on a standby") },
        { wal_receiver_streaming: gauge("1 when the WAL receiver streams from a primary") },
      ],
    },
    homelab_pg_replication: {
      query: "SELECT application_name, (state = 'streaming')::int AS streaming, coalesce(extract(epoch FROM flush_lag), 0) AS flush_lag_seconds FROM pg_stat_replication",
      metrics: [
        { application_name: { usage: "LABEL", description: "Standby's application_name" } },
        { streaming: gauge("1 when this standby streams") },
        { flush_lag_seconds: gauge("Time until a commit here is flushed on the standby (pg_stat_replication.flush_lag; 0 when caught up)") },
      ],
    },
    homelab_pg_slot: {
      query: "SELECT slot_name, active::int AS active, CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN 0 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END AS retained_bytes FROM pg_replication_slots",
      metrics: [
        { slot_name: { usage: "LABEL", description: "Replication slot" } },
        { active: gauge("1 when a standby uses the slot") },
        { retained_bytes: gauge("WAL the slot keeps on this node") },
      ],
    },
  };
  return `# Rendered by components/monitoring/prometheus.ts renderPostgresQueries.\n${stringify(queries, { lineWidth: 0 })}`;
}
