// The site-loss drill against a real tier (slot 3): every PostgreSQL node, the repository host and repo1's
// volume are destroyed; the stack is rebuilt the way `pulumi up` rebuilds it (bootstrapFrom: auto, post-up
// steps), restoring from repo2 alone, the encrypted SFTP repository on the stand-in node. Its twin: repo2's
// cipher passphrase wrong on the repository host -> the drill refuses to destroy anything, naming why.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../../components/platform/docker-node.ts";
import { DrillLog } from "../../drills/lib/log.ts";
import type { DrillReport } from "../../drills/lib/report.ts";
import { runSiteLossDrill } from "../../drills/site-loss.mts";
import { e2eSpec, ensureImages, leftovers, startTier, type Tier } from "./harness.ts";
import { recreateHook } from "./recreate-harness.ts";

const STACK = "e2e-siteloss";
const SLOT = 3;
const reportsDir = mkdtempSync(path.join(tmpdir(), "drill-site-loss-reports-"));
let tier: Tier;

const drillLog = () => new DrillLog({ stream: { write: (s: string) => process.stdout.write(`  ${s}`) }, color: false });

function summary(r: DrillReport): string {
  const rpo = r.rpo ? `lost ${r.rpo.lostWrites}/${r.rpo.acknowledgedWrites} acknowledged writes, RPO ${r.rpo.rpoSeconds.toFixed(3)} s` : "RPO not measured";
  const rto = r.rto ? `first write ${r.rto.totalSeconds.toFixed(1)} s after the fault (${r.rto.phases.map((p) => `${p.name} ${(p.durationMs / 1000).toFixed(1)} s`).join(", ")}), primary + streaming replica after ${r.rto.redundancyRestoredSeconds?.toFixed(1) ?? "never"} s` : "RTO not measured";
  return `[e2e] drill ${r.drill}: ${r.verdict.toUpperCase()}: ${rpo}; ${rto}; phases ${r.phases.map((p) => `${p.name} ${(p.durationMs / 1000).toFixed(1)}s`).join(" | ")}; failed checks: ${r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join(" | ") || "none"}`;
}

