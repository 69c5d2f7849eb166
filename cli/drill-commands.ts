// `homelab drill <name>|all` and `homelab report`: run drills against a stack's topology, and render the
// accumulated history (Markdown + SVG chart of RTO/RPO per drill over time). The flags and runner of each
// drill are defined here once: drills/<name>.mts run on their own through drillScriptProgram(<name>).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Command, Option } from "commander";
import type { Topology } from "../components/topology.ts";
import { currentPrimary, loadTopology, nodeByName, pgNodeStates } from "../drills/lib/topology.ts";
import { controlFor } from "../drills/lib/nodes.ts";
import { publishDrillMetrics } from "../drills/lib/metrics.ts";
import { exitCodeFor, loadHistory, renderChartSvg, renderHistoryMarkdown, type DrillReport } from "../drills/lib/report.ts";
import { psqlOnNode } from "../drills/lib/nodes.ts";
import { loadCachedRestoreTests, renderRestoreTestMarkdown, restoreTestHistoryEntry, restoreTestHistoryOnNode, saveRestoreTestRecords } from "../drills/lib/restore-test.ts";
import { UsageError } from "./errors.ts";
import { runProgram } from "./run.ts";
import { preparePulumi } from "./setup.ts";

export const DRILLS = ["redis", "backup-restore", "failover", "switchover", "long-transaction", "vacuum-bloat", "query-tuning", "wraparound", "redis-replication-lag", "recreate", "site-loss"] as const;
export type DrillName = (typeof DRILLS)[number];
/** `drill all`: cheapest and least disruptive first; recreate and site-loss (destroy the tier) only when asked by name. */
export const ALL_ORDER: DrillName[] = ["redis", "redis-replication-lag", "long-transaction", "vacuum-bloat", "query-tuning", "wraparound", "backup-restore", "switchover", "failover"];
/** Drills only a postgres.ha: patroni stack has (`all` skips them elsewhere, saying so). */
export const HA_ONLY: readonly DrillName[] = ["switchover"];
/** What --variant accepts, per drill; a drill not listed takes no --variant. */
export const VARIANTS: Partial<Record<DrillName, readonly string[]>> = { "backup-restore": ["pitr", "latest", "both"], redis: ["restart", "replica-promotion"] };
const VARIANT_HELP: Partial<Record<DrillName, string>> = {
  "backup-restore": "pitr (to a target time), latest (the whole archive) or both (default)",
  redis: "restart or replica-promotion (default: replica-promotion when the stack has a redis-replica node)",
};

interface DrillFlags {
  stack?: string;
  topology?: string;
  reports: string;
  variant?: string;
  yes?: boolean;
  force?: boolean;
  freshBackup?: boolean;
}

/** Runs one drill; `topology()` reads the stack's topology (the recreate drill reads it itself, after its refusals). */
type Runner = (topology: () => Promise<Topology>, flags: DrillFlags) => Promise<DrillReport>;

/** Each drill module exports run<Name>Drill(opts) -> DrillReport (drills/<name>.mts). */
export const RUNNERS: Record<DrillName, Runner> = {
  redis: async (topology, flags) => {
    const t = await topology();
    return (await import("../drills/redis.mts")).runRedisDrill({
      topology: t,
      reportsDir: flags.reports,
      // With a Redis replica in the stack, promotion is the recovery to rehearse unless asked otherwise.
      variant: (flags.variant as "restart" | "replica-promotion" | undefined) ?? (t.nodes.some((n) => n.role === "redis-replica") ? "replica-promotion" : "restart"),
    });
  },
  "backup-restore": async (topology, flags) =>
    (await import("../drills/backup-restore.mts")).runBackupRestoreDrill({
      topology: await topology(),
      reportsDir: flags.reports,
      variant: (flags.variant as "pitr" | "latest" | "both" | undefined) ?? "both",
      freshBackup: Boolean(flags.freshBackup),
    }),
  // With postgres.ha: patroni the drill must not promote anything: it injects the fault and observes (ADR 0017).
  failover: async (topology, flags) => {
    const t = await topology();
    if (t.postgres.ha) return (await import("../drills/ha-failover.mts")).runHaFailoverDrill({ topology: t, reportsDir: flags.reports });
    return (await import("../drills/failover.mts")).runFailoverDrill({ topology: t, reportsDir: flags.reports });
  },
  switchover: async (topology, flags) => {
    const t = await topology();
    if (!t.postgres.ha) throw new UsageError([`drill switchover: stack ${t.stack} is postgres.ha: manual; a switchover is Patroni's (postgres.ha: patroni). On a manual stack \`drill failover\` rehearses the operator's promotion`]);
    return (await import("../drills/switchover.mts")).runSwitchoverDrill({ topology: t, reportsDir: flags.reports });
  },
  "long-transaction": async (topology, flags) => (await import("../drills/long-transaction.mts")).runLongTransactionDrill({ topology: await topology(), reportsDir: flags.reports }),
  "vacuum-bloat": async (topology, flags) => (await import("../drills/vacuum-bloat.mts")).runVacuumBloatDrill({ topology: await topology(), reportsDir: flags.reports }),
  "redis-replication-lag": async (topology, flags) => (await import("../drills/redis-replication-lag.mts")).runRedisReplicationLagDrill({ topology: await topology(), reportsDir: flags.reports }),
  wraparound: async (topology, flags) => (await import("../drills/wraparound.mts")).runWraparoundDrill({ topology: await topology(), reportsDir: flags.reports }),
  "query-tuning": async (topology, flags) => (await import("../drills/query-tuning.mts")).runQueryTuningDrill({ topology: await topology(), reportsDir: flags.reports }),
  recreate: async (_topology, flags) => {
    const { runRecreateOnStack } = await import("../drills/recreate.mts");
    return runRecreateOnStack({ stack: flags.stack!, yes: Boolean(flags.yes), force: Boolean(flags.force), topologyFile: flags.topology, reportsDir: flags.reports });
  },
  "site-loss": async (_topology, flags) => {
    const { runSiteLossOnStack } = await import("../drills/site-loss.mts");
    return runSiteLossOnStack({ stack: flags.stack!, yes: Boolean(flags.yes), force: Boolean(flags.force), topologyFile: flags.topology, reportsDir: flags.reports });
  },
};

