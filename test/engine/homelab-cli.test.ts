// The one way in, as a user runs it: `homelab up` on a stack of its own (state, passphrase and pulumi
// workspace in a temp data dir, as on a machine that has none), the psql line it prints connects, a second
// `up` changes nothing, `status` names nodes, roles and the newest backup, `down` removes the tier but keeps
// the backup repository and the next `up` restores every row from it (bootstrapFrom: auto), and
// `down --purge-backups` removes that too. Real pulumi (the offline toolchain), real
// Docker. The stack file lives in stacks/ (where pulumi reads stack config) only while this file runs.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { LABEL_STACK, removeByLabel } from "../../components/platform/docker-node.ts";
import { REPO_ROOT, toolchainCacheRoot, toolchainStatus } from "../../tools/pulumi-env.ts";
import { leftovers } from "../e2e/harness.ts";

const STACK = "clitest";
const STACK_FILE = path.join(REPO_ROOT, "stacks", `Pulumi.${STACK}.yaml`);
const status = toolchainStatus();
let dataHome: string;
let env: NodeJS.ProcessEnv;

function homelab(...args: string[]): { code: number; out: string } {
  const r = spawnSync("node", [path.join(REPO_ROOT, "bin/homelab.mjs"), ...args], { cwd: REPO_ROOT, env, encoding: "utf8", timeout: 600_000 });
  const out = `${r.stdout}${r.stderr}`;
  console.log(`[engine] homelab ${args.join(" ")} (exit ${r.status}):\n${out.split("\n").filter((l) => l.startsWith("homelab") || /^\s+(PostgreSQL|Redis|DuckDB|pg-|backup|newest|last|drills)/.test(l) || /Resources:|unchanged|created/.test(l)).join("\n")}`);
  return { code: r.status ?? -1, out };
}

