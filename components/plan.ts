// Spec -> plans (docs/architecture.md "Data flow" step 2): every host of the tier as a NodePlan, built only
// from the domain planners. Pure: the same function feeds `homelab render`, the Pulumi components and the
// e2e harness. Secrets come in as plain strings; callers decide how they travel (Pulumi secrets, or a
// redacted placeholder for review).
import type { HomelabSpec, PlacedSection, SecretKey } from "./config/index.ts";
import { PROJECT, SECRET_KEYS } from "./config/index.ts";
import { renderPgbackrestCipherConf, renderPgbackrestConf, sftpHostKeyFingerprint, type SftpKeys } from "./pgbackrest/index.ts";
import type { TlsBundle } from "./pgbackrest/tls.ts";
import { planHba, planPatroniTiming, renderHaproxyConf, renderHba, renderPatroniConf, renderPostgresConf, tunePostgres } from "./postgres/index.ts";
import { networkKindOf, type HomelabPlan, type NetworkKind, type NetworkPlan, type NodeFile, type NodePlan, type NodeRole } from "./platform/plan.ts";
import { renderRedisAcl, renderRedisConf } from "./redis/index.ts";
import { tuneDuckDb } from "./duckdb/tune.ts";
import { DUCKDB_HTTP_PORT, NODE_EXPORTER_PORT, PROMETHEUS_PORT, planAlertRules, planExporters, renderAlertmanagerConfig, renderAlertRules, renderExporters, renderPostgresQueries, renderPrometheusConfig, renderRedisPasswordMap, type MonitoringInput } from "./monitoring/index.ts";

export type HomelabSecrets = { [K in Exclude<SecretKey, "tls" | "repo2Ssh">]: string } & { tls: TlsBundle; repo2Ssh: SftpKeys };

// A well-formed ed25519 public key of 32 zero bytes: the redacted plan still renders a fingerprint.
const REDACTED_PUBLIC_KEY = `ssh-ed25519 ${Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from("ssh-ed25519"), Buffer.from([0, 0, 0, 32]), Buffer.alloc(32)]).toString("base64")} redacted\n`;

/**
 * Placeholders for every secret: the structural plan (names, ports, volumes must be known before secrets
 * resolve) and review renders use them; nothing real is read. Any host name gets a placeholder certificate,
 * so the structure never depends on which nodes `homelab init` issued certificates for.
 */
export function redactedSecrets(): HomelabSecrets {
  const passwords = Object.fromEntries(
    (Object.keys(SECRET_KEYS) as SecretKey[]).filter((k) => k !== "tls" && k !== "repo2Ssh").map((k) => [k, `REDACTED-${k}`]),
  ) as Omit<HomelabSecrets, "tls" | "repo2Ssh">;
  const tls: TlsBundle = {
    caCert: "# redacted: CA certificate (pulumi secret homelab-data:tls)\n",
    caKey: "# redacted\n",
    nodes: new Proxy({} as TlsBundle["nodes"], {
      get: (_t, host) => ({ cert: `# redacted: certificate of ${String(host)}\n`, key: `# redacted: private key of ${String(host)}\n` }),
    }),
  };
  const repo2Ssh: SftpKeys = {
    clientKey: "# redacted: pgBackRest's SFTP login key (pulumi secret homelab-data:repo2Ssh)\n",
    clientPublicKey: REDACTED_PUBLIC_KEY,
    hostKey: "# redacted: the SFTP stand-in's host key\n",
    hostPublicKey: REDACTED_PUBLIC_KEY,
  };
  return { ...passwords, tls, repo2Ssh };
}

/**
 * Where this checkout's images are tagged: `homelab/postgres:17` unless HOMELAB_IMAGE_NAMESPACE names another
 * namespace (scripts/build-images.sh reads the same variable). Two checkouts that change an image can then
 * share one engine without rebuilding each other's images under the same tag.
 */
export function imageNamespace(env: NodeJS.ProcessEnv = process.env): string {
  const ns = env.HOMELAB_IMAGE_NAMESPACE ?? "homelab";
  if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/.test(ns)) {
    throw new Error(`HOMELAB_IMAGE_NAMESPACE: got ${JSON.stringify(ns)}; expected a docker repository path (lower-case letters, digits, '.', '_', '-', parts separated by '/'), e.g. homelab`);
  }
  return ns;
}

const NS = imageNamespace();

export const IMAGES = {
  postgres: { name: `${NS}/postgres:17`, context: "components/postgres/image", baseImage: "debian:trixie-slim" },
  // postgres.ha: patroni only (ADR 0017): the postgres image plus Patroni, etcd and HAProxy.
  postgresHa: { name: `${NS}/postgres-ha:17`, context: "components/postgres/ha-image", baseImage: `${NS}/postgres:17` },
  redis: { name: `${NS}/redis:7`, context: "components/redis/image", baseImage: "debian:bookworm-slim" },
  duckdb: { name: `${NS}/duckdb:1`, context: "components/duckdb/image", baseImage: "debian:bookworm-slim" },
  sftp: { name: `${NS}/sftp:1`, context: "components/pgbackrest/sftp-image", baseImage: "debian:bookworm-slim" },
  monitoring: { name: `${NS}/monitoring:1`, context: "components/monitoring/image", baseImage: "debian:trixie-slim" },
} as const;

/** Database roles every cluster gets besides the app role (ADR 0003). */
export const ROLES = { replication: "replicator", readonly: "analytics_ro", monitor: "homelab_monitor" } as const;
/** The Redis ACL user redis_exporter logs in as. */
export const REDIS_MONITOR_USER = "monitor";
// Where the postgres image's node_exporter reads textfile metrics (homelab-pgbackrest-metrics writes there).
const METRICS_DIR = "/var/lib/homelab/metrics";
export const PGBACKREST_TLS_PORT = 8432;
const PG_DATA = "/var/lib/postgresql/data";
// Where the repository host's entrypoint installs repo2's secret files (components/postgres/image).
const REPO2_KEY_PATH = "/etc/ssl/homelab/repo2-sftp.key";
const REPO2_CIPHER_CONF_PATH = "/etc/pgbackrest/conf.d/repo2-cipher.conf";
const ETC = "/etc/homelab";

