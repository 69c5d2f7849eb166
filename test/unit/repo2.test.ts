// repo2 (ADR 0013): the schema's rules, the pgbackrest.conf lines on both kinds of host, the secret part kept
// out of pgbackrest.conf, the plan's stand-in SFTP node, schedules and post-up steps, and the SSH keys.
import { createHash } from "node:crypto";
import sshpk from "sshpk";
import { describe, expect, it } from "vitest";
import { ConfigError, validateConfig } from "../../components/config/index.ts";
import { PgbackrestConfError, type PgbackrestDatabaseConfInput, generateSftpKeys, parseSftpKeys, renderPgbackrestCipherConf, renderPgbackrestConf, sftpHostKeyFingerprint } from "../../components/pgbackrest/index.ts";
import { backupCrontab, planHomelab, postUpSteps, redactedSecrets } from "../../components/plan.ts";

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError || e instanceof PgbackrestConfError) return e.problems;
    throw e;
  }
  throw new Error("expected a ConfigError or PgbackrestConfError");
}

const TLS = { caFile: "/etc/ssl/homelab/ca.crt", certFile: "/etc/ssl/homelab/node.crt", keyFile: "/etc/ssl/homelab/node.key" };
const FP = "a".repeat(64);
const sftpRepo = { host: "nas.lan", user: "pgbackrest", path: "/volume1/pgbackrest", privateKeyFile: "/etc/ssl/homelab/repo2-sftp.key", hostKeyFingerprint: FP, cipherPassFile: "/etc/pgbackrest/conf.d/repo2-cipher.conf", retention: { full: 3 } };
const repository = (repo2: unknown) =>
  renderPgbackrestConf({
    kind: "repository",
    stanza: "main",
    retention: { full: 2 },
    compression: { type: "zst" },
    processMax: 2,
    pgHosts: [{ host: "pg-1", pgPath: "/var/lib/postgresql/data" }],
    tls: TLS,
    tlsServer: { authClients: ["pg-1"] },
    repo2: repo2 as typeof sftpRepo,
  });

describe("repo2 in the schema", () => {
  it("is off by default; { type: sftp } alone means the stack's own stand-in, with defaults", () => {
    expect(validateConfig("t", {}).pgbackrest.repo2).toBeUndefined();
    expect(validateConfig("t", { pgbackrest: { repo2: { type: "sftp" } } }).pgbackrest.repo2).toEqual({
      type: "sftp",
      sftp: { port: 22, user: "pgbackrest", path: "/srv/pgbackrest" },
      retention: { full: 2 },
      node: { memory: 64 * 1024 ** 2, cpus: 1, storage: "hdd" },
    });
    expect(validateConfig("t", {}).objectives.siteLoss).toEqual({ rpo: 90, rto: 600 });
  });

  it("names the key, the value and what is accepted for every mistake, all at once", () => {
    const problems = problemsOf(() => validateConfig("t", { pgbackrest: { repo2: { type: "s3", sftp: { path: "relative/dir", port: 0, user: "Bad User" }, retention: { full: 0 } } } }));
    expect(problems.join("\n")).toMatch(/pgbackrest\.repo2\.type: got "s3"; expected one of "sftp"/);
    expect(problems.join("\n")).toMatch(/pgbackrest\.repo2\.sftp\.path.*"relative\/dir".*absolute path/);
    expect(problems.join("\n")).toMatch(/pgbackrest\.repo2\.sftp\.port/);
    expect(problems.join("\n")).toMatch(/pgbackrest\.repo2\.sftp\.user.*POSIX user name/);
    expect(problems.join("\n")).toMatch(/pgbackrest\.repo2\.retention\.full/);
  });

  it("a NAS must have its host key pinned; the stand-in's fingerprint is never configured", () => {
    expect(problemsOf(() => validateConfig("t", { pgbackrest: { repo2: { type: "sftp", sftp: { host: "nas.lan" } } } })).join("\n")).toMatch(
      /pgbackrest\.repo2\.sftp\.hostKeyFingerprint.*repo2 on nas\.lan needs its host key pinned.*ssh-keyscan -t ed25519 nas\.lan/,
    );
    expect(problemsOf(() => validateConfig("t", { pgbackrest: { repo2: { type: "sftp", sftp: { hostKeyFingerprint: FP } } } })).join("\n")).toMatch(/hostKeyFingerprint.*only with pgbackrest\.repo2\.sftp\.host/);
    expect(problemsOf(() => validateConfig("t", { pgbackrest: { repo2: { type: "sftp", sftp: { host: "nas.lan", hostKeyFingerprint: "SHA256:abc" } } } })).join("\n")).toMatch(/hostKeyFingerprint.*"SHA256:abc".*64 lower-case hex/);
    expect(validateConfig("t", { pgbackrest: { repo2: { type: "sftp", sftp: { host: "nas.lan", hostKeyFingerprint: FP } } } }).pgbackrest.repo2?.sftp.host).toBe("nas.lan");
  });
});

