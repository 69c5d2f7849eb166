// Drill reports (docs/drills.md "Report"): one JSON object + a Markdown summary per run, and one line per run in
// reports/history.jsonl so a user sees the trend across runs (`homelab report`: a Markdown table and an SVG
// chart of RTO and RPO per drill over time). Exit code: 0 only when every check passed.
import { randomBytes } from "node:crypto";
import { appendFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import type { Check } from "./assert.ts";
import { formatDuration, formatSeconds, type RpoMeasurement, type RtoBreakdown } from "./measure.ts";

export interface ReportPhase {
  name: string;
  /** ISO 8601. */
  startedAt: string;
  durationMs: number;
  ok?: boolean;
  detail?: string;
}

export interface DrillReport {
  drill: string;
  stack: string;
  runId: string;
  /** ISO 8601. */
  started_at: string;
  finished_at: string;
  /** The objectives the drill was held to, unit in the name: { rtoSeconds: 10, rpoWrites: 0 }. */
  objectives: Record<string, number>;
  phases: ReportPhase[];
  rpo: (RpoMeasurement & { walGapBytes?: number }) | null;
  rto: (RtoBreakdown & { redundancyRestoredSeconds?: number }) | null;
  verdict: "pass" | "fail";
  checks: Check[];
  /** Backup label, LSNs, timeline, container names... whatever lets someone re-trace the run. */
  evidence: Record<string, unknown>;
}

/** A run's id: sortable by time (base-36 ms) and unique among runs started in the same millisecond. */
export function newRunId(): string {
  return `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
}

/** "pass" only when there are checks and every one passed: a drill that checked nothing proved nothing. */
export function verdictFor(checks: readonly Check[]): "pass" | "fail" {
  return checks.length > 0 && checks.every((c) => c.ok) ? "pass" : "fail";
}

export function exitCodeFor(report: Pick<DrillReport, "checks" | "verdict">): number {
  return report.verdict === "pass" && verdictFor(report.checks) === "pass" ? 0 : 1;
}

/** A report from what a drill collected: verdict from the checks, finished_at now (or as given). */
export function makeReport(input: Omit<DrillReport, "verdict" | "finished_at" | "started_at"> & { startedAtMs: number; finishedAtMs?: number }): DrillReport {
  const { startedAtMs, finishedAtMs, ...rest } = input;
  return {
    ...rest,
    started_at: new Date(startedAtMs).toISOString(),
    finished_at: new Date(finishedAtMs ?? Date.now()).toISOString(),
    verdict: verdictFor(input.checks),
  };
}

/**
 * How every drill ends: the report from what it collected, written to the reports folder (history
 * accumulates), each check printed with its mark, then the verdict and where the report is.
 */
export async function concludeDrill(input: Parameters<typeof makeReport>[0], opts: { reportsDir?: string; log: { info(message: string): void } }): Promise<DrillReport> {
  const report = makeReport(input);
  const paths = await writeReport(report, opts.reportsDir ?? "reports");
  for (const c of report.checks) opts.log.info(`${c.ok ? "✔" : "✖"} ${c.name}: ${c.detail}`);
  opts.log.info(`verdict ${report.verdict.toUpperCase()}; report ${paths.json}, ${paths.markdown}`);
  return report;
}

// ----------------------------------------------------------------------------------------------- files

export interface HistoryEntry {
  drill: string;
  stack: string;
  runId: string;
  started_at: string;
  finished_at: string;
  verdict: "pass" | "fail";
  rtoSeconds: number | null;
  rpoSeconds: number | null;
  lostWrites: number | null;
  objectives: Record<string, number>;
  failedChecks: string[];
  /** The JSON report, relative to the reports directory. */
  report: string;
}

const historyEntrySchema = z.looseObject({
  drill: z.string().min(1),
  stack: z.string(),
  runId: z.string(),
  started_at: z.string(),
  finished_at: z.string(),
  verdict: z.enum(["pass", "fail"]),
  rtoSeconds: z.number().nullable(),
  rpoSeconds: z.number().nullable(),
  lostWrites: z.number().nullable(),
  objectives: z.record(z.string(), z.number()),
  failedChecks: z.array(z.string()),
  report: z.string(),
});

const SAFE = /[^A-Za-z0-9._-]+/g;

/** 2025-01-02T03:04:05.678Z -> 20250102T030405.678Z: sortable, safe on every file system. */
function fileStamp(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) throw new RangeError(`report started_at is not a date: ${JSON.stringify(iso)}`);
  return d.toISOString().replace(/[-:]/g, "");
}

export function historyEntryOf(report: DrillReport, reportPath: string): HistoryEntry {
  return {
    drill: report.drill,
    stack: report.stack,
    runId: report.runId,
    started_at: report.started_at,
    finished_at: report.finished_at,
    verdict: report.verdict,
    rtoSeconds: report.rto?.totalSeconds ?? null,
    rpoSeconds: report.rpo?.rpoSeconds ?? null,
    lostWrites: report.rpo?.lostWrites ?? null,
    objectives: report.objectives,
    failedChecks: report.checks.filter((c) => !c.ok).map((c) => c.name),
    report: reportPath,
  };
}

/**
 * Writes `<dir>/<drill>/<timestamp>-<runId>.json` and `.md` (never overwriting an earlier run) and appends
 * one line to `<dir>/history.jsonl`. Returns the paths written.
 */
export async function writeReport(report: DrillReport, dir = "reports"): Promise<{ json: string; markdown: string; history: string }> {
  const drillDir = path.join(dir, report.drill.replace(SAFE, "_"));
  await mkdir(drillDir, { recursive: true });
  const base = `${fileStamp(report.started_at)}-${report.runId.replace(SAFE, "_")}`;
  const json = path.join(drillDir, `${base}.json`);
  const markdown = path.join(drillDir, `${base}.md`);
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`, { flag: "wx" });
  await writeFile(markdown, renderReportMarkdown(report), { flag: "wx" });
  const history = path.join(dir, "history.jsonl");
  const entry = historyEntryOf(report, path.relative(dir, json).split(path.sep).join("/"));
  await appendFile(history, `${JSON.stringify(entry)}\n`);
  return { json, markdown, history };
}