/**
 * The flags a drill reads, the one list behind `homelab drill` (every flag, `drill` undefined) and each
 * drills/<name>.mts (only the flags that drill reads; --variant limited to its variants).
 */
export function drillOptions(drill?: DrillName): Option[] {
  const variants = drill ? VARIANTS[drill] : [...new Set(Object.values(VARIANTS).flat())];
  const variantHelp = drill ? (VARIANT_HELP[drill] ?? "") : Object.entries(VARIANT_HELP).map(([d, help]) => `${d}: ${help}`).join("; ");
  const options = [
    new Option("--stack <name>", "read the topology from `pulumi stack output topology --json --stack <name>`"),
    new Option("--topology <file>", "read the topology from a JSON file instead"),
    new Option("--reports <dir>", "reports folder (history accumulates here)").default("reports"),
  ];
  if (variants) options.push(new Option("--variant <variant>", variantHelp).choices(variants));
  if (!drill || drill === "backup-restore") {
    options.push(new Option("--fresh-backup", "backup-restore: restore a new full backup instead of the newest existing one (expired again afterwards)").default(false));
  }
  if (!drill || drill === "recreate" || drill === "site-loss") {
    options.push(
      new Option("--yes", "recreate, site-loss: confirm that the stack is destroyed and re-created from its backups (site-loss: from repo2 only)").default(false),
      new Option("--force", "recreate, site-loss: destroy even when the archive is behind (loses what was not archived)").default(false),
    );
  }
  return options;
}

/** Flag problems for running `drills`; in the CLI (`cli`) each names the command (`drill: ...`). */
function flagProblems(drills: readonly DrillName[], flags: DrillFlags, cli: boolean): string[] {
  if (!flags.stack && !flags.topology) return [`${cli ? "drill: " : ""}--stack <name> or --topology <file> is required`];
  for (const d of ["recreate", "site-loss"] as const) {
    if (drills.includes(d) && !flags.stack) return [`${cli ? `drill ${d}: ` : ""}--stack is required (it destroys and re-creates the stack with pulumi)`];
  }
  return [];
}

/** Runs `drills` in order, printing one verdict line each; resolves with the worst exit code. */
/** Drills that run on a libvirt (VM) stack today (ADR 0018). */
export const ON_VMS: readonly DrillName[] = ["failover"];
/** Why a drill does not run on VMs yet. */
const NOT_ON_VMS: Partial<Record<DrillName, string>> = {
  "long-transaction": "not tried on VMs yet",
  "vacuum-bloat": "not tried on VMs yet",
  "query-tuning": "not tried on VMs yet",
  switchover: "postgres.ha: patroni is not built on VMs yet",
  "redis-replication-lag": "Redis is not built on VMs yet",
  redis: "Redis is not built on VMs yet",
};
const notOnVmsWhy = (d: DrillName) => NOT_ON_VMS[d] ?? "it makes its restore or scratch nodes as containers";

/** The drills that touch only the Redis nodes: they run wherever those are containers. */
const REDIS_DRILLS: readonly DrillName[] = ["redis", "redis-replication-lag"];

/** Does the topology keep its Redis nodes (if any) in containers? (A mixed stack may: `redis.host`.) */
export const redisInContainers = (t: Pick<Topology, "nodes">): boolean => t.nodes.filter((n) => n.role === "redis" || n.role === "redis-replica").every((n) => n.handle.kind === "docker");

