// The scheduled restore test's history (ADR 0014): one JSON line per run, written by `homelab-restore-test` on
// the repository host (components/postgres/image/bin/homelab-restore-test) into the repository volume. Here:
// read it through node control (like the drills read the repository), parse it, turn each run into a drill
// history entry so `homelab report` charts restore time beside the drills, and say it in `homelab status`.
// The parsing, merging and wording are pure and unit-tested (test/unit/drills-restore-test.test.ts).
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { Cron } from "croner";
import path from "node:path";
import { z } from "zod";
import { formatSeconds } from "./measure.ts";
import type { ControlledNode, NodeControl } from "./nodes.ts";
import { readFileIfExists, type HistoryEntry } from "./report.ts";

/** The drill name scheduled runs get in the drill history (report table and chart). */
export const RESTORE_TEST_DRILL = "scheduled-restore-test";
/** Where the repository host keeps the last run's logs (restore, postgres, pg_amcheck); the runbook reads it. */
export const RESTORE_TEST_LAST_LOG = "/var/lib/pgbackrest/homelab/restore-test-last.log";

const seconds = z.number().nonnegative().nullable();
const restoreTestRecordSchema = z.looseObject({
  kind: z.literal("restore-test"),
  version: z.literal(1),
  host: z.string(),
  stanza: z.string(),
  started_at: z.iso.datetime(),
  finished_at: z.iso.datetime(),
  verdict: z.enum(["pass", "fail"]),
  failedStep: z.string().nullable(),
  reason: z.string().nullable(),
  backup: z
    .looseObject({
      label: z.string(),
      type: z.string(),
      repo: z.number().int(),
      stoppedAt: z.string(),
      ageSeconds: z.number(),
      databaseBytes: z.number().nonnegative(),
      repositoryBytes: z.number().nonnegative().nullable().optional(),
    })
    .nullable(),
  budgetSeconds: z.number().positive(),
  restoreSeconds: seconds,
  recoverySeconds: seconds,
  amcheckSeconds: seconds,
  totalSeconds: z.number().nonnegative(),
  bytesRestored: z.number().nonnegative().nullable(),
  restoreMBps: z.number().nonnegative().nullable(),
  amcheck: z.object({ relations: z.number().int().nonnegative(), pages: z.number().int().nonnegative().nullable() }).nullable(),
});

export type RestoreTestRecord = z.output<typeof restoreTestRecordSchema>;

/**
 * The runs in a history file's text, oldest first. A line that is not a run (a write cut short when the
 * container was killed mid-append) is skipped and named in `skipped`, never allowed to hide the other runs.
 */
export function parseRestoreTestHistory(text: string): { records: RestoreTestRecord[]; skipped: string[] } {
  const records: RestoreTestRecord[] = [];
  const skipped: string[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      skipped.push(`line ${i + 1}: not JSON`);
      return;
    }
    const parsed = restoreTestRecordSchema.safeParse(value);
    if (parsed.success) records.push(parsed.data);
    else skipped.push(`line ${i + 1}: ${parsed.error.issues.map((x) => `${x.path.join(".") || "(root)"}: ${x.message}`).join("; ")}`);
  });
  return { records: sortByStart(records), skipped };
}

const sortByStart = (records: RestoreTestRecord[]) => [...records].sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));

/** The history as the repository node holds it (`homelab-restore-test --history`: nothing yet = no run). */
export async function restoreTestHistoryOnNode(ctl: NodeControl, repository: ControlledNode, opts: { timeoutMs?: number } = {}): Promise<{ records: RestoreTestRecord[]; skipped: string[] }> {
  const r = await ctl.exec(repository, ["homelab-restore-test", "--history"], { allowFailure: true, timeoutMs: opts.timeoutMs ?? 30_000 });
  if (r.code !== 0) throw new Error(`${repository.name}: homelab-restore-test --history failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split("\n").slice(-2).join(" | ")}`);
  return parseRestoreTestHistory(r.stdout);
}

/** Union of two histories, one entry per run (host + start time), oldest first. */
export function mergeRestoreTestRecords(a: readonly RestoreTestRecord[], b: readonly RestoreTestRecord[]): RestoreTestRecord[] {
  const byRun = new Map<string, RestoreTestRecord>();
  for (const r of [...a, ...b]) byRun.set(`${r.host}|${r.started_at}`, r);
  return sortByStart([...byRun.values()]);
}