/** Every run recorded in `<dir>/history.jsonl`, oldest first; [] when there is none yet. */
export async function loadHistory(dir = "reports"): Promise<HistoryEntry[]> {
  const file = path.join(dir, "history.jsonl");
  return (parseJsonLines(await readFileIfExists(file), file, historyEntrySchema, "a history entry") as HistoryEntry[]).sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
}

/** A file's text, or "" when there is no such file yet (a history before its first run). */
export async function readFileIfExists(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw e;
  }
}

/** Every non-blank line of a JSONL file checked against `schema`; the first bad one is an error naming its line. */
export function parseJsonLines<T>(text: string, source: string, schema: z.ZodType<T>, what: string): T[] {
  const out: T[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new Error(`${source}:${i + 1}: not JSON (${(e as Error).message})`, { cause: e });
    }
    const parsed = schema.safeParse(value);
    if (!parsed.success) throw new Error(`${source}:${i + 1}: not ${what}: ${parsed.error.issues.map((x) => `${x.path.join(".") || "(root)"}: ${x.message}`).join("; ")}`);
    out.push(parsed.data);
  });
  return out;
}

// ----------------------------------------------------------------------------------------------- Markdown

function cell(value: unknown): string {
  const s = value === undefined || value === null ? "—" : String(value);
  return s.replace(/\|/g, "\\|").replace(/\r?\n/g, "<br>");
}

