// The scheduled restore test (components/postgres/image/bin/homelab-restore-test, ADR 0014) on a real tier,
// slot 4: run by hand on the repository node it restores the newest backup into scratch space, starts it,
// runs pg_amcheck and records a PASS with sane numbers, leaving nothing behind and archiving nothing into the
// live stanza; its fault twin (a corrupted file of the newest backup) records a FAIL with the label and the
// reason, exits non-zero, and `homelab status` (stackStatus) says so loudly; `homelab report`
// (writeHistoryReport) charts the runs; and the plan's crontab line really fires it on its schedule.
import { mkdtempSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stackStatus } from "../../cli/lifecycle-commands.ts";
import { writeHistoryReport } from "../../cli/drill-commands.ts";
import { planHomelab } from "../../components/plan.ts";
import { applyPlan, docker } from "../../components/platform/docker-node.ts";
import { RESTORE_TEST_DRILL, parseRestoreTestHistory, type RestoreTestRecord } from "../../drills/lib/restore-test.ts";
import { e2eSpec, ensureImages, leftovers, startTier, withMemorySampling, type Tier } from "./harness.ts";

const STACK = "e2e-restoretest";
const SLOT = 4;
const OVERRIDES = { redis: { enabled: false }, duckdb: { enabled: false } };
let tier: Tier;
let reports: string;

const REPO_BACKUP = "/var/lib/pgbackrest/backup";

const repositoryContainer = () => tier.plan.nodes.find((n) => n.name === "backup")!.hostname;

async function history(): Promise<RestoreTestRecord[]> {
  const r = await tier.exec("backup", ["homelab-restore-test", "--history"]);
  const { records, skipped } = parseRestoreTestHistory(r.stdout);
  expect(skipped).toEqual([]);
  return records;
}

async function newestLabel(): Promise<string> {
  const r = await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "--output=json", "info"]);
  const backups = (JSON.parse(r.stdout) as { backup: { label: string; timestamp: { stop: number } }[] }[])[0]!.backup;
  return [...backups].sort((a, b) => a.timestamp.stop - b.timestamp.stop).at(-1)!.label;
}

/** Runs the restore test as cron would (as postgres), sampling the repository node's memory meanwhile. */
async function runRestoreTest(budgetSeconds = 600): Promise<{ code: number; stdout: string; stderr: string; peakMemoryBytes: number; idleMemoryBytes: number }> {
  const { result, idleBytes, peakBytes, samples } = await withMemorySampling(repositoryContainer(), () =>
    tier.exec("backup", ["homelab-restore-test", "--stanza", tier.spec.pgbackrest.stanza, "--budget", String(budgetSeconds)], { user: "postgres", allowFailure: true }),
  );
  // Two samples are the ones before and after; a run of seconds gets tens more.
  expect(samples).toBeGreaterThan(2);
  return { ...result, peakMemoryBytes: peakBytes, idleMemoryBytes: idleBytes };
}

/** Nothing of a run left: no scratch directory, no PostgreSQL process on the repository node. */
async function expectNothingLeft(): Promise<void> {
  const scratch = await tier.exec("backup", ["sh", "-c", "ls -d /var/lib/postgresql/restore-test 2>/dev/null || true"]);
  expect(scratch.stdout.trim()).toBe("");
  const procs = await tier.exec("backup", ["sh", "-c", "ps -eo args | grep -c '^postgres' || true"]);
  expect(procs.stdout.trim()).toBe("0");
}

