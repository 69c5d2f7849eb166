// `homelab drill` argument handling and `homelab report` rendering, through the real bin; and each
// drills/<name>.mts on its own, through the same commander definition.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { DRILLS, VARIANTS, drillOptions, drillScriptProgram, registerDrillCommands } from "../../cli/drill-commands.ts";
import { validateConfig } from "../../components/config/index.ts";
import { planHomelab } from "../../components/plan.ts";
import { redactedSecrets } from "../../components/secrets.ts";
import { topologyOf, type Topology } from "../../components/topology.ts";
import { makeReport, writeReport } from "../../drills/lib/report.ts";

// A drill given --stack prepares pulumi (backend, passphrase) under the data dir: a temp one here, so the
// tests never write into the user's own ~/.local/share/homelab-data.
const ISOLATED_ENV = { ...process.env, XDG_DATA_HOME: mkdtempSync(path.join(os.tmpdir(), "homelab-cli-drill-")) };

const ROOT = path.resolve(import.meta.dirname, "../..");
const homelab = (...args: string[]) => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin/homelab.mjs"), ...args], { cwd: ROOT, encoding: "utf8", env: ISOLATED_ENV });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

describe("homelab drill", () => {
  it("rejects an unknown drill naming the accepted ones", () => {
    const r = homelab("drill", "nosuch", "--topology", "/tmp/none.json");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^homelab: drill: got "nosuch"; expected one of redis, backup-restore, failover, switchover, long-transaction, vacuum-bloat, query-tuning, wraparound, redis-replication-lag, recreate, site-loss, all$/m);
  });

  it("needs a stack or a topology file", () => {
    const r = homelab("drill", "failover");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--stack <name> or --topology <file> is required/);
  });

  it("reports a missing topology file as a user mistake, not a crash", () => {
    const r = homelab("drill", "redis", "--topology", "/nonexistent/topology.json");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^homelab: .*topology\.json/m);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

const script = (name: string, ...args: string[]) => {
  const r = spawnSync(path.join(ROOT, "node_modules/.bin/tsx"), [path.join(ROOT, "drills", `${name}.mts`), ...args], { cwd: ROOT, encoding: "utf8", env: ISOLATED_ENV });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

describe("drills/<name>.mts on their own", () => {
  it.each([
    ["failover", ["--bogus"], /^error: unknown option '--bogus'$/],
    ["recreate", ["--stack"], /^error: option '--stack <name>' argument missing$/],
    ["failover", ["--variant", "pitr", "--stack", "s"], /^error: unknown option '--variant'$/],
    ["backup-restore", ["--variant", "nosuch", "--stack", "s"], /^error: option '--variant <variant>' argument 'nosuch' is invalid\. Allowed choices are pitr, latest, both\.$/],
    ["redis", ["--variant", "pitr", "--stack", "s"], /^error: option '--variant <variant>' argument 'pitr' is invalid\. Allowed choices are restart, replica-promotion\.$/],
    ["failover", [], /^failover drill: --stack <name> or --topology <file> is required$/],
    ["recreate", ["--topology", "/tmp/none.json"], /^recreate drill: --stack is required \(it destroys and re-creates the stack with pulumi\)$/],
    ["recreate", ["--stack", "local"], /^recreate drill: .*pass --yes to go ahead$/],
    ["site-loss", ["--topology", "/tmp/none.json"], /^site-loss drill: --stack is required \(it destroys and re-creates the stack with pulumi\)$/],
    ["site-loss", ["--stack", "local"], /^site-loss drill: drill site-loss destroys every PostgreSQL node and repo1 of stack local and rebuilds them from repo2; pass --yes to go ahead$/],
    ["redis", ["--topology", "/nonexistent/topology.json"], /^redis drill: cannot read topology file \/nonexistent\/topology\.json/],
  ])("%s %j: exit 2, one line naming the problem, no stack trace", (name, args, message) => {
    const r = script(name, ...args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
  });

  it("reaches the drill's runner (the script is imported back by the CLI's runner without a deadlock)", () => {
    // A valid topology whose nodes drills cannot drive yet: the runner refuses at once, before touching anything.
    const spec = validateConfig("drills", { postgres: { replicas: 1 } });
    const topology = JSON.parse(JSON.stringify(topologyOf(spec, planHomelab(spec, redactedSecrets()))));
    for (const n of topology.nodes) n.handle = { kind: "ssh", target: `root@${n.name}` };
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), "drill-script-")), "topology.json");
    writeFileSync(file, JSON.stringify(topology));
    const r = script("failover", "--topology", file);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim()).toMatch(/^failover drill: drills drive containers and VMs; node \S+ of the docker platform has an ssh handle \(plain SSH hosts are not built yet\)$/);
  });

  it("--help lists the drill's flags and exits 0", () => {
    const r = script("backup-restore", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: drills\/backup-restore\.mts \[options\]/);
    for (const flag of ["--stack <name>", "--topology <file>", "--reports <dir>", "--variant <variant>"]) expect(r.stdout).toContain(flag);
    expect(r.stdout).not.toContain("--yes");
  });

  it("takes, per drill, exactly the flags `homelab drill` defines for it (one definition)", () => {
    const cli = new Command("homelab");
    registerDrillCommands(cli);
    const drill = cli.commands.find((c) => c.name() === "drill")!;
    const cliFlags = new Map(drill.options.map((o) => [o.long, o]));
    const expected: Record<string, string[]> = {
      redis: ["--stack", "--topology", "--reports", "--variant"],
      "backup-restore": ["--stack", "--topology", "--reports", "--variant", "--fresh-backup"],
      failover: ["--stack", "--topology", "--reports"],
      "long-transaction": ["--stack", "--topology", "--reports"],
      "vacuum-bloat": ["--stack", "--topology", "--reports"],
      "query-tuning": ["--stack", "--topology", "--reports"],
      wraparound: ["--stack", "--topology", "--reports"],
      "redis-replication-lag": ["--stack", "--topology", "--reports"],
      switchover: ["--stack", "--topology", "--reports"],
      recreate: ["--stack", "--topology", "--reports", "--yes", "--force"],
      "site-loss": ["--stack", "--topology", "--reports", "--yes", "--force"],
    };
    for (const name of DRILLS) {
      const options = drillScriptProgram(name).options;
      expect(options.map((o) => o.long), name).toEqual(expected[name]);
      for (const o of options) {
        const twin = cliFlags.get(o.long)!;
        expect(o.flags, `${name} ${o.long}`).toBe(twin.flags);
        expect(o.defaultValue, `${name} ${o.long}`).toEqual(twin.defaultValue);
        if (o.long === "--variant") {
          expect(o.argChoices).toEqual(VARIANTS[name]);
          expect(twin.argChoices).toEqual(expect.arrayContaining([...VARIANTS[name]!]));
        }
      }
    }
    expect(drillOptions().map((o) => o.long)).toEqual(["--stack", "--topology", "--reports", "--variant", "--fresh-backup", "--yes", "--force"]);
  });
});