function table(head: string[], rows: unknown[][]): string {
  return [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${r.map(cell).join(" | ")} |`)].join("\n");
}

function withUnit(value: number | string | undefined, unit: string | undefined): string {
  if (value === undefined) return "—";
  if (typeof value === "number" && unit === "s") return formatSeconds(value);
  return unit ? `${value} ${unit}` : String(value);
}

const mark = (ok: boolean | undefined) => (ok === undefined ? "—" : ok ? "✔ pass" : "✖ FAIL");

export function renderReportMarkdown(report: DrillReport): string {
  const lines: string[] = [];
  const elapsed = Date.parse(report.finished_at) - Date.parse(report.started_at);
  lines.push(`# Drill \`${report.drill}\`: ${report.verdict === "pass" ? "PASS" : "FAIL"}`, "");
  lines.push(`Stack \`${report.stack}\`, run \`${report.runId}\`, started ${report.started_at}, finished ${report.finished_at} (${formatDuration(elapsed)}).`, "");
  const failed = report.checks.filter((c) => !c.ok);
  lines.push(report.verdict === "pass" ? `All ${report.checks.length} checks passed.` : report.checks.length === 0 ? "No check was recorded: a drill that checked nothing proved nothing." : `${failed.length} of ${report.checks.length} checks failed.`, "");

  lines.push("## Objectives vs measured", "");
  const measured = report.checks.filter((c) => c.objective !== undefined || c.measured !== undefined);
  const objectiveRows = Object.entries(report.objectives).map(([k, v]) => [k, v]);
  if (objectiveRows.length > 0) lines.push(table(["Objective", "Value"], objectiveRows), "");
  if (measured.length > 0) lines.push(table(["Check", "Objective", "Measured", "Result"], measured.map((c) => [c.name, withUnit(c.objective, c.unit), withUnit(c.measured, c.unit), mark(c.ok)])), "");

  if (report.rto || report.rpo) {
    lines.push("## RTO and RPO", "");
    const rows: unknown[][] = [];
    if (report.rto) {
      rows.push(["RTO", formatSeconds(report.rto.totalSeconds)]);
      for (const p of report.rto.phases) rows.push([`  ${p.name}`, formatDuration(p.durationMs)]);
      if (report.rto.redundancyRestoredSeconds !== undefined) rows.push(["redundancy restored", formatSeconds(report.rto.redundancyRestoredSeconds)]);
    }
    if (report.rpo) {
      rows.push(["RPO (time)", formatSeconds(report.rpo.rpoSeconds)]);
      rows.push(["RPO (writes lost)", `${report.rpo.lostWrites} of ${report.rpo.acknowledgedWrites} acknowledged`]);
      if (report.rpo.lostWrites > 0) rows.push(["lost seqs (first 20)", report.rpo.lostSeqs.join(", ")]);
      rows.push(["ghost writes", report.rpo.ghostWrites]);
      rows.push(["uncertain writes (present)", `${report.rpo.uncertainWrites} (${report.rpo.uncertainPresent})`]);
      if (report.rpo.walGapBytes !== undefined) rows.push(["WAL gap", `${report.rpo.walGapBytes} bytes`]);
    }
    lines.push(table(["Measure", "Value"], rows), "");
  }

  lines.push("## Phases", "");
  lines.push(report.phases.length === 0 ? "No phase recorded." : table(["#", "Phase", "Started", "Duration", "Result", "Detail"], report.phases.map((p, i) => [i + 1, p.name, p.startedAt, formatDuration(p.durationMs), mark(p.ok), p.detail])), "");

  if (failed.length > 0) {
    lines.push("## Failed checks", "");
    for (const c of failed) lines.push(`- **${c.name}**: ${c.detail}`);
    lines.push("");
  }
  lines.push("## Checks", "");
  lines.push(report.checks.length === 0 ? "None." : table(["Check", "Result", "Detail"], report.checks.map((c) => [c.name, mark(c.ok), c.detail])), "");

  lines.push("## Evidence", "");
  lines.push(Object.keys(report.evidence).length === 0 ? "None recorded." : ["```json", JSON.stringify(report.evidence, null, 2), "```"].join("\n"), "");
  return `${lines.join("\n")}`;
}

export function renderHistoryMarkdown(history: readonly HistoryEntry[]): string {
  const lines = ["# Drill history", ""];
  if (history.length === 0) return `${lines.join("\n")}No drill has run yet: reports appear here after the first \`drills/*\` run.\n`;
  const byDrill = groupByDrill(history);
  lines.push(
    table(
      ["Drill", "Runs", "Passed", "Last run", "Last verdict", "Last RTO", "Last RPO"],
      [...byDrill].map(([drill, runs]) => {
        const last = runs[runs.length - 1]!;
        return [drill, runs.length, runs.filter((r) => r.verdict === "pass").length, last.started_at, last.verdict === "pass" ? "✔ pass" : "✖ FAIL", seconds(last.rtoSeconds), seconds(last.rpoSeconds)];
      }),
    ),
    "",
  );
  for (const [drill, runs] of byDrill) {
    lines.push(`## ${drill}`, "");
    lines.push(
      table(
        ["Started", "Stack", "Run", "Verdict", "RTO", "RPO", "Lost writes", "Failed checks", "Report"],
        runs.map((r) => [r.started_at, r.stack, r.runId, r.verdict === "pass" ? "✔ pass" : "✖ FAIL", seconds(r.rtoSeconds), seconds(r.rpoSeconds), r.lostWrites, r.failedChecks.join(", ") || "—", r.report]),
      ),
      "",
    );
  }
  return lines.join("\n");
}

const seconds = (s: number | null) => (s === null ? "—" : formatSeconds(s));

function groupByDrill(history: readonly HistoryEntry[]): Map<string, HistoryEntry[]> {
  const sorted = [...history].sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
  const byDrill = new Map<string, HistoryEntry[]>();
  for (const h of sorted) byDrill.set(h.drill, [...(byDrill.get(h.drill) ?? []), h]);
  return new Map([...byDrill].sort(([a], [b]) => a.localeCompare(b)));
}

// ----------------------------------------------------------------------------------------------- SVG

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
const FAIL_COLOR = "#d62728";

export function xmlEscape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&apos;");
}