describe("repo2 in pgbackrest.conf", () => {
  it("repository host: SFTP with the host key pinned by fingerprint, aes-256-cbc, retention; the passphrase is not in it", () => {
    const conf = repository(sftpRepo);
    const lines = conf.split("\n");
    for (const line of [
      "repo2-type=sftp",
      "repo2-path=/volume1/pgbackrest",
      "repo2-sftp-host=nas.lan",
      "repo2-sftp-host-port=22",
      "repo2-sftp-host-user=pgbackrest",
      "repo2-sftp-private-key-file=/etc/ssl/homelab/repo2-sftp.key",
      "repo2-sftp-host-key-check-type=fingerprint",
      "repo2-sftp-host-key-hash-type=sha256",
      `repo2-sftp-host-fingerprint=${FP}`,
      "repo2-cipher-type=aes-256-cbc",
      "repo2-retention-full=3",
      "repo2-bundle=y",
      "repo2-block=y",
    ]) expect(lines).toContain(line);
    expect(conf).not.toMatch(/^repo2-cipher-pass=/m);
    expect(conf).not.toMatch(/check-type=none/);
    // The global section: repo1 keeps its own options.
    expect(lines).toContain("repo1-path=/var/lib/pgbackrest");
    expect(repository(undefined)).not.toMatch(/repo2/);
  });

  it("refuses a bad repo2, naming each input key, the pgBackRest option and what is accepted", () => {
    const problems = problemsOf(() => repository({ ...sftpRepo, host: "bad host", hostKeyFingerprint: "none", path: "rel", retention: { full: 0 } }));
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^repo2\.host \(repo2-sftp-host\): got "bad host"/),
        expect.stringMatching(/^repo2\.hostKeyFingerprint \(repo2-sftp-host-fingerprint\): got "none"; expected 64 lower-case hex digits.*never check-type none/),
        expect.stringMatching(/^repo2\.path \(repo2-path\): got "rel"/),
        expect.stringMatching(/^repo2\.retention\.full \(repo2-retention-full\): got 0/),
      ]),
    );
  });

  it("PostgreSQL hosts reach repo2 through the repository host's TLS server, so archive-push sends WAL to both", () => {
    const base: PgbackrestDatabaseConfInput = { kind: "database", stanza: "main", repoHost: "backup", processMax: 2, compression: { type: "zst" }, tls: TLS, tlsServer: { authClients: ["backup"] } };
    const conf = renderPgbackrestConf({ ...base, repo2ViaRepoHost: true, repo2CipherPassFile: "/etc/pgbackrest/conf.d/repo2-cipher.conf" });
    const lines = conf.split("\n");
    for (const line of ["repo1-host=backup", "repo2-host=backup", "repo2-host-type=tls", "repo2-host-port=8432", "repo2-host-ca-file=/etc/ssl/homelab/ca.crt", "repo2-host-cert-file=/etc/ssl/homelab/node.crt", "repo2-host-key-file=/etc/ssl/homelab/node.key", "repo2-cipher-type=aes-256-cbc", "archive-async=y"]) {
      expect(lines).toContain(line);
    }
    // The SFTP login stays on the repository host; the passphrase is in conf.d, never here.
    expect(conf).not.toMatch(/sftp|^repo2-cipher-pass=/m);
    expect(problemsOf(() => renderPgbackrestConf({ ...base, repo2ViaRepoHost: true }))).toEqual([expect.stringMatching(/^repo2CipherPassFile \(repo2-cipher-pass\): got nothing; expected the conf\.d file/)]);
  });

  it("the cipher passphrase goes in its own conf.d file, and only a one-line passphrase of 16+ characters", () => {
    expect(renderPgbackrestCipherConf("x".repeat(43))).toBe(`[global]\nrepo2-cipher-pass=${"x".repeat(43)}\n`);
    for (const bad of ["short", `${"x".repeat(20)}\nrepo1-path=/tmp`, `${"x".repeat(20)} y`]) {
      expect(problemsOf(() => renderPgbackrestCipherConf(bad))[0]).toMatch(/repo2-cipher-pass.*at least 16 characters without whitespace/);
    }
  });
});

