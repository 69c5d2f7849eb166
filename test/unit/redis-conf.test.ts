import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  RedisConfError,
  redisPasswordSha256Hex,
  renderRedisAcl,
  renderRedisConf,
  renderRedisMasterauth,
  type RedisAclInput,
  type RedisAclUser,
  type RedisConfInput,
} from "../../components/redis/index.ts";

const MiB = 1024 ** 2;

function problemsOf(render: () => unknown): string[] {
  try {
    render();
  } catch (e) {
    if (e instanceof RedisConfError) return e.problems;
    throw e;
  }
  return [];
}

// ---- A minimal redis.conf reader: directive -> list of argument lists (sdssplitargs-style quoting). ----
function splitArgs(line: string): string[] {
  const args: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === " ") i++;
    if (i >= line.length) break;
    if (line[i] === '"') {
      let value = "";
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === "\\" && i + 1 < line.length) {
          value += line[i + 1];
          i += 2;
        } else {
          value += line[i];
          i++;
        }
      }
      if (line[i] !== '"') throw new Error(`unbalanced quotes: ${line}`);
      i++;
      args.push(value);
    } else {
      let value = "";
      while (i < line.length && line[i] !== " ") value += line[i++];
      args.push(value);
    }
  }
  return args;
}
function parseConf(text: string): Map<string, string[][]> {
  const out = new Map<string, string[][]>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [name, ...args] = splitArgs(line);
    if (name === undefined) continue;
    out.set(name, [...(out.get(name) ?? []), args]);
  }
  return out;
}
function arg(conf: Map<string, string[][]>, directive: string): string | undefined {
  return conf.get(directive)?.[0]?.join(" ");
}

// ---- Whitelist: directives of Redis 7.0's redis.conf, with the values it accepts. Written out here,
// independent of the planner. ----
const yesno = (a: string[]) => a.length === 1 && (a[0] === "yes" || a[0] === "no");
const int = (lo: number, hi: number) => (a: string[]) => a.length === 1 && /^-?\d+$/.test(a[0] ?? "") && Number(a[0]) >= lo && Number(a[0]) <= hi;
const oneOf = (...vals: string[]) => (a: string[]) => a.length === 1 && vals.includes(a[0] ?? "");
const absPathArg = (a: string[]) => a.length === 1 && (a[0] ?? "").startsWith("/");
const anyOne = (a: string[]) => a.length === 1;
const REDIS_70: Record<string, (args: string[]) => boolean> = {
  include: absPathArg,
  bind: (a) => a.length >= 1 && a.length <= 16,
  "protected-mode": yesno,
  "enable-protected-configs": oneOf("yes", "no", "local"),
  "enable-debug-command": oneOf("yes", "no", "local"),
  "enable-module-command": oneOf("yes", "no", "local"),
  port: int(0, 65535),
  "tcp-backlog": int(0, 65535),
  timeout: int(0, 2 ** 31 - 1),
  "tcp-keepalive": int(0, 2 ** 31 - 1),
  daemonize: yesno,
  supervised: oneOf("no", "upstart", "systemd", "auto"),
  pidfile: anyOne,
  loglevel: oneOf("debug", "verbose", "notice", "warning"),
  logfile: anyOne,
  databases: int(1, 2 ** 31 - 1),
  save: (a) => (a.length === 1 && a[0] === "") || (a.length > 0 && a.length % 2 === 0 && a.every((x) => /^\d+$/.test(x))),
  "stop-writes-on-bgsave-error": yesno,
  rdbcompression: yesno,
  rdbchecksum: yesno,
  dbfilename: anyOne,
  dir: absPathArg,
  replicaof: (a) => a.length === 2 && int(1, 65535)([a[1] ?? ""]),
  masterauth: anyOne,
  masteruser: anyOne,
  "replica-serve-stale-data": yesno,
  "replica-read-only": yesno,
  "repl-diskless-sync": yesno,
  aclfile: absPathArg,
  requirepass: anyOne,
  maxclients: int(1, 2 ** 31 - 1),
  maxmemory: (a) => a.length === 1 && /^\d+$/.test(a[0] ?? ""),
  "maxmemory-policy": oneOf("volatile-lru", "allkeys-lru", "volatile-lfu", "allkeys-lfu", "volatile-random", "allkeys-random", "volatile-ttl", "noeviction"),
  "maxmemory-samples": int(1, 64),
  appendonly: yesno,
  appendfilename: anyOne,
  appenddirname: anyOne,
  appendfsync: oneOf("always", "everysec", "no"),
  "no-appendfsync-on-rewrite": yesno,
  "auto-aof-rewrite-percentage": int(0, 2 ** 31 - 1),
  "auto-aof-rewrite-min-size": (a) => a.length === 1 && /^\d+(b|kb|mb|gb)?$/i.test(a[0] ?? ""),
  "aof-load-truncated": yesno,
  "aof-use-rdb-preamble": yesno,
  "aof-timestamp-enabled": yesno,
};

