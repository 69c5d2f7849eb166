// Baselines of a stack (`homelab bench pg|redis|olap`, issue 13 item 4): each run is one JSON report + a
// Markdown summary under <reports>/bench/<bench>/, and one line in <reports>/bench/history.jsonl, so a tuning
// change can be compared run to run: `--compare <runId|previous>` prints every metric's ratio to that run.
// Kept apart from the drills' history.jsonl: a benchmark has numbers, not a verdict against objectives.
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { parseJsonLines, readFileIfExists } from "../../drills/lib/report.ts";

export const BENCHES = ["pg", "redis", "olap"] as const;
export type BenchName = (typeof BENCHES)[number];

/** One measured number; `better` says which way is an improvement (a ratio > 1 is always "better"). */
export interface BenchMetric {
  value: number;
  unit: string;
  better: "higher" | "lower";
}

export interface BenchRun {
  bench: BenchName;
  stack: string;
  runId: string;
  started_at: string;
  finished_at: string;
  /** What was run (scale, clients, rows...): a comparison across different parameters says so. */
  params: Record<string, string | number>;
  metrics: Record<string, BenchMetric>;
  /** Whatever explains the numbers: versions, plans, the node's size. */
  evidence: Record<string, unknown>;
}

const metricSchema = z.object({ value: z.number(), unit: z.string(), better: z.enum(["higher", "lower"]) });
const historyLineSchema = z.looseObject({
  bench: z.enum(BENCHES),
  stack: z.string(),
  runId: z.string().min(1),
  started_at: z.string(),
  finished_at: z.string(),
  params: z.record(z.string(), z.union([z.string(), z.number()])),
  metrics: z.record(z.string(), metricSchema),
  report: z.string(),
});
export type BenchHistoryEntry = z.infer<typeof historyLineSchema>;

const SAFE = /[^A-Za-z0-9._-]+/g;
const stamp = (iso: string) => new Date(iso).toISOString().replace(/[-:]/g, "");
export const benchDir = (reportsDir: string) => path.join(reportsDir, "bench");

/**
 * Writes the run's JSON and Markdown (and `extra` files by suffix, e.g. ".svg": a chart) and appends its
 * history line. `markdown` may be a function of the files' base name, to link the extra files.
 */
export async function writeBenchRun(run: BenchRun, reportsDir: string, markdown: string | ((baseName: string) => string), extra: Record<string, string> = {}): Promise<{ json: string; markdown: string; files: string[] }> {
  const dir = path.join(benchDir(reportsDir), run.bench);
  await mkdir(dir, { recursive: true });
  const baseName = `${stamp(run.started_at)}-${run.runId.replace(SAFE, "_")}`;
  const base = path.join(dir, baseName);
  await writeFile(`${base}.json`, `${JSON.stringify(run, null, 2)}\n`, { flag: "wx" });
  await writeFile(`${base}.md`, typeof markdown === "string" ? markdown : markdown(baseName), { flag: "wx" });
  const files: string[] = [];
  for (const [suffix, body] of Object.entries(extra)) {
    await writeFile(`${base}${suffix}`, body, { flag: "wx" });
    files.push(`${base}${suffix}`);
  }
  const { evidence: _evidence, ...line } = run;
  const entry: BenchHistoryEntry = { ...line, report: path.relative(benchDir(reportsDir), `${base}.json`).split(path.sep).join("/") };
  await appendFile(path.join(benchDir(reportsDir), "history.jsonl"), `${JSON.stringify(entry)}\n`);
  return { json: `${base}.json`, markdown: `${base}.md`, files };
}

/** Every recorded run, oldest first; [] when there is none. A line that is not a run is an error naming it. */
export async function loadBenchHistory(reportsDir: string): Promise<BenchHistoryEntry[]> {
  const file = path.join(benchDir(reportsDir), "history.jsonl");
  return parseBenchHistory(await readFileIfExists(file), file);
}

