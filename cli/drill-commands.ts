// `homelab drill <name>|all` and `homelab report`: run drills against a stack's topology, and render the
// accumulated history (Markdown + SVG chart of RTO/RPO per drill over time).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type Command, Option } from "commander";
import type { Topology } from "../components/topology.ts";
import { currentPrimary, loadTopology, pgNodeStates } from "../drills/lib/topology.ts";
import { controlFor } from "../drills/lib/nodes.ts";
import { exitCodeFor, loadHistory, renderChartSvg, renderHistoryMarkdown, type DrillReport } from "../drills/lib/report.ts";
import { psqlOnNode } from "../drills/lib/nodes.ts";
import { UsageError } from "./errors.ts";
import { preparePulumi } from "./setup.ts";

export const DRILLS = ["redis", "backup-restore", "failover", "recreate"] as const;
export type DrillName = (typeof DRILLS)[number];
/** `drill all`: cheapest and least disruptive first; recreate (destroys the tier) only when asked by name. */
export const ALL_ORDER: DrillName[] = ["redis", "backup-restore", "failover"];

interface DrillFlags {
  stack?: string;
  topology?: string;
  reports: string;
  variant?: string;
  yes?: boolean;
  force?: boolean;
}

type Runner = (topology: Topology, flags: DrillFlags) => Promise<DrillReport>;

/** Each drill module exports run<Name>Drill(opts) -> DrillReport (drills/<name>.mts). */
export const RUNNERS: Record<DrillName, Runner> = {
  redis: async (topology, flags) =>
    (await import("../drills/redis.mts")).runRedisDrill({
      topology,
      reportsDir: flags.reports,
      // With a Redis replica in the stack, promotion is the recovery to rehearse unless asked otherwise.
      variant: (flags.variant as "restart" | "replica-promotion" | undefined) ?? (topology.nodes.some((n) => n.role === "redis-replica") ? "replica-promotion" : "restart"),
    }),
  "backup-restore": async (topology, flags) =>
    (await import("../drills/backup-restore.mts")).runBackupRestoreDrill({ topology, reportsDir: flags.reports, variant: (flags.variant as "pitr" | "latest" | "both" | undefined) ?? "both" }),
  failover: async (topology, flags) => (await import("../drills/failover.mts")).runFailoverDrill({ topology, reportsDir: flags.reports }),
  recreate: async (_topology, flags) => {
    if (!flags.stack) throw new UsageError(["drill recreate: --stack is required (it destroys and re-creates the stack with pulumi)"]);
    const { runRecreateOnStack } = await import("../drills/recreate.mts");
    return runRecreateOnStack({ stack: flags.stack, yes: Boolean(flags.yes), force: Boolean(flags.force), topologyFile: flags.topology, reportsDir: flags.reports });
  },
};

export function registerDrillCommands(program: Command): void {
  program
    .command("drill")
    .description(`Run a drill (${DRILLS.join(", ")}) or all of them (${ALL_ORDER.join(" -> ")}) against a stack; exits non-zero when an objective is missed`)
    .argument("<name>", `${DRILLS.join(" | ")} | all`)
    .option("--stack <name>", "read the topology from `pulumi stack output topology --json --stack <name>`")
    .option("--topology <file>", "read the topology from a JSON file instead")
    .option("--reports <dir>", "reports folder (history accumulates here)", "reports")
    .addOption(new Option("--variant <variant>", "backup-restore: pitr, latest or both; redis: restart or replica-promotion").choices(["pitr", "latest", "both", "restart", "replica-promotion"]))
    .option("--yes", "recreate: confirm that the stack is destroyed and re-created from its backups", false)
    .option("--force", "recreate: destroy even when the archive is behind (loses what was not archived)", false)
    .action(async (name: string, flags: DrillFlags) => {
      const names = name === "all" ? ALL_ORDER : [name];
      const unknown = names.filter((n) => !(DRILLS as readonly string[]).includes(n));
      if (unknown.length > 0) throw new UsageError([`drill: got ${JSON.stringify(name)}; expected one of ${[...DRILLS, "all"].join(", ")}`]);
      if (!flags.stack && !flags.topology) throw new UsageError(["drill: --stack <name> or --topology <file> is required"]);
      const variants: Partial<Record<DrillName, string[]>> = { "backup-restore": ["pitr", "latest", "both"], redis: ["restart", "replica-promotion"] };
      for (const n of names as DrillName[]) {
        if (flags.variant && name !== "all" && !variants[n]?.includes(flags.variant)) {
          throw new UsageError([`--variant: got ${JSON.stringify(flags.variant)}; drill ${n} accepts ${variants[n]?.join(", ") ?? "no variant"}`]);
        }
      }
      if (flags.stack) await preparePulumi();
      let worst = 0;
      for (const drill of names as DrillName[]) {
        // Re-read the topology per drill: a drill may move roles (failover) or re-create nodes.
        const topology = await loadTopology({ stack: flags.stack, file: flags.topology });
        const report = await RUNNERS[drill](topology, flags);
        const code = exitCodeFor(report);
        console.log(`${drill}: ${report.verdict.toUpperCase()}${code === 0 ? "" : ` (${report.checks.filter((c) => !c.ok).map((c) => c.detail).join("; ")})`}`);
        worst = Math.max(worst, code);
      }
      if (name === "all") worst = Math.max(worst, await assertRedundant(await loadTopology({ stack: flags.stack, file: flags.topology })));
      process.exitCode = worst;
    });

  program
    .command("report")
    .description("Render the drill history as Markdown with an SVG chart of RTO and RPO per drill over time")
    .option("--reports <dir>", "reports folder", "reports")
    .option("--out <dir>", "where to write REPORT.md and chart.svg (default: the reports folder)")
    .action(async (flags: { reports: string; out?: string }) => {
      const history = await loadHistory(flags.reports);
      if (history.length === 0) throw new UsageError([`report: no drill history in ${path.resolve(flags.reports)}/history.jsonl; run \`homelab drill <name> --stack <stack>\` first`]);
      const out = path.resolve(flags.out ?? flags.reports);
      mkdirSync(out, { recursive: true });
      writeFileSync(path.join(out, "chart.svg"), renderChartSvg(history));
      writeFileSync(path.join(out, "REPORT.md"), `${renderHistoryMarkdown(history)}\n![RTO and RPO per drill over time](chart.svg)\n`);
      console.log(`report: ${history.length} runs -> ${path.join(out, "REPORT.md")}, ${path.join(out, "chart.svg")}`);
    });
}

/** After `drill all` the stack must be as it started: one primary and a streaming replica. */
async function assertRedundant(topology: Topology): Promise<number> {
  const ctl = controlFor(topology);
  const states = await pgNodeStates(topology, ctl);
  const primary = await currentPrimary(topology, ctl);
  const streaming = await psqlOnNode(ctl, primary, "select count(*) from pg_stat_replication where state = 'streaming'");
  const replicas = Number(streaming.trim());
  const ok = replicas >= 1;
  console.log(`stack after the drills: primary ${primary.name}, ${replicas} streaming replica(s) (${states.map((s) => `${s.node.name}=${s.state}`).join(", ")}) -> ${ok ? "healthy" : "NOT redundant"}`);
  return ok ? 0 : 1;
}
