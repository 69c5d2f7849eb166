import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  PgbackrestConfError,
  newestBackupAgeExceeds,
  renderPgbackrestConf,
  type PgbackrestConfInput,
  type PgbackrestDatabaseConfInput,
  type PgbackrestRepositoryConfInput,
} from "../../components/pgbackrest/index.ts";

const TLS = { caFile: "/etc/pgbackrest/tls/ca.crt", certFile: "/etc/pgbackrest/tls/node.crt", keyFile: "/etc/pgbackrest/tls/node.key" };

function repository(overrides: Partial<PgbackrestRepositoryConfInput> = {}): PgbackrestRepositoryConfInput {
  return {
    kind: "repository",
    stanza: "main",
    repoPath: "/var/lib/pgbackrest",
    retention: { full: 2, diff: 6 },
    compression: { type: "zst", level: 3 },
    processMax: 2,
    pgHosts: [
      { host: "homelab-dev-pg-1", pgPath: "/var/lib/postgresql/data" },
      { host: "homelab-dev-pg-2", pgPath: "/var/lib/postgresql/data", port: 5433 },
    ],
    tls: TLS,
    tlsServer: { address: "*", port: 8432, authClients: ["homelab-dev-pg-1", "homelab-dev-pg-2"] },
    ...overrides,
  };
}

function database(overrides: Partial<PgbackrestDatabaseConfInput> = {}): PgbackrestDatabaseConfInput {
  return {
    kind: "database",
    stanza: "main",
    repoHost: "homelab-dev-backup",
    processMax: 2,
    compression: { type: "zst" },
    tls: TLS,
    tlsServer: { authClients: ["homelab-dev-backup"] },
    ...overrides,
  };
}

function problemsOf(input: unknown): string[] {
  try {
    renderPgbackrestConf(input as PgbackrestConfInput);
  } catch (e) {
    if (e instanceof PgbackrestConfError) return e.problems;
    throw e;
  }
  return [];
}

// ---- A minimal pgbackrest.conf reader for the assertions below. ----
interface Ini {
  sections: Map<string, [string, string][]>;
}
function parseIni(text: string): Ini {
  const sections = new Map<string, [string, string][]>();
  let current: [string, string][] | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      current = [];
      sections.set(header[1] as string, current);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0 || !current) throw new Error(`not an ini line: ${raw}`);
    current.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return { sections };
}
function options(ini: Ini, section: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [k, v] of ini.sections.get(section) ?? []) out.set(k, [...(out.get(k) ?? []), v]);
  return out;
}
function get(ini: Ini, section: string, key: string): string | undefined {
  return options(ini, section).get(key)?.[0];
}

// ---- Whitelist: real pgBackRest 2.5x option names (src/build/config/config.yaml) with their documented
// value ranges. Indexed options (repoN-, pgN-) are checked by their base name; `stanzaOnly` ones have
// `section: stanza` there and are refused in [global]. Written out here, independent of the planner. ----
const isPath = (v: string) => v.startsWith("/") && !v.includes("//") && (v === "/" || !v.endsWith("/")) && !/\s/.test(v);
const intIn = (lo: number, hi: number) => (v: string) => /^-?\d+$/.test(v) && Number(v) >= lo && Number(v) <= hi;
const oneOf = (...vals: string[]) => (v: string) => vals.includes(v);
const yn = oneOf("y", "n");
const LOG = oneOf("off", "error", "warn", "info", "detail", "debug", "trace");
const KNOWN: Record<string, { valid: (v: string) => boolean; stanzaOnly?: boolean }> = {
  "archive-async": { valid: yn },
  "archive-push-queue-max": { valid: intIn(0, 4 * 1024 ** 5) },
  "backup-standby": { valid: yn },
  "compress-level": { valid: intIn(-7, 22) },
  "compress-type": { valid: oneOf("none", "bz2", "gz", "lz4", "zst") },
  "log-level-console": { valid: LOG },
  "log-level-file": { valid: LOG },
  "log-path": { valid: isPath },
  "process-max": { valid: intIn(1, 999) },
  "spool-path": { valid: isPath },
  "start-fast": { valid: yn },
  "tls-server-address": { valid: (v) => v.length > 0 && !/\s/.test(v) },
  "tls-server-auth": { valid: (v) => /^[^=,\s]+=[^=\s]+$/.test(v) },
  "tls-server-ca-file": { valid: isPath },
  "tls-server-cert-file": { valid: isPath },
  "tls-server-key-file": { valid: isPath },
  "tls-server-port": { valid: intIn(1, 65535) },
  "repo-path": { valid: isPath },
  "repo-retention-full": { valid: intIn(1, 9999999) },
  "repo-retention-diff": { valid: intIn(1, 9999999) },
  "repo-retention-archive": { valid: intIn(1, 9999999) },
  "repo-retention-archive-type": { valid: oneOf("full", "diff", "incr") },
  "repo-bundle": { valid: yn },
  "repo-block": { valid: yn },
  "repo-host": { valid: (v) => v.length > 0 && !/\s/.test(v) },
  "repo-host-type": { valid: oneOf("ssh", "tls") },
  "repo-host-port": { valid: intIn(0, 65535) },
  "repo-host-ca-file": { valid: isPath },
  "repo-host-cert-file": { valid: isPath },
  "repo-host-key-file": { valid: isPath },
  "pg-host": { valid: (v) => v.length > 0 && !/\s/.test(v), stanzaOnly: true },
  "pg-host-type": { valid: oneOf("ssh", "tls") },
  "pg-host-port": { valid: intIn(0, 65535), stanzaOnly: true },
  "pg-host-ca-file": { valid: isPath },
  "pg-host-cert-file": { valid: isPath },
  "pg-host-key-file": { valid: isPath },
  "pg-path": { valid: isPath, stanzaOnly: true },
  "pg-port": { valid: intIn(0, 65535), stanzaOnly: true },
  "pg-socket-path": { valid: isPath, stanzaOnly: true },
};
const COMPRESS_LEVEL: Record<string, [number, number]> = { bz2: [1, 9], gz: [-1, 9], lz4: [-5, 12], zst: [-7, 22] };

