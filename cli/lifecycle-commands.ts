// `homelab up | down | status`: the one way in. `up` does every set-up step itself (cli/setup.ts), each
// with a progress line and its time, then `pulumi up`, then prints how to connect; re-running it is safe
// and quick. `down` removes the tier (the backup repository stays unless --purge-backups); `status` shows
// nodes, roles, the newest backup, the last scheduled restore test (exit 1 when it failed) and the last drill
// verdicts.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { loadStackSpec, type HomelabSpec } from "../components/config/index.ts";
import { LABEL_STACK, containerHealth, dockerEnv, removeByLabel } from "../components/platform/docker-node.ts";
import { removeLibvirtLeftovers } from "../components/platform/libvirt-platform.ts";
import { ensureNetworkLink, removeNetworkLink } from "../components/platform/placed.ts";
import { kindsOfPlan } from "../components/platform/plan.ts";
import { placementSummary, planHomelab, redactedSecrets } from "../components/plan.ts";
import { topologyOf, type Topology } from "../components/topology.ts";
import { pgbackrestInfoOnNode } from "../drills/lib/archive.ts";
import { controlFor } from "../drills/lib/nodes.ts";
import { loadHistory, type HistoryEntry } from "../drills/lib/report.ts";
import { restoreTestHistoryOnNode, restoreTestStatus, type RestoreTestSchedule } from "../drills/lib/restore-test.ts";
import { loadTopology, nodeByName, pgNodeStates } from "../drills/lib/topology.ts";
import { UsageError } from "./errors.ts";
import { dataDir, ensureBackend, ensureEngine, ensureImages, ensureSystemPackages, ensurePassphrase, ensureStack, ensureToolchain, ensureVmHost, preparePulumi, pulumi, step } from "./setup.ts";
import { ensureSecrets } from "./stack-commands.ts";

interface LifecycleFlags {
  stack: string;
  stacksDir: string;
  yes?: boolean;
  purgeBackups?: boolean;
  reports?: string;
}

const stackOption = (cmd: Command) => cmd.option("--stack <name>", "stack name (stacks/Pulumi.<name>.yaml)", "local").option("--stacks-dir <dir>", "folder of the stack files", "stacks");

/** The stack file, validated before anything is touched (a bad key creates nothing). */
function specOf(flags: LifecycleFlags): HomelabSpec {
  return loadStackSpec(flags.stack, path.resolve(flags.stacksDir));
}

/** Toolchain, backend, passphrase and stack: what every pulumi call needs. */
async function pulumiReady(stack: string): Promise<void> {
  await step("pulumi toolchain", ensureToolchain, (v) => v);
  await step("state backend", ensureBackend, (v) => v);
  await step("secrets passphrase", ensurePassphrase, (v) => v);
  await step("stack", () => ensureStack(stack), (v) => v);
}

/** Client files for the person at the console: a libpq password file (0600) per stack, under the data dir. */
function writeClientFiles(spec: HomelabSpec, topology: Topology, password: string): { pgpass: string } {
  const dir = path.join(dataDir(), "stacks", spec.stack);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lines = topology.nodes
    .filter((n) => (n.role === "postgres-primary" || n.role === "postgres-replica") && n.published)
    // libpq's pgpass format: host:port:database:user:password, with ':' and '\' escaped.
    .map((n) => [n.published!.host, String(n.published!.port), topology.postgres.database, topology.postgres.appUser, password].map((f) => f.replace(/[\\:]/g, "\\$&")).join(":"));
  const pgpass = path.join(dir, "pgpass");
  writeFileSync(pgpass, `${lines.join("\n")}\n`, { mode: 0o600 });
  return { pgpass };
}