/** A "nice" axis maximum and step (1, 2, 5 x 10^n) covering `max` in about `ticks` steps. */
export function niceScale(max: number, ticks = 5): { max: number; step: number } {
  if (!(max > 0) || !Number.isFinite(max)) return { max: 1, step: 0.2 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  return { max: Math.ceil(max / step - 1e-9) * step, step };
}

const fmt = (n: number) => String(Math.round(n * 10) / 10);

/** "11-21 05:45", or with seconds when the whole axis spans less than an hour (ticks would repeat). */
export function shortTime(ms: number, spanMs = Number.POSITIVE_INFINITY): string {
  return new Date(ms).toISOString().slice(5, spanMs < 3_600_000 ? 19 : 16).replace("T", " ");
}

type Metric = { key: "rtoSeconds" | "rpoSeconds"; title: string; objectiveKeys: string[] };
const METRICS: Metric[] = [
  { key: "rtoSeconds", title: "RTO (seconds)", objectiveKeys: ["rtoSeconds", "rto"] },
  { key: "rpoSeconds", title: "RPO (seconds)", objectiveKeys: ["rpoSeconds", "rpo"] },
];

/**
 * RTO and RPO per drill over time: two panels sharing the time axis, one polyline per drill in each panel
 * (a drill with no value for a metric draws none there), failed runs as red points, dashed objective lines.
 */
export function renderChartSvg(history: readonly HistoryEntry[]): string {
  const width = 960;
  const left = 70;
  const right = 200;
  const top = 50;
  const panelHeight = 220;
  const gap = 70;
  const plotWidth = width - left - right;
  const height = top + METRICS.length * panelHeight + (METRICS.length - 1) * gap + 60;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<title>Drill RTO and RPO over time</title>`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${left}" y="24" font-size="16" font-weight="bold">Drill RTO and RPO over time</text>`);
  if (history.length === 0) {
    out.push(`<text x="${left}" y="${top + 40}">No drill has run yet.</text>`, `</svg>`);
    return `${out.join("\n")}\n`;
  }
  const byDrill = groupByDrill(history);
  const color = new Map([...byDrill.keys()].map((d, i) => [d, PALETTE[i % PALETTE.length]!]));
  const times = history.map((h) => Date.parse(h.started_at));
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (t1 - t0 < 60_000) {
    // One run (or runs within a minute): centre them on a one-hour axis.
    t0 -= 30 * 60_000;
    t1 += 30 * 60_000;
  }
  const x = (t: number) => left + ((t - t0) / (t1 - t0)) * plotWidth;

  METRICS.forEach((metric, panel) => {
    const y0 = top + panel * (panelHeight + gap);
    const values = history.map((h) => h[metric.key]).filter((v): v is number => v !== null);
    const objectives = [...byDrill].map(([, runs]) => objectiveOf(runs[runs.length - 1]!, metric)).filter((v): v is number => v !== undefined);
    const axis = valueAxis([...values, ...objectives]);
    const y = (v: number) => y0 + panelHeight - axis.fraction(v) * panelHeight;
    out.push(`<g class="panel" data-metric="${metric.key}" data-scale="${axis.kind}">`);
    out.push(`<text x="${left}" y="${y0 - 10}" font-weight="bold">${xmlEscape(metric.title + (axis.kind === "log" ? ", log scale" : ""))}</text>`);
    for (const v of axis.ticks) {
      out.push(`<line x1="${left}" y1="${fmt(y(v))}" x2="${left + plotWidth}" y2="${fmt(y(v))}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${left - 8}" y="${fmt(y(v) + 4)}" text-anchor="end">${xmlEscape(trimNumber(v))}</text>`);
    }
    out.push(`<line class="axis" x1="${left}" y1="${y0}" x2="${left}" y2="${y0 + panelHeight}" stroke="#333"/>`);
    out.push(`<line class="axis" x1="${left}" y1="${y0 + panelHeight}" x2="${left + plotWidth}" y2="${y0 + panelHeight}" stroke="#333"/>`);
    const ticks = 5;
    for (let i = 0; i <= ticks; i++) {
      const t = t0 + ((t1 - t0) * i) / ticks;
      out.push(`<line x1="${fmt(x(t))}" y1="${y0 + panelHeight}" x2="${fmt(x(t))}" y2="${y0 + panelHeight + 5}" stroke="#333"/>`);
      out.push(`<text x="${fmt(x(t))}" y="${y0 + panelHeight + 18}" text-anchor="middle">${xmlEscape(shortTime(t, t1 - t0))}</text>`);
    }
    out.push(`<text x="${left + plotWidth / 2}" y="${y0 + panelHeight + 36}" text-anchor="middle" fill="#555">run start (UTC)</text>`);
    for (const [drill, runs] of byDrill) {
      const c = color.get(drill)!;
      const objective = objectiveOf(runs[runs.length - 1]!, metric);
      if (objective !== undefined) {
        out.push(`<line class="objective" data-drill="${xmlEscape(drill)}" x1="${left}" y1="${fmt(y(objective))}" x2="${left + plotWidth}" y2="${fmt(y(objective))}" stroke="${c}" stroke-dasharray="6 4" stroke-opacity="0.7"><title>${xmlEscape(`${drill} objective ${formatSeconds(objective)}`)}</title></line>`);
      }
      const points = runs.filter((r) => r[metric.key] !== null);
      if (points.length === 0) continue;
      out.push(`<polyline data-drill="${xmlEscape(drill)}" fill="none" stroke="${c}" stroke-width="2" points="${points.map((r) => `${fmt(x(Date.parse(r.started_at)))},${fmt(y(r[metric.key]!))}`).join(" ")}"/>`);
      for (const r of points) {
        const fill = r.verdict === "pass" ? c : FAIL_COLOR;
        const label = `${drill} ${r.started_at}: ${metric.key === "rtoSeconds" ? "RTO" : "RPO"} ${formatSeconds(r[metric.key]!)} (${r.verdict})`;
        out.push(`<circle cx="${fmt(x(Date.parse(r.started_at)))}" cy="${fmt(y(r[metric.key]!))}" r="4" fill="${fill}" stroke="${c}"><title>${xmlEscape(label)}</title></circle>`);
      }
    }
    out.push(`</g>`);
  });

  const lx = left + plotWidth + 24;
  out.push(`<g class="legend">`);
  out.push(`<text x="${lx}" y="${top}" font-weight="bold">Drills</text>`);
  [...byDrill.keys()].forEach((drill, i) => {
    const ly = top + 20 + i * 20;
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 20}" y2="${ly - 4}" stroke="${color.get(drill)}" stroke-width="2"/>`);
    out.push(`<text x="${lx + 26}" y="${ly}">${xmlEscape(drill)}</text>`);
  });
  const ly = top + 20 + byDrill.size * 20 + 10;
  out.push(`<circle cx="${lx + 10}" cy="${ly - 4}" r="4" fill="${FAIL_COLOR}"/>`, `<text x="${lx + 26}" y="${ly}">failed run</text>`);
  out.push(`<line x1="${lx}" y1="${ly + 16}" x2="${lx + 20}" y2="${ly + 16}" stroke="#333" stroke-dasharray="6 4"/>`, `<text x="${lx + 26}" y="${ly + 20}">objective</text>`);
  out.push(`</g>`, `</svg>`);
  return `${out.join("\n")}\n`;
}

