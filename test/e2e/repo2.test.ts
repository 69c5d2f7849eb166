// repo2 against a real tier (ADR 0013): the stack's own stand-in SFTP server (real sshd) as pgBackRest's
// second repository, encrypted. Proves: WAL and the first full backup reach repo2; `pgbackrest info
// --repo=2` lists it; repo2 is ciphertext: with compression off (so repo1 holds the data in the clear, the
// control) a canary row and PostgreSQL's WAL page magic are readable in repo1 and nowhere in repo2, whose
// info and WAL files carry OpenSSL's "Salted__" header; no secret is in any container's env, argv or log; a wrong
// host key fingerprint is refused; and with repo2 unreachable WAL still reaches repo1, then repo2 catches up.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgbackrestInfoOnNode } from "../../drills/lib/archive.ts";
import { controlFor } from "../../drills/lib/nodes.ts";
import { nodeByName } from "../../drills/lib/topology.ts";
import { docker } from "../../components/platform/docker-node.ts";
import { e2eSpec, ensureImages, leftovers, startTier, type Tier } from "./harness.ts";

const STACK = "e2e-repo2";
const SLOT = 3;
let tier: Tier;

const stanza = () => tier.spec.pgbackrest.stanza;
const info = (repo: number) => pgbackrestInfoOnNode(controlFor(tier.topology), nodeByName(tier.topology, "backup"), stanza(), { repo });
const repoPath = () => tier.spec.pgbackrest.repo2?.sftp.path as string;

/** First bytes (hex) of every regular file under `dir` in a container, by path. */
async function fileHeads(node: string, dir: string, bytes = 8): Promise<Map<string, string>> {
  const r = await tier.exec(node, ["sh", "-c", `find "$1" -type f -size +0 -exec sh -c 'for f; do printf "%s %s\\n" "$(head -c ${bytes} "$f" | od -An -tx1 | tr -d " \\n")" "$f"; done' sh {} +`, "sh", dir]);
  return new Map(r.stdout.trim().split("\n").filter(Boolean).map((l) => { const [head, ...p] = l.split(" "); return [p.join(" "), head as string]; }));
}

const SALTED = Buffer.from("Salted__").toString("hex");
// XLP_PAGE_MAGIC 0xD116 (PostgreSQL 17, src/include/access/xlog_internal.h), little-endian at offset 0 of every WAL page.
const WAL_PAGE_MAGIC = "16d1";
const CANARY = "homelab-repo2-plaintext-canary-7Qx";

/** Files under `dir` in a container that contain `text` (grep -a: binary files too). */
async function filesContaining(node: string, dir: string, text: string): Promise<string[]> {
  const r = await tier.exec(node, ["grep", "-rlaF", text, dir], { allowFailure: true });
  return r.stdout.split("\n").filter(Boolean);
}

