// The scheduled restore test (ADR 0014): its config (pgbackrest.restoreTest), the crontab line the plan gives
// the repository host (checked by homelab-cron itself), and the history it writes: parsing, merging, the
// drill history entries `homelab report` charts, the report table, and what `homelab status` says.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, validateConfig } from "../../components/config/index.ts";
import { backupCrontab, planHomelab, redactedSecrets, restoreTestCronLine } from "../../components/plan.ts";
import { renderChartSvg } from "../../drills/lib/report.ts";
import {
  RESTORE_TEST_DRILL,
  loadCachedRestoreTests,
  mergeRestoreTestRecords,
  parseRestoreTestHistory,
  renderRestoreTestMarkdown,
  restoreTestHistoryEntry,
  restoreTestOverdue,
  restoreTestStatus,
  saveRestoreTestRecords,
  type RestoreTestRecord,
} from "../../drills/lib/restore-test.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const HOMELAB_CRON = path.join(ROOT, "components/postgres/image/bin/homelab-cron");

function problemsOf(config: Record<string, unknown>): string[] {
  try {
    validateConfig("t", config);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

/** A history line as homelab-restore-test writes it (JSON::PP canonical: keys sorted). */
function record(over: Partial<RestoreTestRecord> & { started_at: string }): RestoreTestRecord {
  return {
    kind: "restore-test",
    version: 1,
    host: "homelab-t-backup",
    stanza: "main",
    finished_at: new Date(Date.parse(over.started_at) + 4000).toISOString(),
    verdict: "pass",
    failedStep: null,
    reason: null,
    backup: { label: "20261202-030000F", type: "full", repo: 1, stoppedAt: "2026-12-02T03:00:10Z", ageSeconds: 7200, databaseBytes: 100e6, repositoryBytes: 6e6 },
    budgetSeconds: 3600,
    restoreSeconds: 1.7,
    recoverySeconds: 0.7,
    amcheckSeconds: 0.6,
    totalSeconds: 3.4,
    bytesRestored: 102008186,
    restoreMBps: 60.0,
    amcheck: { relations: 551, pages: 11217 },
    ...over,
  };
}

const failed = (started_at: string) =>
  record({ started_at, verdict: "fail", failedStep: "verify", reason: "pgbackrest verify: backup: 20261202-030000F, status: invalid ... checksum invalid: 1", restoreSeconds: null, recoverySeconds: null, amcheckSeconds: null, bytesRestored: null, restoreMBps: null, amcheck: null, totalSeconds: 0.4 });

describe("pgbackrest.restoreTest config", () => {
  it("defaults: enabled, Sunday 05:00 (two hours after the weekly full at 03:00), a budget of one hour", () => {
    const spec = validateConfig("t", {});
    expect(spec.pgbackrest.restoreTest).toEqual({ enabled: true, schedule: "0 5 * * 0", budget: 3600 });
    expect(spec.pgbackrest.schedules.full).toBe("0 3 * * 0");
  });

  it("validates the schedule with the same cron rules as the backup schedules, naming the key", () => {
    expect(problemsOf({ pgbackrest: { restoreTest: { schedule: "0 25 * * 0" } } })).toEqual(['homelab-data:pgbackrest.restoreTest.schedule: got "0 25 * * 0"; hour 25 is out of range 0-23']);
    expect(problemsOf({ pgbackrest: { restoreTest: { schedule: "@weekly" } } })[0]).toMatch(/^homelab-data:pgbackrest\.restoreTest\.schedule: got "@weekly"; expected a five-field cron expression/);
  });

  it("refuses a budget under a minute, a budget that is no duration, and unknown keys, one line each", () => {
    expect(problemsOf({ pgbackrest: { restoreTest: { budget: "30s" } } })).toEqual([expect.stringMatching(/^homelab-data:pgbackrest\.restoreTest\.budget: got 30; expected at least 1min/)]);
    expect(problemsOf({ pgbackrest: { restoreTest: { budget: "soon" } } })).toEqual([expect.stringMatching(/^homelab-data:pgbackrest\.restoreTest\.budget: got "soon"; expected /)]);
    expect(problemsOf({ pgbackrest: { restoreTest: { enabled: "yes" } } })).toHaveLength(1);
    expect(problemsOf({ pgbackrest: { restoreTest: { scheduel: "0 5 * * 0" } } })[0]).toMatch(/pgbackrest\.restoreTest.*scheduel/);
    expect(validateConfig("t", { pgbackrest: { restoreTest: { budget: "2h" } } }).pgbackrest.restoreTest.budget).toBe(7200);
  });
});

describe("the repository host's crontab", () => {
  const crontabOf = (config: Record<string, unknown>) => planHomelab(validateConfig("t", config), redactedSecrets()).nodes.find((n) => n.name === "backup")!.files.find((f) => f.path === "/etc/homelab/crontab")!.content;

  it("runs homelab-restore-test on the schedule with the stanza and the budget in whole seconds", () => {
    expect(crontabOf({})).toContain("\n0 5 * * 0 homelab-restore-test --stanza=main --budget=3600\n");
    expect(restoreTestCronLine(validateConfig("t", { pgbackrest: { stanza: "lab", restoreTest: { schedule: "30 4 * * 6", budget: "90.5s" } } }))).toBe("30 4 * * 6 homelab-restore-test --stanza=lab --budget=91");
  });

  it("has no restore test line when disabled (the command still works by hand)", () => {
    const cron = crontabOf({ pgbackrest: { restoreTest: { enabled: false } } });
    expect(cron).not.toContain("homelab-restore-test");
    expect(cron).toContain("pgbackrest --stanza=main --type=full backup");
  });

  it("homelab-cron reads it and fires the test on Sunday 05:00 UTC, not at the 03:00 backup nor on Monday", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "restore-test-cron-"));
    const file = path.join(dir, "crontab");
    // Without the monitoring node's every-minute metrics line, which would match every minute below.
    writeFileSync(file, backupCrontab(validateConfig("t", { monitoring: { enabled: false } })));
    const run = (...args: string[]) => spawnSync("perl", [HOMELAB_CRON, ...args], { encoding: "utf8", env: { ...process.env, TZ: "UTC" } });
    expect(run("--check", file).stdout.trim()).toBe("3 job(s)");
    const at = (iso: string) => run("--match", file, String(Date.parse(iso) / 1000)).stdout.trim();
    // 2026-12-06 is a Sunday.
    expect(at("2026-12-06T05:00:30Z")).toBe("homelab-restore-test --stanza=main --budget=3600");
    expect(at("2026-12-06T03:00:00Z")).toBe("pgbackrest --stanza=main --type=full backup");
    expect(at("2026-12-07T05:00:00Z")).toBe("");
    expect(at("2026-12-06T05:01:00Z")).toBe("");
  });
});