function assertRedis70(text: string): void {
  for (const [directive, uses] of parseConf(text)) {
    const valid = REDIS_70[directive];
    expect(valid, `unknown directive ${directive}`).toBeDefined();
    for (const args of uses) expect(valid?.(args), `${directive} ${args.join(" ")}`).toBe(true);
  }
}

describe("renderRedisConf", () => {
  const typical: RedisConfInput = {
    port: 6379,
    maxmemoryBytes: 64 * MiB,
    maxmemoryPolicy: "noeviction",
    nodeMemoryBytes: 128 * MiB,
    persistence: { aof: true, appendfsync: "everysec", rdbSavePoints: [[3600, 1], [300, 100], [60, 10000]] },
    dir: "/var/lib/redis",
    aclFile: "/etc/redis/users.acl",
  };

  it("renders the typical primary (golden)", () => {
    const conf = renderRedisConf(typical);
    expect(conf.containsSecret).toBe(false);
    expect(conf.text).toBe(`# Rendered by homelab-data (components/redis/conf.ts) for Redis 7.0; do not edit by hand.

# Network. The default user is off (see users.acl), so protected-mode stays on and still lets
# authenticated clients in from the container network.
bind 0.0.0.0
protected-mode yes
port 6379
tcp-keepalive 300
timeout 0

# Process: foreground, logs to stdout (the container runtime collects them).
daemonize no
supervised no
loglevel notice
logfile ""

# Security: users and their rights live in the ACL file only.
aclfile /etc/redis/users.acl
enable-protected-configs no
enable-debug-command no
enable-module-command no

# Memory.
maxmemory 67108864
maxmemory-policy noeviction

# Persistence: RDB snapshots plus an append-only file with an RDB preamble (fast restarts).
dir /var/lib/redis
dbfilename dump.rdb
save 3600 1 300 100 60 10000
stop-writes-on-bgsave-error yes
rdbcompression yes
rdbchecksum yes
appendonly yes
appendfilename "appendonly.aof"
appenddirname "appendonlydir"
appendfsync everysec
no-appendfsync-on-rewrite no
auto-aof-rewrite-percentage 100
auto-aof-rewrite-min-size 64mb
aof-load-truncated yes
aof-use-rdb-preamble yes
`);
    assertRedis70(conf.text);
  });

  it("defaults match the typical input: only maxmemory is required", () => {
    expect(renderRedisConf({ maxmemoryBytes: 64 * MiB }).text).toBe(renderRedisConf(typical).text);
  });

  it("a replica carries masterauth in plaintext and says so", () => {
    const password = 'replica-"pass"\\word-0123';
    const conf = renderRedisConf({ ...typical, replicaOf: { host: "homelab-dev-redis", port: 6380, user: "replica", password } });
    expect(conf.containsSecret).toBe(true);
    expect(conf.text).toContain(`# Replication: authenticate to the primary as the replication ACL user.
replicaof homelab-dev-redis 6380
masteruser replica
replica-read-only yes
replica-serve-stale-data yes
masterauth "replica-\\"pass\\"\\\\word-0123"
`);
    const parsed = parseConf(conf.text);
    expect(parsed.get("masterauth")).toEqual([[password]]);
    assertRedis70(conf.text);
  });

  it("a replica can take masterauth from an included file instead, keeping the conf free of secrets", () => {
    const conf = renderRedisConf({ ...typical, replicaOf: { host: "10.0.0.30", authIncludeFile: "/run/secrets/redis-masterauth.conf" } });
    expect(conf.containsSecret).toBe(false);
    const lines = conf.text.trimEnd().split("\n");
    expect(lines.at(-1)).toBe("include /run/secrets/redis-masterauth.conf");
    expect(conf.text).toContain("replicaof 10.0.0.30 6379\nmasteruser replica\n");
    expect(parseConf(conf.text).has("masterauth")).toBe(false);
    expect(renderRedisMasterauth("abcdefghijklmnop\"q")).toBe('masterauth "abcdefghijklmnop\\"q"\n');
  });

  it("without AOF renders appendonly no and no AOF tuning; no save points disables RDB", () => {
    const conf = parseConf(renderRedisConf({ ...typical, persistence: { aof: false, rdbSavePoints: [] } }).text);
    expect(arg(conf, "appendonly")).toBe("no");
    expect(conf.has("appendfsync")).toBe(false);
    expect(conf.has("aof-use-rdb-preamble")).toBe(false);
    expect(conf.get("save")).toEqual([[""]]);
  });

  it("renders bind lists, port, policy, fsync, loglevel and paths as given", () => {
    const text = renderRedisConf({
      ...typical,
      bind: ["127.0.0.1", "-::1", "10.0.0.5"],
      port: 6380,
      maxmemoryPolicy: "allkeys-lfu",
      persistence: { appendfsync: "always", rdbSavePoints: [[900, 1]] },
      loglevel: "warning",
      dir: "/data",
      aclFile: "/etc/homelab/users.acl",
    }).text;
    const conf = parseConf(text);
    expect(arg(conf, "bind")).toBe("127.0.0.1 -::1 10.0.0.5");
    expect(arg(conf, "port")).toBe("6380");
    expect(arg(conf, "maxmemory-policy")).toBe("allkeys-lfu");
    expect(arg(conf, "appendfsync")).toBe("always");
    expect(arg(conf, "save")).toBe("900 1");
    expect(arg(conf, "loglevel")).toBe("warning");
    expect(arg(conf, "dir")).toBe("/data");
    expect(arg(conf, "aclfile")).toBe("/etc/homelab/users.acl");
    assertRedis70(text);
  });

  describe("maxmemory", () => {
    it("accepts exactly 75% of the node", () => {
      expect(arg(parseConf(renderRedisConf({ maxmemoryBytes: 96 * MiB, nodeMemoryBytes: 128 * MiB }).text), "maxmemory")).toBe(String(96 * MiB));
    });
    it("refuses more than 75% of the node and says why", () => {
      const [problem] = problemsOf(() => renderRedisConf({ maxmemoryBytes: 96 * MiB + 1, nodeMemoryBytes: 128 * MiB }));
      expect(problem).toMatch(/^maxmemoryBytes \(maxmemory\): got 100663297; expected at most 75% of nodeMemoryBytes 128MiB = 96MiB/);
      expect(problem).toContain("fork/copy-on-write of AOF rewrites");
    });
    it("refuses 0 and anything under 1MiB: unlimited must be asked for by name", () => {
      expect(problemsOf(() => renderRedisConf({ maxmemoryBytes: 0 }))[0]).toMatch(/^maxmemoryBytes \(maxmemory\): got 0; expected a whole number of bytes >= 1MiB/);
      expect(problemsOf(() => renderRedisConf({ maxmemoryBytes: MiB - 1 }))).toHaveLength(1);
      expect(arg(parseConf(renderRedisConf({ maxmemoryBytes: "unlimited" }).text), "maxmemory")).toBe("0");
    });
    it('refuses "unlimited" on a node of known size', () => {
      expect(problemsOf(() => renderRedisConf({ maxmemoryBytes: "unlimited", nodeMemoryBytes: 128 * MiB }))[0]).toMatch(/^maxmemoryBytes \(maxmemory\): got "unlimited"; expected a limit of at most 75%/);
    });
  });

  const PW = "replica-password-0123456789";
  const cases: [string, RedisConfInput, string][] = [
    ["port 0", { ...typical, port: 0 }, "port (port): got 0"],
    ["port 65536", { ...typical, port: 65536 }, "port (port)"],
    ["empty bind", { ...typical, bind: [] }, "bind (bind): got []"],
    ["bind to a host name", { ...typical, bind: ["redis.local"] }, 'bind[0] (bind): got "redis.local"'],
    ["bind with a space", { ...typical, bind: ["0.0.0.0 1.1.1.1"] }, "bind[0] (bind)"],
    ["maxmemory fractional", { ...typical, maxmemoryBytes: 2 * MiB + 0.5 }, "maxmemoryBytes (maxmemory)"],
    ["maxmemory as a string", { ...typical, maxmemoryBytes: "64mb" as never }, 'maxmemoryBytes (maxmemory): got "64mb"'],
    ["node memory nonsense", { ...typical, nodeMemoryBytes: -1 }, "nodeMemoryBytes: got -1"],
    ["policy unknown", { ...typical, maxmemoryPolicy: "allkeys-ttl" as never }, 'maxmemoryPolicy (maxmemory-policy): got "allkeys-ttl"'],
    ["aof not boolean", { ...typical, persistence: { aof: "yes" as never } }, "persistence.aof (appendonly)"],
    ["appendfsync unknown", { ...typical, persistence: { appendfsync: "sometimes" as never } }, 'persistence.appendfsync (appendfsync): got "sometimes"'],
    ["save point with 0 seconds", { ...typical, persistence: { rdbSavePoints: [[0, 1]] } }, "persistence.rdbSavePoints[0] (save): got [0,1]"],
    ["save point with 3 numbers", { ...typical, persistence: { rdbSavePoints: [[60, 1], [1, 2, 3] as never] } }, "persistence.rdbSavePoints[1] (save)"],
    ["dir relative", { ...typical, dir: "data" }, 'dir (dir): got "data"'],
    ["dir with a space", { ...typical, dir: "/var/lib/my redis" }, "dir (dir)"],
    ["aclfile relative", { ...typical, aclFile: "users.acl" }, "aclFile (aclfile)"],
    ["loglevel unknown", { ...typical, loglevel: "nothing" as never }, 'loglevel (loglevel): got "nothing"'],
    ["replica host with a space", { ...typical, replicaOf: { host: "redis 1", password: PW } }, "replicaOf.host (replicaof)"],
    ["replica port 0", { ...typical, replicaOf: { host: "redis", port: 0, password: PW } }, "replicaOf.port (replicaof)"],
    ["replica user default", { ...typical, replicaOf: { host: "redis", user: "default", password: PW } }, 'replicaOf.user (masteruser): got "default"'],
    ["replica with neither password nor include", { ...typical, replicaOf: { host: "redis" } }, "replicaOf.password (masterauth): got nothing"],
    ["replica with both", { ...typical, replicaOf: { host: "redis", password: PW, authIncludeFile: "/run/a.conf" } }, "replicaOf.password (masterauth)"],
    ["replica password too short", { ...typical, replicaOf: { host: "redis", password: "short" } }, "replicaOf.password (masterauth)"],
    ["replica password with a newline", { ...typical, replicaOf: { host: "redis", password: "0123456789abcdef\nmaxmemory 0" } }, "replicaOf.password (masterauth)"],
    ["include file relative", { ...typical, replicaOf: { host: "redis", authIncludeFile: "auth.conf" } }, "replicaOf.authIncludeFile (include)"],
  ];
  it.each(cases)("refuses %s", (_name, input, expected) => {
    const problems = problemsOf(() => renderRedisConf(input));
    expect(problems.some((p) => p.startsWith(expected)), problems.join("\n")).toBe(true);
  });

  it("never echoes a password in a problem", () => {
    const secret = "hunter2-is-not-long";
    const problems = problemsOf(() => renderRedisConf({ ...typical, replicaOf: { host: "redis", password: `${secret}\n` } }));
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.join("\n")).not.toContain(secret);
    expect(problemsOf(() => renderRedisMasterauth("short")).join("\n")).not.toContain("short\"");
  });

  it("reports every problem at once", () => {
    const problems = problemsOf(() => renderRedisConf({ port: 0, maxmemoryBytes: 0, maxmemoryPolicy: "lru" as never, dir: "x" }));
    expect(problems).toHaveLength(4);
  });
});