function baseName(option: string): string {
  return option.replace(/^repo(\d+)-/, (_, n: string) => (Number(n) >= 1 && Number(n) <= 256 ? "repo-" : "repoX-")).replace(/^pg(\d+)-/, (_, n: string) => (Number(n) >= 1 && Number(n) <= 256 ? "pg-" : "pgX-"));
}

/** Asserts every option is a real pgBackRest option, in an allowed section, with a value in range. */
function assertKnownOptions(text: string, stanza: string): void {
  const ini = parseIni(text);
  // [global:archive-get] (a command section) only carries archive-async=n, and only when pushes are async.
  const getSection = ini.sections.get("global:archive-get");
  if (getSection) expect(getSection).toEqual([["archive-async", "n"]]);
  expect([...ini.sections.keys()]).toEqual(getSection ? ["global", "global:archive-get", stanza] : ["global", stanza]);
  for (const [section, entries] of ini.sections) {
    for (const [key, value] of entries) {
      const spec = KNOWN[baseName(key)];
      expect(spec, `unknown option ${key}`).toBeDefined();
      if (section === "global") expect(spec?.stanzaOnly, `${key} is stanza-only`).not.toBe(true);
      expect(spec?.valid(value), `${key}=${value}`).toBe(true);
      if (key === "tls-server-auth") expect(value.endsWith(`=${stanza}`)).toBe(true);
    }
  }
  const type = get(ini, "global", "compress-type");
  const level = get(ini, "global", "compress-level");
  if (level !== undefined) {
    const range = COMPRESS_LEVEL[type ?? "gz"];
    expect(range, `compress-level with compress-type=${type}`).toBeDefined();
    if (range) expect(Number(level) >= range[0] && Number(level) <= range[1], `compress-level=${level} for ${type}`).toBe(true);
  }
  // config.yaml: repo-block depends on repo-bundle=y.
  if (get(ini, "global", "repo1-block") === "y") expect(get(ini, "global", "repo1-bundle")).toBe("y");
}