/** One scheduled run as a drill history entry: its total time is the "RTO" the chart draws. */
export function restoreTestHistoryEntry(stack: string, r: RestoreTestRecord): HistoryEntry {
  return {
    drill: RESTORE_TEST_DRILL,
    stack,
    runId: `${r.host}-${r.started_at}`,
    started_at: r.started_at,
    finished_at: r.finished_at,
    verdict: r.verdict,
    rtoSeconds: r.verdict === "pass" ? r.totalSeconds : null,
    rpoSeconds: null,
    lostWrites: null,
    objectives: {},
    failedChecks: r.verdict === "fail" ? [`${r.failedStep ?? "?"}: ${r.reason ?? "no reason recorded"}`] : [],
    report: `repository ${r.host}: homelab-restore-test --history`,
  };
}

// ----------------------------------------------------------------------------------------------- cache

/**
 * What `homelab report --stack` pulled, kept beside the drill reports (`<reports>/scheduled-restore-tests/
 * <stack>.jsonl`, merged with what was there), so a later `homelab report` without a stack, or with the
 * stack down, still charts the runs.
 */
export async function saveRestoreTestRecords(reportsDir: string, stack: string, records: readonly RestoreTestRecord[]): Promise<string> {
  const dir = path.join(reportsDir, "scheduled-restore-tests");
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${stack.replace(/[^A-Za-z0-9._-]+/g, "_")}.jsonl`);
  const merged = mergeRestoreTestRecords((await loadCachedFile(file)).records, records);
  await writeFile(file, merged.map((r) => `${JSON.stringify(r)}\n`).join(""));
  return file;
}

async function loadCachedFile(file: string): Promise<{ records: RestoreTestRecord[]; skipped: string[] }> {
  return parseRestoreTestHistory(await readFileIfExists(file));
}

/** Every stack's cached runs, by stack. */
export async function loadCachedRestoreTests(reportsDir: string): Promise<Map<string, RestoreTestRecord[]>> {
  const dir = path.join(reportsDir, "scheduled-restore-tests");
  const out = new Map<string, RestoreTestRecord[]>();
  let files: string[];
  try {
    files = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return out;
    throw e;
  }
  for (const f of files.filter((f) => f.endsWith(".jsonl")).sort()) {
    out.set(f.slice(0, -".jsonl".length), (await loadCachedFile(path.join(dir, f))).records);
  }
  return out;
}

// ----------------------------------------------------------------------------------------------- words

const age = (ms: number) => {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)}h`;
  return `${(s / 86400).toFixed(1)}d`;
};

/** "restore 1.7s at 59.8 MB/s (97 MiB), recovery 0.7s, amcheck 551 relations in 0.6s" */
export function describeRun(r: RestoreTestRecord): string {
  const parts: string[] = [];
  if (r.restoreSeconds !== null) parts.push(`restore ${formatSeconds(r.restoreSeconds)}${r.restoreMBps !== null ? ` at ${r.restoreMBps} MB/s` : ""}${r.bytesRestored !== null ? ` (${Math.round(r.bytesRestored / 1048576)} MiB)` : ""}`);
  if (r.recoverySeconds !== null) parts.push(`recovery ${formatSeconds(r.recoverySeconds)}`);
  if (r.amcheckSeconds !== null) parts.push(`amcheck ${r.amcheck ? `${r.amcheck.relations} relations ` : ""}in ${formatSeconds(r.amcheckSeconds)}`);
  return parts.join(", ");
}

/** The stack's pgbackrest.restoreTest, as the status needs it. */
export interface RestoreTestSchedule {
  enabled: boolean;
  /** Five-field cron, container time (UTC), as the schema validated it. */
  schedule: string;
  budgetSeconds: number;
}

// homelab-cron starts jobs at the top of the minute; a run may take its whole budget before it writes its line.
const OVERDUE_GRACE_MS = 5 * 60_000;

/**
 * When the schedule should have started a run after `last` and no line came within the run's budget (plus a
 * grace): the cron job stopped firing (disabled by hand, an image without the command, a scheduler that
 * died). null when on time, disabled, or with no run yet (then the stack's age, unknown here, decides).
 */
export function restoreTestOverdue(schedule: RestoreTestSchedule, last: RestoreTestRecord | undefined, nowMs: number): { dueAt: string } | null {
  if (!schedule.enabled || !last) return null;
  // croner reads the expression as homelab-cron does (the schema checks both agree); paused: never runs here.
  const due = new Cron(schedule.schedule, { paused: true, timezone: "Etc/UTC", mode: "5-part" }).nextRun(new Date(last.started_at));
  if (!due) return null;
  return due.getTime() + schedule.budgetSeconds * 1000 + OVERDUE_GRACE_MS < nowMs ? { dueAt: due.toISOString() } : null;
}