describe("renderRedisAcl", () => {
  const users: RedisAclUser[] = [
    { name: "app", role: "app", password: "app-password-0123456789" },
    { name: "replica", role: "replica", password: "replica-password-0123456789" },
    { name: "health", role: "health", password: "health-password-0123456789" },
    { name: "admin", role: "admin", password: "admin-password-0123456789" },
  ];

  it("renders the default user off and least-privilege users with hashed passwords (golden)", () => {
    expect(renderRedisAcl({ users })).toBe(
      [
        "user default off resetpass ~* &* +@all",
        "user app on resetpass #ede74b31cec8a9940838ba2caa40dfde3b37ecc24d41e21273fa7d64e9e5ef26 resetkeys ~app:* resetchannels &app:* -@all +@read +@write +@transaction +@connection -@dangerous",
        "user replica on resetpass #45d3a57437afd5e2fd9d7fdcc2fa67d17b892cbc5f4d97e596b1fa72de73f5e6 resetkeys resetchannels -@all +psync +replconf +ping",
        "user health on resetpass #359d59c41653043e7231bcf2841accdb61bd7b7e26263cbacb6c60f5791497e7 resetkeys resetchannels -@all +ping",
        "user admin on resetpass #623fca80b1dae9bd02bc1061d26627f1847b38ffc2c8d629cfde16950f1ba14e ~* &* +@all",
        "",
      ].join("\n"),
    );
  });

  it("hashes like Redis does (SHA-256, lower-case hex) and never writes the plaintext", () => {
    expect(redisPasswordSha256Hex("app-password-0123456789")).toBe(createHash("sha256").update("app-password-0123456789").digest("hex"));
    const text = renderRedisAcl({ users });
    for (const u of users) expect(text).not.toContain(u.password as string);
    expect(text).not.toMatch(/(^|\s)>/m);
    expect(text).not.toContain("nopass");
  });

  it("takes pre-hashed passwords (lower-cased), a key prefix and extra rules", () => {
    const hash = "AB".repeat(32);
    const text = renderRedisAcl({
      users: [
        { name: "writer", role: "app", passwordSha256Hex: hash, keyPrefix: "drill:", extraRules: ["+info", "-scan", "+client|setinfo"] },
        { name: "probe", role: "health", password: "probe-password-0123", extraRules: ["+info"] },
      ],
    });
    expect(text).toContain(`user writer on resetpass #${"ab".repeat(32)} resetkeys ~drill:* resetchannels &drill:* -@all +@read +@write +@transaction +@connection -@dangerous +info -scan +client|setinfo\n`);
    expect(text).toContain("resetchannels -@all +ping +info\n");
  });

  const good = { name: "app", role: "app" as const, password: "app-password-0123456789" };
  const aclCases: [string, RedisAclInput, string][] = [
    ["no users", { users: [] }, "users (user): got []"],
    ["name with a space", { users: [{ ...good, name: "my app" }] }, 'users[0].name (user): got "my app"'],
    ["name default", { users: [{ ...good, name: "default" }] }, 'users[0].name (user): got "default"'],
    ["duplicate names", { users: [good, { ...good, role: "health" }] }, 'users[1].name (user): got "app"; expected each user name once'],
    ["empty name", { users: [{ ...good, name: "" }] }, "users[0].name (user)"],
    ["unknown role", { users: [{ ...good, role: "writer" as never }] }, 'users[0].role (user): got "writer"'],
    ["short password", { users: [{ ...good, password: "short-pass" }] }, "users[0].password (user)"],
    ["no password", { users: [{ name: "app", role: "app" }] }, "users[0].password (user): got nothing; expected exactly one of password or passwordSha256Hex"],
    ["both passwords", { users: [{ ...good, passwordSha256Hex: "a".repeat(64) }] }, "users[0].password (user)"],
    ["hash too short", { users: [{ name: "app", role: "app", passwordSha256Hex: "abc" }] }, 'users[0].passwordSha256Hex (user): got "abc"'],
    ["hash not hex", { users: [{ name: "app", role: "app", passwordSha256Hex: "g".repeat(64) }] }, "users[0].passwordSha256Hex (user)"],
    ["key prefix on a replica user", { users: [{ name: "replica", role: "replica", password: "replica-password-0123456789", keyPrefix: "x:" }] }, "users[0].keyPrefix (user)"],
    ["key prefix with a glob", { users: [{ ...good, keyPrefix: "app*" }] }, 'users[0].keyPrefix (user): got "app*"'],
    ["extra rule granting keys", { users: [{ ...good, extraRules: ["~*"] }] }, 'users[0].extraRules[0] (user): got "~*"'],
    ["extra rule setting a password", { users: [{ ...good, extraRules: [">plaintext"] }] }, "users[0].extraRules[0] (user)"],
    ["extra rule nopass", { users: [{ ...good, extraRules: ["nopass"] }] }, "users[0].extraRules[0] (user)"],
    ["extra rule with a space", { users: [{ ...good, extraRules: ["+get +set"] }] }, "users[0].extraRules[0] (user)"],
  ];
  it.each(aclCases)("refuses %s", (_name, input, expected) => {
    const problems = problemsOf(() => renderRedisAcl(input));
    expect(problems.some((p) => p.startsWith(expected)), problems.join("\n")).toBe(true);
  });

  it("never echoes a password in a problem", () => {
    const problems = problemsOf(() => renderRedisAcl({ users: [{ ...good, password: "tooshort-secret" }] }));
    expect(problems.join("\n")).not.toContain("tooshort-secret");
  });
});

