// redis.conf and the ACL file (users.acl) for Redis 7.0 (Debian bookworm's redis-server 7.0.x).
// Directive names follow the redis.conf shipped with Redis 7.0; ACL rules follow
// https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/.
// Pure: no I/O, no Pulumi. SHA-256 of passwords is computed here with node:crypto (deterministic).
//
// Security model, in one place:
//   - The `default` user is OFF, has no password and is NOT `nopass`, so every connection must AUTH as a
//     named user. Not `nopass` matters twice: a `nopass` default user is what protected-mode checks for
//     (networking.c clientAcceptHandler refuses non-loopback clients while protected-mode is on and the
//     default user is `nopass`). With this ACL file protected-mode stays `yes` AND `bind 0.0.0.0` serves
//     the container network: every client that gets in still needs a named user's password.
//   - The default user nevertheless holds every permission (`off resetpass ~* &* +@all`): Redis replays
//     the AOF through a fake client that runs as the default user, and EXEC re-checks ACLs of the queued
//     commands, so with `-@all` every MULTI/EXEC (and every script's effects, which are written wrapped in
//     MULTI/EXEC) is rejected at load and silently lost on restart (redis/redis#14541, fixed in Redis by
//     PR #14545, not in 7.0; valkey-io/valkey#3983). `off` + no password still refuses every connection
//     (NOAUTH), so the permissions serve only that replay. Found by the redis drill (drills/redis.mts).
//   - Passwords only appear in users.acl as SHA-256 hashes (`#<hex>`); the ACL file is still treated as a
//     secret by callers (hashes of short passwords are guessable offline).
//   - A replica's redis.conf needs `masterauth` in plaintext (Redis 7.0 has no masterauth file option):
//     renderRedisConf reports `containsSecret: true` then, or reads it from an `include`d file instead.
import { createHash } from "node:crypto";
import { REDIS_MAXMEMORY_SHARE_OF_NODE } from "../config/schema.ts";
import { formatBytes } from "../config/units.ts";

export type RedisMaxmemoryPolicy =
  | "noeviction"
  | "allkeys-lru"
  | "allkeys-lfu"
  | "allkeys-random"
  | "volatile-lru"
  | "volatile-lfu"
  | "volatile-random"
  | "volatile-ttl";
export type RedisAppendfsync = "always" | "everysec" | "no";
export type RedisLoglevel = "debug" | "verbose" | "notice" | "warning";

export const REDIS_MAXMEMORY_POLICIES: readonly RedisMaxmemoryPolicy[] = [
  "noeviction",
  "allkeys-lru",
  "allkeys-lfu",
  "allkeys-random",
  "volatile-lru",
  "volatile-lfu",
  "volatile-random",
  "volatile-ttl",
];
const APPENDFSYNC: readonly RedisAppendfsync[] = ["always", "everysec", "no"];
const LOGLEVELS: readonly RedisLoglevel[] = ["debug", "verbose", "notice", "warning"];

// maxmemory <= REDIS_MAXMEMORY_SHARE_OF_NODE (75%) of the node: Redis forks for AOF rewrites and RDB saves
// and copy-on-write can duplicate every page written meanwhile (components/config/schema.ts, the same rule).
// Below this Redis is not a useful store; it also catches "64" meant as 64MiB.
export const REDIS_MIN_MAXMEMORY_BYTES = 1024 ** 2;
export const REDIS_MIN_PASSWORD_LENGTH = 16;

export interface RedisPersistence {
  /** Append-only file (appendonly); default true. */
  aof?: boolean;
  /** appendfsync; default "everysec" (at most ~1s of acknowledged writes lost on a crash). */
  appendfsync?: RedisAppendfsync;
  /** RDB snapshot points `[seconds, changes]` (save); default [[3600,1],[300,100],[60,10000]]; [] disables RDB. */
  rdbSavePoints?: readonly (readonly [number, number])[];
}