export class PlanError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "PlanError";
  }
}

/** Host addresses inside the stack subnet: fixed offsets so pg_hba can name them. */
export function addressPlan(subnet: string, key = "docker.subnet"): { gateway: string; at: (offset: number) => string } {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(subnet);
  if (!m) throw new PlanError([`${PROJECT}:${key}: got ${JSON.stringify(subnet)}; expected an IPv4 subnet such as "172.28.0.0/24"`]);
  const prefix = Number(m[5]);
  if (prefix > 26) throw new PlanError([`${PROJECT}:${key}: got ${JSON.stringify(subnet)}; expected a prefix of /26 or shorter (nodes use host offsets up to .50)`]);
  const base = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  const network = (base & (0xffffffff << (32 - prefix))) >>> 0;
  const toIp = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
  return { gateway: toIp(network + 1), at: (offset: number) => toIp(network + offset) };
}

const secretFile = (name: string, content: string): NodeFile => ({ path: `${ETC}/secrets/${name}.password`, content, mode: 0o600, secret: true });

/** A node as its section's planner makes it; planHomelab places it (host, platform) at the end. */
type UnplacedNode = Omit<NodePlan, "host" | "platform">;

/** Which section's host a node of each role is placed on (`<section>.host`). */
export const SECTION_OF_ROLE: Record<NodeRole, PlacedSection> = {
  "postgres-primary": "postgres",
  "postgres-replica": "postgres",
  etcd: "postgres",
  "postgres-endpoint": "postgres",
  "backup-repository": "pgbackrest",
  "repo2-sftp": "pgbackrest",
  redis: "redis",
  "redis-replica": "redis",
  duckdb: "duckdb",
  monitoring: "monitoring",
};

/** "platform docker", or where each section with nodes lives ("postgres on hv (libvirt), pgbackrest on nas (docker)"). */
export function placementSummary(spec: HomelabSpec, plan: Pick<HomelabPlan, "nodes">): string {
  if (!spec.hosts) return `platform ${spec.platform}`;
  const used = [...new Set(plan.nodes.map((n) => SECTION_OF_ROLE[n.role]))];
  return used.map((s) => `${s} on ${spec.placement[s].host} (${spec.placement[s].kind})`).join(", ");
}