// ---- Property-based. ----
const ipv4 = fc.ipV4();
const host = fc.oneof(ipv4, fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?(?:\.[a-z0-9]{1,8}){0,2}$/));
const absPath = fc.array(fc.stringMatching(/^[a-z0-9_][a-z0-9_.-]{0,7}$/), { minLength: 1, maxLength: 4 }).map((p) => `/${p.join("/")}`);
const password = fc.string({ minLength: 16, maxLength: 48, unit: "grapheme-ascii" }).filter((s) => !/\p{Cc}/u.test(s));
const policy = fc.constantFrom("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl" as const);

const validConf: fc.Arbitrary<RedisConfInput> = fc
  .record({
    port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
    bind: fc.option(fc.array(fc.oneof(ipv4, fc.constantFrom("*", "::*", "-::1", "::1", "-127.0.0.1")), { minLength: 1, maxLength: 4 }), { nil: undefined }),
    nodeMemoryBytes: fc.option(fc.integer({ min: 2 * MiB, max: 64 * 1024 * MiB }), { nil: undefined }),
    share: fc.double({ min: 0, max: 1, noNaN: true }),
    unlimited: fc.boolean(),
    maxmemoryPolicy: fc.option(policy, { nil: undefined }),
    persistence: fc.option(
      fc.record(
        {
          aof: fc.boolean(),
          appendfsync: fc.constantFrom("always", "everysec", "no" as const),
          rdbSavePoints: fc.array(fc.tuple(fc.integer({ min: 1, max: 86400 }), fc.integer({ min: 1, max: 1_000_000 })), { maxLength: 4 }),
        },
        { requiredKeys: [] },
      ),
      { nil: undefined },
    ),
    dir: fc.option(absPath, { nil: undefined }),
    aclFile: fc.option(absPath, { nil: undefined }),
    loglevel: fc.option(fc.constantFrom("debug", "verbose", "notice", "warning" as const), { nil: undefined }),
    replicaOf: fc.option(
      fc.record({
        host,
        port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
        user: fc.option(fc.stringMatching(/^[a-z][a-z0-9_-]{0,15}$/).filter((u) => u !== "default"), { nil: undefined }),
        auth: fc.oneof(password.map((p) => ({ password: p })), absPath.map((f) => ({ authIncludeFile: f }))),
      }).map(({ auth, ...r }) => ({ ...r, ...auth })),
      { nil: undefined },
    ),
  })
  .map(({ share, unlimited, nodeMemoryBytes, ...r }) => {
    const limit = Math.floor((nodeMemoryBytes ?? 64 * 1024 * MiB) * 0.75);
    const maxmemoryBytes: number | "unlimited" = unlimited && nodeMemoryBytes === undefined ? "unlimited" : Math.max(MiB, Math.floor(MiB + share * (limit - MiB)));
    return { ...r, nodeMemoryBytes, maxmemoryBytes };
  });

