// pgbackrest.conf for the two kinds of host in the data tier (docs/architecture.md "Spec -> plans"):
//   - the dedicated repository host: owns repo1, runs backups/expire, and reaches every PostgreSQL host
//     through that host's `pgbackrest server` (pgN-host-type=tls);
//   - each PostgreSQL host: pushes WAL to the repository host's `pgbackrest server` (repo1-host-type=tls)
//     and runs its own `pgbackrest server` so the repository host can back it up.
// Option names, sections and ranges follow pgBackRest 2.5x's own option table,
// src/build/config/config.yaml (https://pgbackrest.org/configuration.html); compress-level ranges per
// compress-type follow src/common/compress/*/compress.h (checked at load since pgBackRest 2.44, PR #1962).
// Pure: no I/O, no Pulumi. Every problem is collected and thrown at once as a PgbackrestConfError.

export type PgbackrestCompressType = "zst" | "lz4" | "gz" | "bz2" | "none";
export type PgbackrestLogLevel = "off" | "error" | "warn" | "info" | "detail" | "debug" | "trace";
export type PgbackrestRetentionArchiveType = "full" | "diff" | "incr";

/** TLS material of one host: the CA that signed every peer, and this host's certificate and key. */
export interface PgbackrestTlsFiles {
  /** CA bundle that verifies peers (tls-server-ca-file, and pgN-host-ca-file / repo1-host-ca-file). */
  caFile: string;
  /** This host's certificate (tls-server-cert-file). Its CN/SAN must match the name peers dial. */
  certFile: string;
  /** This host's private key (tls-server-key-file). */
  keyFile: string;
  /** Client certificate presented to peers; default: certFile (then it needs serverAuth and clientAuth EKUs). */
  clientCertFile?: string;
  /** Client key presented to peers; default: keyFile. */
  clientKeyFile?: string;
}

/** This host's `pgbackrest server` (tls-server-*). */
export interface PgbackrestTlsServer {
  /** Address to listen on (tls-server-address); default "*" (all interfaces of the container). */
  address?: string;
  /** Port to listen on (tls-server-port); default 8432. */
  port?: number;
  /**
   * Certificate CNs of the peers allowed to use this stanza (tls-server-auth=<cn>=<stanza>, one line each).
   * On the repository host: the PostgreSQL hosts' client CNs; on a PostgreSQL host: the repository host's.
   */
  authClients: string[];
}

export interface PgbackrestCompression {
  /** compress-type; "zst" is the homelab default (fast, gz-like ratio). */
  type: PgbackrestCompressType;
  /** compress-level; pgBackRest's per-type default when absent (bz2 9, gz 6, lz4 1, zst 3). */
  level?: number;
}

export interface PgbackrestLogLevels {
  /** log-level-console; default "info" (containers log to stdout). */
  console?: PgbackrestLogLevel;
  /** log-level-file; default "info". */
  file?: PgbackrestLogLevel;
}

/** One PostgreSQL host as the repository host reaches it (pgN-* in the stanza section). */
export interface PgbackrestPgHost {
  /** Name or address of the host (pgN-host); must match its server certificate. */
  host: string;
  /** Data directory on that host (pgN-path). */
  pgPath: string;
  /** PostgreSQL port on that host (pgN-port); default 5432. */
  port?: number;
  /** Port of that host's `pgbackrest server` (pgN-host-port); default 8432. */
  tlsPort?: number;
}

export interface PgbackrestRetention {
  /** Full backups to keep (repo1-retention-full), 1..9999999. */
  full: number;
  /** Differential backups to keep (repo1-retention-diff), 1..9999999. */
  diff?: number;
  /** Backups whose WAL is kept (repo1-retention-archive), 1..9999999; default: WAL of every retained backup. */
  archive?: number;
  /** Which backups `archive` counts (repo1-retention-archive-type); default "full". Only with `archive`. */
  archiveType?: PgbackrestRetentionArchiveType;
}

/**
 * repo2 on an SFTP server (repo2-type=sftp), encrypted (repo2-cipher-type=aes-256-cbc; the passphrase is NOT
 * here but in its own secret file, renderPgbackrestCipherConf). ADR 0013.
 */
export interface PgbackrestSftpRepo {
  /** SFTP server (repo2-sftp-host). */
  host: string;
  /** SSH port (repo2-sftp-host-port); default 22. */
  port?: number;
  /** Login (repo2-sftp-host-user). */
  user: string;
  /** Repository path on the server (repo2-path). */
  path: string;
  /** pgBackRest's private key, OpenSSH format (repo2-sftp-private-key-file). */
  privateKeyFile: string;
  /** Lower-case hex SHA-256 of the server's host key blob (repo2-sftp-host-fingerprint, hash type sha256). */
  hostKeyFingerprint: string;
  /** File holding repo2-cipher-pass, read by pgBackRest through config-include-path (a comment only). */
  cipherPassFile: string;
  retention: Pick<PgbackrestRetention, "full" | "diff">;
}