describe("homelab report", () => {
  it("renders the history as Markdown with an SVG chart of RTO and RPO per drill", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "homelab-reports-"));
    const t0 = Date.parse("2026-11-01T10:00:00Z");
    for (const [i, drill] of ["failover", "failover", "redis"].entries()) {
      const startedAtMs = t0 + i * 86_400_000;
      await writeReport(
        makeReport({
          drill,
          stack: "local",
          runId: `run${i}`,
          startedAtMs,
          finishedAtMs: startedAtMs + 30_000,
          objectives: { rtoSeconds: 10 },
          phases: [],
          rpo: null,
          rto: { faultAtMs: startedAtMs, phases: [], totalMs: 3000 + i * 500, totalSeconds: 3 + i * 0.5 },
          checks: [{ name: "rto", ok: i !== 1, detail: i === 1 ? "RTO 12 s exceeds objective 10 s by 2 s" : "ok" }],
          evidence: {},
        }),
        dir,
      );
    }
    const r = homelab("report", "--reports", dir);
    expect(r.code).toBe(0);
    const md = readFileSync(path.join(dir, "REPORT.md"), "utf8");
    expect(md).toMatch(/failover/);
    expect(md).toMatch(/redis/);
    expect(md).toContain("![RTO and RPO per drill over time](chart.svg)");
    const svg = readFileSync(path.join(dir, "chart.svg"), "utf8");
    expect(svg.startsWith("<svg") || svg.startsWith("<?xml")).toBe(true);
    expect(svg.match(/<polyline/g)?.length).toBeGreaterThanOrEqual(2);
  });

  it("says how to get history when there is none", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "homelab-empty-"));
    const r = homelab("report", "--reports", dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no drill history .*run `homelab drill <name> --stack <stack>` first/);
  });
});