/**
 * The drills of `requested` a stack's platform can run; `all` skips the others (saying so), a named one is
 * refused. `redisInContainers`: on a mixed stack whose Redis nodes are containers, the Redis drills run too.
 */
export function drillsFor(platform: string, requested: readonly DrillName[], all: boolean, opts: { redisInContainers?: boolean } = {}): { run: DrillName[]; skipped: DrillName[] } {
  // VMs hold PostgreSQL on libvirt and on mixed stacks (hosts: PostgreSQL VMs, the rest on a Docker engine).
  if (platform !== "libvirt" && platform !== "mixed") return { run: [...requested], skipped: [] };
  const runs = (d: DrillName) => ON_VMS.includes(d) || (platform === "mixed" && Boolean(opts.redisInContainers) && REDIS_DRILLS.includes(d));
  const run = requested.filter(runs);
  const skipped = requested.filter((d) => !runs(d));
  if (!all && skipped.length > 0) {
    throw new UsageError([`drill ${skipped.join(", ")}: not on platform ${platform} yet (${[...new Set(skipped.map(notOnVmsWhy))].join("; ")}); on VMs: ${ON_VMS.join(", ")}`]);
  }
  return { run, skipped };
}

/** Drills of `all` this stack cannot run, with the reason (a drill named on its own says it itself). */
export function skippedByStack(t: Pick<Topology, "postgres" | "nodes">, uid = process.getuid?.() ?? 0): [DrillName, string][] {
  const out: [DrillName, string][] = [];
  if (!t.postgres.ha) for (const d of HA_ONLY) out.push([d, "only with postgres.ha: patroni"]);
  if (!t.nodes.some((n) => n.role === "redis-replica")) out.push(["redis-replication-lag", "the stack has no Redis replica (redis.replica: true)"]);
  else if (uid !== 0) out.push(["redis-replication-lag", "it shapes the primary's traffic with tc in its network namespace, which needs root"]);
  return out;
}

async function runDrills(requested: readonly DrillName[], flags: DrillFlags, all = false): Promise<number> {
  // The toolchain, backend and passphrase `homelab up` used, in any new shell.
  if (flags.stack) await preparePulumi();
  let drills = [...requested];
  if (all) {
    const t = await loadTopology({ stack: flags.stack, file: flags.topology });
    const r = drillsFor(t.platform, requested, true, { redisInContainers: redisInContainers(t) });
    if (r.skipped.length > 0) console.log(`drill all: ${r.skipped.join(", ")} skipped: not on platform ${t.platform} yet`);
    drills = r.run;
    for (const [d, why] of skippedByStack(t)) {
      if (!drills.includes(d)) continue;
      console.log(`drill all: ${d} skipped: ${why}`);
      drills = drills.filter((x) => x !== d);
    }
  }
  let worst = 0;
  for (const drill of drills) {
    // Re-read the topology per drill: a drill may move roles (failover) or re-create nodes. A named drill the
    // platform cannot run is refused when the runner first reads it (after its own --yes check).
    const load = async () => {
      const t = await loadTopology({ stack: flags.stack, file: flags.topology });
      drillsFor(t.platform, [drill], false, { redisInContainers: redisInContainers(t) });
      return t;
    };
    const report = await RUNNERS[drill](load, flags);
    await deliverDrillMetrics(load, flags.reports);
    const code = exitCodeFor(report);
    console.log(`${drill}: ${report.verdict.toUpperCase()}${code === 0 ? "" : ` (${report.checks.filter((c) => !c.ok).map((c) => c.detail).join("; ")})`}`);
    worst = Math.max(worst, code);
  }
  return worst;
}

/**
 * The drill results to the stack's monitoring node (HomelabDrillFailed, HomelabDrillOverdue). A monitoring node
 * that cannot take them is a warning, not the drill's verdict: the report on disk is the record.
 */
async function deliverDrillMetrics(load: () => Promise<Topology>, reportsDir: string): Promise<void> {
  try {
    const where = await publishDrillMetrics(await load(), reportsDir);
    if (where) console.log(`drill metrics: ${where}`);
  } catch (e) {
    console.warn(`drill metrics: not delivered to the monitoring node (${(e as Error).message}); the next drill delivers the whole history again`);
  }
}

/** drills/<drill>.mts on its own: `homelab drill <drill>`'s flags (those it reads) and runner, no name argument. */
export function drillScriptProgram(drill: DrillName): Command {
  const program = new Command(`drills/${drill}.mts`)
    .description(`The ${drill} drill on its own, as \`homelab drill ${drill}\`; exits 1 when an objective is missed, 2 on a usage mistake`)
    .exitOverride()
    .action(async (flags: DrillFlags) => {
      const problems = flagProblems([drill], flags, false);
      if (problems.length > 0) throw new UsageError(problems);
      process.exitCode = await runDrills([drill], flags);
    });
  for (const option of drillOptions(drill)) program.addOption(option);
  return program;
}