describe.runIf(status.ok)("homelab up / status / down on a fresh data dir (real pulumi, real Docker)", () => {
  beforeAll(async () => {
    await removeByLabel(`${LABEL_STACK}=${STACK}`, { purgeRetained: true });
    dataHome = mkdtempSync(path.join(tmpdir(), "homelab-cli-"));
    const keep = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PULUMI_")));
    // No backend, passphrase or workspace of the user's: homelab must make them. The toolchain cache is the
    // machine's (built once by the global setup).
    env = { ...keep, XDG_DATA_HOME: dataHome, PULUMI_HOME: path.join(dataHome, "pulumi-home"), HOMELAB_TOOLCHAIN_CACHE: toolchainCacheRoot() };
    writeFileSync(
      STACK_FILE,
      stringify({
        config: {
          "homelab-data:docker": { subnet: "172.37.0.0/24", basePort: 26232 },
          "homelab-data:postgres": { replicas: 1, allowedClientCidrs: ["172.37.0.0/24"], archiveTimeout: "30s", node: { memory: "320MiB" } },
          "homelab-data:pgbackrest": { node: { memory: "192MiB" } },
          "homelab-data:redis": { enabled: false },
          "homelab-data:duckdb": { enabled: false },
          "homelab-data:monitoring": { enabled: false },
        },
      }),
    );
  }, 120_000);

  afterAll(async () => {
    if (env) homelab("down", "--stack", STACK, "--purge-backups", "--yes");
    await removeByLabel(`${LABEL_STACK}=${STACK}`, { purgeRetained: true });
    rmSync(STACK_FILE, { force: true });
    if (dataHome) rmSync(dataHome, { recursive: true, force: true });
  }, 300_000);

  let upOut = "";
  it("up does every step with a progress line, and the psql line it prints connects", () => {
    const r = homelab("up", "--stack", STACK, "--yes");
    upOut = r.out;
    expect(r.code, r.out).toBe(0);
    for (const stepName of ["stack file", "system packages", "docker engine", "images", "pulumi toolchain", "state backend", "secrets passphrase", "stack", "secrets", "pulumi up"]) {
      expect(r.out).toMatch(new RegExp(`^homelab: ${stepName}: .* \\(\\d+\\.\\ds\\)$`, "m"));
    }
    expect(r.out).toContain(`homelab: state backend: file://${dataHome}/homelab-data/state (local file backend)`);
    expect(r.out).toMatch(/homelab: secrets passphrase: generated .*passphrase \(mode 0600/);
    const psql = /PGPASSFILE=\S+ psql -h 127\.0\.0\.1 -p 26232 -U app app/.exec(r.out)?.[0];
    expect(psql, r.out).toBeDefined();
    expect(execFileSync("sh", ["-c", `${psql} -Atc 'select 42'`], { encoding: "utf8" }).trim()).toBe("42");
  }, 600_000);

  it("a second up changes nothing (its time is printed)", () => {
    const r = homelab("up", "--stack", STACK);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^\s+\d+ unchanged$/m);
    expect(r.out).not.toMatch(/^\s+[+~-] \d+ (created|updated|deleted|replaced)/m);
    expect(r.out).toMatch(/homelab: stack clitest is up \(3 nodes\) in \d+\.\ds\./);
    // The passphrase was made once; the second run reuses it without saying "generated".
    expect(r.out).not.toMatch(/secrets passphrase: generated/);
    expect(upOut).toMatch(/secrets passphrase: generated/);
  }, 600_000);

  it("status names every node with its role, the newest backup, and that no drill ran yet", () => {
    const r = homelab("status", "--stack", STACK);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^\s+pg-1\s+primary\s+running\/healthy\s+127\.0\.0\.1:26232$/m);
    expect(r.out).toMatch(/^\s+pg-2\s+replica\s+running\/healthy\s+127\.0\.0\.1:26233$/m);
    expect(r.out).toMatch(/^newest backup: \d{8}-\d{6}F \(full\), \S+ old; 1 backup\(s\) in stanza main$/m);
    expect(r.out).toMatch(/^drills: none run yet/m);
  }, 120_000);

  it("down keeps the backup repository, and the next up brings back every row written before it (bootstrapFrom: auto)", async () => {
    const psql = /PGPASSFILE=\S+ psql -h 127\.0\.0\.1 -p 26232 -U app app/.exec(upOut)![0];
    const sql = (q: string) => execFileSync("sh", ["-c", `${psql} -v ON_ERROR_STOP=1 -Atc "$1"`, "sh", q], { encoding: "utf8" }).trim();
    // Written just before `down`: only the archive (the last WAL, pushed by the check on delete) holds them.
    sql("create table kept (id int primary key, note text not null); insert into kept select g, 'row ' || g from generate_series(1, 500) g");
    const down = homelab("down", "--stack", STACK);
    expect(down.code, down.out).toBe(0);
    expect(await leftovers(STACK)).toEqual(["volume homelab-clitest-backup-repo"]);
    const up = homelab("up", "--stack", STACK);
    expect(up.code, up.out).toBe(0);
    expect(sql("select count(*) || ':' || max(id) || ':' || min(note) from kept")).toBe("500:500:row 1");
    // A new timeline: the restored primary promoted itself after replaying the archive.
    expect(Number(sql("select timeline_id from pg_control_checkpoint()"))).toBeGreaterThan(1);
  }, 600_000);

  it("up with bootstrapFrom: initdb over the retained repository fails in seconds, naming the stanza, its newest backup and the ways out; nothing created", async () => {
    const down = homelab("down", "--stack", STACK);
    expect(down.code, down.out).toBe(0);
    const config = (parse(readFileSync(STACK_FILE, "utf8")) as { config: Record<string, Record<string, unknown>> }).config;
    const original = readFileSync(STACK_FILE, "utf8");
    writeFileSync(STACK_FILE, stringify({ ...parse(original), config: { ...config, "homelab-data:postgres": { ...config["homelab-data:postgres"], bootstrapFrom: "initdb" } } }));
    try {
      const t0 = Date.now();
      const up = homelab("up", "--stack", STACK);
      const seconds = (Date.now() - t0) / 1000;
      console.log(`[engine] refused up in ${seconds.toFixed(1)} s`);
      expect(up.code, up.out).not.toBe(0);
      expect(up.out).toMatch(/homelab-data:postgres\.bootstrapFrom: initdb, but the retained repository holds stanza 'main' with \d+ backups? \(newest \d{8}-\d{6}F\): a new cluster would never match its archive\. Either restore it \(bootstrapFrom: auto, the default, or backup\), or start empty after `npx homelab down --stack clitest --purge-backups --yes`/);
      expect(up.out).not.toMatch(/\n\s+at .*\.ts:\d+/);
      expect(await leftovers(STACK)).toEqual(["volume homelab-clitest-backup-repo"]);
    } finally {
      writeFileSync(STACK_FILE, original);
    }
  }, 600_000);

  it("down --purge-backups removes the backup repository too, and only with --yes", async () => {
    const refused = homelab("down", "--stack", STACK, "--purge-backups");
    expect(refused.code, refused.out).toBe(2);
    expect(refused.out).toMatch(/^homelab: down: --purge-backups deletes every backup and archived WAL of stack clitest and cannot be undone; add --yes to confirm$/m);
    const purge = homelab("down", "--stack", STACK, "--purge-backups", "--yes");
    expect(purge.code, purge.out).toBe(0);
    expect(await leftovers(STACK)).toEqual([]);
  }, 300_000);
});