describe("restore test history", () => {
  const a = record({ started_at: "2026-11-22T05:00:00.100Z" });
  const b = failed("2026-11-29T05:00:00.100Z");
  const c = record({ started_at: "2026-12-06T05:00:00.100Z", totalSeconds: 5.1 });

  it("parses the lines homelab-restore-test writes, oldest first, skipping (and naming) a cut-short line", () => {
    const text = `${JSON.stringify(c)}\n${JSON.stringify(a)}\n{"kind":"restore-test","vers\n\n${JSON.stringify({ ...b, verdict: "maybe" })}\n${JSON.stringify(b)}\n`;
    const { records, skipped } = parseRestoreTestHistory(text);
    expect(records.map((r) => r.started_at)).toEqual([a.started_at, b.started_at, c.started_at]);
    expect(skipped).toEqual(["line 3: not JSON", expect.stringMatching(/^line 5: verdict: /)]);
    expect(parseRestoreTestHistory("")).toEqual({ records: [], skipped: [] });
  });

  it("merges two histories without duplicating a run", () => {
    expect(mergeRestoreTestRecords([a, b], [b, c]).map((r) => r.started_at)).toEqual([a.started_at, b.started_at, c.started_at]);
    expect(mergeRestoreTestRecords([], [])).toEqual([]);
  });

  it("becomes drill history entries: passes charted at their total time, failures with step and reason", () => {
    const pass = restoreTestHistoryEntry("lab", c);
    expect(pass).toMatchObject({ drill: RESTORE_TEST_DRILL, stack: "lab", verdict: "pass", rtoSeconds: 5.1, rpoSeconds: null, failedChecks: [] });
    const fail = restoreTestHistoryEntry("lab", b);
    expect(fail).toMatchObject({ verdict: "fail", rtoSeconds: null, failedChecks: [expect.stringMatching(/^verify: pgbackrest verify: backup: 20261202-030000F/)] });
    const svg = renderChartSvg([a, b, c].map((r) => restoreTestHistoryEntry("lab", r)));
    expect(svg).toContain(`<polyline data-drill="${RESTORE_TEST_DRILL}"`);
    expect(svg.match(new RegExp(`<title>${RESTORE_TEST_DRILL} [^<]*RTO`, "g"))).toHaveLength(2);
  });

  it("keeps pulled runs in the reports folder, merged per stack", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "restore-test-cache-"));
    await saveRestoreTestRecords(dir, "lab", [a, b]);
    await saveRestoreTestRecords(dir, "lab", [b, c]);
    await saveRestoreTestRecords(dir, "other", [a]);
    const cached = await loadCachedRestoreTests(dir);
    expect([...cached.keys()]).toEqual(["lab", "other"]);
    expect(cached.get("lab")!.map((r) => r.started_at)).toEqual([a.started_at, b.started_at, c.started_at]);
    expect(await loadCachedRestoreTests(path.join(dir, "nothing-here"))).toEqual(new Map());
  });

  it("renders one table per stack with the numbers that drift: restore time, MB/s, size, and the failure", () => {
    const md = renderRestoreTestMarkdown(new Map([["lab", [a, b, c]]]));
    expect(md).toContain("## Scheduled restore tests: stack lab");
    expect(md).toContain("| 2026-11-22T05:00:00.100Z | ✔ pass | 20261202-030000F | 2.0h | 1.7 s | 60 | 700 ms | 600 ms (551 rel.) | 3.4 s | 97 MiB | — |");
    expect(md).toMatch(/\| ✖ FAIL \| 20261202-030000F \| .* \| verify: pgbackrest verify: backup: 20261202-030000F, status: invalid \.\.\. checksum invalid: 1 \|/);
  });
});