export interface RedisReplicaOf {
  /** Primary's host name or address (replicaof). */
  host: string;
  /** Primary's port; default 6379. */
  port?: number;
  /** ACL user the replica authenticates as (masteruser); default "replica". */
  user?: string;
  /** That user's password, written as `masterauth` in the conf: the conf becomes a secret. */
  password?: string;
  /** Instead of `password`: a file holding the `masterauth` line (see renderRedisMasterauth), `include`d last. */
  authIncludeFile?: string;
}

export interface RedisConfInput {
  /** TCP port (port); default 6379. */
  port?: number;
  /** Addresses to listen on (bind); default ["0.0.0.0"]: all of the container's interfaces (see header). */
  bind?: string[];
  /** maxmemory in bytes, >= 1MiB; or "unlimited" (maxmemory 0), refused when nodeMemoryBytes is known. */
  maxmemoryBytes: number | "unlimited";
  /** maxmemory-policy; default "noeviction" (a store, not a cache: writes fail loudly when full). */
  maxmemoryPolicy?: RedisMaxmemoryPolicy;
  /** Memory limit of the node; when given, maxmemory must be <= 75% of it (REDIS_MAXMEMORY_SHARE_OF_NODE). */
  nodeMemoryBytes?: number;
  persistence?: RedisPersistence;
  /** Working directory for the AOF directory and dump.rdb (dir); default /var/lib/redis. */
  dir?: string;
  /** ACL file (aclfile); default /etc/redis/users.acl. */
  aclFile?: string;
  /** loglevel; default "notice". Logs go to stdout (logfile ""). */
  loglevel?: RedisLoglevel;
  /** Make this server a replica of another. */
  replicaOf?: RedisReplicaOf;
}

export interface RedisConf {
  text: string;
  /** True when `text` holds a plaintext password (replicaOf.password): store and ship it as a secret. */
  containsSecret: boolean;
}

/** The `default` user line of every ACL file: off for clients, all permissions for the AOF replay (header). */
export const REDIS_DEFAULT_USER_LINE = "user default off resetpass ~* &* +@all";

/** Least-privilege presets; see ROLE_RULES for the exact rules and why. */
export type RedisAclRole = "app" | "replica" | "health" | "admin" | "monitor";

export interface RedisAclUser {
  /** User name: letters, digits, '.', '_', '-' (at most 64), not "default" (rendered by us, always off). */
  name: string;
  role: RedisAclRole;
  /** Plaintext password (>= 16 chars); only its SHA-256 reaches the file. Exactly one of password / passwordSha256Hex. */
  password?: string;
  /** SHA-256 of the password as 64 hex digits, when the caller hashed it already. */
  passwordSha256Hex?: string;
  /** Key and channel prefix of the "app" role (~<prefix>* &<prefix>*); default "app:". */
  keyPrefix?: string;
  /** Extra command rules appended after the role's, e.g. ["+info"]; `+cmd`, `-cmd`, `+@cat`, `-@cat`, `+cmd|sub`. */
  extraRules?: string[];
}

export interface RedisAclInput {
  users: RedisAclUser[];
}