describe("renderPgbackrestConf: repository host", () => {
  it("renders the typical repository host (golden)", () => {
    expect(renderPgbackrestConf(repository())).toBe(`# Rendered by homelab-data (components/pgbackrest/conf.ts) for pgBackRest 2.5x; do not edit by hand.
[global]
# repository: this host owns repo1
repo1-path=/var/lib/pgbackrest
repo1-retention-full=2
repo1-retention-diff=6
repo1-bundle=y
repo1-block=y
# backup
compress-type=zst
compress-level=3
process-max=2
start-fast=y
# log
log-level-console=info
log-level-file=info
log-path=/var/log/pgbackrest
# pgbackrest server: peers connect here over TLS, authorised by their certificate CN
tls-server-address=*
tls-server-port=8432
tls-server-ca-file=/etc/pgbackrest/tls/ca.crt
tls-server-cert-file=/etc/pgbackrest/tls/node.crt
tls-server-key-file=/etc/pgbackrest/tls/node.key
tls-server-auth=homelab-dev-pg-1=main
tls-server-auth=homelab-dev-pg-2=main

[main]
# PostgreSQL hosts, reached through their own pgbackrest server over TLS
pg1-host=homelab-dev-pg-1
pg1-host-type=tls
pg1-host-port=8432
pg1-host-ca-file=/etc/pgbackrest/tls/ca.crt
pg1-host-cert-file=/etc/pgbackrest/tls/node.crt
pg1-host-key-file=/etc/pgbackrest/tls/node.key
pg1-path=/var/lib/postgresql/data
pg1-port=5432
pg2-host=homelab-dev-pg-2
pg2-host-type=tls
pg2-host-port=8432
pg2-host-ca-file=/etc/pgbackrest/tls/ca.crt
pg2-host-cert-file=/etc/pgbackrest/tls/node.crt
pg2-host-key-file=/etc/pgbackrest/tls/node.key
pg2-path=/var/lib/postgresql/data
pg2-port=5433
`);
  });

  it("defaults: repo path, bundle + block incremental, start-fast, no backup-standby, no compress-level", () => {
    const ini = parseIni(
      renderPgbackrestConf(repository({ repoPath: undefined, compression: { type: "lz4" }, bundle: undefined, blockIncremental: undefined, startFast: undefined })),
    );
    expect(get(ini, "global", "repo1-path")).toBe("/var/lib/pgbackrest");
    expect(get(ini, "global", "repo1-bundle")).toBe("y");
    expect(get(ini, "global", "repo1-block")).toBe("y");
    expect(get(ini, "global", "start-fast")).toBe("y");
    expect(get(ini, "global", "backup-standby")).toBeUndefined();
    expect(get(ini, "global", "compress-type")).toBe("lz4");
    expect(get(ini, "global", "compress-level")).toBeUndefined();
  });

  it("block incremental off keeps bundling; bundle off drops repo1-block entirely", () => {
    const blockOff = parseIni(renderPgbackrestConf(repository({ blockIncremental: false })));
    expect(get(blockOff, "global", "repo1-bundle")).toBe("y");
    expect(get(blockOff, "global", "repo1-block")).toBe("n");
    const bundleOff = parseIni(renderPgbackrestConf(repository({ bundle: false, blockIncremental: false })));
    expect(get(bundleOff, "global", "repo1-bundle")).toBe("n");
    expect(get(bundleOff, "global", "repo1-block")).toBeUndefined();
  });

  it("renders backup-standby, archive retention with its type, start-fast=n and separate client certificates", () => {
    const text = renderPgbackrestConf(
      repository({
        backupStandby: true,
        startFast: false,
        retention: { full: 3, archive: 2 },
        tls: { ...TLS, clientCertFile: "/etc/pgbackrest/tls/client.crt", clientKeyFile: "/etc/pgbackrest/tls/client.key" },
        pgHosts: [
          { host: "10.0.0.11", pgPath: "/data", tlsPort: 9432 },
          { host: "10.0.0.12", pgPath: "/data" },
        ],
      }),
    );
    const ini = parseIni(text);
    expect(get(ini, "global", "backup-standby")).toBe("y");
    expect(get(ini, "global", "start-fast")).toBe("n");
    expect(get(ini, "global", "repo1-retention-full")).toBe("3");
    expect(get(ini, "global", "repo1-retention-diff")).toBeUndefined();
    expect(get(ini, "global", "repo1-retention-archive")).toBe("2");
    expect(get(ini, "global", "repo1-retention-archive-type")).toBe("full");
    expect(get(ini, "global", "tls-server-cert-file")).toBe("/etc/pgbackrest/tls/node.crt");
    expect(get(ini, "main", "pg1-host-cert-file")).toBe("/etc/pgbackrest/tls/client.crt");
    expect(get(ini, "main", "pg2-host-key-file")).toBe("/etc/pgbackrest/tls/client.key");
    expect(get(ini, "main", "pg1-host-port")).toBe("9432");
    expect(get(ini, "main", "pg2-host-port")).toBe("8432");
    assertKnownOptions(text, "main");
  });

  it("renders retention-archive-type when asked", () => {
    const ini = parseIni(renderPgbackrestConf(repository({ retention: { full: 2, diff: 7, archive: 7, archiveType: "diff" } })));
    expect(get(ini, "global", "repo1-retention-archive-type")).toBe("diff");
  });
});

describe("renderPgbackrestConf: PostgreSQL host", () => {
  it("renders the typical PostgreSQL host (golden)", () => {
    expect(renderPgbackrestConf(database())).toBe(`# Rendered by homelab-data (components/pgbackrest/conf.ts) for pgBackRest 2.5x; do not edit by hand.
[global]
# repository: repo1 lives on the repository host, reached over TLS
repo1-host=homelab-dev-backup
repo1-host-type=tls
repo1-host-port=8432
repo1-host-ca-file=/etc/pgbackrest/tls/ca.crt
repo1-host-cert-file=/etc/pgbackrest/tls/node.crt
repo1-host-key-file=/etc/pgbackrest/tls/node.key
# archive-push
archive-async=y
spool-path=/var/spool/pgbackrest
compress-type=zst
process-max=2
# log
log-level-console=info
log-level-file=info
log-path=/var/log/pgbackrest
# pgbackrest server: peers connect here over TLS, authorised by their certificate CN
tls-server-address=*
tls-server-port=8432
tls-server-ca-file=/etc/pgbackrest/tls/ca.crt
tls-server-cert-file=/etc/pgbackrest/tls/node.crt
tls-server-key-file=/etc/pgbackrest/tls/node.key
tls-server-auth=homelab-dev-backup=main

[global:archive-get]
# restore_command: one segment per call (async archive-get races at a timeline switch, pgbackrest#2423)
archive-async=n

[main]
# the local cluster
pg1-path=/var/lib/postgresql/data
pg1-port=5432
`);
  });

  it("synchronous archiving has no spool path; queue max, socket path, ports and log levels are rendered", () => {
    const ini = parseIni(
      renderPgbackrestConf(
        database({
          archiveAsync: false,
          archivePushQueueMaxBytes: 4 * 1024 ** 3,
          pgPath: "/srv/pg",
          pgPort: 5433,
          pgSocketPath: "/run/postgresql",
          repoHostPort: 9000,
          tlsServer: { address: "0.0.0.0", port: 9001, authClients: ["backup"] },
          logLevel: { console: "warn", file: "detail" },
          logPath: "/var/log/pgbr",
          stanza: "app-db_1",
        }),
      ),
    );
    expect(get(ini, "global", "archive-async")).toBe("n");
    expect(get(ini, "global", "spool-path")).toBeUndefined();
    expect(get(ini, "global", "archive-push-queue-max")).toBe(String(4 * 1024 ** 3));
    expect(get(ini, "global", "repo1-host-port")).toBe("9000");
    expect(get(ini, "global", "tls-server-address")).toBe("0.0.0.0");
    expect(get(ini, "global", "tls-server-port")).toBe("9001");
    expect(get(ini, "global", "tls-server-auth")).toBe("backup=app-db_1");
    expect(get(ini, "global", "log-level-console")).toBe("warn");
    expect(get(ini, "global", "log-level-file")).toBe("detail");
    expect(get(ini, "global", "log-path")).toBe("/var/log/pgbr");
    expect(get(ini, "app-db_1", "pg1-path")).toBe("/srv/pg");
    expect(get(ini, "app-db_1", "pg1-port")).toBe("5433");
    expect(get(ini, "app-db_1", "pg1-socket-path")).toBe("/run/postgresql");
  });
});