export function parseBenchHistory(text: string, source: string): BenchHistoryEntry[] {
  return parseJsonLines(text, source, historyLineSchema, "a benchmark run").sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
}

/**
 * The run `--compare <ref>` names among the earlier runs of the same bench and stack: a runId, or
 * `previous` (the newest before now). Undefined with the reason when there is none.
 */
export function findBaseline(history: readonly BenchHistoryEntry[], o: { bench: BenchName; stack: string; ref: string }): BenchHistoryEntry | { problem: string } {
  const same = history.filter((h) => h.bench === o.bench && h.stack === o.stack);
  if (o.ref === "previous") {
    const last = same.at(-1);
    return last ?? { problem: `--compare previous: no earlier \`bench ${o.bench}\` run of stack ${o.stack} in the history` };
  }
  const hit = history.find((h) => h.runId === o.ref);
  if (!hit) {
    const known = same.slice(-5).map((h) => h.runId);
    return { problem: `--compare: no run ${JSON.stringify(o.ref)} in the history; ${known.length ? `the last runs of bench ${o.bench} on ${o.stack}: ${known.join(", ")}` : `no run of bench ${o.bench} on ${o.stack} yet`} (or \`previous\`)` };
  }
  if (hit.bench !== o.bench) return { problem: `--compare: run ${o.ref} is a \`bench ${hit.bench}\` run, not \`bench ${o.bench}\`` };
  return hit;
}

export interface MetricComparison {
  metric: string;
  unit: string;
  base: number;
  current: number;
  /** current/base for "higher is better", base/current for "lower": > 1 means this run is better. */
  improvement: number;
}

/** Metric by metric (those both runs have), how this run compares with the baseline (pure). */
export function compareRuns(current: Pick<BenchRun, "metrics">, base: Pick<BenchRun, "metrics">): MetricComparison[] {
  return Object.entries(current.metrics).flatMap(([metric, m]) => {
    const b = base.metrics[metric];
    if (!b || b.unit !== m.unit) return [];
    const improvement = m.better === "higher" ? m.value / b.value : b.value / m.value;
    return [{ metric, unit: m.unit, base: b.value, current: m.value, improvement }];
  });
}

/** Parameters that differ between the runs (the comparison is then of different workloads). */
export function paramDifferences(current: Pick<BenchRun, "params">, base: Pick<BenchRun, "params">): string[] {
  const keys = [...new Set([...Object.keys(current.params), ...Object.keys(base.params)])];
  return keys.filter((k) => current.params[k] !== base.params[k]).map((k) => `${k} ${base.params[k] ?? "—"} -> ${current.params[k] ?? "—"}`);
}

const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

/** The comparison as printed lines: `tps: 1650 -> 1800 tps (1.09x better)`. */
export function renderComparison(rows: readonly MetricComparison[], baseRunId: string, differences: readonly string[]): string[] {
  const lines = [`compared with run ${baseRunId}${differences.length ? ` (different parameters: ${differences.join(", ")})` : ""}:`];
  for (const r of rows) {
    const word = r.improvement >= 1 ? "better" : "worse";
    const factor = r.improvement >= 1 ? r.improvement : 1 / r.improvement;
    lines.push(`  ${r.metric}: ${fmt(r.base)} -> ${fmt(r.current)} ${r.unit} (${factor.toFixed(2)}x ${word})`);
  }
  if (rows.length === 0) lines.push("  no metric in common");
  return lines;
}

/** The Markdown table of a run's metrics (every bench's report starts with it). */
export function metricsTable(run: Pick<BenchRun, "metrics">): string {
  return ["| metric | value |", "| --- | --- |", ...Object.entries(run.metrics).map(([k, m]) => `| ${k} | ${fmt(m.value)} ${m.unit} (${m.better} is better) |`)].join("\n");
}

/** Median of a non-empty list (pure). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError("median of nothing");
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The p-th percentile (0-100) by nearest rank of a non-empty list (pure). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError("percentile of nothing");
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1]!;
}