describe("redis properties", () => {
  it("any valid input renders only Redis 7.0 directives with accepted values, and flags a plaintext masterauth", () => {
    fc.assert(
      fc.property(validConf, (input) => {
        const conf = renderRedisConf(input);
        assertRedis70(conf.text);
        const parsed = parseConf(conf.text);
        expect(arg(parsed, "protected-mode")).toBe("yes");
        expect(arg(parsed, "aclfile")).toBeDefined();
        expect(parsed.has("requirepass")).toBe(false);
        expect(conf.containsSecret).toBe(input.replicaOf?.password !== undefined);
        if (input.replicaOf?.password !== undefined) expect(parsed.get("masterauth")).toEqual([[input.replicaOf.password]]);
        else expect(parsed.has("masterauth")).toBe(false);
        if (input.nodeMemoryBytes !== undefined) expect(Number(arg(parsed, "maxmemory"))).toBeLessThanOrEqual(input.nodeMemoryBytes * 0.75);
        expect(Number(arg(parsed, "maxmemory")) === 0).toBe(input.maxmemoryBytes === "unlimited");
      }),
      { numRuns: 300 },
    );
  });

  const validAcl = fc
    .uniqueArray(
      fc.record({
        name: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/).filter((n) => n !== "default"),
        role: fc.constantFrom("app", "replica", "health", "admin" as const),
        password,
        keyPrefix: fc.option(fc.stringMatching(/^[a-z][a-z0-9:._-]{0,10}$/), { nil: undefined }),
        extraRules: fc.option(fc.array(fc.stringMatching(/^[+-](@[a-z]{3,10}|[a-z]{3,10})$/), { maxLength: 3 }), { nil: undefined }),
      }),
      { minLength: 1, maxLength: 6, selector: (u) => u.name },
    )
    .map((us) => us.map((u) => (u.role === "app" ? u : { ...u, keyPrefix: undefined })));

  // Redis 7.0 ACL rule grammar (ACLSetUser): the tokens we may emit.
  const ACL_TOKEN = /^(on|off|resetpass|resetkeys|resetchannels|#[0-9a-f]{64}|~[^\s]+|&[^\s]+|[+-]@[a-z]+|[+-][a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)?)$/;

  it("any valid user list renders an ACL file Redis accepts: only `user` lines, known rule tokens, no plaintext", () => {
    fc.assert(
      fc.property(validAcl, (list) => {
        const text = renderRedisAcl({ users: list });
        const lines = text.trimEnd().split("\n");
        expect(lines[0]).toBe("user default off resetpass ~* &* +@all");
        expect(lines).toHaveLength(list.length + 1);
        lines.forEach((line, i) => {
          const [kw, name, ...rules] = line.split(" ");
          expect(kw).toBe("user");
          expect(name).toBe(i === 0 ? "default" : list[i - 1]?.name);
          for (const rule of rules) expect(rule, line).toMatch(ACL_TOKEN);
          if (i > 0) expect(rules).toContain(`#${redisPasswordSha256Hex(list[i - 1]?.password ?? "")}`);
        });
        for (const u of list) expect(text.split(/\s/)).not.toContain(u.password);
      }),
      { numRuns: 300 },
    );
  });

  type Breaker = [string, (draft: RedisConfInput) => fc.Arbitrary<unknown>];
  const notInt = fc.oneof(fc.double({ noInteger: true }), fc.constant(Number.NaN), fc.string().map((s) => s as unknown as number));
  const badPath = fc.oneof(fc.stringMatching(/^[a-z][a-z/]{0,8}$/), absPath.map((p) => `${p} x`), absPath.map((p) => `${p}"`), absPath.map((p) => `${p}\nport 0`), fc.constant("/"));
  const breakers: Breaker[] = [
    ["port (port)", (d) => fc.oneof(fc.integer({ min: -100, max: 0 }), fc.integer({ min: 65536, max: 10 ** 6 }), notInt).map((port) => ({ ...d, port }))],
    ["bind", (d) => fc.oneof(fc.constant([]), fc.constantFrom(["localhost"], ["1.2.3"], ["0.0.0.0 x"], ["1.1.1.1\nport 0"])).map((bind) => ({ ...d, bind }))],
    ["maxmemoryBytes (maxmemory)", (d) => fc.oneof(fc.integer({ min: -100, max: MiB - 1 }), notInt).map((maxmemoryBytes) => ({ ...d, maxmemoryBytes }))],
    ["maxmemoryBytes (maxmemory)", (d) => fc.integer({ min: 2 * MiB, max: 1024 * MiB }).chain((node) => fc.integer({ min: Math.floor(node * 0.75) + 1, max: node * 2 }).map((max) => ({ ...d, nodeMemoryBytes: node, maxmemoryBytes: max })))],
    ["maxmemoryBytes (maxmemory)", (d) => fc.integer({ min: 2 * MiB, max: 1024 * MiB }).map((node) => ({ ...d, nodeMemoryBytes: node, maxmemoryBytes: "unlimited" }))],
    ["maxmemoryPolicy (maxmemory-policy)", (d) => fc.constantFrom("lru", "allkeys-ttl", "volatile", "", "NOEVICTION").map((maxmemoryPolicy) => ({ ...d, maxmemoryPolicy }))],
    ["persistence.appendfsync (appendfsync)", (d) => fc.constantFrom("sometimes", "every", "", "yes").map((appendfsync) => ({ ...d, persistence: { ...d.persistence, appendfsync } }))],
    ["persistence.rdbSavePoints[0] (save)", (d) => fc.oneof(fc.tuple(fc.integer({ min: -10, max: 0 }), fc.integer({ min: 1, max: 10 })), fc.tuple(fc.integer({ min: 1, max: 10 }), notInt)).map((pt) => ({ ...d, persistence: { ...d.persistence, rdbSavePoints: [pt] } }))],
    ["dir (dir)", (d) => badPath.map((dir) => ({ ...d, dir }))],
    ["aclFile (aclfile)", (d) => badPath.map((aclFile) => ({ ...d, aclFile }))],
    ["replicaOf.host (replicaof)", (d) => fc.constantFrom("", "a b", "redis/1", "-x", "r\nport 0").map((h) => ({ ...d, replicaOf: { host: h, password: "0123456789abcdefgh" } }))],
    ["replicaOf.password (masterauth)", (d) => fc.string({ maxLength: 15 }).map((pw) => ({ ...d, replicaOf: { host: "redis", password: pw } }))],
  ];

  it("any input with a mistake is refused with a problem naming the key, without echoing passwords", () => {
    const arb = fc.tuple(validConf, fc.integer({ min: 0, max: breakers.length - 1 })).chain(([draft, i]) => {
      const [key, brk] = breakers[i] as Breaker;
      return brk(draft).map((bad) => [key, bad] as const);
    });
    fc.assert(
      fc.property(arb, ([key, input]) => {
        const problems = problemsOf(() => renderRedisConf(input as RedisConfInput));
        expect(problems.some((p) => p.startsWith(key)), `${key} not in:\n${problems.join("\n")}`).toBe(true);
        const pw = (input as RedisConfInput).replicaOf?.password;
        if (pw && pw.length >= 4) expect(problems.join("\n")).not.toContain(JSON.stringify(pw));
      }),
      { numRuns: 400 },
    );
  });
});