export interface PgbackrestRepositoryConfInput {
  kind: "repository";
  /** Stanza name: letters, digits, '-', '_' (at most 64 chars), not "global". */
  stanza: string;
  /** Repository path (repo1-path); default /var/lib/pgbackrest. */
  repoPath?: string;
  retention: PgbackrestRetention;
  compression: PgbackrestCompression;
  /** Parallel processes for backup (process-max), 1..999. */
  processMax: number;
  /** Bundle small files into one repository file (repo1-bundle); default true. */
  bundle?: boolean;
  /** Block-level incremental backups (repo1-block); default true; needs bundle. */
  blockIncremental?: boolean;
  /** Ask PostgreSQL for an immediate checkpoint when a backup starts (start-fast); default true. */
  startFast?: boolean;
  /** Copy files from a replica instead of the primary (backup-standby); default false; needs a replica in pgHosts. */
  backupStandby?: boolean;
  /** The primary and its replicas, in any order (pg1-*, pg2-*, ...). */
  pgHosts: PgbackrestPgHost[];
  tls: PgbackrestTlsFiles;
  tlsServer: PgbackrestTlsServer;
  logLevel?: PgbackrestLogLevels;
  /** log-path; default /var/log/pgbackrest. */
  logPath?: string;
  /** The second repository (repo2), on an SFTP server; absent: repo1 only. */
  repo2?: PgbackrestSftpRepo;
}

export interface PgbackrestDatabaseConfInput {
  kind: "database";
  /** Stanza name, same as on the repository host. */
  stanza: string;
  /** Data directory of the local cluster (pg1-path); default /var/lib/postgresql/data. */
  pgPath?: string;
  /** Port of the local cluster (pg1-port); default 5432. */
  pgPort?: number;
  /** Unix socket directory of the local cluster (pg1-socket-path); pgBackRest's default when absent. */
  pgSocketPath?: string;
  /** Name or address of the repository host (repo1-host); must match its server certificate. */
  repoHost: string;
  /** Port of the repository host's `pgbackrest server` (repo1-host-port); default 8432. */
  repoHostPort?: number;
  /** Push WAL asynchronously through the spool path (archive-async); default true. */
  archiveAsync?: boolean;
  /** spool-path for archive-async; default /var/spool/pgbackrest. */
  spoolPath?: string;
  /** archive-push-queue-max in bytes: past it WAL is DROPPED (PITR gap) so pg_wal cannot fill the disk. */
  archivePushQueueMaxBytes?: number;
  /** Parallel processes for async archive-push and restore (process-max), 1..999. */
  processMax: number;
  /** Compression of pushed WAL (compress-type / compress-level). */
  compression: PgbackrestCompression;
  /** repo2 exists on the repository host (its SFTP repository): reach it through the same TLS server
   *  (repo2-host), so WAL is pushed to both repositories and restores may come from either. Default false. */
  repo2ViaRepoHost?: boolean;
  /** With repo2ViaRepoHost: the file holding repo2-cipher-pass (conf.d, a comment only). This host encrypts
   *  what it pushes and decrypts what it restores itself; pgBackRest 2.55 does not reliably fetch the cipher
   *  settings from the remote before it reads an info file (a restore read backup.info as plaintext). */
  repo2CipherPassFile?: string;
  tls: PgbackrestTlsFiles;
  tlsServer: PgbackrestTlsServer;
  logLevel?: PgbackrestLogLevels;
  /** log-path; default /var/log/pgbackrest. */
  logPath?: string;
}

export type PgbackrestConfInput = PgbackrestRepositoryConfInput | PgbackrestDatabaseConfInput;

