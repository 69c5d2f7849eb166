// The baselines' pure parts (`homelab bench pg|redis|olap`): history lines, --compare, percentiles, the
// parsers of pgbench and redis-benchmark output, the OLAP plan summaries and result comparison. The benches
// on a real tier are test/e2e/bench.test.ts.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { compareRuns, findBaseline, loadBenchHistory, median, paramDifferences, parseBenchHistory, percentile, renderComparison, writeBenchRun, type BenchRun } from "../../bench/lib/history.ts";
import { duckdbPlanSummary, olapQueries, pgPlanSummary, renderOlapChartSvg, sameResults } from "../../bench/olap.mts";
import { parsePgbenchSummary, pgbenchLatenciesMs } from "../../bench/pg.mts";
import { parseRedisBenchmarkCsv, redisBenchMetrics } from "../../bench/redis.mts";
import { registerBenchCommands } from "../../cli/bench-commands.ts";
import { runProgram } from "../../cli/run.ts";

const run = (over: Partial<BenchRun> = {}): BenchRun => ({
  bench: "pg",
  stack: "local",
  runId: "r1",
  started_at: "2026-12-04T03:00:00.000Z",
  finished_at: "2026-12-04T03:01:00.000Z",
  params: { scale: 10, clients: 4 },
  metrics: { tps: { value: 1000, unit: "tps", better: "higher" }, latencyP99: { value: 10, unit: "ms", better: "lower" } },
  evidence: { secretless: true },
  ...over,
});

describe("bench history", () => {
  it("writes a report per run and one history line without the evidence; reads them back oldest first", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "bench-"));
    try {
      const second = run({ runId: "r2", started_at: "2026-12-04T04:00:00.000Z" });
      const w = await writeBenchRun(second, dir, (base) => `chart ${base}.svg`, { ".svg": "<svg/>" });
      await writeBenchRun(run(), dir, "md");
      expect(await readFile(w.markdown, "utf8")).toBe(`chart ${path.basename(w.json, ".json")}.svg`);
      expect(w.files).toEqual([w.json.replace(/\.json$/, ".svg")]);
      const h = await loadBenchHistory(dir);
      expect(h.map((e) => e.runId)).toEqual(["r1", "r2"]);
      expect(h[0]).not.toHaveProperty("evidence");
      expect(h[1]!.report).toBe(path.relative(path.join(dir, "bench"), w.json));
      // Never overwrites an earlier run.
      await expect(writeBenchRun(second, dir, "again")).rejects.toThrow(/EEXIST/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("names the line that is not a run", () => {
    expect(() => parseBenchHistory('{"bench":"pg"}\n', "h.jsonl")).toThrow(/^h\.jsonl:1: not a benchmark run: stack/);
    expect(() => parseBenchHistory("{", "h.jsonl")).toThrow(/^h\.jsonl:1: not JSON/);
    expect(parseBenchHistory("\n\n", "h.jsonl")).toEqual([]);
  });

  it("--compare: previous is the newest of the same bench and stack; a runId must exist and be the same bench", () => {
    const h = [run({ runId: "a" }), run({ runId: "b", stack: "other" }), run({ runId: "c", bench: "redis" }), run({ runId: "d" })].map((r) => ({ ...r, report: "x" }));
    expect(findBaseline(h, { bench: "pg", stack: "local", ref: "previous" })).toMatchObject({ runId: "d" });
    expect(findBaseline(h, { bench: "pg", stack: "local", ref: "a" })).toMatchObject({ runId: "a" });
    expect(findBaseline(h, { bench: "pg", stack: "local", ref: "c" })).toEqual({ problem: "--compare: run c is a `bench redis` run, not `bench pg`" });
    expect(findBaseline(h, { bench: "pg", stack: "local", ref: "zz" })).toEqual({ problem: '--compare: no run "zz" in the history; the last runs of bench pg on local: a, d (or `previous`)' });
    expect(findBaseline(h, { bench: "olap", stack: "local", ref: "previous" })).toEqual({ problem: "--compare previous: no earlier `bench olap` run of stack local in the history" });
  });

  it("a ratio above 1 is better whichever way the metric points; different parameters are named", () => {
    const base = run();
    const now = run({ params: { scale: 10, clients: 8 }, metrics: { tps: { value: 1500, unit: "tps", better: "higher" }, latencyP99: { value: 20, unit: "ms", better: "lower" }, extra: { value: 1, unit: "s", better: "lower" } } });
    const rows = compareRuns(now, base);
    expect(rows).toEqual([
      { metric: "tps", unit: "tps", base: 1000, current: 1500, improvement: 1.5 },
      { metric: "latencyP99", unit: "ms", base: 10, current: 20, improvement: 0.5 },
    ]);
    expect(paramDifferences(now, base)).toEqual(["clients 4 -> 8"]);
    expect(renderComparison(rows, "r1", ["clients 4 -> 8"])).toEqual([
      "compared with run r1 (different parameters: clients 4 -> 8):",
      "  tps: 1000 -> 1500 tps (1.50x better)",
      "  latencyP99: 10.0 -> 20.0 ms (2.00x worse)",
    ]);
  });

  it("median and nearest-rank percentiles", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    const v = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect([percentile(v, 50), percentile(v, 99), percentile(v, 100), percentile(v, 0)]).toEqual([50, 99, 100, 1]);
    expect(() => median([])).toThrow(RangeError);
  });
});