/**
 * What `homelab status` says about the scheduled restore test: the last run (when, verdict, duration), and
 * loudly when it failed (the step, the reason, the last pass, where to go next) or when the schedule should
 * have run it again and did not. `failed` is true in both cases.
 */
export function restoreTestStatus(records: readonly RestoreTestRecord[], o: { nowMs: number; repositoryContainer: string; skipped?: readonly string[]; schedule?: RestoreTestSchedule }): { lines: string[]; failed: boolean } {
  const lines: string[] = [];
  const last = records[records.length - 1];
  const overdue = o.schedule ? restoreTestOverdue(o.schedule, last, o.nowMs) : null;
  const overdueLines = overdue
    ? [`  !! overdue: schedule "${o.schedule!.schedule}" should have started a run at ${overdue.dueAt}; none recorded since. Is homelab-cron running it? docker logs ${o.repositoryContainer} | grep homelab-restore-test`]
    : [];
  const skippedNote = o.skipped && o.skipped.length > 0 ? ` (${o.skipped.length} unreadable history line(s) skipped: ${o.skipped[0]})` : "";
  if (!last) {
    lines.push(`scheduled restore test: none recorded yet${skippedNote}; run one now: docker exec ${o.repositoryContainer} homelab-restore-test`);
    return { lines, failed: false };
  }
  const when = `${last.finished_at} (${age(o.nowMs - Date.parse(last.finished_at))} ago)`;
  const backup = last.backup ? `backup ${last.backup.label} (${age(last.backup.ageSeconds * 1000)} old)` : "no backup";
  if (last.verdict === "pass") {
    lines.push(`scheduled restore test: PASS ${when}, ${backup}, total ${formatSeconds(last.totalSeconds)}: ${describeRun(last)}${skippedNote}`, ...overdueLines);
    return { lines, failed: overdue !== null };
  }
  const lastPass = [...records].reverse().find((r) => r.verdict === "pass");
  lines.push(`scheduled restore test: ✖ FAILED ${when}, ${backup}, at step ${last.failedStep ?? "?"}: ${last.reason ?? "no reason recorded"}${skippedNote}`);
  lines.push(`  !! the newest backup did NOT prove restorable; last pass: ${lastPass ? `${lastPass.finished_at} (${lastPass.backup?.label ?? "?"})` : "never"}`);
  lines.push(`  !! runbook: runbooks/scheduled-restore-test-failed.md; logs: docker exec ${o.repositoryContainer} cat ${RESTORE_TEST_LAST_LOG}`, ...overdueLines);
  return { lines, failed: true };
}

/** The report's section on scheduled runs: one table per stack, newest last, so drift reads down the column. */
export function renderRestoreTestMarkdown(byStack: ReadonlyMap<string, readonly RestoreTestRecord[]>): string {
  const lines: string[] = [];
  for (const [stack, records] of byStack) {
    if (records.length === 0) continue;
    lines.push(`## Scheduled restore tests: stack ${stack}`, "");
    lines.push("| Started | Verdict | Backup | Backup age | Restore | MB/s | Recovery | amcheck | Total | Size | Failure |");
    lines.push("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (const r of records) {
      const cells = [
        r.started_at,
        r.verdict === "pass" ? "✔ pass" : "✖ FAIL",
        r.backup?.label ?? "—",
        r.backup ? age(r.backup.ageSeconds * 1000) : "—",
        r.restoreSeconds === null ? "—" : formatSeconds(r.restoreSeconds),
        r.restoreMBps ?? "—",
        r.recoverySeconds === null ? "—" : formatSeconds(r.recoverySeconds),
        r.amcheckSeconds === null ? "—" : `${formatSeconds(r.amcheckSeconds)}${r.amcheck ? ` (${r.amcheck.relations} rel.)` : ""}`,
        formatSeconds(r.totalSeconds),
        r.bytesRestored === null ? "—" : `${Math.round(r.bytesRestored / 1048576)} MiB`,
        r.verdict === "fail" ? `${r.failedStep ?? "?"}: ${r.reason ?? ""}` : "—",
      ];
      lines.push(`| ${cells.map((c) => String(c).replace(/\|/g, "\\|")).join(" | ")} |`);
    }
    lines.push("");
  }
  return lines.join("\n");
}