describe("scheduled restore test on a real tier", () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(e2eSpec(STACK, OVERRIDES, SLOT));
    reports = mkdtempSync(path.join(tmpdir(), "restore-test-reports-"));
    // Data with B-tree indexes for amcheck to walk, in a full backup of its own: the newest backup.
    await tier.sql("pg-1", "create table rt_items (id bigint primary key, name text not null, at timestamptz not null default now()); create index rt_items_name on rt_items (name); insert into rt_items (id, name) select g, md5(g::text) from generate_series(1, 400000) g", tier.spec.postgres.database);
    await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "--type=full", "backup"], { user: "postgres" });
  }, 900_000);

  afterAll(async () => {
    await tier?.teardown();
    expect(await leftovers(STACK)).toEqual([]);
  }, 300_000);

  it("the plan schedules it on the repository host, weekly by default", async () => {
    const crontab = await tier.exec("backup", ["cat", "/etc/pgbackrest/crontab"]);
    expect(crontab.stdout).toContain(`0 5 * * 0 homelab-restore-test --stanza=${tier.spec.pgbackrest.stanza} --budget=3600`);
    const status = await stackStatus(tier.topology, reports);
    expect(status.lines.some((l) => l.startsWith("scheduled restore test: none recorded yet"))).toBe(true);
    expect(status.restoreTestFailed).toBe(false);
  }, 120_000);

  it("healthy: restores the newest backup into scratch space, amcheck passes, one PASS line with sane numbers, nothing left, nothing archived", async () => {
    const label = await newestLabel();
    const before = await history();
    const t0 = Date.now();
    const run = await runRestoreTest();
    const wallSeconds = (Date.now() - t0) / 1000;
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^restore test PASS: backup ${label}, restore `, "m"));
    const after = await history();
    expect(after).toHaveLength(before.length + 1);
    const r = after.at(-1)!;
    expect(r.verdict).toBe("pass");
    expect(r.failedStep).toBeNull();
    expect(r.backup?.label).toBe(label);
    expect(r.backup!.ageSeconds).toBeGreaterThanOrEqual(0);
    expect(r.backup!.ageSeconds).toBeLessThan(600);
    // What the backup occupies in the repository (compressed, bundled): less than the database.
    expect(r.backup!.repositoryBytes).toBeGreaterThan(0);
    expect(r.backup!.repositoryBytes!).toBeLessThan(r.backup!.databaseBytes);
    for (const s of [r.restoreSeconds, r.recoverySeconds, r.amcheckSeconds]) expect(s).toBeGreaterThan(0);
    expect(r.totalSeconds).toBeGreaterThanOrEqual(r.restoreSeconds! + r.recoverySeconds! + r.amcheckSeconds!);
    expect(r.totalSeconds).toBeLessThanOrEqual(wallSeconds);
    // What landed in scratch space is the backup's database size (400k rows + indexes: about 100 MB).
    expect(r.bytesRestored!).toBeGreaterThan(30 * 1024 ** 2);
    expect(r.bytesRestored! / r.backup!.databaseBytes).toBeGreaterThan(0.9);
    expect(r.bytesRestored! / r.backup!.databaseBytes).toBeLessThan(1.1);
    expect(r.restoreMBps).toBeCloseTo(r.bytesRestored! / 1e6 / r.restoreSeconds!, 0);
    // pg_amcheck walked every database: the catalogs of three databases are hundreds of relations.
    expect(r.amcheck!.relations).toBeGreaterThan(300);
    const last = await tier.exec("backup", ["cat", "/var/lib/pgbackrest/homelab/restore-test-last.log"]);
    expect(last.stdout).toContain("pg_amcheck --all --heapallindexed");
    expect(last.stdout).toMatch(/\d+\/\d+ relations \(100%\)/);
    await expectNothingLeft();
    // The copy promoted itself onto timeline 2 with archive_mode off: the live stanza (timeline 1) got no
    // history file nor segment of it.
    const archive = await tier.exec("backup", ["sh", "-c", `ls -R /var/lib/pgbackrest/archive/${tier.spec.pgbackrest.stanza}`]);
    expect(archive.stdout).not.toMatch(/00000002/);
    expect((await tier.sql("pg-1", "select pg_is_in_recovery()"))[0]?.[0]).toBe("f");
    const status = await stackStatus(tier.topology, reports);
    expect(status.restoreTestFailed).toBe(false);
    expect(status.lines.find((l) => l.startsWith("scheduled restore test:"))).toMatch(new RegExp(`^scheduled restore test: PASS .*backup ${label} .*restore .* MB/s`));
    const memory = run.peakMemoryBytes;
    console.log(`[e2e] scheduled restore test: total ${r.totalSeconds}s (restore ${r.restoreSeconds}s at ${r.restoreMBps} MB/s, ${Math.round(r.bytesRestored! / 1048576)} MiB; recovery ${r.recoverySeconds}s; amcheck ${r.amcheck!.relations} relations in ${r.amcheckSeconds}s); repository node memory ${Math.round(run.idleMemoryBytes / 1048576)} MiB before, peak ${Math.round(memory / 1048576)} MiB during, of ${Math.round(tier.spec.pgbackrest.node.memory / 1048576)} MiB`);
    expect(run.idleMemoryBytes).toBeGreaterThan(0);
    expect(memory).toBeGreaterThan(run.idleMemoryBytes);
    expect(memory).toBeLessThan(tier.spec.pgbackrest.node.memory);
  }, 600_000);

  it("fault twin: a budget too small for the backup -> FAIL naming the step that ran out of it, nothing left behind", async () => {
    const run = await runRestoreTest(1);
    expect(run.code, run.stdout).toBe(1);
    const r = (await history()).at(-1)!;
    expect(r.verdict).toBe("fail");
    expect(r.budgetSeconds).toBe(1);
    // About 100 MiB do not verify, restore, start and check in a second here (the healthy run takes seconds), and
    // each step gets only what is left of the budget, to the millisecond: some step (which depends on the machine) is cut.
    expect(["backup-info", "verify", "restore", "start", "amcheck"]).toContain(r.failedStep);
    // "over the budget of 1s while <step>" or "over the budget of 1s: <what was not done yet>"
    expect(r.reason).toMatch(/^over the budget of 1s(?: while | during | before |: )\S/);
    expect(r.reason).not.toContain("()");
    await expectNothingLeft();
  }, 120_000);

  it("fault twin: a corrupted file in the newest backup -> FAIL recorded with the label and the reason, exit 1, status loud", async () => {
    const label = await newestLabel();
    const bundle = `${REPO_BACKUP}/${tier.spec.pgbackrest.stanza}/${label}/bundle/1`;
    // Four bytes of the first bundle overwritten in place (a bit-rotted disk), the originals kept to undo it.
    const saved = (await tier.exec("backup", ["sh", "-c", 'dd if="$1" bs=1 skip=100 count=4 2>/dev/null | base64', "sh", bundle], { user: "postgres" })).stdout.trim();
    await tier.exec("backup", ["sh", "-c", 'printf "\\377\\377\\377\\377" | dd of="$1" bs=1 seek=100 conv=notrunc 2>/dev/null', "sh", bundle], { user: "postgres" });
    let run: Awaited<ReturnType<typeof runRestoreTest>>;
    let status: Awaited<ReturnType<typeof stackStatus>>;
    try {
      run = await runRestoreTest();
      status = await stackStatus(tier.topology, reports);
    } finally {
      await tier.exec("backup", ["sh", "-c", 'echo "$2" | base64 -d | dd of="$1" bs=1 seek=100 conv=notrunc 2>/dev/null', "sh", bundle, saved], { user: "postgres" });
    }
    expect(run.code, run.stdout).toBe(1);
    expect(run.stdout).toMatch(/^restore test FAIL \(verify\): /m);
    const r = (await history()).at(-1)!;
    expect(r.verdict).toBe("fail");
    expect(r.failedStep).toBe("verify");
    expect(r.backup?.label).toBe(label);
    expect(r.reason).toMatch(new RegExp(`backup: ${label}, status: invalid, total files checked: \\d+, total valid files: \\d+ missing: 0, checksum invalid: [1-9]`));
    await expectNothingLeft();
    expect(status.restoreTestFailed).toBe(true);
    const text = status.lines.join("\n");
    expect(text).toMatch(new RegExp(`^scheduled restore test: ✖ FAILED .*backup ${label} .*at step verify: pgbackrest verify: backup: ${label}, status: invalid`, "m"));
    expect(text).toMatch(/!! the newest backup did NOT prove restorable; last pass: \S+ \(/);
    expect(text).toContain("runbooks/scheduled-restore-test-failed.md");
    // Undone: the same backup restores and passes again.
    const again = await runRestoreTest();
    expect(again.code, again.stdout).toBe(0);
    expect((await stackStatus(tier.topology, reports)).restoreTestFailed).toBe(false);
  }, 600_000);

  it("fault twin: an index that no longer matches its table (checksums fine, pgbackrest verify clean) -> pg_amcheck FAILS it, exit 1", async () => {
    const db = tier.spec.postgres.database;
    // The classic way to a logically corrupt index: an expression index over a function declared IMMUTABLE
    // that is then changed. Every page is intact (checksums, verify pass); bt_index_check(heapallindexed)
    // recomputes the index tuples from the heap and finds them missing.
    await tier.sql("pg-1", "create function rt_key(i bigint) returns bigint language sql immutable as 'select i'; create table rt_bad (id bigint not null); insert into rt_bad select g from generate_series(1, 1000) g; create index rt_bad_key on rt_bad (rt_key(id)); create or replace function rt_key(i bigint) returns bigint language sql immutable as 'select i + 1'", db);
    await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "--type=full", "backup"], { user: "postgres" });
    const label = await newestLabel();
    let run: Awaited<ReturnType<typeof runRestoreTest>>;
    try {
      run = await runRestoreTest();
    } finally {
      // Undone, and a clean newest backup again for what follows.
      await tier.sql("pg-1", "drop table rt_bad; drop function rt_key(bigint)", db);
      await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "--type=full", "backup"], { user: "postgres" });
    }
    expect(run.code, run.stdout).toBe(1);
    const r = (await history()).at(-1)!;
    expect(r.verdict).toBe("fail");
    expect(r.failedStep).toBe("amcheck");
    expect(r.backup?.label).toBe(label);
    expect(r.reason).toMatch(new RegExp(`^pg_amcheck found problems in backup ${label} \\(exit \\d\\): .*rt_bad_key.*lacks matching index tuple`));
    // It got as far as amcheck: the restore and the promotion were timed.
    expect(r.restoreSeconds).toBeGreaterThan(0);
    expect(r.recoverySeconds).toBeGreaterThan(0);
    await expectNothingLeft();
    expect((await stackStatus(tier.topology, reports)).restoreTestFailed).toBe(true);
    const again = await runRestoreTest();
    expect(again.code, again.stdout).toBe(0);
  }, 600_000);

  it("homelab report pulls the runs from the repository node and charts them beside the drills", async () => {
    const r = await writeHistoryReport({ reportsDir: reports, topology: tier.topology });
    const runs = await history();
    expect(r.runs).toBe(runs.length);
    const svg = await readFile(r.chart, "utf8");
    expect(svg).toContain(`data-drill="${RESTORE_TEST_DRILL}"`);
    // One point per run: passes at their total time, the failed one drawn red only where it has a value.
    expect(svg.match(new RegExp(`<title>${RESTORE_TEST_DRILL} [^<]*RTO`, "g"))?.length).toBe(runs.filter((x) => x.verdict === "pass").length);
    const md = await readFile(r.markdown, "utf8");
    expect(md).toContain(`## Scheduled restore tests: stack ${STACK}`);
    expect(md).toMatch(/\| ✖ FAIL \| .* \| verify: pgbackrest verify: /);
    // Kept beside the reports: a later report with the stack down still has them.
    const again = await writeHistoryReport({ reportsDir: reports });
    expect(again.runs).toBe(runs.length);
  }, 120_000);

  it("the schedule fires it: a `* * * * *` restoreTest.schedule re-applied to the repository node records a run within two minutes", async () => {
    const every = planHomelab(e2eSpec(STACK, { ...OVERRIDES, pgbackrest: { restoreTest: { schedule: "* * * * *", budget: "5min" } } }, SLOT), tier.secrets);
    const before = (await history()).length;
    const t0 = Date.now();
    await applyPlan(every, { only: (n) => n.name === "backup" });
    const crontab = await tier.exec("backup", ["cat", "/etc/pgbackrest/crontab"]);
    expect(crontab.stdout).toContain(`* * * * * homelab-restore-test --stanza=${tier.spec.pgbackrest.stanza} --budget=300`);
    let records: RestoreTestRecord[] = [];
    const deadline = Date.now() + 150_000;
    while (Date.now() < deadline) {
      records = await history();
      if (records.length > before) break;
      await new Promise((r) => setTimeout(r, 2000));
    }
    expect(records.length, "no run recorded within 150 s of a * * * * * schedule").toBeGreaterThan(before);
    const fired = records[before]!;
    expect(Date.parse(fired.started_at)).toBeGreaterThan(t0);
    expect(fired.budgetSeconds).toBe(300);
    expect(fired.verdict, fired.reason ?? "").toBe("pass");
    // On time for that schedule: status is quiet.
    const status = await stackStatus(tier.topology, reports, { enabled: true, schedule: "* * * * *", budgetSeconds: 300 });
    expect(status.restoreTestFailed, status.lines.join("\n")).toBe(false);
    // Started by homelab-cron (in the container's log), not by anyone's exec.
    const logs = await docker(["logs", repositoryContainer()]);
    expect(`${logs.stdout}${logs.stderr}`).toMatch(/homelab-cron: job line \d+ started \(pid \d+\): homelab-restore-test/);
    // Back to the weekly schedule, so nothing fires while the tier is torn down.
    await applyPlan(tier.plan, { only: (n) => n.name === "backup" });
  }, 400_000);
});