describe("renderPgbackrestConf: validation", () => {
  // Each row: an input with exactly one mistake, and the start of the problem that must name it.
  const cases: [string, unknown, string][] = [
    ["stanza with a space", repository({ stanza: "my stanza" }), "stanza (stanza): got \"my stanza\""],
    ["stanza named global", database({ stanza: "global" }), "stanza (stanza): got \"global\""],
    ["stanza too long", repository({ stanza: "a".repeat(65) }), "stanza (stanza)"],
    ["stanza with ':'", repository({ stanza: "main:backup" }), "stanza (stanza)"],
    ["relative repo path", repository({ repoPath: "var/lib/pgbackrest" }), "repoPath (repo1-path)"],
    ["repo path with trailing slash", repository({ repoPath: "/var/lib/pgbackrest/" }), "repoPath (repo1-path)"],
    ["repo path with //", repository({ repoPath: "/var//lib" }), "repoPath (repo1-path)"],
    ["retention.full 0", repository({ retention: { full: 0 } }), "retention.full (repo1-retention-full): got 0; expected a whole number from 1 to 9999999"],
    ["retention.full fractional", repository({ retention: { full: 1.5 } }), "retention.full (repo1-retention-full): got 1.5"],
    ["retention.full too big", repository({ retention: { full: 10_000_000 } }), "retention.full (repo1-retention-full)"],
    ["retention.diff 0", repository({ retention: { full: 1, diff: 0 } }), "retention.diff (repo1-retention-diff)"],
    ["retention.archive negative", repository({ retention: { full: 1, archive: -1 } }), "retention.archive (repo1-retention-archive)"],
    ["retention.archiveType without archive", repository({ retention: { full: 1, archiveType: "diff" } }), "retention.archiveType (repo1-retention-archive-type)"],
    ["retention.archiveType unknown", repository({ retention: { full: 1, archive: 1, archiveType: "weekly" as never } }), "retention.archiveType (repo1-retention-archive-type): got \"weekly\""],
    ["compression type unknown", repository({ compression: { type: "xz" as never } }), "compression.type (compress-type): got \"xz\""],
    ["zst level 23", repository({ compression: { type: "zst", level: 23 } }), "compression.level (compress-level): got 23; expected a whole number from -7 to 22 for compress-type=zst"],
    ["gz level 10", database({ compression: { type: "gz", level: 10 } }), "compression.level (compress-level): got 10; expected a whole number from -1 to 9 for compress-type=gz"],
    ["lz4 level 13", repository({ compression: { type: "lz4", level: 13 } }), "compression.level (compress-level): got 13"],
    ["bz2 level 0", repository({ compression: { type: "bz2", level: 0 } }), "compression.level (compress-level): got 0"],
    ["level with none", repository({ compression: { type: "none", level: 1 } }), "compression.level (compress-level)"],
    ["processMax 0", repository({ processMax: 0 }), "processMax (process-max): got 0; expected a whole number from 1 to 999"],
    ["processMax 1000", database({ processMax: 1000 }), "processMax (process-max): got 1000"],
    ["block incremental without bundle", repository({ bundle: false }), "blockIncremental (repo1-block)"],
    ["no pg hosts", repository({ pgHosts: [] }), "pgHosts (pg1-host): got []"],
    ["pg host with space", repository({ pgHosts: [{ host: "pg 1", pgPath: "/data" }] }), "pgHosts[0].host (pg1-host): got \"pg 1\""],
    ["pg path relative", repository({ pgHosts: [{ host: "pg1", pgPath: "data" }, { host: "pg2", pgPath: "/data" }] }), "pgHosts[0].pgPath (pg1-path)"],
    ["pg port 0", repository({ pgHosts: [{ host: "pg1", pgPath: "/data" }, { host: "pg2", pgPath: "/data", port: 0 }] }), "pgHosts[1].port (pg2-port): got 0"],
    ["pg tls port 70000", repository({ pgHosts: [{ host: "pg1", pgPath: "/data", tlsPort: 70000 }] }), "pgHosts[0].tlsPort (pg1-host-port)"],
    ["duplicate pg host", repository({ pgHosts: [{ host: "pg1", pgPath: "/data" }, { host: "pg1", pgPath: "/data2" }] }), "pgHosts[1].host (pg2-host)"],
    ["backup standby without replica", repository({ backupStandby: true, pgHosts: [{ host: "pg1", pgPath: "/data" }] }), "backupStandby (backup-standby)"],
    ["tls ca file relative", repository({ tls: { ...TLS, caFile: "ca.crt" } }), "tls.caFile (tls-server-ca-file)"],
    ["tls cert with space", database({ tls: { ...TLS, certFile: "/etc/my cert.crt" } }), "tls.certFile (tls-server-cert-file)"],
    ["tls key missing", database({ tls: { caFile: TLS.caFile, certFile: TLS.certFile } as never }), "tls.keyFile (tls-server-key-file): got nothing"],
    ["client cert relative", database({ tls: { ...TLS, clientCertFile: "client.crt" } }), "tls.clientCertFile (repo1-host-cert-file)"],
    ["client key relative", repository({ tls: { ...TLS, clientKeyFile: "client.key" } }), "tls.clientKeyFile (pgN-host-key-file)"],
    ["tls server port 0", database({ tlsServer: { port: 0, authClients: ["backup"] } }), "tlsServer.port (tls-server-port)"],
    ["tls server address bogus", database({ tlsServer: { address: "a b", authClients: ["backup"] } }), "tlsServer.address (tls-server-address)"],
    ["no authorised clients", database({ tlsServer: { authClients: [] } }), "tlsServer.authClients (tls-server-auth): got []"],
    ["client CN with '='", database({ tlsServer: { authClients: ["a=b"] } }), "tlsServer.authClients[0] (tls-server-auth): got \"a=b\""],
    ["client CN with ','", database({ tlsServer: { authClients: ["ok", "a,b"] } }), "tlsServer.authClients[1] (tls-server-auth)"],
    ["duplicate client CN", database({ tlsServer: { authClients: ["a", "a"] } }), "tlsServer.authClients[1] (tls-server-auth)"],
    ["log level unknown", database({ logLevel: { console: "verbose" as never } }), "logLevel.console (log-level-console): got \"verbose\""],
    ["file log level unknown", repository({ logLevel: { file: "all" as never } }), "logLevel.file (log-level-file)"],
    ["log path relative", repository({ logPath: "log" }), "logPath (log-path)"],
    ["repo host with slash", database({ repoHost: "backup/1" }), "repoHost (repo1-host): got \"backup/1\""],
    ["repo host empty", database({ repoHost: "" }), "repoHost (repo1-host)"],
    ["repo host port 65536", database({ repoHostPort: 65536 }), "repoHostPort (repo1-host-port)"],
    ["pg path relative (database)", database({ pgPath: "pgdata" }), "pgPath (pg1-path)"],
    ["pg port fractional (database)", database({ pgPort: 5432.5 }), "pgPort (pg1-port)"],
    ["socket path relative", database({ pgSocketPath: "run" }), "pgSocketPath (pg1-socket-path)"],
    ["spool path relative", database({ spoolPath: "spool" }), "spoolPath (spool-path)"],
    ["spool path without async", database({ archiveAsync: false, spoolPath: "/var/spool/pgbackrest" }), "spoolPath (spool-path)"],
    ["queue max below one WAL segment", database({ archivePushQueueMaxBytes: 1024 }), "archivePushQueueMaxBytes (archive-push-queue-max): got 1024"],
    ["queue max above 4PiB", database({ archivePushQueueMaxBytes: 4 * 1024 ** 5 + 1 }), "archivePushQueueMaxBytes (archive-push-queue-max)"],
    ["archiveAsync not boolean", database({ archiveAsync: "yes" as never }), "archiveAsync (archive-async)"],
    ["bundle not boolean", repository({ bundle: 1 as never }), "bundle (repo1-bundle)"],
    ["unknown kind", { ...database(), kind: "standby" }, "kind: got \"standby\""],
  ];

  it.each(cases)("%s", (_name, input, expected) => {
    const problems = problemsOf(input);
    expect(problems.length, "expected a PgbackrestConfError").toBeGreaterThan(0);
    expect(problems.some((p) => p.startsWith(expected)), problems.join("\n")).toBe(true);
  });

  it("reports every problem at once, in one error", () => {
    const error = (() => {
      try {
        renderPgbackrestConf(repository({ stanza: "global", retention: { full: 0 }, processMax: 0, compression: { type: "zst", level: 99 } }));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(PgbackrestConfError);
    const problems = (error as PgbackrestConfError).problems;
    expect(problems).toHaveLength(4);
    expect((error as Error).message).toContain("pgbackrest.conf: 4 problems");
  });
});

// ---- Property-based: random valid input renders only real options in range; random mistakes are named. ----
const segment = fc.stringMatching(/^[a-z0-9_][a-z0-9_.-]{0,7}$/);
const absPath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => `/${parts.join("/")}`);
const dnsHost = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?){0,2}$/);
const host = fc.oneof(dnsHost, fc.ipV4());
const stanza = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_-]{0,20}$/).filter((s) => s !== "global");
const port = fc.integer({ min: 1, max: 65535 });
const cn = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,20}$/);
const logLevel = fc.constantFrom("off", "error", "warn", "info", "detail", "debug", "trace" as const);
const compression = fc.oneof(
  fc.constant({ type: "none" as const }),
  fc.constantFrom("zst", "lz4", "gz", "bz2" as const).chain((type) => {
    const [lo, hi] = COMPRESS_LEVEL[type] as [number, number];
    return fc.record({ type: fc.constant(type), level: fc.integer({ min: lo, max: hi }) }, { requiredKeys: ["type"] });
  }),
);
const tls = fc.record(
  { caFile: absPath, certFile: absPath, keyFile: absPath, clientCertFile: absPath, clientKeyFile: absPath },
  { requiredKeys: ["caFile", "certFile", "keyFile"] },
);
const tlsServer = fc.record(
  { address: fc.oneof(fc.constant("*"), fc.ipV4(), dnsHost), port, authClients: fc.uniqueArray(cn, { minLength: 1, maxLength: 4 }) },
  { requiredKeys: ["authClients"] },
);
const logLevels = fc.record({ console: logLevel, file: logLevel }, { requiredKeys: [] });
const retentionCount = fc.integer({ min: 1, max: 9_999_999 });