/**
 * The y axis of a panel: linear from 0 with nice steps, or, when values span more than ~2 decades (a 3 s
 * failover beside a 3 min restore), a symmetric log scale log10(1 + v/0.1) that still shows 0 and keeps the
 * short drills readable. Returns where v falls (0 = bottom, 1 = top) and the ticks to label.
 */
export function valueAxis(values: readonly number[]): { kind: "linear" | "log"; ticks: number[]; fraction: (v: number) => number } {
  const max = Math.max(0, ...values);
  const positive = values.filter((v) => v > 0);
  const minPositive = positive.length > 0 ? Math.min(...positive) : max;
  if (max > 0 && max / minPositive >= 50) {
    const c = 0.1;
    const f = (v: number) => Math.log10(1 + Math.max(0, v) / c);
    const ticks = [0];
    for (let t = c; ; t *= 10) {
      const rounded = Number(t.toPrecision(6));
      ticks.push(rounded);
      if (rounded >= max) break;
    }
    const top = f(ticks[ticks.length - 1]!);
    return { kind: "log", ticks, fraction: (v) => f(v) / top };
  }
  const scale = niceScale(max);
  const ticks: number[] = [];
  for (let i = 0; i * scale.step <= scale.max + scale.step / 2; i++) ticks.push(Number((i * scale.step).toPrecision(6)));
  return { kind: "linear", ticks, fraction: (v) => v / scale.max };
}

function objectiveOf(entry: HistoryEntry, metric: Metric): number | undefined {
  for (const k of metric.objectiveKeys) {
    const v = entry.objectives[k];
    if (typeof v === "number") return v;
  }
  return undefined;
}

function trimNumber(v: number): string {
  return String(Number(v.toPrecision(6)));
}