describe("homelab status: the last scheduled restore test", () => {
  const now = Date.parse("2026-12-06T07:00:00Z");
  const o = { nowMs: now, repositoryContainer: "homelab-lab-backup" };

  it("none yet: says so and how to run one", () => {
    expect(restoreTestStatus([], o)).toEqual({ lines: ["scheduled restore test: none recorded yet; run one now: docker exec homelab-lab-backup homelab-restore-test"], failed: false });
  });

  it("a pass: when, the backup and its age, the durations", () => {
    const s = restoreTestStatus([record({ started_at: "2026-12-06T05:00:00.000Z" })], o);
    expect(s.failed).toBe(false);
    expect(s.lines).toEqual([`scheduled restore test: PASS 2026-12-06T05:00:04.000Z (120min ago), backup 20261202-030000F (2.0h old), total 3.4 s: restore 1.7 s at 60 MB/s (97 MiB), recovery 700 ms, amcheck 551 relations in 600 ms`]);
  });

  it("a failure is loud: step, reason, the last pass, the runbook and the logs; failed is true", () => {
    const s = restoreTestStatus([record({ started_at: "2026-11-29T05:00:00.000Z" }), failed("2026-12-06T05:00:00.000Z")], { ...o, skipped: ["line 2: not JSON"] });
    expect(s.failed).toBe(true);
    expect(s.lines[0]).toMatch(/^scheduled restore test: ✖ FAILED 2026-12-06T05:00:04\.000Z \(120min ago\), backup 20261202-030000F \(2\.0h old\), at step verify: pgbackrest verify: backup: 20261202-030000F, status: invalid \.\.\. checksum invalid: 1 \(1 unreadable history line\(s\) skipped: line 2: not JSON\)$/);
    expect(s.lines[1]).toBe("  !! the newest backup did NOT prove restorable; last pass: 2026-11-29T05:00:04.000Z (20261202-030000F)");
    expect(s.lines[2]).toBe("  !! runbook: runbooks/scheduled-restore-test-failed.md; logs: docker exec homelab-lab-backup cat /var/lib/pgbackrest/homelab/restore-test-last.log");
    expect(restoreTestStatus([failed("2026-12-06T05:00:00.000Z")], o).lines[1]).toMatch(/last pass: never$/);
  });
});