/** How to reach each service from this machine (no secret printed: passwords stay in files). */
export function connectLines(topology: Topology, pgpass: string): string[] {
  const out: string[] = [];
  for (const n of topology.nodes) {
    if (!n.published) continue;
    const { host, port } = n.published;
    if (n.role === "postgres-primary") out.push(`  PostgreSQL primary  PGPASSFILE=${pgpass} psql -h ${host} -p ${port} -U ${topology.postgres.appUser} ${topology.postgres.database}`);
    if (n.role === "postgres-replica") out.push(`  PostgreSQL replica  PGPASSFILE=${pgpass} psql -h ${host} -p ${port} -U ${topology.postgres.appUser} ${topology.postgres.database}   (read-only)`);
    if (n.role === "redis" && topology.redis) out.push(`  Redis               redis-cli -h ${host} -p ${port} --user ${topology.redis.appUser} --askpass   (password: npx homelab secret redisAppPassword --stack ${topology.stack})`);
    if (n.role === "duckdb") out.push(`  DuckDB host         curl http://${host}:${port}/healthz`);
  }
  return out;
}

export function registerLifecycleCommands(program: Command): void {
  stackOption(program.command("up").description("Set up everything a machine needs (engine, images, toolchain, state, stack, secrets), then build or update the tier"))
    .option("--yes", "install and start the Docker engine without asking (Debian, as root)", false)
    .action(async (flags: LifecycleFlags) => {
      const t0 = Date.now();
      // The structural plan (redacted secrets), once: where each node lives, and the topology printed at the end.
      const { spec, plan } = await step(
        "stack file",
        async () => {
          const s = specOf(flags);
          return { spec: s, plan: planHomelab(s, redactedSecrets()) };
        },
        ({ spec: s, plan: p }) => `stacks/Pulumi.${s.stack}.yaml valid (${placementSummary(s, p)})`,
      );
      await step("system packages", () => ensureSystemPackages({ yes: flags.yes }), (v) => v);
      const kinds = kindsOfPlan(plan);
      // VMs: libvirt and qemu; the base image is made by `pulumi up` itself. Containers: the Docker engine.
      if (kinds.has("libvirt")) await step("VM host", () => ensureVmHost({ yes: flags.yes }), (v) => v);
      if (kinds.has("docker")) {
        await step("docker engine", () => ensureEngine({ yes: flags.yes }), (v) => v);
        await step("images", () => ensureImages({ onlyMissing: true }), (v) => v);
      }
      await pulumiReady(spec.stack);
      const { secrets } = await step("secrets", () => ensureSecrets(spec.stack, path.resolve(flags.stacksDir)), (v) => v.detail);
      await step("pulumi up", () => pulumi(["up", "--yes", "--skip-preview", "--stack", spec.stack, "--suppress-progress", "--suppress-outputs"], { stream: true }), () => "done");
      if (kinds.size > 1) {
        // The route between the two networks (ADR 0021): rules lost to a reboot or a firewall reload come back.
        const { docker, libvirt } = plan.networks;
        await step("network link", () => ensureNetworkLink(spec.stack, docker!.subnet, libvirt!.subnet), (n) => (n === 0 ? "4 rules in place" : `${n} missing rule(s) put back`));
      }
      // The same facts the stack exported (topology = plan + handles; the docker platform names containers
      // by the plan), computed here instead of asking pulumi once more.
      const topology = topologyOf(spec, plan);
      const { pgpass } = writeClientFiles(spec, topology, secrets.postgresAppPassword ?? "");
      console.log(`homelab: stack ${spec.stack} is up (${topology.nodes.length} nodes) in ${((Date.now() - t0) / 1000).toFixed(1)}s. Connect:`);
      for (const line of connectLines(topology, pgpass)) console.log(line);
      if (topology.monitoring) console.log(`  monitoring: Prometheus ${topology.monitoring.prometheus} (alerts: runbooks/alert-*.md)`);
      console.log(`  drills: npx homelab drill all --stack ${spec.stack}   status: npx homelab status --stack ${spec.stack}   down: npx homelab down --stack ${spec.stack}`);
    });

  program
    .command("prepare")
    .description("What a machine needs before `up` or `npm test`: system packages, the Docker engine, images, the Pulumi toolchain")
    .option("--yes", "install missing Debian packages and start the engine without asking (as root)", false)
    .action(async (flags: { yes: boolean }) => {
      const t0 = Date.now();
      await step("system packages", () => ensureSystemPackages({ yes: flags.yes }), (v) => v);
      await step("docker engine", () => ensureEngine({ yes: flags.yes }), (v) => v);
      await step("images", () => ensureImages(), (v) => v);
      await step("pulumi toolchain", ensureToolchain, (v) => v);
      console.log(`homelab: machine ready in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    });

  stackOption(program.command("down").description("Remove the tier; the backup repository's volume stays unless --purge-backups"))
    .option("--purge-backups", "also delete the backup repository (every backup and archived WAL of the stack); needs --yes", false)
    .option("--yes", "confirm --purge-backups (it cannot be undone); without it down asks nothing", false)
    .action(async (flags: LifecycleFlags) => {
      const spec = specOf(flags);
      // Refused before anything is touched: the backups are what `up` restores from after a `down`.
      if (flags.purgeBackups && !flags.yes) throw new UsageError([`down: --purge-backups deletes every backup and archived WAL of stack ${spec.stack} and cannot be undone; add --yes to confirm`]);
      await pulumiReady(spec.stack);
      await step("pulumi destroy", () => pulumi(["destroy", "--yes", "--skip-preview", "--stack", spec.stack, "--suppress-progress", "--suppress-outputs"], { stream: true }), () => "done");
      const plan = planHomelab(spec, redactedSecrets());
      const kinds = kindsOfPlan(plan);
      const repositoryOnVm = spec.placement.pgbackrest.kind === "libvirt";
      if (kinds.size > 1) await step("network link", () => removeNetworkLink(spec.stack), (n) => (n === 0 ? "none left" : `${n} leftover rule(s) removed`));
      if (kinds.has("libvirt")) {
        // The hypervisor may still hold what an interrupted run made under the stack's prefix.
        await step(
          flags.purgeBackups && repositoryOnVm ? "leftover VMs, disks and the backup repository" : "leftover VMs and disks",
          async () => {
            const removed = await removeLibvirtLeftovers(spec, plan, { purgeRetained: Boolean(flags.purgeBackups) });
            const kept = flags.purgeBackups || !repositoryOnVm ? "" : "; the backup repository's data disk is kept (next `up` restores from it)";
            return `${removed.length === 0 ? "none" : removed.join(", ")}${kept}`;
          },
          (v) => v,
        );
      }
      if (!kinds.has("docker")) return;
      // The engine may still hold what an interrupted run or a drill made under the stack's label.
      await step(
        flags.purgeBackups ? "leftovers and the backup repository" : "leftovers",
        async () => {
          await removeByLabel(`${LABEL_STACK}=${spec.stack}`, { purgeRetained: Boolean(flags.purgeBackups), dockerHost: spec.docker.host });
          return flags.purgeBackups ? "removed, backups too" : "removed; the backup repository volume is kept (next `up` restores from it)";
        },
        (v) => v,
      );
    });

  stackOption(program.command("status").description("Nodes, roles, the newest backup, the last scheduled restore test and the last drill verdicts of a stack; exits 1 when that restore test failed"))
    .option("--reports <dir>", "reports folder of the drills", "reports")
    .action(async (flags: LifecycleFlags) => {
      const spec = specOf(flags);
      await preparePulumi();
      const topology = await loadTopology({ stack: spec.stack }).catch(() => {
        throw new UsageError([`stack ${spec.stack} has no topology output: it is not up; run \`npx homelab up --stack ${spec.stack}\``]);
      });
      const { restoreTest } = spec.pgbackrest;
      const status = await stackStatus(topology, flags.reports ?? "reports", { enabled: restoreTest.enabled, schedule: restoreTest.schedule, budgetSeconds: restoreTest.budget });
      for (const line of status.lines) console.log(line);
      // A failed scheduled restore test is the one thing status cannot leave to the eye (a cron job can watch it).
      if (status.restoreTestFailed) process.exitCode = 1;
    });
}