export function planHomelab(spec: HomelabSpec, secrets: HomelabSecrets): HomelabPlan {
  const prefix = `homelab-${spec.stack}`;
  // VMs (libvirt) live on the stack's own NAT network; containers on the Docker bridge network. Each node's
  // address is at its fixed offset on the network of the host its section is placed on (spec.placement).
  const subnets: Record<NetworkKind, string> = { docker: spec.docker.subnet, libvirt: spec.libvirt?.subnet ?? "" };
  const netOfKind = (kind: NetworkKind) => {
    if (kind === "libvirt" && !spec.libvirt) throw new PlanError([`${PROJECT}:libvirt: nodes are placed on a libvirt host, but the stack has no libvirt: section`]);
    return addressPlan(subnets[kind], `${kind}.subnet`);
  };
  const netOf = (section: PlacedSection) => netOfKind(networkKindOf(spec.placement[section].kind));
  const net = netOf("postgres");
  const host = (name: string) => `${prefix}-${name}`;
  const stanza = spec.pgbackrest.stanza;
  const pgNames = Array.from({ length: spec.postgres.replicas + 1 }, (_, i) => `pg-${i + 1}`);
  const pgAddress = (i: number) => net.at(10 + i);
  const backupName = "backup";
  const repo2Spec = spec.pgbackrest.repo2;
  // The stand-in SFTP server the stack runs itself when repo2 names no host (ADR 0013).
  const sftpName = repo2Spec && repo2Spec.sftp.host === undefined ? "sftp" : undefined;
  const repo2 = repo2Spec
    ? {
        host: sftpName ? host(sftpName) : (repo2Spec.sftp.host as string),
        port: repo2Spec.sftp.port,
        user: repo2Spec.sftp.user,
        path: repo2Spec.sftp.path,
        privateKeyFile: REPO2_KEY_PATH,
        hostKeyFingerprint: repo2Spec.sftp.hostKeyFingerprint ?? sftpHostKeyFingerprint(secrets.repo2Ssh.hostPublicKey),
        cipherPassFile: REPO2_CIPHER_CONF_PATH,
        retention: { full: repo2Spec.retention.full, diff: repo2Spec.retention.diff },
      }
    : undefined;
  const duckdbAddress = netOf("duckdb").at(40);
  const monitoringAddress = netOf("monitoring").at(41);
  const monitoring = spec.monitoring.enabled;
  const patroni = spec.postgres.ha === "patroni";
  // postgres.ha: patroni (ADR 0017): etcd members at .44.., HAProxy at .49; HAProxy's ports published at
  // basePort+10 (primary) and +11 (replicas).
  const etcdNames = patroni ? Array.from({ length: spec.postgres.patroni?.etcdMembers ?? 3 }, (_, i) => `etcd-${i + 1}`) : [];
  const etcdAddress = (i: number) => net.at(44 + i);
  const endpointName = "haproxy";
  const endpointAddress = net.at(49);
  const ENDPOINT_PORTS = { primary: 5000, replicas: 5001 } as const;
  // application_name of each PG node: its name with '_' so synchronous_standby_names needs no quoting.
  const appName = (pgName: string) => pgName.replace(/-/g, "_");

  const tls = (hostname: string): NodeFile[] => {
    const node = secrets.tls.nodes[hostname];
    if (!node) throw new PlanError([`${PROJECT}:tls: no certificate for ${hostname}; run \`homelab init --stack ${spec.stack}\` to issue one`]);
    return [
      { path: `${ETC}/tls/ca.crt`, content: secrets.tls.caCert, mode: 0o644, secret: false },
      { path: `${ETC}/tls/node.crt`, content: node.cert, mode: 0o644, secret: false },
      { path: `${ETC}/tls/node.key`, content: node.key, mode: 0o600, secret: true },
    ];
  };
  // Where the image's entrypoint installs /etc/homelab/tls/* (components/postgres/image/README.md).
  const tlsPaths = { caFile: "/etc/ssl/homelab/ca.crt", certFile: "/etc/ssl/homelab/node.crt", keyFile: "/etc/ssl/homelab/node.key" };

  // Every PostgreSQL node gets the same settings: any of them may be promoted (failover drill), and a
  // node never counts itself among synchronous standbys.
  const settings = tunePostgres({
    memoryBytes: spec.postgres.node.memory,
    cpus: spec.postgres.node.cpus,
    storage: spec.postgres.node.storage,
    profile: spec.postgres.profile,
    version: spec.postgres.version,
    maxConnections: spec.postgres.maxConnections,
    idleInTransactionSessionTimeoutMs: spec.postgres.idleInTransactionSessionTimeout * 1000,
    archive: { stanza, timeoutSeconds: spec.postgres.archiveTimeout },
    replication: {
      maxSlotWalKeepSizeBytes: spec.postgres.maxSlotWalKeepSize,
      synchronousStandbyNames: spec.postgres.replicationMode === "sync" ? `ANY 1 (${pgNames.map(appName).join(", ")})` : undefined,
    },
    extraSettings: spec.postgres.settings,
  });
  const postgresqlConf = renderPostgresConf(settings, `${PROJECT} stack ${spec.stack}: PGTune ${spec.postgres.profile} profile, ${spec.postgres.node.cpus} cpu, ${spec.postgres.node.storage}`);
  const hba = renderHba(
    planHba({
      // Through HAProxy (TCP) every client arrives from its address: it must be let in like a client network.
      allowedClientCidrs: patroni ? [...spec.postgres.allowedClientCidrs, `${endpointAddress}/32`] : spec.postgres.allowedClientCidrs,
      appRoles: [
        { name: spec.postgres.appUser, databases: [spec.postgres.database] },
      ],
      readonlyRoles: spec.duckdb.enabled ? [{ name: ROLES.readonly, databases: [spec.postgres.database], addresses: [`${duckdbAddress}/32`] }] : [],
      replicationRole: ROLES.replication,
      // Patroni on a standby also opens a replication connection to itself over 127.0.0.1 (its own timeline
      // and LSN before a leader race): patroni mode only.
      replicaAddresses: [...pgNames.map((_, i) => `${pgAddress(i)}/32`), ...(patroni ? ["127.0.0.1/32"] : [])],
      ...(monitoring ? { monitoringRole: ROLES.monitor, monitoringAddresses: [`${monitoringAddress}/32`] } : {}),
    }),
  );
  const roles = [
    { name: spec.postgres.appUser, login: true, replication: false, databases: [spec.postgres.database] },
    { name: ROLES.replication, login: true, replication: true, databases: [], rewind: true },
    { name: ROLES.readonly, login: true, replication: false, readonly: true, databases: [spec.postgres.database] },
    // pg_monitor: pg_stat_* rows of every session, pg_ls_archive_statusdir (components/monitoring/prometheus.ts).
    ...(monitoring ? [{ name: ROLES.monitor, login: true, replication: false, memberOf: ["pg_monitor"], connectionLimit: 5, databases: [] as string[] }] : []),
  ];
  const pgSecrets: NodeFile[] = [
    secretFile("postgres", secrets.postgresSuperuserPassword),
    secretFile(spec.postgres.appUser, secrets.postgresAppPassword),
    secretFile(ROLES.replication, secrets.postgresReplicationPassword),
    secretFile(ROLES.readonly, secrets.postgresReadonlyPassword),
    ...(monitoring ? [secretFile(ROLES.monitor, secrets.postgresMonitorPassword)] : []),
  ];
  // node_exporter on every node of the postgres image (textfile collector: pgBackRest state on the repository).
  const nodeExporterEnv: Record<string, string> = monitoring ? { HOMELAB_NODE_EXPORTER_PORT: String(NODE_EXPORTER_PORT), HOMELAB_METRICS_DIR: METRICS_DIR } : {};

  // repo2's passphrase: the repository host and every PostgreSQL host encrypt/decrypt repo2 themselves.
  const repo2CipherFile: NodeFile = { path: `${ETC}/repo2/cipher.conf`, content: repo2Spec ? renderPgbackrestCipherConf(secrets.repo2CipherPass) : "", mode: 0o600, secret: true };
  const timing = patroni ? planPatroniTiming(spec.objectives.failover.rto) : undefined;
  if (timing && "problem" in timing) throw new PlanError([`${PROJECT}:objectives.failover.rto: ${timing.problem}`]);
  const pgNodes: UnplacedNode[] = pgNames.map((name, i) => {
    const hostname = host(name);
    const manual = {
      name,
      hostname,
      role: i === 0 ? "postgres-primary" : "postgres-replica",
      image: { ...IMAGES.postgres },
      env: {
        // No role in the env (ADR 0011): every node is a database node; the env says only how an EMPTY data
        // directory is filled (the primary the stack builds: bootstrapFrom; the others: a clone of it).
        // An existing data directory decides the role itself, so this stays true after a failover.
        HOMELAB_ROLE: "database",
        HOMELAB_BOOTSTRAP_FROM: i === 0 ? spec.postgres.bootstrapFrom : "clone",
        HOMELAB_PRIMARY_HOST: host(pgNames[0] as string),
        HOMELAB_PRIMARY_PORT: "5432",
        HOMELAB_REPLICATION_SLOT: appName(name),
        HOMELAB_APPLICATION_NAME: appName(name),
        HOMELAB_STANZA: stanza,
        HOMELAB_REPO_HOST: host(backupName),
        ...nodeExporterEnv,
      },
      files: [
        { path: `${ETC}/postgresql.conf`, content: postgresqlConf, mode: 0o644, secret: false },
        { path: `${ETC}/pg_hba.conf`, content: hba, mode: 0o640, secret: false },
        {
          path: `${ETC}/pgbackrest.conf`,
          content: renderPgbackrestConf({
            kind: "database",
            stanza,
            pgPath: PG_DATA,
            pgPort: 5432,
            repoHost: host(backupName),
            repoHostPort: PGBACKREST_TLS_PORT,
            archiveAsync: true,
            processMax: spec.pgbackrest.processMax,
            tls: tlsPaths,
            tlsServer: { address: "*", port: PGBACKREST_TLS_PORT, authClients: [host(backupName)] },
            compression: { type: spec.pgbackrest.compression.type, level: spec.pgbackrest.compression.level },
            repo2ViaRepoHost: repo2 !== undefined,
            ...(repo2 ? { repo2CipherPassFile: REPO2_CIPHER_CONF_PATH } : {}),
          }),
          mode: 0o640,
          secret: false,
        },
        { path: `${ETC}/roles.json`, content: `${JSON.stringify(roles, null, 2)}\n`, mode: 0o644, secret: false },
        ...pgSecrets,
        ...(repo2 ? [repo2CipherFile] : []),
        ...tls(hostname),
      ],
      volumes: [{ name: `${hostname}-data`, mountPath: PG_DATA, retainOnDestroy: false }],
      ports: [{ name: "postgres", containerPort: 5432, hostPort: spec.docker.basePort + i }],
      healthcheck: { test: ["CMD", "/usr/local/bin/homelab-health"], intervalSeconds: 1, timeoutSeconds: 5, retries: 5, startPeriodSeconds: 120 },
      memoryBytes: spec.postgres.node.memory,
      cpus: spec.postgres.node.cpus,
      ipv4Address: pgAddress(i),
      // The primary creates the stanza on the repository before it reports ready (first WAL segment must
      // archive); replicas bootstrap from the primary.
      dependsOn: i === 0 ? [backupName] : [pgNames[0] as string],
      stopTimeoutSeconds: 60,
    } satisfies UnplacedNode;
    if (!timing) return manual;
    // Patroni renders postgresql.conf and pg_hba.conf itself from patroni.yml (the same tuner settings and
    // rules); the first node bootstraps the cluster (initdb) once etcd answers, the others become its standbys.
    const patroniYml = renderPatroniConf({
      scope: prefix,
      name: appName(name),
      address: pgAddress(i),
      etcdHosts: etcdNames.map((_, j) => `${etcdAddress(j)}:2379`),
      dataDir: PG_DATA,
      binDir: `/usr/lib/postgresql/${spec.postgres.version}/bin`,
      timing,
      replicationMode: spec.postgres.replicationMode,
      maximumLagOnFailoverBytes: spec.postgres.patroni?.maximumLagOnFailover ?? 1024 ** 2,
      settings,
      hba,
      superuser: { username: "postgres", password: secrets.postgresSuperuserPassword },
      replication: { username: ROLES.replication, password: secrets.postgresReplicationPassword },
      stanza,
    });
    return {
      ...manual,
      image: { ...IMAGES.postgresHa },
      env: { HOMELAB_ROLE: "patroni", HOMELAB_STANZA: stanza, HOMELAB_REPO_HOST: host(backupName) },
      files: [
        { path: `${ETC}/patroni.yml`, content: patroniYml, mode: 0o600, secret: true },
        ...manual.files.filter((f) => f.path !== `${ETC}/postgresql.conf` && f.path !== `${ETC}/pg_hba.conf`),
      ],
      healthcheck: { test: ["CMD", "/usr/local/bin/homelab-ha-health"], intervalSeconds: 1, timeoutSeconds: 5, retries: 5, startPeriodSeconds: 180 },
      dependsOn: i === 0 ? [backupName, ...etcdNames] : [pgNames[0] as string],
    } satisfies UnplacedNode;
  });

  const backupHostname = host(backupName);
  const backupNode: UnplacedNode = {
    name: backupName,
    hostname: backupHostname,
    role: "backup-repository",
    image: { ...IMAGES.postgres },
    env: { HOMELAB_ROLE: "repository", HOMELAB_STANZA: stanza, HOMELAB_PRIMARY_HOST: host(pgNames[0] as string), ...nodeExporterEnv },
    files: [
      {
        path: `${ETC}/pgbackrest.conf`,
        content: renderPgbackrestConf({
          kind: "repository",
          stanza,
          repoPath: "/var/lib/pgbackrest",
          retention: { full: spec.pgbackrest.retention.full, diff: spec.pgbackrest.retention.diff },
          compression: { type: spec.pgbackrest.compression.type, level: spec.pgbackrest.compression.level },
          processMax: spec.pgbackrest.processMax,
          bundle: true,
          blockIncremental: true,
          startFast: true,
          pgHosts: pgNames.map((n) => ({ host: host(n), pgPath: PG_DATA, port: 5432 })),
          tls: tlsPaths,
          tlsServer: { address: "*", port: PGBACKREST_TLS_PORT, authClients: pgNames.map(host) },
          repo2,
        }),
        mode: 0o640,
        secret: false,
      },
      { path: `${ETC}/crontab`, content: backupCrontab(spec), mode: 0o644, secret: false },
      ...tls(backupHostname),
      // The entrypoint installs these: the key as ~postgres-owned 0600, the passphrase into conf.d.
      ...(repo2
        ? [
            { path: `${ETC}/repo2/sftp.key`, content: secrets.repo2Ssh.clientKey, mode: 0o600, secret: true },
            repo2CipherFile,
          ]
        : []),
    ],
    volumes: [{ name: `${backupHostname}-repo`, mountPath: "/var/lib/pgbackrest", retainOnDestroy: !spec.pgbackrest.purgeBackupsOnDestroy }],
    ports: [],
    healthcheck: { test: ["CMD", "/usr/local/bin/homelab-health"], intervalSeconds: 2, timeoutSeconds: 5, retries: 5, startPeriodSeconds: 30 },
    memoryBytes: spec.pgbackrest.node.memory,
    cpus: spec.pgbackrest.node.cpus,
    ipv4Address: netOf("pgbackrest").at(20),
    dependsOn: sftpName ? [sftpName] : [],
    stopTimeoutSeconds: 30,
  };

  const nodes: UnplacedNode[] = [...pgNodes, backupNode];
  if (timing) {
    const ha = spec.postgres.patroni?.node ?? { memory: 96 * 1024 ** 2, cpus: 1, storage: "ssd" as const };
    const initialCluster = etcdNames.map((n, j) => `${n}=http://${etcdAddress(j)}:2380`).join(",");
    etcdNames.forEach((name, j) => {
      const hostname = host(name);
      nodes.push({
        name,
        hostname,
        role: "etcd",
        image: { ...IMAGES.postgresHa },
        env: { HOMELAB_ROLE: "etcd", HOMELAB_ETCD_NAME: name, HOMELAB_ETCD_ADDRESS: etcdAddress(j), HOMELAB_ETCD_INITIAL_CLUSTER: initialCluster, HOMELAB_ETCD_CLUSTER_TOKEN: prefix },
        files: [],
        volumes: [{ name: `${hostname}-data`, mountPath: "/var/lib/etcd", retainOnDestroy: false }],
        ports: [],
        healthcheck: { test: ["CMD", "/usr/local/bin/homelab-ha-health"], intervalSeconds: 1, timeoutSeconds: 3, retries: 5, startPeriodSeconds: 60 },
        memoryBytes: ha.memory,
        cpus: ha.cpus,
        ipv4Address: etcdAddress(j),
        dependsOn: [],
        stopTimeoutSeconds: 10,
      });
    });
    nodes.push({
      name: endpointName,
      hostname: host(endpointName),
      role: "postgres-endpoint",
      image: { ...IMAGES.postgresHa },
      env: { HOMELAB_ROLE: "haproxy" },
      files: [{
        path: `${ETC}/haproxy.cfg`,
        content: renderHaproxyConf({ primaryPort: ENDPOINT_PORTS.primary, replicasPort: ENDPOINT_PORTS.replicas, nodes: pgNames.map((n, j) => ({ name: appName(n), address: pgAddress(j), port: 5432, restPort: 8008 })), checkIntervalSeconds: 1 }),
        mode: 0o644,
        secret: false,
      }],
      volumes: [],
      ports: [
        { name: "primary", containerPort: ENDPOINT_PORTS.primary, hostPort: spec.docker.basePort + 10 },
        { name: "replicas", containerPort: ENDPOINT_PORTS.replicas, hostPort: spec.docker.basePort + 11 },
      ],
      healthcheck: { test: ["CMD", "/usr/local/bin/homelab-ha-health"], intervalSeconds: 2, timeoutSeconds: 3, retries: 5, startPeriodSeconds: 10 },
      memoryBytes: ha.memory,
      cpus: ha.cpus,
      ipv4Address: endpointAddress,
      dependsOn: [],
      stopTimeoutSeconds: 10,
    });
  }
  if (repo2Spec && sftpName) {
    const sftpHostname = host(sftpName);
    nodes.push({
      name: sftpName,
      hostname: sftpHostname,
      role: "repo2-sftp",
      image: { ...IMAGES.sftp },
      env: { HOMELAB_SFTP_PATH: repo2Spec.sftp.path },
      files: [
        { path: `${ETC}/ssh/host_key`, content: secrets.repo2Ssh.hostKey, mode: 0o600, secret: true },
        { path: `${ETC}/ssh/authorized_keys`, content: secrets.repo2Ssh.clientPublicKey, mode: 0o644, secret: false },
      ],
      // What stands in for the NAS keeps its data like repo1 does (pgbackrest.purgeBackupsOnDestroy).
      volumes: [{ name: `${sftpHostname}-repo2`, mountPath: repo2Spec.sftp.path, retainOnDestroy: !spec.pgbackrest.purgeBackupsOnDestroy }],
      ports: [],
      healthcheck: { test: ["CMD", "/usr/local/bin/homelab-health"], intervalSeconds: 2, timeoutSeconds: 5, retries: 5, startPeriodSeconds: 20 },
      memoryBytes: repo2Spec.node.memory,
      cpus: repo2Spec.node.cpus,
      ipv4Address: netOf("pgbackrest").at(25),
      dependsOn: [],
      stopTimeoutSeconds: 10,
    });
  }
  const facts: HomelabPlan["facts"] = {
    postgres: {
      database: spec.postgres.database,
      appUser: spec.postgres.appUser,
      replicationUser: ROLES.replication,
      readonlyUser: ROLES.readonly,
      replicationMode: spec.postgres.replicationMode,
      archiveTimeoutSeconds: spec.postgres.archiveTimeout,
      passwordFiles: passwordFilesOf(pgSecrets, { postgres: "postgres", [spec.postgres.appUser]: spec.postgres.appUser, [ROLES.replication]: ROLES.replication, [ROLES.readonly]: ROLES.readonly }),
      ...(timing
        ? {
            ha: { mode: "patroni" as const, scope: prefix, endpointNode: endpointName, etcdNodes: etcdNames, ttlSeconds: timing.ttlSeconds, loopWaitSeconds: timing.loopWaitSeconds, retryTimeoutSeconds: timing.retryTimeoutSeconds },
            endpoints: {
              primary: { host: spec.docker.publishAddress, port: spec.docker.basePort + 10 },
              replicas: { host: spec.docker.publishAddress, port: spec.docker.basePort + 11 },
            },
          }
        : {}),
    },
    pgbackrest: {
      stanza,
      repositoryNode: backupName,
      maxBackupAgeSeconds: spec.pgbackrest.maxBackupAge,
      tlsPort: PGBACKREST_TLS_PORT,
      ...(repo2 ? { repo2: { type: "sftp" as const, host: repo2.host, path: repo2.path, ...(sftpName ? { node: sftpName } : {}) } } : {}),
    },
  };

  if (spec.redis.enabled) {
    const redisNames = spec.redis.replica ? ["redis", "redis-replica"] : ["redis"];
    const acl = renderRedisAcl({
      users: [
        { name: "app", password: secrets.redisAppPassword, role: "app" },
        { name: "replica", password: secrets.redisReplicaPassword, role: "replica" },
        { name: "health", password: secrets.redisHealthPassword, role: "health" },
        // Promotion (REPLICAOF NO ONE) and persistence checks (INFO, CONFIG GET) need more than the app
        // user may do; the redis drill and an operator at the console use this one.
        { name: "admin", password: secrets.redisAdminPassword, role: "admin" },
        ...(monitoring ? [{ name: REDIS_MONITOR_USER, password: secrets.redisMonitorPassword, role: "monitor" as const }] : []),
      ],
    });
    const redisSecrets = [secretFile("health", secrets.redisHealthPassword), secretFile("app", secrets.redisAppPassword), secretFile("admin", secrets.redisAdminPassword)];
    facts.redis = { appUser: "app", adminUser: "admin", healthUser: "health", passwordFiles: passwordFilesOf(redisSecrets, { health: "health", app: "app", admin: "admin" }) };
    redisNames.forEach((name, i) => {
      const hostname = host(name);
      const conf = renderRedisConf({
        port: 6379,
        maxmemoryBytes: spec.redis.maxmemory,
        maxmemoryPolicy: spec.redis.policy,
        nodeMemoryBytes: spec.redis.node.memory,
        persistence: { aof: spec.redis.persistence.aof, appendfsync: spec.redis.persistence.appendfsync, rdbSavePoints: spec.redis.persistence.save as [number, number][] },
        dir: "/var/lib/redis",
        aclFile: "/etc/redis/users.acl",
        replicaOf: i === 0 ? undefined : { host: host("redis"), port: 6379, user: "replica", password: secrets.redisReplicaPassword },
      });
      nodes.push({
        name,
        hostname,
        role: i === 0 ? "redis" : "redis-replica",
        image: { ...IMAGES.redis },
        env: {},
        files: [
          // A replica's conf carries masterauth in plaintext (Redis has no masterauth file option).
          { path: `${ETC}/redis.conf`, content: conf.text, mode: 0o640, secret: conf.containsSecret },
          { path: `${ETC}/users.acl`, content: acl, mode: 0o640, secret: true },
          // health for the health check; app and admin are read by root on the node only: the redis drill's
          // writer (app) and its admin commands (admin) take their passwords from the node, like the
          // PostgreSQL drills do (docs/architecture.md "Data flow" step 5).
          ...redisSecrets,
        ],
        volumes: [{ name: `${hostname}-data`, mountPath: "/var/lib/redis", retainOnDestroy: false }],
        ports: [{ name: "redis", containerPort: 6379, hostPort: spec.docker.basePort + 20 + i }],
        healthcheck: { test: ["CMD", "/usr/local/bin/homelab-health"], intervalSeconds: 1, timeoutSeconds: 3, retries: 5, startPeriodSeconds: 20 },
        memoryBytes: spec.redis.node.memory,
        cpus: spec.redis.node.cpus,
        ipv4Address: netOf("redis").at(30 + i),
        dependsOn: i === 0 ? [] : ["redis"],
        stopTimeoutSeconds: 20,
      });
    });
  }

  if (spec.duckdb.enabled) {
    const hostname = host("duckdb");
    const duckdbTuning = tuneDuckDb({ memoryBytes: spec.duckdb.node.memory, cpus: spec.duckdb.node.cpus });
    nodes.push({
      name: "duckdb",
      hostname,
      role: "duckdb",
      image: { ...IMAGES.duckdb },
      env: {
        HOMELAB_SOURCE_HOST: host(pgNames[1] as string),
        HOMELAB_SOURCE_PORT: "5432",
        HOMELAB_SOURCE_DATABASE: spec.postgres.database,
        HOMELAB_SOURCE_USER: ROLES.readonly,
        HOMELAB_SOURCE_SCHEMAS: spec.duckdb.schemas.join(","),
        HOMELAB_SYNC_INTERVAL_SECONDS: String(spec.duckdb.syncInterval),
        // memory_limit and threads from the node's size, leaving room for the service (components/duckdb/tune.ts).
        HOMELAB_DUCKDB_MEMORY_LIMIT: duckdbTuning.memoryLimit,
        HOMELAB_DUCKDB_THREADS: String(duckdbTuning.threads),
      },
      files: [{ path: `${ETC}/secrets/source.password`, content: secrets.postgresReadonlyPassword, mode: 0o600, secret: true }],
      volumes: [{ name: `${hostname}-data`, mountPath: "/var/lib/duckdb", retainOnDestroy: false }],
      ports: [{ name: "http", containerPort: DUCKDB_HTTP_PORT, hostPort: spec.docker.basePort + 30 }],
      healthcheck: { test: ["CMD", "/usr/local/bin/homelab-health"], intervalSeconds: 2, timeoutSeconds: 5, retries: 5, startPeriodSeconds: 60 },
      memoryBytes: spec.duckdb.node.memory,
      cpus: spec.duckdb.node.cpus,
      ipv4Address: duckdbAddress,
      dependsOn: [pgNames[1] as string],
      stopTimeoutSeconds: 10,
    });
  }

  if (monitoring) {
    const name = "monitoring";
    const hostname = host(name);
    const etc = `${ETC}/monitoring`;
    // Where the monitoring image's entrypoint installs those files for the prometheus user (components/monitoring/image).
    const conf = "/etc/prometheus/homelab";
    const runSecrets = "/run/homelab-secrets";
    const input: MonitoringInput = {
      stack: spec.stack,
      scrapeIntervalSeconds: spec.monitoring.scrapeInterval,
      postgres: pgNames.map((n) => ({ node: n, host: host(n), port: 5432 })),
      redis: nodes.filter((n) => n.role === "redis" || n.role === "redis-replica").map((n) => ({ node: n.name, host: n.hostname, port: 6379 })),
      duckdb: nodes.filter((n) => n.role === "duckdb").map((n) => ({ node: n.name, host: n.hostname, port: DUCKDB_HTTP_PORT })),
      nodeExporters: nodes.filter((n) => n.image.name === IMAGES.postgres.name).map((n) => ({ node: n.name, host: n.hostname })),
      postgresUser: ROLES.monitor,
      postgresPasswordFile: `${runSecrets}/${ROLES.monitor}.password`,
      redisUser: REDIS_MONITOR_USER,
      ruleFiles: [`${conf}/rules.yml`],
    };
    const alerts = planAlertRules({
      stack: spec.stack,
      maxBackupAgeSeconds: spec.pgbackrest.maxBackupAge,
      archiveTimeoutSeconds: spec.postgres.archiveTimeout,
      // The failover RPO in time when the stack states one; else archive_timeout, what a restore would lose.
      replicationLagMaxSeconds: spec.monitoring.alerts.replicationLagMax ?? spec.objectives.failover.rpo ?? spec.postgres.archiveTimeout,
      maxSlotWalKeepSizeBytes: pgMemoryBytes("max_slot_wal_keep_size", settings.max_slot_wal_keep_size),
      slotWalRetainedRatio: spec.monitoring.alerts.slotWalRetainedRatio,
      diskUsedRatio: spec.monitoring.alerts.diskUsedRatio,
      drillMaxAgeSeconds: spec.monitoring.alerts.drillMaxAge,
      pendingForSeconds: spec.monitoring.alerts.pendingFor,
      ...(spec.duckdb.enabled ? { analyticsSyncIntervalSeconds: spec.duckdb.syncInterval } : {}),
    });
    const exporters = planExporters(input, { postgresQueries: `${conf}/postgres-queries.yml`, redisPasswordMap: `${runSecrets}/redis-monitor.json`, alertmanagerConfig: `${conf}/alertmanager.yml` });
    nodes.push({
      name,
      hostname,
      role: "monitoring",
      image: { ...IMAGES.monitoring },
      env: { HOMELAB_PROMETHEUS_RETENTION: `${Math.ceil(spec.monitoring.retention)}s` },
      files: [
        { path: `${etc}/prometheus.yml`, content: renderPrometheusConfig(input), mode: 0o644, secret: false },
        { path: `${etc}/rules.yml`, content: renderAlertRules(alerts, spec.monitoring.scrapeInterval), mode: 0o644, secret: false },
        { path: `${etc}/postgres-queries.yml`, content: renderPostgresQueries(), mode: 0o644, secret: false },
        { path: `${etc}/exporters.jsonl`, content: renderExporters(exporters), mode: 0o644, secret: false },
        {
          path: `${etc}/alertmanager.yml`,
          content: renderAlertmanagerConfig({ webhookUrl: spec.monitoring.alerting.webhookUrl, groupWaitSeconds: spec.monitoring.alerting.groupWait, repeatIntervalSeconds: spec.monitoring.alerting.repeatInterval }),
          mode: 0o644,
          secret: false,
        },
        secretFile(ROLES.monitor, secrets.postgresMonitorPassword),
        ...(input.redis.length ? [{ path: `${ETC}/secrets/redis-monitor.json`, content: renderRedisPasswordMap(input, secrets.redisMonitorPassword), mode: 0o600, secret: true }] : []),
      ],
      volumes: [{ name: `${hostname}-data`, mountPath: "/var/lib/prometheus", retainOnDestroy: false }],
      ports: [{ name: "prometheus", containerPort: PROMETHEUS_PORT, hostPort: spec.docker.basePort + 40 }],
      healthcheck: { test: ["CMD", "/usr/local/bin/homelab-health"], intervalSeconds: 2, timeoutSeconds: 5, retries: 5, startPeriodSeconds: 30 },
      memoryBytes: spec.monitoring.node.memory,
      cpus: spec.monitoring.node.cpus,
      ipv4Address: monitoringAddress,
      // Last: it scrapes every other node; started before them it would only record their bring-up.
      dependsOn: nodes.map((n) => n.name),
      stopTimeoutSeconds: 10,
    });
    // Published on docker.publishAddress (loopback by default): the URL an operator opens on the host.
    facts.monitoring = { node: name, prometheus: `http://${spec.docker.publishAddress}:${spec.docker.basePort + 40}`, alerts: alerts.map((a) => a.alert) };
  }

  // Every node on the host of its section; the networks of the kinds of host that hold nodes.
  const placed: NodePlan[] = nodes.map((n) => {
    const { host, kind } = spec.placement[SECTION_OF_ROLE[n.role]];
    return { ...n, host, platform: kind };
  });
  const networks: Partial<Record<NetworkKind, NetworkPlan>> = {};
  for (const kind of new Set(placed.map((n) => networkKindOf(n.platform)))) {
    networks[kind] = { name: `${prefix}-net`, subnet: subnets[kind], gateway: netOfKind(kind).gateway };
  }
  return {
    stack: spec.stack,
    prefix,
    network: networks[networkKindOf(spec.platform)] ?? networks[networkKindOf(spec.placement.postgres.kind)]!,
    networks,
    nodes: placed,
    publishAddress: spec.docker.publishAddress,
    labels: { "dev.homelab-data.stack": spec.stack, "dev.homelab-data.project": PROJECT },
    facts,
  };
}