describe("repo2 in the plan", () => {
  const spec = validateConfig("t", { pgbackrest: { repo2: { type: "sftp" } } });
  const plan = planHomelab(spec, redactedSecrets());
  const node = (name: string) => plan.nodes.find((n) => n.name === name);

  it("the stand-in SFTP node: its image, retained volume at the repo2 path, secret host key; the repository host depends on it", () => {
    const sftp = node("sftp");
    expect(sftp).toMatchObject({ role: "repo2-sftp", hostname: "homelab-t-sftp", ipv4Address: "172.28.0.25", ports: [], env: { HOMELAB_SFTP_PATH: "/srv/pgbackrest" } });
    expect(sftp?.image.name).toMatch(/\/sftp:1$/);
    expect(sftp?.volumes).toEqual([{ name: "homelab-t-sftp-repo2", mountPath: "/srv/pgbackrest", retainOnDestroy: true }]);
    expect(sftp?.files.map((f) => [f.path, f.mode.toString(8), f.secret])).toEqual([
      ["/etc/homelab/ssh/host_key", "600", true],
      ["/etc/homelab/ssh/authorized_keys", "644", false],
    ]);
    expect(node("backup")?.dependsOn).toEqual(["sftp"]);
    for (const pg of ["pg-1", "pg-2"]) {
      expect(node(pg)?.files.filter((f) => f.path.startsWith("/etc/homelab/repo2/")).map((f) => [f.path, f.secret])).toEqual([["/etc/homelab/repo2/cipher.conf", true]]);
    }
    expect(planHomelab(validateConfig("t", {}), redactedSecrets()).nodes.flatMap((n) => n.files).filter((f) => f.path.includes("repo2"))).toEqual([]);
    expect(node("backup")?.files.filter((f) => f.path.startsWith("/etc/homelab/repo2/")).map((f) => [f.path, f.secret])).toEqual([
      ["/etc/homelab/repo2/sftp.key", true],
      ["/etc/homelab/repo2/cipher.conf", true],
    ]);
    expect(plan.facts.pgbackrest.repo2).toEqual({ type: "sftp", host: "homelab-t-sftp", path: "/srv/pgbackrest", node: "sftp" });
    expect(planHomelab(validateConfig("t", { pgbackrest: { repo2: { type: "sftp" }, purgeBackupsOnDestroy: true } }), redactedSecrets()).nodes.find((n) => n.name === "sftp")?.volumes[0]?.retainOnDestroy).toBe(false);
  });

  it("a NAS: no stand-in node, its host and fingerprint in the repository host's conf", () => {
    const nas = planHomelab(validateConfig("t", { pgbackrest: { repo2: { type: "sftp", sftp: { host: "nas.lan", port: 2222, hostKeyFingerprint: FP } } } }), redactedSecrets());
    expect(nas.nodes.map((n) => n.name)).not.toContain("sftp");
    const conf = nas.nodes.find((n) => n.name === "backup")?.files.find((f) => f.path === "/etc/homelab/pgbackrest.conf")?.content ?? "";
    expect(conf).toMatch(/^repo2-sftp-host=nas\.lan$/m);
    expect(conf).toMatch(/^repo2-sftp-host-port=2222$/m);
    expect(conf).toMatch(new RegExp(`^repo2-sftp-host-fingerprint=${FP}$`, "m"));
    expect(nas.nodes.find((n) => n.name === "backup")?.dependsOn).toEqual([]);
  });

  it("schedules and the first backup go to both repositories, one after the other", () => {
    expect(backupCrontab(spec)).toContain("0 3 * * 0 pgbackrest --stanza=main --repo=1 --type=full backup; pgbackrest --stanza=main --repo=2 --type=full backup\n");
    expect(backupCrontab(validateConfig("t", {}))).toContain("0 3 * * 0 pgbackrest --stanza=main --type=full backup\n");
    expect(postUpSteps(plan, "main").map((s) => s.name)).toEqual(["stanza-create", "check", "full-backup", "repo2-full-backup"]);
    expect(postUpSteps(plan, "main").at(-1)?.command).toEqual(["pgbackrest", "--stanza=main", "--repo=2", "--type=full", "backup"]);
    expect(postUpSteps(planHomelab(validateConfig("t", {}), redactedSecrets()), "main").map((s) => s.name)).toEqual(["stanza-create", "check", "full-backup"]);
  });
});