describe("bench pg: pgbench output", () => {
  const summary = `transaction type: <builtin: TPC-B (sort of)>
number of transactions actually processed: 16459
number of failed transactions: 0 (0.000%)
latency average = 2.421 ms
initial connection time = 50.513 ms
tps = 1652.059041 (without initial connection time)
`;
  it("reads the summary; no summary is an error quoting what pgbench printed", () => {
    expect(parsePgbenchSummary(summary)).toEqual({ tps: 1652.059041, transactions: 16459, failed: 0, latencyAverageMs: 2.421 });
    expect(() => parsePgbenchSummary("pgbench: error: connection refused\n")).toThrow("pgbench printed no summary: pgbench: error: connection refused");
  });
  it("per-transaction latencies from --log lines, in ms", () => {
    expect(pgbenchLatenciesMs("2 1 9837 0 1796354763 705998\n3 1 13386 0 1796354763 709716\n\nbad line\n")).toEqual([9.837, 13.386]);
  });
});

describe("bench redis: redis-benchmark --csv", () => {
  const csv = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","79365.08","0.202","0.032","0.143","0.303","1.023","23.551"
"GET","92936.80","0.139","0.024","0.087","0.191","1.039","33.695"
`;
  it("rows and metrics per test", () => {
    const rows = parseRedisBenchmarkCsv(`WARNING: Could not fetch server CONFIG\n${csv}`);
    expect(rows[0]).toEqual({ test: "SET", rps: 79365.08, avgMs: 0.202, p50Ms: 0.143, p95Ms: 0.303, p99Ms: 1.023, maxMs: 23.551 });
    expect(redisBenchMetrics(rows)).toMatchObject({ setRps: { value: 79365.08, unit: "req/s", better: "higher" }, getP99: { value: 1.039, unit: "ms", better: "lower" } });
  });
  it("no CSV, or a cell that is not a number, is an error", () => {
    expect(() => parseRedisBenchmarkCsv("ERROR: NOAUTH\n")).toThrow(/no CSV header/);
    expect(() => parseRedisBenchmarkCsv(csv.replace('"92936.80"', '"n/a"'))).toThrow('redis-benchmark: rps of GET is not a number: "n/a"');
  });
});

describe("bench olap", () => {
  it("the same SQL for both engines, the point lookup inside the table", () => {
    const q = olapQueries("public.t", 1000);
    expect(q.map((x) => x.name)).toEqual(["point lookup", "revenue by category", "monthly revenue by region", "top customers", "distinct buyers, filtered"]);
    expect(q[0]!.sql).toContain("WHERE id = 618");
    expect(q.every((x) => x.sql.includes("FROM public.t"))).toBe(true);
  });

  it("plan summaries: PostgreSQL's JSON plan, DuckDB's profile tree", () => {
    expect(pgPlanSummary({ "Node Type": "Limit", Plans: [{ "Node Type": "Gather Merge", "Workers Planned": 2, Plans: [{ "Node Type": "Seq Scan", "Relation Name": "t" }] }] })).toBe("Limit <- Gather Merge (2 workers) <- Seq Scan on t");
    const duck = ["┌───────────────────────────┐", "│         HASH_GROUP_BY     │", "│    ────────────────────   │", "│          Groups:          │", "└─────────────┬─────────────┘", "┌─────────────┴─────────────┐", "│         TABLE_SCAN        │", "└───────────────────────────┘", "Total Time: 0.0123s"].join("\n");
    expect(duckdbPlanSummary(duck)).toBe("HASH_GROUP_BY <- TABLE_SCAN");
  });

  it("results equal across engines: numbers as text or numbers, timestamps in either spelling; a difference named", () => {
    expect(sameResults([{ n: 3, total: 12.5, at: "2026-01-01T00:00:00" }], [{ n: 3, total: "12.50", at: "2026-01-01 00:00:00" }]).ok).toBe(true);
    expect(sameResults([{ at: "2026-03-01T10:00:00+00:00" }], [{ at: "2026-03-01 10:00:00+00" }]).ok).toBe(true);
    expect(sameResults([{ n: 3 }], [{ n: 4 }])).toEqual({ ok: false, detail: "row 1 n: 3 vs 4" });
    expect(sameResults([{ n: 3 }], [])).toEqual({ ok: false, detail: "1 rows vs 0" });
  });

  it("the chart has one bar per engine and query", () => {
    const svg = renderOlapChartSvg([{ query: "a<b", pgMs: [], duckdbMs: [], pgMedianMs: 100, duckdbMedianMs: 2, ratio: 50, pgPlan: "", duckdbPlan: "", sameResult: { ok: true, detail: "" } }]);
    expect(svg.match(/<rect x=/g)).toHaveLength(4);
    expect(svg).toContain("a&lt;b");
    expect(svg).toContain("50.0x");
  });
});

describe("homelab bench: flags", () => {
  const cli = async (argv: string[]) => {
    const program = new Command("homelab").exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    registerBenchCommands(program);
    const errors: string[] = [];
    const original = console.error;
    console.error = (m: string) => errors.push(m);
    try {
      return { code: await runProgram(program, argv, "homelab"), errors };
    } finally {
      console.error = original;
      process.exitCode = undefined;
    }
  };
  it("refuses an unknown bench, a missing stack, a bad number and a --compare naming no run, before anything runs", async () => {
    expect(await cli(["bench", "mysql", "--stack", "local"])).toEqual({ code: 2, errors: ['homelab: bench: got "mysql"; expected one of pg, redis, olap'] });
    expect(await cli(["bench", "pg"])).toEqual({ code: 2, errors: ["homelab: bench pg: --stack <name> or --topology <file> is required"] });
    expect((await cli(["bench", "olap", "--stack", "local", "--rows", "10k"])).code).toBe(2);
    const dir = await mkdtemp(path.join(tmpdir(), "bench-cli-"));
    try {
      expect(await cli(["bench", "pg", "--stack", "local", "--reports", dir, "--compare", "nope"])).toEqual({ code: 2, errors: ['homelab: bench pg: --compare: no run "nope" in the history; no run of bench pg on local yet (or `previous`)'] });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