/** Every problem of one input, each naming the input key, the Redis directive, the value and what is accepted. */
export class RedisConfError extends Error {
  constructor(readonly problems: string[]) {
    super(`redis: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "RedisConfError";
  }
}

export const REDIS_DEFAULTS = {
  port: 6379,
  bind: ["0.0.0.0"],
  maxmemoryPolicy: "noeviction",
  aof: true,
  appendfsync: "everysec",
  rdbSavePoints: [
    [3600, 1],
    [300, 100],
    [60, 10000],
  ],
  dir: "/var/lib/redis",
  aclFile: "/etc/redis/users.acl",
  loglevel: "notice",
  replicaUser: "replica",
  appKeyPrefix: "app:",
} as const;

/**
 * ACL rules per role, after `on #<sha256>`:
 * - app: its own key/channel prefix; reads, writes, MULTI/EXEC and connection commands (AUTH, HELLO, PING,
 *   CLIENT SETNAME...), minus everything in @dangerous (FLUSHALL, KEYS, CONFIG, DEBUG, SORT, MIGRATE...).
 *   Covers what the drills' writer needs: INCR, XADD, GET, XLEN, XRANGE, DEL. Not INFO (@dangerous):
 *   clients such as ioredis then skip their INFO ready-check with a warning (enableReadyCheck: false
 *   silences it), or add extraRules ["+info"]. SCAN is @read: it lists key NAMES outside the prefix.
 * - replica: exactly what a replica sends to its primary (redis.io ACL docs, "ACL rules for Sentinel and
 *   Replicas"): PSYNC, REPLCONF, PING. No keys.
 * - health: PING only, for container health checks.
 * - admin: everything, for an operator at the console.
 * - monitor: what redis_exporter reads (its README "Authenticating with Redis"): INFO, CONFIG GET, SLOWLOG,
 *   LATENCY, CLIENT LIST; no keys, no writes.
 */
function roleRules(role: RedisAclRole, keyPrefix: string): string[] {
  switch (role) {
    case "app":
      return ["resetkeys", `~${keyPrefix}*`, "resetchannels", `&${keyPrefix}*`, "-@all", "+@read", "+@write", "+@transaction", "+@connection", "-@dangerous"];
    case "replica":
      return ["resetkeys", "resetchannels", "-@all", "+psync", "+replconf", "+ping"];
    case "health":
      return ["resetkeys", "resetchannels", "-@all", "+ping"];
    case "admin":
      return ["~*", "&*", "+@all"];
    case "monitor":
      return ["resetkeys", "resetchannels", "-@all", "+ping", "+info", "+config|get", "+slowlog|get", "+slowlog|len", "+latency|latest", "+latency|histogram", "+client|list", "+select", "+cluster|info"];
  }
}

const ROLES: readonly RedisAclRole[] = ["app", "replica", "health", "admin", "monitor"];
const USER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const KEY_PREFIX_RE = /^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$/;
const COMMAND_RULE_RE = /^[+-](?:@[a-z]+|[a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)?)$/;
const SHA256_HEX_RE = /^[0-9a-fA-F]{64}$/;
const IPV4_RE = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6_RE = /^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$/;
const HOST_RE = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;

class Problems {
  readonly list: string[] = [];
  add(inputKey: string, directive: string | undefined, value: unknown, expected: string): void {
    const where = directive ? `${inputKey} (${directive})` : inputKey;
    this.list.push(`${where}: got ${describe(value)}; expected ${expected}`);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

const REDACTED = "(a password, not shown)";

function isInt(value: unknown, lo: number, hi: number): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= lo && value <= hi;
}

// Absolute, and nothing the config parser would split or unquote.
function isPath(value: unknown): value is string {
  return typeof value === "string" && value.startsWith("/") && value.length > 1 && !/[\s"'\\\p{Cc}]/u.test(value);
}
const PATH_EXPECTED = "an absolute path without whitespace, quotes or backslashes";

function isBindAddress(value: unknown): boolean {
  if (typeof value !== "string") return false;
  // Redis 7.0: "*" = all IPv4, "::*" = all IPv6; a leading '-' makes the address optional.
  const addr = value.startsWith("-") ? value.slice(1) : value;
  return addr === "*" || addr === "::*" || IPV4_RE.test(addr) || (IPV6_RE.test(addr) && addr.length <= 45);
}

function isHost(value: unknown): boolean {
  return typeof value === "string" && value.length <= 253 && (HOST_RE.test(value) || (IPV6_RE.test(value) && value.length <= 45));
}

// A password that goes into redis.conf inside double quotes (sdssplitargs): printable, any length >= 16.
function checkPlainPassword(p: Problems, inputKey: string, directive: string, value: unknown): void {
  if (typeof value !== "string" || value.length < REDIS_MIN_PASSWORD_LENGTH) {
    p.add(inputKey, directive, typeof value === "string" ? `${REDACTED}, ${value.length} chars` : value, `a password of at least ${REDIS_MIN_PASSWORD_LENGTH} characters`);
  } else if (/\p{Cc}/u.test(value)) {
    p.add(inputKey, directive, REDACTED, "no control characters (newlines, tabs)");
  }
}

/** Throws RedisConfError listing every problem of the redis.conf input. */
export function validateRedisConf(input: RedisConfInput): void {
  const p = new Problems();
  if (input.port !== undefined && !isInt(input.port, 1, 65535)) p.add("port", "port", input.port, "a whole number from 1 to 65535 (0 would disable TCP)");
  if (input.bind !== undefined) {
    if (!Array.isArray(input.bind) || input.bind.length === 0 || input.bind.length > 16) {
      p.add("bind", "bind", input.bind, "1 to 16 addresses");
    } else {
      input.bind.forEach((b, i) => {
        if (!isBindAddress(b)) p.add(`bind[${i}]`, "bind", b, 'an IPv4 or IPv6 address, "*" or "::*" (optionally prefixed with "-")');
      });
    }
  }
  const max = input.maxmemoryBytes;
  const node = input.nodeMemoryBytes;
  const pct = `${Math.round(REDIS_MAXMEMORY_SHARE_OF_NODE * 100)}%`;
  if (node !== undefined && !isInt(node, REDIS_MIN_MAXMEMORY_BYTES, Number.MAX_SAFE_INTEGER)) {
    p.add("nodeMemoryBytes", undefined, node, `a whole number of bytes >= ${formatBytes(REDIS_MIN_MAXMEMORY_BYTES)}`);
  }
  if (max === "unlimited") {
    if (isInt(node, 1, Number.MAX_SAFE_INTEGER)) {
      p.add("maxmemoryBytes", "maxmemory", max, `a limit of at most ${pct} of nodeMemoryBytes (${formatBytes(Math.floor(node * REDIS_MAXMEMORY_SHARE_OF_NODE))}): unlimited Redis on a ${formatBytes(node)} node is OOM-killed instead of refusing writes`);
    }
  } else if (!isInt(max, REDIS_MIN_MAXMEMORY_BYTES, Number.MAX_SAFE_INTEGER)) {
    p.add("maxmemoryBytes", "maxmemory", max, `a whole number of bytes >= ${formatBytes(REDIS_MIN_MAXMEMORY_BYTES)} (1048576), or "unlimited"`);
  } else if (isInt(node, 1, Number.MAX_SAFE_INTEGER)) {
    const limit = Math.floor(node * REDIS_MAXMEMORY_SHARE_OF_NODE);
    if (max > limit) {
      p.add("maxmemoryBytes", "maxmemory", max, `at most ${pct} of nodeMemoryBytes ${formatBytes(node)} = ${formatBytes(limit)} (${limit}), to leave room for the fork/copy-on-write of AOF rewrites and RDB saves`);
    }
  }
  if (input.maxmemoryPolicy !== undefined && !REDIS_MAXMEMORY_POLICIES.includes(input.maxmemoryPolicy)) {
    p.add("maxmemoryPolicy", "maxmemory-policy", input.maxmemoryPolicy, `one of ${REDIS_MAXMEMORY_POLICIES.join(", ")}`);
  }
  const persistence = input.persistence ?? {};
  if (persistence.aof !== undefined && typeof persistence.aof !== "boolean") p.add("persistence.aof", "appendonly", persistence.aof, "true or false");
  if (persistence.appendfsync !== undefined && !APPENDFSYNC.includes(persistence.appendfsync)) {
    p.add("persistence.appendfsync", "appendfsync", persistence.appendfsync, `one of ${APPENDFSYNC.join(", ")}`);
  }
  if (persistence.rdbSavePoints !== undefined) {
    if (!Array.isArray(persistence.rdbSavePoints) || persistence.rdbSavePoints.length > 16) {
      p.add("persistence.rdbSavePoints", "save", persistence.rdbSavePoints, "at most 16 [seconds, changes] pairs ([] disables RDB snapshots)");
    } else {
      persistence.rdbSavePoints.forEach((point, i) => {
        if (!Array.isArray(point) || point.length !== 2 || !isInt(point[0], 1, 2 ** 31 - 1) || !isInt(point[1], 1, 2 ** 31 - 1)) {
          p.add(`persistence.rdbSavePoints[${i}]`, "save", point, "[seconds, changes], both whole numbers from 1 to 2147483647");
        }
      });
    }
  }
  if (input.dir !== undefined && !isPath(input.dir)) p.add("dir", "dir", input.dir, PATH_EXPECTED);
  if (input.aclFile !== undefined && !isPath(input.aclFile)) p.add("aclFile", "aclfile", input.aclFile, PATH_EXPECTED);
  if (input.loglevel !== undefined && !LOGLEVELS.includes(input.loglevel)) p.add("loglevel", "loglevel", input.loglevel, `one of ${LOGLEVELS.join(", ")}`);
  const r = input.replicaOf;
  if (r !== undefined) {
    if (typeof r !== "object" || r === null) {
      p.add("replicaOf", "replicaof", r, "{ host, port?, user?, password | authIncludeFile }");
    } else {
      if (!isHost(r.host)) p.add("replicaOf.host", "replicaof", r.host, "a host name (letters, digits, '-', '_', dots) or an IP address");
      if (r.port !== undefined && !isInt(r.port, 1, 65535)) p.add("replicaOf.port", "replicaof", r.port, "a whole number from 1 to 65535");
      if (r.user !== undefined && (typeof r.user !== "string" || !USER_NAME_RE.test(r.user) || r.user === "default")) {
        p.add("replicaOf.user", "masteruser", r.user, "an ACL user name (letters, digits, '.', '_', '-'), not \"default\" (it is off)");
      }
      const hasPassword = r.password !== undefined;
      const hasInclude = r.authIncludeFile !== undefined;
      if (hasPassword === hasInclude) {
        p.add("replicaOf.password", "masterauth", hasPassword ? REDACTED : undefined, "exactly one of replicaOf.password or replicaOf.authIncludeFile");
      } else if (hasPassword) {
        checkPlainPassword(p, "replicaOf.password", "masterauth", r.password);
      } else if (!isPath(r.authIncludeFile)) {
        p.add("replicaOf.authIncludeFile", "include", r.authIncludeFile, PATH_EXPECTED);
      }
    }
  }
  if (p.list.length > 0) throw new RedisConfError(p.list);
}

// Double-quoted string for redis.conf (sdssplitargs understands \" and \\ inside double quotes).
function quote(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/**
 * redis.conf for a primary (no replicaOf) or a replica. Throws RedisConfError with every problem.
 * `containsSecret` is true exactly when a plaintext masterauth was rendered.
 */
export function renderRedisConf(input: RedisConfInput): RedisConf {
  validateRedisConf(input);
  const persistence = input.persistence ?? {};
  const aof = persistence.aof ?? REDIS_DEFAULTS.aof;
  const savePoints = persistence.rdbSavePoints ?? REDIS_DEFAULTS.rdbSavePoints;
  const maxmemory = input.maxmemoryBytes === "unlimited" ? 0 : input.maxmemoryBytes;
  const lines: string[] = [
    "# Rendered by homelab-data (components/redis/conf.ts) for Redis 7.0; do not edit by hand.",
    "",
    "# Network. The default user is off (see users.acl), so protected-mode stays on and still lets",
    "# authenticated clients in from the container network.",
    `bind ${(input.bind ?? REDIS_DEFAULTS.bind).join(" ")}`,
    "protected-mode yes",
    `port ${input.port ?? REDIS_DEFAULTS.port}`,
    "tcp-keepalive 300",
    "timeout 0",
    "",
    "# Process: foreground, logs to stdout (the container runtime collects them).",
    "daemonize no",
    "supervised no",
    `loglevel ${input.loglevel ?? REDIS_DEFAULTS.loglevel}`,
    'logfile ""',
    "",
    "# Security: users and their rights live in the ACL file only.",
    `aclfile ${input.aclFile ?? REDIS_DEFAULTS.aclFile}`,
    "enable-protected-configs no",
    "enable-debug-command no",
    "enable-module-command no",
    "",
    "# Memory.",
    `maxmemory ${maxmemory}`,
    `maxmemory-policy ${input.maxmemoryPolicy ?? REDIS_DEFAULTS.maxmemoryPolicy}`,
    "",
    "# Persistence: RDB snapshots plus an append-only file with an RDB preamble (fast restarts).",
    `dir ${input.dir ?? REDIS_DEFAULTS.dir}`,
    "dbfilename dump.rdb",
    savePoints.length === 0 ? 'save ""' : `save ${savePoints.map(([s, c]) => `${s} ${c}`).join(" ")}`,
    "stop-writes-on-bgsave-error yes",
    "rdbcompression yes",
    "rdbchecksum yes",
    `appendonly ${aof ? "yes" : "no"}`,
  ];
  if (aof) {
    lines.push(
      'appendfilename "appendonly.aof"',
      'appenddirname "appendonlydir"',
      `appendfsync ${persistence.appendfsync ?? REDIS_DEFAULTS.appendfsync}`,
      "no-appendfsync-on-rewrite no",
      "auto-aof-rewrite-percentage 100",
      "auto-aof-rewrite-min-size 64mb",
      "aof-load-truncated yes",
      "aof-use-rdb-preamble yes",
    );
  }
  let containsSecret = false;
  const r = input.replicaOf;
  if (r) {
    lines.push(
      "",
      "# Replication: authenticate to the primary as the replication ACL user.",
      `replicaof ${r.host} ${r.port ?? REDIS_DEFAULTS.port}`,
      `masteruser ${r.user ?? REDIS_DEFAULTS.replicaUser}`,
      "replica-read-only yes",
      "replica-serve-stale-data yes",
    );
    if (r.password !== undefined) {
      lines.push(`masterauth ${quote(r.password)}`);
      containsSecret = true;
    } else if (r.authIncludeFile !== undefined) {
      // Last, so the included masterauth is the one that counts.
      lines.push(`include ${r.authIncludeFile}`);
    }
  }
  return { text: `${lines.join("\n")}\n`, containsSecret };
}

/** The one-line file to `include` from a replica's redis.conf (replicaOf.authIncludeFile). A secret. */
export function renderRedisMasterauth(password: string): string {
  const p = new Problems();
  checkPlainPassword(p, "password", "masterauth", password);
  if (p.list.length > 0) throw new RedisConfError(p.list);
  return `masterauth ${quote(password)}\n`;
}

/** SHA-256 of a password as Redis stores it (`#<64 lower-case hex>` in the ACL file). */
export function redisPasswordSha256Hex(password: string): string {
  return createHash("sha256").update(password, "utf8").digest("hex");
}

/** Throws RedisConfError listing every problem of the ACL input. */
export function validateRedisAcl(input: RedisAclInput): void {
  const p = new Problems();
  const users = input?.users;
  if (!Array.isArray(users) || users.length === 0) {
    p.add("users", "user", users, "at least one user (the default user is always rendered off)");
    throw new RedisConfError(p.list);
  }
  const seen = new Set<string>();
  users.forEach((u, i) => {
    const key = `users[${i}]`;
    if (typeof u !== "object" || u === null) {
      p.add(key, "user", u, "{ name, role, password | passwordSha256Hex }");
      return;
    }
    if (typeof u.name !== "string" || !USER_NAME_RE.test(u.name)) {
      p.add(`${key}.name`, "user", u.name, "letters, digits, '.', '_', '-' (at most 64 chars, no spaces)");
    } else if (u.name === "default") {
      p.add(`${key}.name`, "user", u.name, 'another name: "default" is rendered by us and always off');
    } else if (seen.has(u.name)) {
      p.add(`${key}.name`, "user", u.name, "each user name once (Redis refuses an ACL file with a duplicate user)");
    } else {
      seen.add(u.name);
    }
    if (!ROLES.includes(u.role)) p.add(`${key}.role`, "user", u.role, `one of ${ROLES.join(", ")}`);
    const hasPlain = u.password !== undefined;
    const hasHash = u.passwordSha256Hex !== undefined;
    if (hasPlain === hasHash) {
      p.add(`${key}.password`, "user", hasPlain ? REDACTED : undefined, "exactly one of password or passwordSha256Hex");
    } else if (hasPlain) {
      if (typeof u.password !== "string" || u.password.length < REDIS_MIN_PASSWORD_LENGTH) {
        p.add(`${key}.password`, "user", typeof u.password === "string" ? `${REDACTED}, ${u.password.length} chars` : u.password, `a password of at least ${REDIS_MIN_PASSWORD_LENGTH} characters`);
      }
    } else if (typeof u.passwordSha256Hex !== "string" || !SHA256_HEX_RE.test(u.passwordSha256Hex)) {
      p.add(`${key}.passwordSha256Hex`, "user", u.passwordSha256Hex, "64 hexadecimal digits (a SHA-256)");
    }
    if (u.keyPrefix !== undefined) {
      if (u.role !== "app") p.add(`${key}.keyPrefix`, "user", u.keyPrefix, 'no keyPrefix: only the "app" role has a key prefix');
      else if (typeof u.keyPrefix !== "string" || !KEY_PREFIX_RE.test(u.keyPrefix)) {
        p.add(`${key}.keyPrefix`, "user", u.keyPrefix, "letters, digits, ':', '.', '_', '-' (no glob characters or spaces)");
      }
    }
    if (u.extraRules !== undefined) {
      if (!Array.isArray(u.extraRules)) p.add(`${key}.extraRules`, "user", u.extraRules, "a list of command rules");
      else {
        u.extraRules.forEach((rule, j) => {
          if (typeof rule !== "string" || !COMMAND_RULE_RE.test(rule)) {
            p.add(`${key}.extraRules[${j}]`, "user", rule, "a command rule: +cmd, -cmd, +cmd|sub, +@category or -@category (no passwords, keys or flags)");
          }
        });
      }
    }
  });
  if (p.list.length > 0) throw new RedisConfError(p.list);
}

/**
 * users.acl for Redis 7.0: the default user off, then one line per user with its password as a SHA-256.
 * The file takes no comments (Redis refuses any line not starting with `user`). Same file on primary and
 * replicas, so a promoted replica accepts the same users. Treat it as a secret.
 */
export function renderRedisAcl(input: RedisAclInput): string {
  validateRedisAcl(input);
  // Off and passwordless (no client can be it), but allowed everything: the AOF replay runs as it (header).
  const lines = [REDIS_DEFAULT_USER_LINE];
  for (const u of input.users) {
    const hash = u.password !== undefined ? redisPasswordSha256Hex(u.password) : (u.passwordSha256Hex as string).toLowerCase();
    const rules = [...roleRules(u.role, u.keyPrefix ?? REDIS_DEFAULTS.appKeyPrefix), ...(u.extraRules ?? [])];
    lines.push(["user", u.name, "on", "resetpass", `#${hash}`, ...rules].join(" "));
  }
  return `${lines.join("\n")}\n`;
}