describe("homelab report (the CLI) with scheduled restore tests", () => {
  it("charts the runs kept in the reports folder even when no drill ran yet", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "restore-test-report-"));
    await saveRestoreTestRecords(dir, "lab", [record({ started_at: "2026-11-29T05:00:00.000Z" }), failed("2026-12-06T05:00:00.000Z")]);
    const r = spawnSync(process.execPath, [path.join(ROOT, "bin/homelab.mjs"), "report", "--reports", dir], { cwd: ROOT, encoding: "utf8", env: { ...process.env, XDG_DATA_HOME: dir } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^report: 2 runs -> /m);
    const md = readFileSync(path.join(dir, "REPORT.md"), "utf8");
    expect(md).toContain(`| ${RESTORE_TEST_DRILL} | 2 | 1 |`);
    expect(md).toContain("## Scheduled restore tests: stack lab");
    expect(readFileSync(path.join(dir, "chart.svg"), "utf8")).toContain(`data-drill="${RESTORE_TEST_DRILL}"`);
  });
});

describe("homelab status: an overdue scheduled restore test", () => {
  const weekly = { enabled: true, schedule: "0 5 * * 0", budgetSeconds: 3600 };
  const lastRun = record({ started_at: "2026-11-29T05:00:00.000Z" });

  it("is overdue only once the next fire time, the budget and a 5 min grace have passed with no new line", () => {
    // Next fire after the run on Sunday 2026-11-29 05:00: Sunday 2026-12-06 05:00.
    expect(restoreTestOverdue(weekly, lastRun, Date.parse("2026-12-06T06:04:00Z"))).toBeNull();
    expect(restoreTestOverdue(weekly, lastRun, Date.parse("2026-12-06T06:06:00Z"))).toEqual({ dueAt: "2026-12-06T05:00:00.000Z" });
    expect(restoreTestOverdue({ ...weekly, enabled: false }, lastRun, Date.parse("2027-01-01T00:00:00Z"))).toBeNull();
    expect(restoreTestOverdue(weekly, undefined, Date.parse("2027-01-01T00:00:00Z"))).toBeNull();
    expect(restoreTestOverdue({ enabled: true, schedule: "* * * * *", budgetSeconds: 60 }, lastRun, Date.parse("2026-11-29T05:07:30Z"))).toEqual({ dueAt: "2026-11-29T05:01:00.000Z" });
  });

  it("says so loudly after the last PASS, and counts as a failure", () => {
    const s = restoreTestStatus([lastRun], { nowMs: Date.parse("2026-12-08T00:00:00Z"), repositoryContainer: "homelab-lab-backup", schedule: weekly });
    expect(s.failed).toBe(true);
    expect(s.lines[0]).toMatch(/^scheduled restore test: PASS 2026-11-29T05:00:04\.000Z/);
    expect(s.lines[1]).toBe('  !! overdue: schedule "0 5 * * 0" should have started a run at 2026-12-06T05:00:00.000Z; none recorded since. Is homelab-cron running it? docker logs homelab-lab-backup | grep homelab-restore-test');
    expect(restoreTestStatus([lastRun], { nowMs: Date.parse("2026-12-01T00:00:00Z"), repositoryContainer: "c", schedule: weekly }).failed).toBe(false);
  });
});