const validRepository: fc.Arbitrary<PgbackrestRepositoryConfInput> = fc
  .record({
    stanza,
    repoPath: fc.option(absPath, { nil: undefined }),
    retention: fc.oneof(
      fc.record({ full: retentionCount, diff: fc.option(retentionCount, { nil: undefined }) }),
      fc.record({ full: retentionCount, archive: retentionCount, archiveType: fc.option(fc.constantFrom("full", "diff", "incr" as const), { nil: undefined }) }),
    ),
    compression,
    processMax: fc.integer({ min: 1, max: 999 }),
    bundleBlock: fc.constantFrom([true, true], [true, false], [false, false], [undefined, undefined], [undefined, false]),
    startFast: fc.option(fc.boolean(), { nil: undefined }),
    pgHosts: fc.uniqueArray(
      fc.record({ host, pgPath: absPath, port: fc.option(port, { nil: undefined }), tlsPort: fc.option(port, { nil: undefined }) }),
      { minLength: 1, maxLength: 5, selector: (h) => `${h.host}:${h.tlsPort ?? 8432}` },
    ),
    standby: fc.boolean(),
    tls,
    tlsServer,
    logLevel: fc.option(logLevels, { nil: undefined }),
    logPath: fc.option(absPath, { nil: undefined }),
  })
  .map(({ bundleBlock, standby, ...r }) => ({
    kind: "repository" as const,
    ...r,
    bundle: bundleBlock[0],
    blockIncremental: bundleBlock[1],
    backupStandby: standby && r.pgHosts.length > 1,
  }));