/** Every problem of one input, each naming the input key, the pgBackRest option, the value and what is accepted. */
export class PgbackrestConfError extends Error {
  constructor(readonly problems: string[]) {
    super(`pgbackrest.conf: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "PgbackrestConfError";
  }
}

export const PGBACKREST_DEFAULTS = {
  repoPath: "/var/lib/pgbackrest",
  pgPath: "/var/lib/postgresql/data",
  pgPort: 5432,
  tlsServerAddress: "*",
  tlsServerPort: 8432,
  spoolPath: "/var/spool/pgbackrest",
  logPath: "/var/log/pgbackrest",
  logLevelConsole: "info",
  logLevelFile: "info",
} as const;

/** compress-level bounds per compress-type (pgBackRest src/common/compress/<type>/compress.h). */
export const PGBACKREST_COMPRESS_LEVEL_RANGE: Record<Exclude<PgbackrestCompressType, "none">, readonly [number, number]> = {
  bz2: [1, 9],
  gz: [-1, 9],
  lz4: [-5, 12],
  zst: [-7, 22],
};

const COMPRESS_TYPES: readonly PgbackrestCompressType[] = ["zst", "lz4", "gz", "bz2", "none"];
const LOG_LEVELS: readonly PgbackrestLogLevel[] = ["off", "error", "warn", "info", "detail", "debug", "trace"];
const RETENTION_ARCHIVE_TYPES: readonly PgbackrestRetentionArchiveType[] = ["full", "diff", "incr"];
// config.yaml allow-range of repo-retention-full/diff/archive.
const RETENTION_MAX = 9_999_999;
// config.yaml: process-max allow-range [1, 999]; the `pg` index allow-range [1, 256].
const PROCESS_MAX_MAX = 999;
const PG_HOSTS_MAX = 256;
// config.yaml: archive-push-queue-max allow-range [0, 4PiB].
const ARCHIVE_PUSH_QUEUE_MAX_MAX = 4 * 1024 ** 5;
// Our floor, not pgBackRest's: below one 16MiB WAL segment every push would be dropped.
const WAL_SEGMENT_BYTES = 16 * 1024 ** 2;

const STANZA_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
// DNS names (underscores allowed: Docker container names resolve on a user network), IPv4, or bare IPv6.
const HOST_RE = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;
const IPV6_RE = /^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$/;
// tls-server-auth is a hash option: `<cn>=<stanza list>`; '=' and ',' would change its meaning.
const CLIENT_CN_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SFTP_USER_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;

class Problems {
  readonly list: string[] = [];
  add(inputKey: string, option: string | undefined, value: unknown, expected: string): void {
    const where = option ? `${inputKey} (${option})` : inputKey;
    this.list.push(`${where}: got ${describe(value)}; expected ${expected}`);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = typeof value === "number" && !Number.isFinite(value) ? String(value) : JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function isInt(value: unknown, lo: number, hi: number): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= lo && value <= hi;
}

function checkInt(p: Problems, inputKey: string, option: string, value: unknown, lo: number, hi: number): void {
  if (!isInt(value, lo, hi)) p.add(inputKey, option, value, `a whole number from ${lo} to ${hi}`);
}

function checkBool(p: Problems, inputKey: string, option: string, value: unknown): void {
  if (value !== undefined && typeof value !== "boolean") p.add(inputKey, option, value, "true or false");
}

function checkOneOf<T>(p: Problems, inputKey: string, option: string, value: unknown, accepted: readonly T[]): void {
  if (!accepted.includes(value as T)) p.add(inputKey, option, value, `one of ${accepted.map((a) => JSON.stringify(a)).join(", ")}`);
}

// pgBackRest "path" type: begins with '/', no '//', no trailing '/'. No whitespace or control characters,
// which would end or split the ini line.
function isPath(value: unknown): value is string {
  return (
    typeof value === "string" &&
    value.startsWith("/") &&
    !value.includes("//") &&
    (value === "/" || !value.endsWith("/")) &&
    !/[\s\p{Cc}]/u.test(value)
  );
}

const PATH_EXPECTED = "an absolute path without whitespace, '//' or a trailing '/'";

function checkPath(p: Problems, inputKey: string, option: string, value: unknown): void {
  if (!isPath(value)) p.add(inputKey, option, value, PATH_EXPECTED);
}

function isHost(value: unknown): value is string {
  return typeof value === "string" && value.length <= 253 && (HOST_RE.test(value) || (IPV6_RE.test(value) && value.length <= 45));
}

function checkHost(p: Problems, inputKey: string, option: string, value: unknown): void {
  if (!isHost(value)) p.add(inputKey, option, value, "a host name (letters, digits, '-', '_', dots) or an IP address");
}

function checkStanza(p: Problems, value: unknown): void {
  if (typeof value !== "string" || !STANZA_RE.test(value) || value === "global") {
    p.add("stanza", "stanza", value, "letters, digits, '-' or '_' (at most 64 chars, starting with a letter or digit), not \"global\"");
  }
}

function checkCompression(p: Problems, compression: PgbackrestCompression | undefined): void {
  if (typeof compression !== "object" || compression === null) {
    p.add("compression", "compress-type", compression, "{ type, level? }");
    return;
  }
  checkOneOf(p, "compression.type", "compress-type", compression.type, COMPRESS_TYPES);
  if (compression.level === undefined) return;
  if (compression.type === "none") {
    p.add("compression.level", "compress-level", compression.level, "no level with compression.type \"none\" (nothing is compressed)");
    return;
  }
  const range = PGBACKREST_COMPRESS_LEVEL_RANGE[compression.type as Exclude<PgbackrestCompressType, "none">];
  if (range && !isInt(compression.level, range[0], range[1])) {
    p.add("compression.level", "compress-level", compression.level, `a whole number from ${range[0]} to ${range[1]} for compress-type=${compression.type}`);
  }
}

function checkTls(p: Problems, tls: PgbackrestTlsFiles | undefined, clientOption: "pgN-host" | "repo1-host"): void {
  if (typeof tls !== "object" || tls === null) {
    p.add("tls", "tls-server-cert-file", tls, "{ caFile, certFile, keyFile }");
    return;
  }
  checkPath(p, "tls.caFile", "tls-server-ca-file", tls.caFile);
  checkPath(p, "tls.certFile", "tls-server-cert-file", tls.certFile);
  checkPath(p, "tls.keyFile", "tls-server-key-file", tls.keyFile);
  if (tls.clientCertFile !== undefined) checkPath(p, "tls.clientCertFile", `${clientOption}-cert-file`, tls.clientCertFile);
  if (tls.clientKeyFile !== undefined) checkPath(p, "tls.clientKeyFile", `${clientOption}-key-file`, tls.clientKeyFile);
}

function checkTlsServer(p: Problems, server: PgbackrestTlsServer | undefined): void {
  if (typeof server !== "object" || server === null) {
    p.add("tlsServer", "tls-server-auth", server, "{ address?, port?, authClients }");
    return;
  }
  if (server.address !== undefined && server.address !== "*") checkHost(p, "tlsServer.address", "tls-server-address", server.address);
  if (server.port !== undefined) checkInt(p, "tlsServer.port", "tls-server-port", server.port, 1, 65535);
  const cns = server.authClients;
  if (!Array.isArray(cns) || cns.length === 0) {
    p.add("tlsServer.authClients", "tls-server-auth", cns, "at least one client certificate CN (a server nobody may use is a mistake)");
    return;
  }
  const seen = new Set<string>();
  cns.forEach((cn, i) => {
    if (typeof cn !== "string" || !CLIENT_CN_RE.test(cn)) {
      p.add(`tlsServer.authClients[${i}]`, "tls-server-auth", cn, "a certificate CN of letters, digits, '.', '-', '_' (no '=', ',' or spaces)");
    } else if (seen.has(cn)) {
      p.add(`tlsServer.authClients[${i}]`, "tls-server-auth", cn, "each CN once");
    } else {
      seen.add(cn);
    }
  });
}

function checkLog(p: Problems, logLevel: PgbackrestLogLevels | undefined, logPath: unknown): void {
  if (logLevel !== undefined) {
    if (logLevel.console !== undefined) checkOneOf(p, "logLevel.console", "log-level-console", logLevel.console, LOG_LEVELS);
    if (logLevel.file !== undefined) checkOneOf(p, "logLevel.file", "log-level-file", logLevel.file, LOG_LEVELS);
  }
  if (logPath !== undefined) checkPath(p, "logPath", "log-path", logPath);
}

function validateRepository(input: PgbackrestRepositoryConfInput, p: Problems): void {
  checkStanza(p, input.stanza);
  if (input.repoPath !== undefined) checkPath(p, "repoPath", "repo1-path", input.repoPath);
  const r = input.retention;
  if (typeof r !== "object" || r === null) {
    p.add("retention", "repo1-retention-full", r, "{ full, diff?, archive?, archiveType? }");
  } else {
    checkInt(p, "retention.full", "repo1-retention-full", r.full, 1, RETENTION_MAX);
    if (r.diff !== undefined) checkInt(p, "retention.diff", "repo1-retention-diff", r.diff, 1, RETENTION_MAX);
    if (r.archive !== undefined) checkInt(p, "retention.archive", "repo1-retention-archive", r.archive, 1, RETENTION_MAX);
    if (r.archiveType !== undefined) {
      checkOneOf(p, "retention.archiveType", "repo1-retention-archive-type", r.archiveType, RETENTION_ARCHIVE_TYPES);
      if (r.archive === undefined) p.add("retention.archiveType", "repo1-retention-archive-type", r.archiveType, "retention.archive to be set as well (the type says what it counts)");
    }
  }
  checkCompression(p, input.compression);
  checkInt(p, "processMax", "process-max", input.processMax, 1, PROCESS_MAX_MAX);
  checkBool(p, "bundle", "repo1-bundle", input.bundle);
  checkBool(p, "blockIncremental", "repo1-block", input.blockIncremental);
  checkBool(p, "startFast", "start-fast", input.startFast);
  checkBool(p, "backupStandby", "backup-standby", input.backupStandby);
  // config.yaml: repo-block depends on repo-bundle=y; pgBackRest would refuse to start otherwise.
  if ((input.blockIncremental ?? true) && input.bundle === false) {
    p.add("blockIncremental", "repo1-block", true, "bundle: true as well (repo1-block needs repo1-bundle=y), or blockIncremental: false");
  }
  const hosts = input.pgHosts;
  if (!Array.isArray(hosts) || hosts.length === 0 || hosts.length > PG_HOSTS_MAX) {
    p.add("pgHosts", "pg1-host", hosts, `1 to ${PG_HOSTS_MAX} PostgreSQL hosts (the primary and its replicas)`);
  } else {
    const seen = new Set<string>();
    hosts.forEach((h, i) => {
      const n = i + 1;
      if (typeof h !== "object" || h === null) {
        p.add(`pgHosts[${i}]`, `pg${n}-host`, h, "{ host, pgPath, port?, tlsPort? }");
        return;
      }
      checkHost(p, `pgHosts[${i}].host`, `pg${n}-host`, h.host);
      checkPath(p, `pgHosts[${i}].pgPath`, `pg${n}-path`, h.pgPath);
      if (h.port !== undefined) checkInt(p, `pgHosts[${i}].port`, `pg${n}-port`, h.port, 1, 65535);
      if (h.tlsPort !== undefined) checkInt(p, `pgHosts[${i}].tlsPort`, `pg${n}-host-port`, h.tlsPort, 1, 65535);
      const key = `${String(h.host)}:${String(h.tlsPort ?? PGBACKREST_DEFAULTS.tlsServerPort)}`;
      if (seen.has(key)) p.add(`pgHosts[${i}].host`, `pg${n}-host`, h.host, "each host (and TLS port) once");
      seen.add(key);
    });
    if (input.backupStandby === true && hosts.length < 2) {
      p.add("backupStandby", "backup-standby", true, "a replica in pgHosts as well as the primary (backup-standby=y copies files from a standby)");
    }
  }
  checkTls(p, input.tls, "pgN-host");
  checkTlsServer(p, input.tlsServer);
  checkLog(p, input.logLevel, input.logPath);
  if (input.repo2 !== undefined) checkSftpRepo(p, input.repo2);
}

function checkSftpRepo(p: Problems, r: PgbackrestSftpRepo): void {
  if (typeof r !== "object" || r === null) {
    p.add("repo2", "repo2-type", r, "{ host, user, path, privateKeyFile, hostKeyFingerprint, cipherPassFile, retention }");
    return;
  }
  checkHost(p, "repo2.host", "repo2-sftp-host", r.host);
  if (r.port !== undefined) checkInt(p, "repo2.port", "repo2-sftp-host-port", r.port, 1, 65535);
  if (typeof r.user !== "string" || !SFTP_USER_RE.test(r.user)) p.add("repo2.user", "repo2-sftp-host-user", r.user, "a POSIX user name (letters, digits, '_', '.', '-')");
  checkPath(p, "repo2.path", "repo2-path", r.path);
  checkPath(p, "repo2.privateKeyFile", "repo2-sftp-private-key-file", r.privateKeyFile);
  checkPath(p, "repo2.cipherPassFile", "config-include-path", r.cipherPassFile);
  if (typeof r.hostKeyFingerprint !== "string" || !/^[0-9a-f]{64}$/.test(r.hostKeyFingerprint)) {
    p.add("repo2.hostKeyFingerprint", "repo2-sftp-host-fingerprint", r.hostKeyFingerprint, "64 lower-case hex digits (SHA-256 of the host key blob; the host key is always pinned, never check-type none)");
  }
  if (typeof r.retention !== "object" || r.retention === null) {
    p.add("repo2.retention", "repo2-retention-full", r.retention, "{ full, diff? }");
  } else {
    checkInt(p, "repo2.retention.full", "repo2-retention-full", r.retention.full, 1, RETENTION_MAX);
    if (r.retention.diff !== undefined) checkInt(p, "repo2.retention.diff", "repo2-retention-diff", r.retention.diff, 1, RETENTION_MAX);
  }
}

function validateDatabase(input: PgbackrestDatabaseConfInput, p: Problems): void {
  checkStanza(p, input.stanza);
  if (input.pgPath !== undefined) checkPath(p, "pgPath", "pg1-path", input.pgPath);
  if (input.pgPort !== undefined) checkInt(p, "pgPort", "pg1-port", input.pgPort, 1, 65535);
  if (input.pgSocketPath !== undefined) checkPath(p, "pgSocketPath", "pg1-socket-path", input.pgSocketPath);
  checkHost(p, "repoHost", "repo1-host", input.repoHost);
  if (input.repoHostPort !== undefined) checkInt(p, "repoHostPort", "repo1-host-port", input.repoHostPort, 1, 65535);
  checkBool(p, "archiveAsync", "archive-async", input.archiveAsync);
  if (input.spoolPath !== undefined) {
    checkPath(p, "spoolPath", "spool-path", input.spoolPath);
    if (input.archiveAsync === false) p.add("spoolPath", "spool-path", input.spoolPath, "archiveAsync: true (the spool path is only used by archive-async)");
  }
  if (input.archivePushQueueMaxBytes !== undefined) {
    checkInt(p, "archivePushQueueMaxBytes", "archive-push-queue-max", input.archivePushQueueMaxBytes, WAL_SEGMENT_BYTES, ARCHIVE_PUSH_QUEUE_MAX_MAX);
  }
  checkInt(p, "processMax", "process-max", input.processMax, 1, PROCESS_MAX_MAX);
  checkCompression(p, input.compression);
  checkBool(p, "repo2ViaRepoHost", "repo2-host", input.repo2ViaRepoHost);
  if (input.repo2ViaRepoHost && input.repo2CipherPassFile === undefined) p.add("repo2CipherPassFile", "repo2-cipher-pass", undefined, "the conf.d file with repo2-cipher-pass (repo2 is always encrypted)");
  if (input.repo2CipherPassFile !== undefined) checkPath(p, "repo2CipherPassFile", "config-include-path", input.repo2CipherPassFile);
  checkTls(p, input.tls, "repo1-host");
  checkTlsServer(p, input.tlsServer);
  checkLog(p, input.logLevel, input.logPath);
}

/** Throws PgbackrestConfError listing every problem of the input; returns nothing when it is valid. */
export function validatePgbackrestConf(input: PgbackrestConfInput): void {
  const p = new Problems();
  if (typeof input !== "object" || input === null) {
    p.add("kind", undefined, input, '{ kind: "repository" | "database", ... }');
  } else if (input.kind === "repository") {
    validateRepository(input, p);
  } else if (input.kind === "database") {
    validateDatabase(input, p);
  } else {
    p.add("kind", undefined, (input as { kind?: unknown }).kind, '"repository" or "database"');
  }
  if (p.list.length > 0) throw new PgbackrestConfError(p.list);
}

type Line = readonly [option: string, value: string | number] | string;

const yn = (value: boolean): string => (value ? "y" : "n");

function section(name: string, lines: Line[]): string {
  const body = lines.map((l) => (typeof l === "string" ? `# ${l}` : `${l[0]}=${l[1]}`));
  return [`[${name}]`, ...body].join("\n");
}

function compressionLines(c: PgbackrestCompression): Line[] {
  const lines: Line[] = [["compress-type", c.type]];
  if (c.level !== undefined) lines.push(["compress-level", c.level]);
  return lines;
}

function logLines(logLevel: PgbackrestLogLevels | undefined, logPath: string | undefined): Line[] {
  return [
    ["log-level-console", logLevel?.console ?? PGBACKREST_DEFAULTS.logLevelConsole],
    ["log-level-file", logLevel?.file ?? PGBACKREST_DEFAULTS.logLevelFile],
    ["log-path", logPath ?? PGBACKREST_DEFAULTS.logPath],
  ];
}

function tlsServerLines(stanza: string, tls: PgbackrestTlsFiles, server: PgbackrestTlsServer): Line[] {
  return [
    "pgbackrest server: peers connect here over TLS, authorised by their certificate CN",
    ["tls-server-address", server.address ?? PGBACKREST_DEFAULTS.tlsServerAddress],
    ["tls-server-port", server.port ?? PGBACKREST_DEFAULTS.tlsServerPort],
    ["tls-server-ca-file", tls.caFile],
    ["tls-server-cert-file", tls.certFile],
    ["tls-server-key-file", tls.keyFile],
    // A hash option: one `<client-cn>=<stanza>` per line.
    ...server.authClients.map((cn): Line => ["tls-server-auth", `${cn}=${stanza}`]),
  ];
}

function sftpRepoLines(r: PgbackrestSftpRepo, bundle: boolean, block: boolean): Line[] {
  const lines: Line[] = [
    "repo2: off the machine on an SFTP server, encrypted; backups with --repo=2, WAL from every PostgreSQL host",
    ["repo2-type", "sftp"],
    ["repo2-path", r.path],
    ["repo2-sftp-host", r.host],
    ["repo2-sftp-host-port", r.port ?? 22],
    ["repo2-sftp-host-user", r.user],
    ["repo2-sftp-private-key-file", r.privateKeyFile],
    // The host key is pinned: a server that changed its key (or a machine in the middle) is refused.
    ["repo2-sftp-host-key-check-type", "fingerprint"],
    ["repo2-sftp-host-key-hash-type", "sha256"],
    ["repo2-sftp-host-fingerprint", r.hostKeyFingerprint],
    ["repo2-cipher-type", "aes-256-cbc"],
    `repo2-cipher-pass: in ${r.cipherPassFile} (a secret file, read through config-include-path)`,
    ["repo2-retention-full", r.retention.full],
  ];
  if (r.retention.diff !== undefined) lines.push(["repo2-retention-diff", r.retention.diff]);
  lines.push(["repo2-bundle", yn(bundle)]);
  if (bundle) lines.push(["repo2-block", yn(block)]);
  return lines;
}

/**
 * The secret part of repo2's config, for /etc/pgbackrest/conf.d/ (pgBackRest merges config-include-path
 * files into pgbackrest.conf): repo2-cipher-pass alone, so pgbackrest.conf stays free of secrets.
 */
export function renderPgbackrestCipherConf(passphrase: string): string {
  // One ini line: a newline would end it, leading/trailing blanks are trimmed by pgBackRest's ini parser.
  if (typeof passphrase !== "string" || passphrase.length < 16 || /[\s\p{Cc}]/u.test(passphrase)) {
    throw new PgbackrestConfError(["repo2 cipher passphrase (repo2-cipher-pass): expected at least 16 characters without whitespace or control characters (`homelab init` generates 43)"]);
  }
  return `[global]\nrepo2-cipher-pass=${passphrase}\n`;
}

const HEADER = "# Rendered by homelab-data (components/pgbackrest/conf.ts) for pgBackRest 2.5x; do not edit by hand.";

function renderRepository(input: PgbackrestRepositoryConfInput): string {
  const bundle = input.bundle ?? true;
  const block = input.blockIncremental ?? true;
  const r = input.retention;
  const global: Line[] = [
    "repository: this host owns repo1",
    ["repo1-path", input.repoPath ?? PGBACKREST_DEFAULTS.repoPath],
    ["repo1-retention-full", r.full],
  ];
  if (r.diff !== undefined) global.push(["repo1-retention-diff", r.diff]);
  if (r.archive !== undefined) {
    global.push(["repo1-retention-archive", r.archive], ["repo1-retention-archive-type", r.archiveType ?? "full"]);
  }
  global.push(["repo1-bundle", yn(bundle)]);
  // Block incremental stores only changed blocks of changed files (pgBackRest 2.46+); needs bundling.
  if (bundle) global.push(["repo1-block", yn(block)]);
  global.push(
    "backup",
    ...compressionLines(input.compression),
    ["process-max", input.processMax],
    ["start-fast", yn(input.startFast ?? true)],
  );
  if (input.backupStandby) global.push(["backup-standby", "y"]);
  if (input.repo2) global.push(...sftpRepoLines(input.repo2, bundle, block));
  global.push("log", ...logLines(input.logLevel, input.logPath), ...tlsServerLines(input.stanza, input.tls, input.tlsServer));

  const stanza: Line[] = ["PostgreSQL hosts, reached through their own pgbackrest server over TLS"];
  input.pgHosts.forEach((h, i) => {
    const n = i + 1;
    stanza.push(
      [`pg${n}-host`, h.host],
      [`pg${n}-host-type`, "tls"],
      [`pg${n}-host-port`, h.tlsPort ?? PGBACKREST_DEFAULTS.tlsServerPort],
      [`pg${n}-host-ca-file`, input.tls.caFile],
      [`pg${n}-host-cert-file`, input.tls.clientCertFile ?? input.tls.certFile],
      [`pg${n}-host-key-file`, input.tls.clientKeyFile ?? input.tls.keyFile],
      [`pg${n}-path`, h.pgPath],
      [`pg${n}-port`, h.port ?? PGBACKREST_DEFAULTS.pgPort],
    );
  });
  return `${HEADER}\n${section("global", global)}\n\n${section(input.stanza, stanza)}\n`;
}

/** repoN-host-* of a PostgreSQL host: repository N is reached through the repository host's TLS server. */
function repoHostLines(n: 1 | 2, input: PgbackrestDatabaseConfInput): Line[] {
  return [
    [`repo${n}-host`, input.repoHost],
    [`repo${n}-host-type`, "tls"],
    [`repo${n}-host-port`, input.repoHostPort ?? PGBACKREST_DEFAULTS.tlsServerPort],
    [`repo${n}-host-ca-file`, input.tls.caFile],
    [`repo${n}-host-cert-file`, input.tls.clientCertFile ?? input.tls.certFile],
    [`repo${n}-host-key-file`, input.tls.clientKeyFile ?? input.tls.keyFile],
  ];
}

function renderDatabase(input: PgbackrestDatabaseConfInput): string {
  const async = input.archiveAsync ?? true;
  const global: Line[] = [
    "repository: repo1 lives on the repository host, reached over TLS",
    ...repoHostLines(1, input),
  ];
  if (input.repo2ViaRepoHost) {
    global.push(
      "repo2: the repository host's SFTP repository (off the machine, encrypted there), through the same TLS server;",
      "archive-push sends every WAL segment to both repositories",
      ...repoHostLines(2, input),
      ["repo2-cipher-type", "aes-256-cbc"],
      `repo2-cipher-pass: in ${String(input.repo2CipherPassFile)} (a secret file, read through config-include-path)`,
    );
  }
  global.push("archive-push", ["archive-async", yn(async)]);
  // archive-async acknowledges WAL to PostgreSQL from the local spool, so pushes are batched and parallel.
  if (async) global.push(["spool-path", input.spoolPath ?? PGBACKREST_DEFAULTS.spoolPath]);
  if (input.archivePushQueueMaxBytes !== undefined) global.push(["archive-push-queue-max", input.archivePushQueueMaxBytes]);
  global.push(
    ...compressionLines(input.compression),
    ["process-max", input.processMax],
    "log",
    ...logLines(input.logLevel, input.logPath),
    ...tlsServerLines(input.stanza, input.tls, input.tlsServer),
  );
  const stanza: Line[] = [
    "the local cluster",
    ["pg1-path", input.pgPath ?? PGBACKREST_DEFAULTS.pgPath],
    ["pg1-port", input.pgPort ?? PGBACKREST_DEFAULTS.pgPort],
  ];
  if (input.pgSocketPath !== undefined) stanza.push(["pg1-socket-path", input.pgSocketPath]);
  // WAL is fetched one segment per restore_command call, never through the async queue: pgBackRest 2.55's
  // async archive-get races at a timeline switch (pgbackrest#2423, fixed by PR #2806 after 2.55): the forked
  // fetcher dies, the call waits out archive-timeout and fails for a segment that exists, which stalls
  // recovery for a minute and can end it early (a restore that silently stops short of the archive's end).
  const get: Line[] = ["restore_command: one segment per call (async archive-get races at a timeline switch, pgbackrest#2423)", ["archive-async", "n"]];
  return `${HEADER}\n${section("global", global)}\n\n${async ? `${section("global:archive-get", get)}\n\n` : ""}${section(input.stanza, stanza)}\n`;
}

/**
 * pgbackrest.conf for the repository host or a PostgreSQL host. Throws PgbackrestConfError with every
 * problem when the input is invalid. Contains paths only, never key material: not a secret.
 */
export function renderPgbackrestConf(input: PgbackrestConfInput): string {
  validatePgbackrestConf(input);
  return input.kind === "repository" ? renderRepository(input) : renderDatabase(input);
}

/**
 * True when the newest backup is older than maxAgeSeconds at nowEpoch, or when there is no backup at all.
 * backupStopEpoch is `backup[-1].timestamp.stop` of `pgbackrest info --output=json` (seconds since epoch).
 */
export function newestBackupAgeExceeds(maxAgeSeconds: number, backupStopEpoch: number | undefined, nowEpoch: number): boolean {
  if (!Number.isFinite(maxAgeSeconds) || maxAgeSeconds < 0) throw new RangeError(`maxAgeSeconds: got ${maxAgeSeconds}; expected a finite number >= 0`);
  if (!Number.isFinite(nowEpoch)) throw new RangeError(`nowEpoch: got ${nowEpoch}; expected a finite number of seconds`);
  if (backupStopEpoch === undefined) return true;
  if (!Number.isFinite(backupStopEpoch)) throw new RangeError(`backupStopEpoch: got ${backupStopEpoch}; expected a finite number of seconds or undefined`);
  return nowEpoch - backupStopEpoch > maxAgeSeconds;
}