describe("drills on a libvirt stack (drillsFor)", () => {
  it("runs every drill on docker; on VMs `all` skips what makes containers, a named one is refused naming what runs", async () => {
    const { drillsFor, redisInContainers } = await import("../../cli/drill-commands.ts");
    expect(drillsFor("docker", ["redis", "backup-restore", "failover"], true)).toEqual({ run: ["redis", "backup-restore", "failover"], skipped: [] });
    expect(drillsFor("libvirt", ["redis", "backup-restore", "failover"], true)).toEqual({ run: ["failover"], skipped: ["redis", "backup-restore"] });
    expect(drillsFor("libvirt", ["failover"], false)).toEqual({ run: ["failover"], skipped: [] });
    // A mixed stack (hosts:) holds PostgreSQL on VMs: the VM rules apply.
    expect(drillsFor("mixed", ["redis", "backup-restore", "failover"], true)).toEqual({ run: ["failover"], skipped: ["redis", "backup-restore"] });
    expect(() => drillsFor("mixed", ["backup-restore"], false)).toThrow("drill backup-restore: not on platform mixed yet (it makes its restore or scratch nodes as containers); on VMs: failover");
    // Its Redis nodes in containers (redis.host on a docker host): the Redis drills run as on docker.
    expect(drillsFor("mixed", ["redis", "redis-replication-lag", "backup-restore", "failover"], true, { redisInContainers: true })).toEqual({ run: ["redis", "redis-replication-lag", "failover"], skipped: ["backup-restore"] });
    expect(drillsFor("libvirt", ["redis"], true, { redisInContainers: true })).toEqual({ run: [], skipped: ["redis"] });
    const vm = { kind: "libvirt" as const, domain: "d", uri: "qemu:///system", ssh: "root@x", identityFile: "/k", knownHosts: "/h" };
    expect(redisInContainers({ nodes: [{ role: "redis", handle: { kind: "docker", container: "r" } }, { role: "postgres-primary", handle: vm }] as Topology["nodes"] })).toBe(true);
    expect(redisInContainers({ nodes: [{ role: "redis", handle: vm }] as Topology["nodes"] })).toBe(false);
    expect(() => drillsFor("libvirt", ["backup-restore"], false)).toThrow("drill backup-restore: not on platform libvirt yet (it makes its restore or scratch nodes as containers); on VMs: failover");
    expect(() => drillsFor("libvirt", ["vacuum-bloat"], false)).toThrow("drill vacuum-bloat: not on platform libvirt yet (not tried on VMs yet); on VMs: failover");
  });
});

describe("drill all: the drills a stack cannot run are skipped, saying why (skippedByStack)", () => {
  const node = (role: string) => ({ role }) as never;
  it("switchover only with postgres.ha: patroni; redis-replication-lag only with a Redis replica, as root", async () => {
    const { skippedByStack } = await import("../../cli/drill-commands.ts");
    const manual = { postgres: {} as never, nodes: [node("postgres-primary"), node("redis")] };
    expect(skippedByStack(manual, 0)).toEqual([["switchover", "only with postgres.ha: patroni"], ["redis-replication-lag", "the stack has no Redis replica (redis.replica: true)"]]);
    const ha = { postgres: { ha: { mode: "patroni" } } as never, nodes: [node("postgres-primary"), node("redis"), node("redis-replica")] };
    expect(skippedByStack(ha, 0)).toEqual([]);
    expect(skippedByStack(ha, 1000)).toEqual([["redis-replication-lag", "it shapes the primary's traffic with tc in its network namespace, which needs root"]]);
  });
});