const validDatabase: fc.Arbitrary<PgbackrestDatabaseConfInput> = fc
  .record({
    stanza,
    pgPath: fc.option(absPath, { nil: undefined }),
    pgPort: fc.option(port, { nil: undefined }),
    pgSocketPath: fc.option(absPath, { nil: undefined }),
    repoHost: host,
    repoHostPort: fc.option(port, { nil: undefined }),
    archiveAsync: fc.option(fc.boolean(), { nil: undefined }),
    spoolPath: fc.option(absPath, { nil: undefined }),
    archivePushQueueMaxBytes: fc.option(fc.integer({ min: 16 * 1024 ** 2, max: 4 * 1024 ** 5 }), { nil: undefined }),
    processMax: fc.integer({ min: 1, max: 999 }),
    compression,
    tls,
    tlsServer,
    logLevel: fc.option(logLevels, { nil: undefined }),
    logPath: fc.option(absPath, { nil: undefined }),
  })
  .map((d) => ({ kind: "database" as const, ...d, spoolPath: d.archiveAsync === false ? undefined : d.spoolPath }));

describe("renderPgbackrestConf: properties", () => {
  it("any valid repository input renders only known options with values in their documented ranges", () => {
    fc.assert(
      fc.property(validRepository, (input) => {
        const text = renderPgbackrestConf(input);
        assertKnownOptions(text, input.stanza);
        const ini = parseIni(text);
        const stanzaOpts = options(ini, input.stanza);
        expect(stanzaOpts.get(`pg${input.pgHosts.length}-host`)).toEqual([input.pgHosts.at(-1)?.host]);
        expect(stanzaOpts.get(`pg${input.pgHosts.length + 1}-host`)).toBeUndefined();
        expect(options(ini, "global").get("tls-server-auth")).toEqual(input.tlsServer.authClients.map((c) => `${c}=${input.stanza}`));
      }),
      { numRuns: 300 },
    );
  });

  it("any valid PostgreSQL-host input renders only known options with values in their documented ranges", () => {
    fc.assert(
      fc.property(validDatabase, (input) => {
        const text = renderPgbackrestConf(input);
        assertKnownOptions(text, input.stanza);
        const ini = parseIni(text);
        expect(get(ini, "global", "repo1-host-type")).toBe("tls");
        expect(get(ini, "global", "spool-path") !== undefined).toBe(input.archiveAsync !== false);
        // restore_command never goes through the async queue (pgbackrest#2423)
        expect(get(ini, "global:archive-get", "archive-async") ?? get(ini, "global", "archive-async")).toBe("n");
      }),
      { numRuns: 300 },
    );
  });

  // One mistake at a time: [input key, option it must be reported under, how to break a valid input].
  type Breaker<T> = [string, (draft: T) => fc.Arbitrary<T>];
  const notInt = fc.oneof(fc.double({ noInteger: true }), fc.constant(Number.NaN), fc.constant(Infinity), fc.string().map((s) => s as unknown as number));
  const badPath = fc.oneof(
    fc.stringMatching(/^[a-z][a-z/]{0,8}$/),
    absPath.map((p) => `${p}/`),
    absPath.map((p) => `${p}//x`),
    absPath.map((p) => `${p} x`),
    absPath.map((p) => `${p}\nrepo1-path=/tmp`),
  );
  const badHost = fc.oneof(fc.constant(""), dnsHost.map((h) => `${h} x`), dnsHost.map((h) => `${h}/x`), dnsHost.map((h) => `${h}\npg1-host=evil`), fc.constant("-bad"));
  const badCount = (lo: number, hi: number) => fc.oneof(fc.integer({ min: -1000, max: lo - 1 }), fc.integer({ min: hi + 1, max: hi + 1_000_000 }), notInt);
  const badStanza = fc.oneof(
    fc.constant("global"),
    fc.constant(""),
    fc.stringMatching(/^[A-Za-z0-9]{1,5}[ :=[\]#/.][A-Za-z0-9]{0,5}$/),
    fc.stringMatching(/^[_-][a-z]{1,5}$/),
    fc.stringMatching(/^[a-z]{65,70}$/),
  );
  const badCompressionLevel = fc.constantFrom("zst", "lz4", "gz", "bz2" as const).chain((type) => {
    const [lo, hi] = COMPRESS_LEVEL[type] as [number, number];
    return fc.oneof(fc.integer({ min: -100, max: lo - 1 }), fc.integer({ min: hi + 1, max: 100 })).map((level) => ({ type, level }));
  });
  const badCn = fc.oneof(cn.map((c) => `${c}=x`), cn.map((c) => `${c},x`), cn.map((c) => `${c} x`), fc.constant(""));

  const repositoryBreakers: Breaker<PgbackrestRepositoryConfInput>[] = [
    ["stanza (stanza)", (d) => badStanza.map((stanza) => ({ ...d, stanza }))],
    ["repoPath (repo1-path)", (d) => badPath.map((repoPath) => ({ ...d, repoPath }))],
    ["retention.full (repo1-retention-full)", (d) => badCount(1, 9_999_999).map((full) => ({ ...d, retention: { ...d.retention, full } }))],
    ["retention.diff (repo1-retention-diff)", (d) => badCount(1, 9_999_999).map((diff) => ({ ...d, retention: { ...d.retention, diff } }))],
    ["retention.archive (repo1-retention-archive)", (d) => badCount(1, 9_999_999).map((archive) => ({ ...d, retention: { ...d.retention, archive } }))],
    ["compression.type (compress-type)", (d) => fc.constantFrom("xz", "zstd", "gzip", "", "ZST").map((type) => ({ ...d, compression: { type: type as never } }))],
    ["compression.level (compress-level)", (d) => badCompressionLevel.map((compression) => ({ ...d, compression }))],
    ["processMax (process-max)", (d) => badCount(1, 999).map((processMax) => ({ ...d, processMax }))],
    ["blockIncremental (repo1-block)", (d) => fc.constantFrom(true, undefined).map((blockIncremental) => ({ ...d, bundle: false, blockIncremental }))],
    ["pgHosts[0].host (pg1-host)", (d) => badHost.map((h) => ({ ...d, pgHosts: [{ host: h, pgPath: "/data" }, ...d.pgHosts.slice(1)] }))],
    ["pgHosts[0].pgPath (pg1-path)", (d) => badPath.map((pgPath) => ({ ...d, pgHosts: [{ ...(d.pgHosts[0] as { host: string; pgPath: string }), pgPath }, ...d.pgHosts.slice(1)] }))],
    ["pgHosts[0].port (pg1-port)", (d) => badCount(1, 65535).map((p) => ({ ...d, pgHosts: [{ ...(d.pgHosts[0] as { host: string; pgPath: string }), port: p }, ...d.pgHosts.slice(1)] }))],
    ["pgHosts (pg1-host)", (d) => fc.constant({ ...d, pgHosts: [] })],
    ["tls.caFile (tls-server-ca-file)", (d) => badPath.map((caFile) => ({ ...d, tls: { ...d.tls, caFile } }))],
    ["tls.keyFile (tls-server-key-file)", (d) => badPath.map((keyFile) => ({ ...d, tls: { ...d.tls, keyFile } }))],
    ["tlsServer.port (tls-server-port)", (d) => badCount(1, 65535).map((p) => ({ ...d, tlsServer: { ...d.tlsServer, port: p } }))],
    ["tlsServer.authClients[0] (tls-server-auth)", (d) => badCn.map((c) => ({ ...d, tlsServer: { ...d.tlsServer, authClients: [c] } }))],
    ["logLevel.console (log-level-console)", (d) => fc.constantFrom("verbose", "notice", "", "INFO").map((c) => ({ ...d, logLevel: { console: c as never } }))],
    ["logPath (log-path)", (d) => badPath.map((logPath) => ({ ...d, logPath }))],
  ];
  const databaseBreakers: Breaker<PgbackrestDatabaseConfInput>[] = [
    ["stanza (stanza)", (d) => badStanza.map((stanza) => ({ ...d, stanza }))],
    ["pgPath (pg1-path)", (d) => badPath.map((pgPath) => ({ ...d, pgPath }))],
    ["pgPort (pg1-port)", (d) => badCount(1, 65535).map((pgPort) => ({ ...d, pgPort }))],
    ["repoHost (repo1-host)", (d) => badHost.map((repoHost) => ({ ...d, repoHost }))],
    ["repoHostPort (repo1-host-port)", (d) => badCount(1, 65535).map((repoHostPort) => ({ ...d, repoHostPort }))],
    ["spoolPath (spool-path)", (d) => badPath.map((spoolPath) => ({ ...d, archiveAsync: true, spoolPath }))],
    ["archivePushQueueMaxBytes (archive-push-queue-max)", (d) => badCount(16 * 1024 ** 2, 4 * 1024 ** 5).map((q) => ({ ...d, archivePushQueueMaxBytes: q }))],
    ["processMax (process-max)", (d) => badCount(1, 999).map((processMax) => ({ ...d, processMax }))],
    ["compression.level (compress-level)", (d) => badCompressionLevel.map((compression) => ({ ...d, compression }))],
    ["tls.certFile (tls-server-cert-file)", (d) => badPath.map((certFile) => ({ ...d, tls: { ...d.tls, certFile } }))],
    ["tlsServer.authClients (tls-server-auth)", (d) => fc.constant({ ...d, tlsServer: { ...d.tlsServer, authClients: [] } })],
    ["tlsServer.address (tls-server-address)", (d) => badHost.filter((h) => h !== "").map((address) => ({ ...d, tlsServer: { ...d.tlsServer, address } }))],
  ];

  function breaking<T>(valid: fc.Arbitrary<T>, breakers: Breaker<T>[]): fc.Arbitrary<[string, T]> {
    return fc
      .tuple(valid, fc.integer({ min: 0, max: breakers.length - 1 }))
      .chain(([draft, i]) => {
        const [key, brk] = breakers[i] as Breaker<T>;
        return brk(draft).map((bad): [string, T] => [key, bad]);
      });
  }

  it("any repository input with a mistake is refused with a problem naming the key and the option", () => {
    fc.assert(
      fc.property(breaking(validRepository, repositoryBreakers), ([key, input]) => {
        const problems = problemsOf(input);
        expect(problems.some((p) => p.startsWith(key)), `${key} not in:\n${problems.join("\n")}`).toBe(true);
        expect(problems.every((p) => /: got .*; expected /s.test(p))).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it("any PostgreSQL-host input with a mistake is refused with a problem naming the key and the option", () => {
    fc.assert(
      fc.property(breaking(validDatabase, databaseBreakers), ([key, input]) => {
        const problems = problemsOf(input);
        expect(problems.some((p) => p.startsWith(key)), `${key} not in:\n${problems.join("\n")}`).toBe(true);
      }),
      { numRuns: 400 },
    );
  });
});

describe("newestBackupAgeExceeds", () => {
  const now = 1_800_000_000;
  it("is false while the newest backup is younger than the limit, and exactly at it", () => {
    expect(newestBackupAgeExceeds(26 * 3600, now - 3600, now)).toBe(false);
    expect(newestBackupAgeExceeds(26 * 3600, now - 26 * 3600, now)).toBe(false);
  });
  it("is true past the limit and when there is no backup at all", () => {
    expect(newestBackupAgeExceeds(26 * 3600, now - 26 * 3600 - 1, now)).toBe(true);
    expect(newestBackupAgeExceeds(60, undefined, now)).toBe(true);
  });
  it("refuses nonsense instead of answering", () => {
    expect(() => newestBackupAgeExceeds(-1, now, now)).toThrow(RangeError);
    expect(() => newestBackupAgeExceeds(Number.NaN, now, now)).toThrow(/maxAgeSeconds/);
    expect(() => newestBackupAgeExceeds(60, Number.POSITIVE_INFINITY, now)).toThrow(/backupStopEpoch/);
    expect(() => newestBackupAgeExceeds(60, now, Number.NaN)).toThrow(/nowEpoch/);
  });
  it("agrees with age > limit for any times", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 ** 7 }), fc.integer({ min: 0, max: 2 * 10 ** 9 }), fc.integer({ min: -(10 ** 7), max: 10 ** 8 }), (limit, stop, age) => {
        expect(newestBackupAgeExceeds(limit, stop, stop + age)).toBe(age > limit);
      }),
    );
  });
});