describe("site-loss drill: every PostgreSQL node and repo1 lost, rebuilt from repo2 only", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(
      e2eSpec(
        STACK,
        {
          postgres: { archiveTimeout: "5s" },
          pgbackrest: { repo2: { type: "sftp" } },
          redis: { enabled: false },
          duckdb: { enabled: false },
          objectives: { siteLoss: { rpo: "10s", rto: "300s" } },
        },
        SLOT,
      ),
    );
  }, 900_000);

  afterAll(async () => {
    await tier?.teardown();
    rmSync(reportsDir, { recursive: true, force: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 120_000);

  it("twin: repo2's cipher passphrase wrong on the repository host -> FAIL before anything is destroyed, naming repo2", async () => {
    const conf = "/etc/pgbackrest/conf.d/repo2-cipher.conf";
    const good = (await tier.exec("backup", ["cat", conf])).stdout;
    const before = (await docker(["inspect", "-f", "{{.Id}}", `homelab-${STACK}-pg-1`])).stdout.trim();
    const phases: string[] = [];
    await tier.exec("backup", ["sh", "-c", `printf '[global]\\nrepo2-cipher-pass=%s\\n' wrong-passphrase-0123456789 > ${conf}`]);
    try {
      const report = await runSiteLossDrill({ topology: tier.topology, loseSite: async (p) => void phases.push(p), reportsDir, log: drillLog() });
      console.log(summary(report));
      expect(report.verdict).toBe("fail");
      expect(phases, "the hook was called: something was destroyed").toEqual([]);
      const failed = new Map(report.checks.filter((c) => !c.ok).map((c) => [c.name, c.detail]));
      expect(failed.get("drill ran to completion")).toMatch(/^stanza main has no backup in repo2 \(other; repo2: \[FormatError\] unable to load info file '[^']+\/backup\.info'.*\): a site-loss would lose everything; nothing was destroyed/);
    } finally {
      await tier.exec("backup", ["sh", "-c", `cat > ${conf}`], { input: good });
    }
    expect((await docker(["inspect", "-f", "{{.Id}}", `homelab-${STACK}-pg-1`])).stdout.trim()).toBe(before);
  }, 300_000);

  it("twin: a WAL file of repo2's archive damaged -> verify fails the preflight naming the archive, nothing destroyed", async () => {
    const phases: string[] = [];
    const repoPath = tier.spec.pgbackrest.repo2?.sftp.path as string;
    // Move one archived segment aside (not the newest: a hole in the middle) and put it back afterwards.
    const list = await tier.exec("sftp", ["sh", "-c", `find "$1/archive" -name '0000000*-*' -type f | sort`, "sh", repoPath]);
    const segments = list.stdout.trim().split("\n").filter(Boolean);
    expect(segments.length).toBeGreaterThanOrEqual(3);
    const victim = segments[1] as string;
    await tier.exec("sftp", ["sh", "-c", `printf 'garbage' >> "$1"`, "sh", victim]);
    try {
      const report = await runSiteLossDrill({ topology: tier.topology, loseSite: async (p) => void phases.push(p), reportsDir, log: drillLog() });
      console.log(summary(report));
      expect(report.verdict).toBe("fail");
      expect(phases).toEqual([]);
      const failed = new Map(report.checks.filter((c) => !c.ok).map((c) => [c.name, c.detail]));
      expect(failed.get("repo2: every backup and the archive verify")).toMatch(/WAL archive 17-1: 1 of \d+ WAL files bad/);
      expect(failed.get("drill ran to completion")).toMatch(/^not destroying anything: repo2: every backup and the archive verify/);
    } finally {
      // The appended bytes off again: the original file back.
      await tier.exec("sftp", ["sh", "-c", `truncate -s -7 "$1"`, "sh", victim]);
    }
  }, 300_000);

  it("healthy: rebuilt from repo2 only; RPO/RTO within objectives; repo1 gets a new stanza and backup; primary + streaming replica", async () => {
    const loseSite = recreateHook(tier.spec, tier.secrets, { loseRepo1: true, keepBootstrapFrom: true, postUp: true, log: (m) => console.log(`[e2e] ${m}`) });
    const report = await runSiteLossDrill({ topology: tier.topology, loseSite, reportsDir, log: drillLog() });
    console.log(summary(report));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.verdict).toBe("pass");
    expect(report.drill).toBe("site-loss");
    expect(report.rpo?.acknowledgedWrites).toBeGreaterThan(20);
    expect(report.rpo?.rpoSeconds).toBeLessThanOrEqual(tier.topology.objectives.siteLoss.rpo);
    expect(report.rto?.redundancyRestoredSeconds).toBeLessThanOrEqual(tier.topology.objectives.siteLoss.rto);
    expect(report.checks.map((c) => c.name)).toEqual(
      expect.arrayContaining(["the stack has repo2", "repo2: every backup and the archive verify", "primary bootstrapped from the repository", "repo1 rebuilt: a new stanza and a backup", "WAL reaches both repositories (pgbackrest check)", "pg-2 streams and replays"]),
    );
    // The primary's log says it restored from repo2 (repo1 was empty).
    const logs = await docker(["logs", `homelab-${STACK}-pg-1`]);
    const text = logs.stdout + logs.stderr;
    expect(text).toMatch(/restoring them \(bootstrapFrom: auto\)/);
    expect(text).toMatch(/repo2: restore backup set/);
    // How long `pgbackrest restore` from repo2 took (the entrypoint's own log lines around it).
    const at = (re: RegExp) => Date.parse(re.exec(text)?.[1] ?? "");
    const restoreMs = at(/^(\S+) homelab\[database\]: restore done$/m) - at(/^(\S+) homelab\[database\]: pgbackrest restore \(latest backup/m);
    expect(restoreMs).toBeGreaterThan(0);
    console.log(`[e2e] pgbackrest restore from repo2 (over SFTP, decrypting): ${(restoreMs / 1000).toFixed(1)}s`);
  }, 900_000);
});