/** The status report (see stackStatus), as lines. */
export async function statusLines(topology: Topology, reportsDir: string): Promise<string[]> {
  return (await stackStatus(topology, reportsDir)).lines;
}

/**
 * The status report: one line per node, the newest backup, the last scheduled restore test (loud when it
 * failed, or, given the stack's schedule, when it is overdue: `restoreTestFailed`), and each drill's last verdict.
 */
export async function stackStatus(topology: Topology, reportsDir: string, restoreTestSchedule?: RestoreTestSchedule): Promise<{ lines: string[]; restoreTestFailed: boolean }> {
  const ctl = controlFor(topology);
  const roles = new Map((await pgNodeStates(topology, ctl, { timeoutMs: 5000 })).map((s) => [s.node.name, s.state]));
  const lines = [`stack ${topology.stack} (platform ${topology.platform})`];
  for (const n of topology.nodes) {
    const state =
      n.handle.kind === "docker" ? await containerHealth(n.handle.container, dockerEnv(n.handle.dockerHost)) : n.handle.kind === "libvirt" ? ((await ctl.isRunning(n)) ? "vm running" : "vm off") : "?";
    const role = roles.get(n.name) ?? n.role;
    lines.push(`  ${n.name.padEnd(14)} ${role.padEnd(18)} ${state.padEnd(18)} ${n.published ? `${n.published.host}:${n.published.port}` : ""}`);
  }
  if (topology.monitoring) lines.push(await monitoringLine(topology.monitoring.prometheus));
  try {
    const repo = nodeByName(topology, topology.pgbackrest.repositoryNode);
    const info = await pgbackrestInfoOnNode(ctl, repo, topology.pgbackrest.stanza, { timeoutMs: 30_000 });
    const b = info.newestBackup;
    lines.push(b ? `newest backup: ${b.label} (${b.type}), ${formatAge(Date.now() - b.stopMs)} old; ${info.backups.length} backup(s) in stanza ${info.stanza}` : `newest backup: none in stanza ${info.stanza} (${info.statusMessage})`);
  } catch (e) {
    lines.push(`newest backup: unknown (${(e as Error).message.split("\n")[0]})`);
  }
  let restoreTestFailed = false;
  try {
    const repo = nodeByName(topology, topology.pgbackrest.repositoryNode);
    const { records, skipped } = await restoreTestHistoryOnNode(ctl, repo, { timeoutMs: 15_000 });
    const status = restoreTestStatus(records, { nowMs: Date.now(), repositoryContainer: repo.handle.kind === "docker" ? repo.handle.container : repo.name, skipped, schedule: restoreTestSchedule });
    lines.push(...status.lines);
    restoreTestFailed = status.failed;
  } catch (e) {
    lines.push(`scheduled restore test: unknown (${(e as Error).message.split("\n")[0]})`);
  }
  const history = (await loadHistory(reportsDir)).filter((h) => h.stack === topology.stack);
  const last = new Map<string, HistoryEntry>();
  for (const h of history) last.set(h.drill, h);
  lines.push(last.size === 0 ? `drills: none run yet (npx homelab drill all --stack ${topology.stack})` : "last drills:");
  for (const h of last.values()) lines.push(`  ${h.drill.padEnd(16)} ${h.verdict.toUpperCase().padEnd(5)} ${h.finished_at}${h.rtoSeconds === null ? "" : `  RTO ${h.rtoSeconds.toFixed(2)}s`}${h.lostWrites === null ? "" : `  lost ${h.lostWrites}`}`);
  return { lines, restoreTestFailed };
}

/** Prometheus' URL and what fires now (its /api/v1/alerts), or why it could not be asked (ADR 0016). */
export async function monitoringLine(prometheus: string, timeoutMs = 3000): Promise<string> {
  try {
    const res = await fetch(`${prometheus}/api/v1/alerts`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json()) as { data?: { alerts?: { labels: Record<string, string>; state: string }[] } };
    const firing = (body.data?.alerts ?? []).filter((a) => a.state === "firing").map((a) => `${a.labels.alertname}${a.labels.node ? `{node=${a.labels.node}}` : ""}`);
    return `monitoring: Prometheus ${prometheus}; ${firing.length === 0 ? "no alert firing" : `FIRING: ${firing.join(", ")} (runbooks/alert-*.md)`}`;
  } catch (e) {
    return `monitoring: Prometheus ${prometheus}; not answering (${(e as Error).message.split("\n")[0]})`;
  }
}

function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)}h`;
  return `${(s / 86400).toFixed(1)}d`;
}