/** The main of drills/<drill>.mts: parses `argv`, runs the drill, resolves with the exit code. */
export function runDrillScript(drill: DrillName, argv: readonly string[]): Promise<number> {
  return runProgram(drillScriptProgram(drill), argv, `${drill} drill`);
}

export function registerDrillCommands(program: Command): void {
  const command = program
    .command("drill")
    .description(`Run a drill (${DRILLS.join(", ")}) or all of them (${ALL_ORDER.join(" -> ")}) against a stack; exits non-zero when an objective is missed`)
    .argument("<name>", `${DRILLS.join(" | ")} | all`);
  for (const option of drillOptions()) command.addOption(option);
  command.action(async (name: string, flags: DrillFlags) => {
    const names = name === "all" ? ALL_ORDER : [name];
    const unknown = names.filter((n) => !(DRILLS as readonly string[]).includes(n));
    if (unknown.length > 0) throw new UsageError([`drill: got ${JSON.stringify(name)}; expected one of ${[...DRILLS, "all"].join(", ")}`]);
    const drills = names as DrillName[];
    const problems = flagProblems(drills, flags, true);
    if (problems.length > 0) throw new UsageError(problems);
    for (const n of drills) {
      if (flags.variant && name !== "all" && !VARIANTS[n]?.includes(flags.variant)) {
        throw new UsageError([`--variant: got ${JSON.stringify(flags.variant)}; drill ${n} accepts ${VARIANTS[n]?.join(", ") ?? "no variant"}`]);
      }
    }
    let worst = await runDrills(drills, flags, name === "all");
    if (name === "all") worst = Math.max(worst, await assertRedundant(await loadTopology({ stack: flags.stack, file: flags.topology })));
    process.exitCode = worst;
  });

  program
    .command("report")
    .description("Render the drill history, and the stack's scheduled restore tests, as Markdown with an SVG chart of RTO and RPO over time")
    .option("--reports <dir>", "reports folder", "reports")
    .option("--out <dir>", "where to write REPORT.md and chart.svg (default: the reports folder)")
    .option("--stack <name>", "also pull the stack's scheduled restore tests from its repository node (kept in <reports>/scheduled-restore-tests/)")
    .action(async (flags: { reports: string; out?: string; stack?: string }) => {
      if (flags.stack) await preparePulumi();
      const topology = flags.stack ? await loadTopology({ stack: flags.stack }) : undefined;
      const r = await writeHistoryReport({ reportsDir: flags.reports, outDir: flags.out, topology, log: (m) => console.log(m) });
      console.log(`report: ${r.runs} runs -> ${r.markdown}, ${r.chart}`);
    });
}

/**
 * REPORT.md and chart.svg from the drill history plus every stack's scheduled restore tests; with a
 * topology, that stack's runs are pulled from its repository node first (and kept in the reports folder).
 */
export async function writeHistoryReport(o: { reportsDir: string; outDir?: string; topology?: Topology; log?: (m: string) => void }): Promise<{ runs: number; markdown: string; chart: string }> {
  if (o.topology) {
    const t = o.topology;
    const { records, skipped } = await restoreTestHistoryOnNode(controlFor(t), nodeByName(t, t.pgbackrest.repositoryNode));
    const file = await saveRestoreTestRecords(o.reportsDir, t.stack, records);
    o.log?.(`report: ${records.length} scheduled restore test(s) from stack ${t.stack}${skipped.length > 0 ? ` (${skipped.length} unreadable line(s) skipped: ${skipped[0]})` : ""} -> ${file}`);
  }
  const restoreTests = await loadCachedRestoreTests(o.reportsDir);
  const scheduled = [...restoreTests].flatMap(([stack, records]) => records.map((r) => restoreTestHistoryEntry(stack, r)));
  const history = [...(await loadHistory(o.reportsDir)), ...scheduled].sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
  if (history.length === 0) {
    throw new UsageError([`report: no drill history in ${path.resolve(o.reportsDir)}/history.jsonl and no scheduled restore test; run \`homelab drill <name> --stack <stack>\` first, or \`homelab report --stack <stack>\` to pull the stack's scheduled restore tests`]);
  }
  const out = path.resolve(o.outDir ?? o.reportsDir);
  mkdirSync(out, { recursive: true });
  const chart = path.join(out, "chart.svg");
  const markdown = path.join(out, "REPORT.md");
  writeFileSync(chart, renderChartSvg(history));
  writeFileSync(markdown, `${renderHistoryMarkdown(history)}\n${renderRestoreTestMarkdown(restoreTests)}\n![RTO and RPO per drill over time](chart.svg)\n`);
  return { runs: history.length, markdown, chart };
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