/** Bytes of a PostgreSQL memory setting as the tuner writes it ("1024MB": PostgreSQL's units are powers of 1024). */
function pgMemoryBytes(setting: string, value: string | undefined): number {
  const m = /^(\d+)(kB|MB|GB|TB)$/.exec(value ?? "");
  if (!m) throw new Error(`plan: ${setting} is ${JSON.stringify(value)}; expected a whole number with kB, MB, GB or TB`);
  return Number(m[1]) * 1024 ** (["kB", "MB", "GB", "TB"].indexOf(m[2] as string) + 1);
}

/** Password file path by role, taken from the secret files a node gets (role -> file basename). */
function passwordFilesOf(files: NodeFile[], roleToFile: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(roleToFile).map(([role, base]) => {
      const file = files.find((f) => f.path.endsWith(`/${base}.password`));
      if (!file) throw new Error(`plan: no password file for ${role}`);
      return [role, file.path];
    }),
  );
}

/** Scheduled backups on the repository host (pgBackRest user guide "Schedule a Backup"). */
export function backupCrontab(spec: HomelabSpec): string {
  const s = spec.pgbackrest;
  // With repo2 each schedule backs up both repositories, one after the other (one backup per stanza at a
  // time); repo2's runs even when repo1's failed.
  const run = (type: string) =>
    s.repo2
      ? `pgbackrest --stanza=${s.stanza} --repo=1 --type=${type} backup; pgbackrest --stanza=${s.stanza} --repo=2 --type=${type} backup`
      : `pgbackrest --stanza=${s.stanza} --type=${type} backup`;
  const lines = [
    "# m h dom mon dow  command  (runs as the pgBackRest user on the repository host)",
    `${s.schedules.full} ${run("full")}`,
    `${s.schedules.diff} ${run("diff")}`,
  ];
  if (s.schedules.incr) lines.push(`${s.schedules.incr} ${run("incr")}`);
  if (s.restoreTest.enabled) lines.push(restoreTestCronLine(spec));
  // pgBackRest's state for the monitoring node's alerts, through node_exporter's textfile collector (ADR 0016).
  if (spec.monitoring.enabled) lines.push("* * * * * homelab-pgbackrest-metrics");
  return `${lines.join("\n")}\n`;
}

