// The backup-restore drill (drills/backup-restore.mts) on a real tier, slot 2: a healthy run must pass, and
// each fault of docs/drills.md's catalog that concerns backups must make it FAIL naming the cause:
//   (a) archive_command failing, (b) a WAL segment missing from the repository (one the restore needs, and
//   one in the retained archive before the run), (c) the newest backup older than the policy, (d) a corrupted
//   file in the newest existing backup, (e) a file missing from an older backup (pgbackrest verify), (f) a
//   backup gone after the drill (the recovery window shrunk), (g) no backup at all (a backup must have existed).
// Every fault is undone after its run, and the stack must be primary + streaming replica after each.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../../components/platform/docker-node.ts";
import { runBackupRestoreDrill, type DisasterContext } from "../../drills/backup-restore.mts";
import type { DrillReport } from "../../drills/lib/report.ts";
import { e2eSpec, ensureImages, leftovers, ROOT, startTier, type Tier } from "./harness.ts";

const STACK = "e2e-restore";
const SLOT = 2;
let tier: Tier;
let scratch: string;

const failed = (r: DrillReport) => r.checks.filter((c) => !c.ok);
const describeFailures = (r: DrillReport) => failed(r).map((c) => `${c.name}: ${c.detail}`).join("\n") || "(no failed check)";
const checkNamed = (r: DrillReport, name: string) => r.checks.find((c) => c.name === name);

/** pg-1 primary, pg-2 a replica streaming from it: what the stack must be after every run. */
async function expectRedundant(): Promise<void> {
  expect((await tier.sql("pg-1", "select pg_is_in_recovery()"))[0]?.[0]).toBe("f");
  expect((await tier.sql("pg-2", "select pg_is_in_recovery()"))[0]?.[0]).toBe("t");
  expect(await tier.sql("pg-1", "select application_name, state from pg_stat_replication")).toEqual([["pg_2", "streaming"]]);
  // no restored copy, scratch volume or copy container left behind
  const scratchLeft = await docker(["ps", "-aq", "--filter", `label=dev.homelab-data.stack=${STACK}`, "--filter", "label=dev.homelab-data.drill-scratch=true"]);
  const scratchVolumes = await docker(["volume", "ls", "-q", "--filter", `label=dev.homelab-data.stack=${STACK}`, "--filter", "label=dev.homelab-data.drill-scratch=true"]);
  expect(scratchLeft.stdout.trim() + scratchVolumes.stdout.trim()).toBe("");
}

const REPO_ARCHIVE = "/var/lib/pgbackrest/archive";
const REPO_BACKUP = "/var/lib/pgbackrest/backup";

/** Labels of the backups in the repository, oldest first. */
async function backupLabels(): Promise<string[]> {
  const r = await tier.exec("backup", ["sh", "-c", 'cd "$1" && ls -d 2*[FDI] 2>/dev/null || true', "sh", `${REPO_BACKUP}/${tier.spec.pgbackrest.stanza}`], { user: "postgres" });
  return r.stdout.split(/\s+/).filter(Boolean).sort();
}

/** Moves one archived segment aside in the repository (the fault), and returns how to put it back. */
async function hideSegment(segment: string): Promise<() => Promise<void>> {
  const glob = `${REPO_ARCHIVE}/${tier.spec.pgbackrest.stanza}/*/${segment.slice(0, 16)}/${segment}-*`;
  const file = (await tier.exec("backup", ["sh", "-c", `ls ${glob}`])).stdout.trim();
  expect(file.split("\n")).toHaveLength(1);
  await tier.exec("backup", ["sh", "-c", 'mkdir -p /tmp/hidden-wal && mv "$1" /tmp/hidden-wal/', "sh", file]);
  return async () => {
    await tier.exec("backup", ["sh", "-c", 'mv "/tmp/hidden-wal/$(basename "$1")" "$1"', "sh", file]);
  };
}

