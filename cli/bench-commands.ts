// `homelab bench pg|redis|olap`: baselines of a stack, recorded under <reports>/bench/ so a tuning change can
// be compared run to run (--compare <runId|previous> prints each metric's ratio). bench/*.mts do the work.
import { Command, InvalidArgumentError, Option } from "commander";
import { compareRuns, findBaseline, loadBenchHistory, metricsTable, paramDifferences, renderComparison, writeBenchRun, type BenchName, type BenchRun } from "../bench/lib/history.ts";
import { loadTopology } from "../drills/lib/topology.ts";
import { UsageError } from "./errors.ts";
import { preparePulumi } from "./setup.ts";

interface BenchFlags {
  stack?: string;
  topology?: string;
  reports: string;
  compare?: string;
  // pg
  scale: number;
  clients?: number;
  duration: number;
  // redis
  requests: number;
  valueBytes: number;
  // olap
  rows: number;
  runs: number;
  keep: boolean;
}

/** A commander parser of a whole number in [min, max], the flag named in the error. */
export function wholeNumberIn(flag: string, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v.replace(/_/g, ""));
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${flag}: got ${JSON.stringify(v)}; expected a whole number from ${min.toLocaleString("en")} to ${max.toLocaleString("en")}`);
    return n;
  };
}

async function runBench(bench: BenchName, flags: BenchFlags): Promise<number> {
  if (!flags.stack && !flags.topology) throw new UsageError([`bench ${bench}: --stack <name> or --topology <file> is required`]);
  const history = await loadBenchHistory(flags.reports);
  // A --compare that names nothing is refused before the benchmark runs, not after.
  const baseline = flags.compare ? findBaseline(history, { bench, stack: flags.stack ?? "", ref: flags.compare }) : undefined;
  if (baseline && "problem" in baseline && flags.compare !== "previous") throw new UsageError([`bench ${bench}: ${baseline.problem}`]);
  if (flags.stack) await preparePulumi();
  const topology = await loadTopology({ stack: flags.stack, file: flags.topology });
  if (topology.platform === "libvirt" || topology.platform === "mixed") throw new UsageError([`bench ${bench}: not on platform ${topology.platform} yet (node exec on VMs runs through SSH, and the benchmarks have not been tried there)`]);
  const log = (l: string) => console.log(l);
  let run: BenchRun;
  let markdown: string;
  const extra: Record<string, string> = {};
  if (bench === "pg") {
    const { runPgBench } = await import("../bench/pg.mts");
    run = await runPgBench({ topology, scale: flags.scale, clients: flags.clients ?? 4, durationSeconds: flags.duration, log });
    markdown = `# bench pg: pgbench on ${run.params.node}\n\nStack \`${run.stack}\`, run \`${run.runId}\`, ${run.started_at}: scale ${run.params.scale}, ${run.params.clients} clients, ${run.params.durationSeconds} s, TPC-B-like, prepared.\n\n${metricsTable(run)}\n\n\`\`\`json\n${JSON.stringify(run.evidence, null, 2)}\n\`\`\`\n`;
  } else if (bench === "redis") {
    const { runRedisBench } = await import("../bench/redis.mts");
    run = await runRedisBench({ topology, requests: flags.requests, clients: flags.clients ?? 50, valueBytes: flags.valueBytes, log });
    markdown = `# bench redis: redis-benchmark on ${run.params.node}\n\nStack \`${run.stack}\`, run \`${run.runId}\`, ${run.started_at}: ${run.params.requests} requests per test, ${run.params.clients} clients, ${run.params.valueBytes}-byte values.\n\n${metricsTable(run)}\n`;
  } else {
    const { runOlapBench, renderOlapMarkdown, renderOlapChartSvg } = await import("../bench/olap.mts");
    run = await runOlapBench({ topology, rows: flags.rows, runs: flags.runs, keep: flags.keep, log });
    markdown = renderOlapMarkdown(run);
    extra[".svg"] = renderOlapChartSvg((run.evidence.results ?? []) as Parameters<typeof renderOlapChartSvg>[0]);
  }
  const written = await writeBenchRun(run, flags.reports, (baseName) => markdown.replace("](chart.svg)", `](${baseName}.svg)`), extra);
  console.log(`bench ${bench}: run ${run.runId}`);
  for (const line of metricsTable(run).split("\n").slice(2)) console.log(`  ${line.replace(/^\| | \|$/g, "").replace(" | ", ": ")}`);
  console.log(`bench ${bench}: report ${written.json}, ${written.markdown}${written.files.length ? `, ${written.files.join(", ")}` : ""}`);
  if (flags.compare) {
    const base = findBaseline(history, { bench, stack: run.stack, ref: flags.compare });
    if ("problem" in base) console.log(`bench ${bench}: ${base.problem}: nothing to compare with yet`);
    else for (const line of renderComparison(compareRuns(run, base), base.runId, paramDifferences(run, base))) console.log(line);
  }
  return 0;
}

export function registerBenchCommands(program: Command): void {
  const command = program
    .command("bench")
    .description("Baselines of a stack: pg (pgbench on the primary), redis (redis-benchmark GET/SET/INCR), olap (the same dataset in PostgreSQL and on the DuckDB host); recorded in <reports>/bench/, --compare prints the ratio to an earlier run")
    .argument("<bench>", "pg | redis | olap")
    .option("--stack <name>", "read the topology from `pulumi stack output topology --json --stack <name>`")
    .option("--topology <file>", "read the topology from a JSON file instead")
    .option("--reports <dir>", "reports folder (bench/history.jsonl accumulates there)", "reports")
    .option("--compare <run>", "print each metric's ratio to an earlier run of the same bench: its runId, or `previous`")
    .addOption(new Option("--scale <n>", "pg: pgbench scale factor (100,000 accounts each)").argParser(wholeNumberIn("--scale", 1, 10_000)).default(10))
    .addOption(new Option("--clients <n>", "pg: pgbench clients (default 4); redis: parallel connections (default 50)").argParser(wholeNumberIn("--clients", 1, 1_000)))
    .addOption(new Option("--duration <seconds>", "pg: seconds pgbench runs").argParser(wholeNumberIn("--duration", 5, 3_600)).default(30))
    .addOption(new Option("--requests <n>", "redis: requests per test").argParser(wholeNumberIn("--requests", 1_000, 10_000_000)).default(100_000))
    .addOption(new Option("--value-bytes <n>", "redis: SET/GET value size").argParser(wholeNumberIn("--value-bytes", 1, 1_048_576)).default(64))
    .addOption(new Option("--rows <n>", "olap: rows in the generated table").argParser(wholeNumberIn("--rows", 1_000, 1_000_000_000)).default(10_000_000))
    .addOption(new Option("--runs <n>", "olap: timed runs per query (median printed)").argParser(wholeNumberIn("--runs", 1, 100)).default(5))
    .option("--keep", "olap: keep the table (and its DuckDB copy) afterwards", false);
  command.action(async (bench: string, flags: BenchFlags) => {
    if (!["pg", "redis", "olap"].includes(bench)) throw new UsageError([`bench: got ${JSON.stringify(bench)}; expected one of pg, redis, olap`]);
    process.exitCode = await runBench(bench as BenchName, flags);
  });
}