describe("repo2's SSH keys", () => {
  const keys = generateSftpKeys("t");

  it("ed25519 pairs in OpenSSH's formats whose public halves match the private keys", () => {
    for (const [priv, pub] of [[keys.clientKey, keys.clientPublicKey], [keys.hostKey, keys.hostPublicKey]] as const) {
      expect(priv).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
      expect(pub).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/=]+ \S+@homelab-t\n$/);
      const words = (line: string) => line.trim().split(" ").slice(0, 2).join(" ");
      expect(words(sshpk.parsePrivateKey(priv, "openssh").toPublic().toString("ssh"))).toBe(words(pub));
    }
    expect(keys.clientKey).not.toBe(keys.hostKey);
  });

  it("the fingerprint is pgBackRest's: sha256 of the base64-decoded key blob, in hex", () => {
    const blob = Buffer.from(keys.hostPublicKey.split(" ")[1] as string, "base64");
    expect(sftpHostKeyFingerprint(keys.hostPublicKey)).toBe(createHash("sha256").update(blob).digest("hex"));
    expect(sftpHostKeyFingerprint(keys.hostPublicKey)).toMatch(/^[0-9a-f]{64}$/);
  });

  it("the secret's JSON is checked without echoing it", () => {
    expect(parseSftpKeys(JSON.stringify(keys), "fix")).toEqual(keys);
    expect(() => parseSftpKeys("{not json", "run init")).toThrow(/^repo2Ssh: is not JSON; run init$/);
    expect(() => parseSftpKeys(JSON.stringify({ ...keys, hostKey: "" }), "run init")).toThrow(/\(missing: hostKey\); run init$/);
  });
});

describe("pgbackrest info with repo2 unreadable", () => {
  it("names the repo and its error; raw control characters in pgBackRest's message do not break the JSON", async () => {
    const { parsePgbackrestInfo } = await import("../../drills/lib/archive.ts");
    // What pgBackRest 2.55 printed for repo2 with a wrong repo2-cipher-pass (the garbage quoted raw).
    const text = `[{"archive":[],"backup":[],"cipher":"aes-256-cbc","db":[],"name":"main","repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}},{"cipher":"aes-256-cbc","key":2,"status":{"code":99,"message":"[FormatError] unable to load info file '/srv/pgbackrest/backup/main/backup.info':\\nFormatError: key/value found outside of section at line 1: \u0001\u0007\u001fxé"}}],"status":{"code":99,"message":"other"}}]`;
    const state = parsePgbackrestInfo(text, "main");
    expect(state.statusCode).toBe(99);
    expect(state.backups).toEqual([]);
    expect(state.statusMessage).toMatch(/^other; repo2: \[FormatError\] unable to load info file '\/srv\/pgbackrest\/backup\/main\/backup\.info'/);
    expect(state.statusMessage).toBe("other; repo2: [FormatError] unable to load info file '/srv/pgbackrest/backup/main/backup.info':");
  });
});

describe("the early bootstrap check with repo2", () => {
  it("trusts repo1's backups; with repo1 empty or without the stanza, the entrypoint (which asks repo2 too) decides", async () => {
    const { holdingWithRepo2 } = await import("../../components/platform/bootstrap-preflight.ts");
    const backups = { kind: "backups", newest: "20261202-030000F", count: 1 } as const;
    expect(holdingWithRepo2(backups, true)).toEqual(backups);
    expect(holdingWithRepo2({ kind: "none" }, true)).toBeUndefined();
    expect(holdingWithRepo2({ kind: "empty", code: 2, message: "no valid backups" }, true)).toBeUndefined();
    expect(holdingWithRepo2({ kind: "none" }, false)).toEqual({ kind: "none" });
    expect(holdingWithRepo2(undefined, false)).toBeUndefined();
  });
});

describe("homelab init --rotate and repo2's passphrase", () => {
  it("rotates every secret but an existing repo2 passphrase; generates only what is missing otherwise", async () => {
    const { secretsToGenerate } = await import("../../cli/stack-commands.ts");
    const all = ["postgresSuperuserPassword", "postgresAppPassword", "postgresReplicationPassword", "postgresReadonlyPassword", "redisAppPassword", "redisReplicaPassword", "redisHealthPassword", "redisAdminPassword", "tls", "repo2CipherPass", "repo2Ssh", "postgresMonitorPassword", "redisMonitorPassword"] as const;
    const rotated = secretsToGenerate([...all], true);
    expect(rotated.kept).toEqual(["repo2CipherPass"]);
    expect(rotated.generate).toEqual(all.filter((k) => k !== "repo2CipherPass"));
    expect(secretsToGenerate(all.filter((k) => k !== "repo2CipherPass"), true)).toEqual({ generate: [...all], kept: [] });
    expect(secretsToGenerate(all.filter((k) => k !== "repo2Ssh" && k !== "repo2CipherPass"), false)).toEqual({ generate: ["repo2CipherPass", "repo2Ssh"], kept: [] });
    expect(secretsToGenerate([...all], false)).toEqual({ generate: [], kept: [] });
  });
});