async function archivedSegments(): Promise<string[]> {
  const r = await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "repo-ls", "--recurse", "--output=json", `archive/${tier.spec.pgbackrest.stanza}`], { user: "postgres" });
  return Object.keys(JSON.parse(r.stdout) as Record<string, unknown>)
    .map((p) => /\/([0-9A-F]{24})-[0-9a-f]{40}/.exec(p)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(path.join(ROOT, "node_modules/.bin/tsx"), [path.join(ROOT, "drills/backup-restore.mts"), ...args], { cwd: ROOT, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === "number" ? ((error as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe("backup-restore drill on a real tier", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(e2eSpec(STACK, { redis: { enabled: false }, duckdb: { enabled: false } }, SLOT));
    scratch = mkdtempSync(path.join(tmpdir(), "drill-backup-restore-"));
  }, 900_000);

  afterAll(async () => {
    await tier?.teardown();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 180_000);

  it("healthy stack, both variants: the newest EXISTING backup restored, PITR exactly the writes acknowledged at T, latest meets its RPO, and the stack ends redundant", async () => {
    const reportsDir = path.join(scratch, "healthy");
    const labelsBefore = await backupLabels();
    const report = await runBackupRestoreDrill({ topology: tier.topology, reportsDir, variant: "both" });
    expect(report.verdict, describeFailures(report)).toBe("pass");
    // What a disaster would restore: the backup `up` made, not one of the drill's own; no backup taken.
    const source = report.evidence.backup as { label: string; source: string };
    expect(source).toMatchObject({ label: labelsBefore[labelsBefore.length - 1], source: "newest existing" });
    expect(checkNamed(report, "a backup existed before the drill")?.detail).toMatch(new RegExp(`^newest backup ${source.label} \\(full\\) finished .* before the drill$`));
    expect(await backupLabels()).toEqual(labelsBefore);
    const span = report.evidence.walSpanToTarget as { segments: number; bytes: number; fromSegment: string };
    expect(span.segments).toBeGreaterThan(0);
    expect(span.bytes).toBeGreaterThan(0);
    expect(report.evidence.backupAgeAtTargetSeconds as number).toBeGreaterThan(0);
    expect(checkNamed(report, "pitr: acknowledged writes at T equal")?.ok).toBe(true);
    expect(checkNamed(report, "pitr: table digests at T equal")?.ok).toBe(true);
    expect(checkNamed(report, "pitr: amcheck on the workload's indexes")?.ok).toBe(true);
    expect(checkNamed(report, "pitr: restored copy archived nothing into the stanza")?.ok).toBe(true);
    expect(checkNamed(report, "latest: RPO within objective")?.ok).toBe(true);
    expect(checkNamed(report, "stack back to primary + streaming replica")?.ok).toBe(true);
    expect(report.rto?.totalSeconds).toBeGreaterThan(0);
    expect(report.rto?.phases.map((p) => p.name)).toEqual(["fresh node", "restore", "recovery", "first read"]);
    expect(report.rpo?.acknowledgedWrites).toBeGreaterThan(0);
    const restores = report.evidence.restores as Record<string, { timeline: number; rows?: { expected: number; present: number } }>;
    expect(restores.pitr?.rows?.expected).toBeGreaterThan(0);
    expect(restores.pitr?.timeline).toBeGreaterThan(1);
    const vsCopy = report.evidence.restoreVsCopy as { restoreSeconds: number; copySeconds: number; ratio: number };
    expect(vsCopy.copySeconds).toBeGreaterThan(0);
    expect(vsCopy.ratio).toBeGreaterThan(0);
    console.log(`[e2e] backup-restore: RTO ${report.rto?.totalSeconds}s (${report.rto?.phases.map((p) => `${p.name} ${p.durationMs}ms`).join(", ")}), latest RPO ${report.rpo?.rpoSeconds}s / ${report.rpo?.lostWrites} writes, restore ${vsCopy.restoreSeconds}s vs copy ${vsCopy.copySeconds}s (x${vsCopy.ratio}), redundancy restored ${report.rto?.redundancyRestoredSeconds}s`);
    // report written: JSON + Markdown + one history line
    const history = readFileSync(path.join(reportsDir, "history.jsonl"), "utf8").trim().split("\n");
    expect(history).toHaveLength(1);
    const entry = JSON.parse(history[0]!) as { report: string; verdict: string };
    expect(entry.verdict).toBe("pass");
    expect(existsSync(path.join(reportsDir, entry.report))).toBe(true);
    expect(existsSync(path.join(reportsDir, entry.report.replace(/\.json$/, ".md")))).toBe(true);
    // The drill's own full backup is expired again: the backups there before are exactly the ones after.
    expect(checkNamed(report, "recovery window kept")?.ok, describeFailures(report)).toBe(true);
    expect(report.evidence.backupsAfter).toEqual(report.evidence.backupsBefore);
    expect((report.evidence.backupsBefore as string[]).length).toBeGreaterThan(0);
    await expectRedundant();
  }, 600_000);

  it("(c) newest backup older than policy: FAIL naming it, through the CLI, nothing destroyed", async () => {
    const file = path.join(scratch, "topology-tiny-policy.json");
    writeFileSync(file, JSON.stringify({ ...tier.topology, pgbackrest: { ...tier.topology.pgbackrest, maxBackupAgeSeconds: 1 } }));
    await new Promise((r) => setTimeout(r, 1500));
    const r = await runCli(["--topology", file, "--variant", "pitr", "--reports", path.join(scratch, "old-backup")]);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(/✖ newest backup within policy: newest backup older than policy: \d{8}-\d{6}F \(full\) finished .* ago, policy allows 1 s/);
    expect(r.stdout).toMatch(/preflight failed \(newest backup within policy\): nothing destroyed/);
    await expectRedundant();
  }, 300_000);

  it("(b) a WAL segment missing from the retained archive: preflight FAILS naming it, nothing destroyed", async () => {
    const segments = await archivedSegments();
    expect(segments.length).toBeGreaterThan(4);
    const victim = segments[Math.floor(segments.length / 2)]!;
    const restoreIt = await hideSegment(victim);
    let report: DrillReport;
    try {
      report = await runBackupRestoreDrill({ topology: tier.topology, reportsDir: path.join(scratch, "gap-before"), variant: "pitr" });
    } finally {
      await restoreIt();
    }
    expect(report.verdict).toBe("fail");
    const c = checkNamed(report, "WAL archive continuous");
    expect(c?.ok).toBe(false);
    expect(c?.detail).toContain(`WAL segment ${victim} missing from the repository`);
    expect(report.evidence.stoppedBeforeDisaster).toMatch(/nothing destroyed/);
    await expectRedundant();
  }, 300_000);

  it("(b) a WAL segment the restore to T needs, deleted from the repository: FAIL naming it, nothing destroyed", async () => {
    let hidden: string | undefined;
    let restoreIt: (() => Promise<void>) | undefined;
    let report: DrillReport;
    try {
      report = await runBackupRestoreDrill({
        topology: tier.topology,
        reportsDir: path.join(scratch, "gap-in-range"),
        variant: "pitr",
        beforeDisaster: async (ctx: DisasterContext) => {
          hidden = ctx.targetSegment;
          restoreIt = await hideSegment(ctx.targetSegment);
        },
      });
    } finally {
      await restoreIt?.();
    }
    expect(hidden).toMatch(/^[0-9A-F]{24}$/);
    expect(report.verdict).toBe("fail");
    const c = checkNamed(report, "WAL from the backup to T archived");
    expect(c?.ok).toBe(false);
    expect(c?.detail).toMatch(new RegExp(`^WAL segment ${hidden} missing from the repository: a restore of \\d{8}-\\d{6}F cannot reach T`));
    expect(report.evidence.destroyedVolumes).toBeUndefined();
    await expectRedundant();
  }, 300_000);

  it("(a) archive_command failing: FAIL naming archive_command, nothing destroyed", async () => {
    await tier.sql("pg-1", "alter system set archive_command = 'false'");
    await tier.sql("pg-1", "select pg_reload_conf()");
    let report: DrillReport;
    try {
      report = await runBackupRestoreDrill({ topology: tier.topology, reportsDir: path.join(scratch, "archive-command"), variant: "pitr" });
    } finally {
      await tier.sql("pg-1", "alter system reset archive_command");
      await tier.sql("pg-1", "select pg_reload_conf()");
    }
    expect(report.verdict).toBe("fail");
    const c = checkNamed(report, "WAL archiving works");
    expect(c?.ok).toBe(false);
    expect(c?.detail).toMatch(/^archive_command failing: pgbackrest check failed \(exit 68\): ERROR: \[068\]: archive_command 'false' must contain pgbackrest/);
    expect(report.evidence.stoppedBeforeDisaster).toMatch(/nothing destroyed/);
    await expectRedundant();
  }, 300_000);

  it("(d) a corrupted file in the newest existing backup: preflight verify FAILS naming its label and the bad file count, nothing destroyed", async () => {
    const labels = await backupLabels();
    const newest = labels[labels.length - 1]!;
    const bundle = `${REPO_BACKUP}/${tier.spec.pgbackrest.stanza}/${newest}/bundle/1`;
    // Four bytes of the first bundle overwritten in place (a bit-rotted disk), the originals kept to undo it.
    const saved = (await tier.exec("backup", ["sh", "-c", 'dd if="$1" bs=1 skip=100 count=4 2>/dev/null | base64', "sh", bundle], { user: "postgres" })).stdout.trim();
    await tier.exec("backup", ["sh", "-c", 'printf "\\377\\377\\377\\377" | dd of="$1" bs=1 seek=100 conv=notrunc 2>/dev/null', "sh", bundle], { user: "postgres" });
    let report: DrillReport;
    try {
      report = await runBackupRestoreDrill({ topology: tier.topology, reportsDir: path.join(scratch, "corrupt-newest"), variant: "pitr" });
    } finally {
      await tier.exec("backup", ["sh", "-c", 'echo "$2" | base64 -d | dd of="$1" bs=1 seek=100 conv=notrunc 2>/dev/null', "sh", bundle, saved], { user: "postgres" });
    }
    expect(report.verdict).toBe("fail");
    const c = checkNamed(report, "every backup and the archive verify");
    expect(c?.ok).toBe(false);
    expect(c?.detail).toMatch(new RegExp(`backup ${newest} invalid: [1-9]\\d* of \\d+ files bad \\(checksum invalid: [1-9]`));
    expect(report.evidence.stoppedBeforeDisaster).toMatch(/nothing destroyed/);
    await expectRedundant();
  }, 300_000);

  it("(e) a file missing from an older backup (not the newest): preflight verify FAILS naming that backup, nothing destroyed", async () => {
    let labels = await backupLabels();
    if (labels.length < 2) {
      await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "--type=full", "backup"], { user: "postgres" });
      labels = await backupLabels();
    }
    const older = labels[0]!;
    const file = `${REPO_BACKUP}/${tier.spec.pgbackrest.stanza}/${older}/pg_data/backup_label.zst`;
    await tier.exec("backup", ["mv", file, `${file}.aside`], { user: "postgres" });
    let report: DrillReport;
    try {
      report = await runBackupRestoreDrill({ topology: tier.topology, reportsDir: path.join(scratch, "missing-older"), variant: "pitr" });
    } finally {
      await tier.exec("backup", ["mv", `${file}.aside`, file], { user: "postgres" });
    }
    expect(report.verdict).toBe("fail");
    const c = checkNamed(report, "every backup and the archive verify");
    expect(c?.ok).toBe(false);
    expect(c?.detail).toContain(`backup ${older} invalid: 1 of `);
    expect(c?.detail).toContain("(missing: 1)");
    expect(c?.detail).not.toContain(`backup ${labels[labels.length - 1]} `);
    expect(report.evidence.stoppedBeforeDisaster).toMatch(/nothing destroyed/);
    await expectRedundant();
  }, 300_000);

  it("after the faults are undone, a healthy latest-only run with --fresh-backup passes again through the CLI (no false alarm), its own backup expired again", async () => {
    const file = path.join(scratch, "topology.json");
    writeFileSync(file, JSON.stringify(tier.topology));
    const labelsBefore = await backupLabels();
    const r = await runCli(["--topology", file, "--variant", "latest", "--fresh-backup", "--reports", path.join(scratch, "healthy-again")]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/backup-restore: PASS/);
    expect(r.stdout).toMatch(/full backup on the repository host \(--fresh-backup\)/);
    expect(r.stdout).toMatch(/✔ recovery window kept/);
    expect(await backupLabels()).toEqual(labelsBefore);
    await expectRedundant();
  }, 600_000);

  // Last: expiring a backup by hand under the drill also expires WAL the later runs would check.
  it("(f) a backup that existed before the drill is gone after it: the recovery-window check FAILS naming it", async () => {
    // A spare full backup first, so the stack keeps one when the oldest is expired under the drill.
    await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "--type=full", "--repo1-retention-full=9999", "backup"], { user: "postgres" });
    const labels = await backupLabels();
    expect(labels.length).toBeGreaterThanOrEqual(2);
    const oldest = labels[0]!;
    const report = await runBackupRestoreDrill({
      topology: tier.topology,
      reportsDir: path.join(scratch, "window-shrunk"),
      variant: "latest",
      // The fault: what the drill used to do by itself (its full backup pushing the oldest out of retention).
      beforeDisaster: async () => {
        await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, `--set=${oldest}`, "expire"], { user: "postgres" });
      },
    });
    expect(report.verdict).toBe("fail");
    const c = checkNamed(report, "recovery window kept");
    expect(c?.ok).toBe(false);
    expect(c?.detail).toContain(`the drill shrank the recovery window: backup ${oldest} gone`);
    expect(await backupLabels()).not.toContain(oldest);
    await expectRedundant();
  }, 600_000);

  // Last of all: the stanza is deleted and created again, empty (no backup), as on a stack that never backed up.
  it("(g) no backup in the repository: the drill FAILS 'a backup existed before the drill', still rehearses the restore on one of its own and keeps it", async () => {
    const stanza = tier.spec.pgbackrest.stanza;
    await tier.exec("backup", ["pgbackrest", `--stanza=${stanza}`, "stop"], { user: "postgres" });
    await tier.exec("backup", ["pgbackrest", `--stanza=${stanza}`, "--force", "stanza-delete"], { user: "postgres" });
    await tier.exec("backup", ["pgbackrest", `--stanza=${stanza}`, "start"], { user: "postgres" });
    await tier.exec("backup", ["pgbackrest", `--stanza=${stanza}`, "stanza-create"], { user: "postgres" });
    expect(await backupLabels()).toEqual([]);
    const report = await runBackupRestoreDrill({ topology: tier.topology, reportsDir: path.join(scratch, "no-backup"), variant: "pitr" });
    expect(report.verdict).toBe("fail");
    const c = checkNamed(report, "a backup existed before the drill");
    expect(c?.ok).toBe(false);
    expect(c?.detail).toMatch(/^the repository held no backup before the drill: a disaster would have had nothing to restore \(the drill took \d{8}-\d{6}F to rehearse the restore\)/);
    // Only that check fails: the restore itself was rehearsed, and the drill's backup (the only one) is kept.
    expect(failed(report).map((f) => f.name)).toEqual(["a backup existed before the drill"]);
    expect(checkNamed(report, "pitr: acknowledged writes at T equal")?.ok).toBe(true);
    expect(await backupLabels()).toHaveLength(1);
    expect((report.evidence.backup as { source: string }).source).toBe("the drill's own (the repository held none)");
    await expectRedundant();
  }, 600_000);
});