/**
 * The scheduled restore test (components/postgres/image/bin/homelab-restore-test, ADR 0014): the newest backup
 * restored into the repository host's scratch space, started, pg_amcheck'ed, one history line per run.
 */
export function restoreTestCronLine(spec: HomelabSpec): string {
  const s = spec.pgbackrest;
  return `${s.restoreTest.schedule} homelab-restore-test --stanza=${s.stanza} --budget=${Math.ceil(s.restoreTest.budget)}`;
}

/**
 * What runs once the nodes are healthy, in order, on the node named: the stanza, a check that WAL reaches
 * the repository, and a first full backup so a restore is possible from day one (pgBackRest user guide
 * "Create the Stanza", "Check the Configuration", "Perform a Backup"). The BackupRepository component and the
 * e2e harness both run exactly these.
 */
export function postUpSteps(plan: HomelabPlan, stanza: string): { name: string; node: string; command: string[]; deleteScript?: string }[] {
  const repo = plan.nodes.find((n) => n.role === "backup-repository");
  if (!repo) return [];
  const pg = ["pgbackrest", `--stanza=${stanza}`];
  return [
    // stanza-create takes the stanza's archive lock, which a PostgreSQL host's async archive-push holds on the
    // repository host (its remote) while it pushes: pgBackRest fails at once with [050] LockAcquireError
    // rather than wait. The primary created the stanza already (its entrypoint); retry through a push.
    { name: "stanza-create", node: repo.name, command: ["sh", "-c", `i=0; until ${pg.join(" ")} stanza-create; do rc=$?; i=$((i+1)); [ "$rc" = 50 ] && [ "$i" -lt 30 ] || exit "$rc"; sleep 1; done`] },
    // On delete (before the cluster's nodes go: they are what it depends on), the same check forces a WAL
    // switch and waits until the repository has it: what was written since the last switch is archived, so
    // the next `up` restores it (bootstrapFrom: auto). Never blocks a destroy: a failure is only reported.
    { name: "check", node: repo.name, command: [...pg, "check"], deleteScript: `timeout 120 ${pg.join(" ")} check >/dev/null 2>&1 || echo "homelab: could not archive the last WAL before removal (pgbackrest check failed)" >&2` },
    { name: "full-backup", node: repo.name, command: [...pg, "--type=full", "backup"] },
    // repo2 from day one as well: a site lost the day after `up` still has something to restore.
    ...(plan.facts.pgbackrest.repo2 ? [{ name: "repo2-full-backup", node: repo.name, command: [...pg, "--repo=2", "--type=full", "backup"] }] : []),
  ];
}