describe("repo2: an encrypted second repository on SFTP", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(
      // compression none: what repo1 holds is readable, so the ciphertext checks on repo2 can fail.
      e2eSpec(STACK, { postgres: { archiveTimeout: "5s" }, pgbackrest: { compression: { type: "none" }, repo2: { type: "sftp" } }, redis: { enabled: false }, duckdb: { enabled: false } }, SLOT),
    );
  }, 900_000);

  afterAll(async () => {
    await tier?.teardown();
    expect(await leftovers(STACK)).toEqual([]);
  }, 120_000);

  it("the first full backup and the archive reach repo2; info --repo=2 lists the backup", async () => {
    const r2 = await info(2);
    expect(r2.statusCode, r2.statusMessage).toBe(0);
    expect(r2.backups.map((b) => b.type)).toEqual(["full"]);
    expect(r2.newestArchivedWal).not.toBeNull();
    // WAL written after the backup reaches both repositories: check forces a switch and waits for it in each.
    await tier.sql("pg-1", "CREATE TABLE IF NOT EXISTS repo2_probe AS SELECT g FROM generate_series(1, 1000) g", "app");
    const t0 = Date.now();
    const check = await tier.exec("backup", ["pgbackrest", `--stanza=${stanza()}`, "check"], { user: "postgres", allowFailure: true });
    expect(check.code, check.stderr + check.stdout).toBe(0);
    console.log(`[e2e] pgbackrest check (WAL switch archived to repo1 and repo2) in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    expect(check.stdout + check.stderr).toMatch(/repo2: stanza 'main' ok|check repo2/i);
    const [a1, a2] = [await info(1), await info(2)];
    expect(a2.newestArchivedWal).toBe(a1.newestArchivedWal);
  }, 300_000);

  it("repo2 is ciphertext: a canary row and WAL page headers readable in repo1 are nowhere in repo2", async () => {
    await tier.sql("pg-1", `CREATE TABLE canary AS SELECT '${CANARY}'::text AS t FROM generate_series(1, 100)`, "app");
    const check = await tier.exec("backup", ["pgbackrest", `--stanza=${stanza()}`, "check"], { user: "postgres", allowFailure: true });
    expect(check.code, check.stderr + check.stdout).toBe(0);
    for (const repo of [1, 2]) {
      const t0 = Date.now();
      const b = await tier.exec("backup", ["pgbackrest", `--stanza=${stanza()}`, `--repo=${repo}`, "--type=full", "backup"], { user: "postgres", allowFailure: true });
      expect(b.code, b.stderr + b.stdout).toBe(0);
      console.log(`[e2e] full backup to repo${repo} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    }
    // The control: repo1 (unencrypted, uncompressed) shows the canary in WAL and backup, and WAL page magic.
    const inRepo1 = await filesContaining("backup", "/var/lib/pgbackrest", CANARY);
    expect(inRepo1.some((f) => f.includes("/archive/"))).toBe(true);
    expect(inRepo1.some((f) => f.includes("/backup/"))).toBe(true);
    const heads1 = await fileHeads("backup", "/var/lib/pgbackrest");
    const wal1 = [...heads1].filter(([p]) => /\/[0-9A-F]{24}-[0-9a-f]{40}$/.test(p));
    expect(wal1.length).toBeGreaterThan(0);
    expect(wal1.every(([, h]) => h.startsWith(WAL_PAGE_MAGIC))).toBe(true);
    // repo2: none of it.
    expect(await filesContaining("sftp", repoPath(), CANARY)).toEqual([]);
    expect(await filesContaining("sftp", repoPath(), "[backrest]")).toEqual([]);
    const heads2 = await fileHeads("sftp", repoPath());
    const wal2 = [...heads2].filter(([p]) => /\/[0-9A-F]{24}-[0-9a-f]{40}$/.test(p));
    const info2 = [...heads2].filter(([p]) => /\/(backup|archive)\.info(\.copy)?$|\/backup\.manifest(\.copy)?$/.test(p));
    expect(wal2.length).toBeGreaterThan(0);
    expect(info2.length).toBeGreaterThanOrEqual(4);
    expect([...wal2, ...info2].filter(([, h]) => !h.startsWith(SALTED)), "WAL/info files without OpenSSL's Salted__ header").toEqual([]);
    expect([...heads2].filter(([, h]) => h.startsWith(WAL_PAGE_MAGIC)), "repo2 files starting with WAL page magic").toEqual([]);
    console.log(`[e2e] repo2: ${heads2.size} files, all ciphertext (${wal2.length} WAL, ${info2.length} info/manifest with Salted__ header); repo1 control: canary in ${inRepo1.length} files`);
  }, 300_000);

  it("no secret in any container's env, argv, config file or log", async () => {
    const secrets = [tier.secrets.repo2CipherPass, ...tier.secrets.repo2Ssh.clientKey.split("\n").slice(1, 3), ...tier.secrets.repo2Ssh.hostKey.split("\n").slice(1, 3)].filter((s) => s.length > 20);
    expect(secrets.length).toBeGreaterThanOrEqual(5);
    for (const node of tier.plan.nodes) {
      const inspect = (await docker(["inspect", node.hostname])).stdout;
      const logs = await docker(["logs", node.hostname]);
      for (const s of secrets) {
        expect(inspect.includes(s), `${node.name}: docker inspect shows a secret`).toBe(false);
        expect((logs.stdout + logs.stderr).includes(s), `${node.name}: docker logs show a secret`).toBe(false);
      }
    }
    const conf = await tier.exec("backup", ["cat", "/etc/pgbackrest/pgbackrest.conf"]);
    expect(conf.stdout).toMatch(/^repo2-sftp-host-key-check-type=fingerprint$/m);
    expect(conf.stdout).toMatch(/^repo2-cipher-type=aes-256-cbc$/m);
    expect(conf.stdout.includes(tier.secrets.repo2CipherPass)).toBe(false);
    const mode = await tier.exec("backup", ["stat", "-c", "%a %U:%G", "/etc/pgbackrest/conf.d/repo2-cipher.conf", "/etc/ssl/homelab/repo2-sftp.key"]);
    expect(mode.stdout.trim().split("\n")).toEqual(["640 root:postgres", "600 postgres:postgres"]);
    const pg = await tier.exec("pg-1", ["sh", "-c", "cat /etc/pgbackrest/pgbackrest.conf; ls /etc/pgbackrest/conf.d /etc/ssl/homelab"]);
    expect(pg.stdout).toMatch(/^repo2-host=homelab-e2e-repo2-backup$/m);
    expect(pg.stdout).toMatch(/^repo2-cipher-type=aes-256-cbc$/m);
    // The SFTP login key stays on the repository host; the passphrase is a conf.d file on each host.
    expect(pg.stdout).not.toMatch(/sftp|^repo2-cipher-pass=/m);
    expect(pg.stdout).toMatch(/^repo2-cipher\.conf$/m);
  }, 120_000);

  it("a host key that does not match the pinned fingerprint is refused", async () => {
    // repo-ls fails hard (info would print the error as a status and exit 0).
    const r = await tier.exec("backup", ["pgbackrest", "--repo=2", `--repo2-sftp-host-fingerprint=${"0".repeat(64)}`, "repo-ls"], { user: "postgres", allowFailure: true });
    expect(r.code).toBe(101);
    expect(r.stdout + r.stderr).toMatch(/configured fingerprint \(repo-sftp-host-fingerprint\) \[0{64}\] do not match/);
    const ok = await tier.exec("backup", ["pgbackrest", "--repo=2", "repo-ls"], { user: "postgres", allowFailure: true });
    expect(ok.code, ok.stderr).toBe(0);
  }, 60_000);

  it("repo2 unreachable: WAL keeps reaching repo1; once repo2 is back it gets the backlog", async () => {
    await docker(["stop", "-t", "2", `homelab-${STACK}-sftp`]);
    try {
      const before1 = (await info(1)).newestArchivedWal as string;
      await tier.sql("pg-1", "INSERT INTO repo2_probe SELECT g FROM generate_series(1, 1000) g; SELECT pg_switch_wal()", "app");
      const deadline = Date.now() + 60_000;
      let now1 = before1;
      while (Date.now() < deadline && now1 <= before1) {
        await new Promise((r) => setTimeout(r, 1000));
        now1 = (await info(1)).newestArchivedWal as string;
      }
      console.log(`[e2e] repo2 down: repo1 archive ${before1} -> ${now1}`);
      expect(now1 > before1, "WAL stopped reaching repo1 while repo2 was down").toBe(true);
      const archiver = await tier.sql("pg-1", "SELECT failed_count > 0, last_failed_wal IS NOT NULL FROM pg_stat_archiver");
      expect(archiver[0], "PostgreSQL is told archiving failed (it keeps the WAL and retries)").toEqual(["t", "t"]);
    } finally {
      await docker(["start", `homelab-${STACK}-sftp`]);
    }
    const t0 = Date.now();
    const check = await tier.exec("backup", ["pgbackrest", `--stanza=${stanza()}`, "--archive-timeout=120", "check"], { user: "postgres", allowFailure: true });
    expect(check.code, check.stderr + check.stdout).toBe(0);
    const [a1, a2] = [await info(1), await info(2)];
    console.log(`[e2e] repo2 back: caught up to ${a2.newestArchivedWal} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    expect(a2.newestArchivedWal).toBe(a1.newestArchivedWal);
  }, 300_000);
});
