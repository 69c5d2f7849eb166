// Drill: the site is lost (every PostgreSQL node AND repo1, the repository host's volume); the stack is
// rebuilt from repo2 alone, the encrypted SFTP repository off the machine (rehearses runbooks/site-loss.md,
// ADR 0013).
//
//   npx tsx drills/site-loss.mts --stack local --yes [--reports reports] [--force]
//
// The flow is the recreate drill's (drills/recreate.mts: acknowledged-write writer, WAL switch and wait,
// destroy, create, first write, streaming replica, RPO/RTO), with:
//   - a preflight that refuses to destroy anything unless repo2 can restore: the stack has repo2, `pgbackrest
//     --repo=2 info` lists a backup (a wrong cipher passphrase, an unreachable server or a wrong host key
//     shows here), and `pgbackrest --repo=2 verify` finds every backup and the archive valid;
//   - the WAL switch awaited in repo2 only (what survives the site);
//   - the destroy takes repo1 too, and the create is the stack's own path: the primary's bootstrapFrom: auto
//     finds the stanza in repo2 only and restores from it; the post-up steps give repo1 a new stanza and a
//     full backup, so the rebuilt stack checks out with both repositories;
//   - objectives.siteLoss.
import { LABEL_RETAIN } from "../components/platform/docker-node.ts";
import type { Topology } from "../components/topology.ts";
import { pgbackrestInfoOnNode } from "./lib/archive.ts";
import { check, type Check } from "./lib/assert.ts";
import type { DrillLog } from "./lib/log.ts";
import { controlFor, type NodeControl } from "./lib/nodes.ts";
import { assertEstateVerified, parseVerifyText, pgbackrestError } from "./lib/pitr.ts";
import type { DrillReport } from "./lib/report.ts";
import { loadTopology, nodeByName, nodeByRole } from "./lib/topology.ts";
import { pulumiRecreate, RecreateRefusedError, runRecreateDrill, type RecreatePhase } from "./recreate.mts";
import { runIfMain } from "./lib/main.ts";

export interface SiteLossDrillOptions {
  topology: Topology;
  /** "destroy": every PostgreSQL node, the repository host and repo1's volume; "create": the stack again. */
  loseSite: (phase: RecreatePhase) => Promise<void>;
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
  writesPerSecond?: number;
  archiveWaitMs?: number;
  recoveryTimeoutMs?: number;
  /** Destroy even when the switched WAL segment never reached repo2 (default false: refuse). */
  force?: boolean;
}

const SURVIVING_REPO = 2;

export async function runSiteLossDrill(opts: SiteLossDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const ctl = opts.nodeControl ?? controlFor(t);
  const stanza = t.pgbackrest.stanza;
  const repository = nodeByName(t, t.pgbackrest.repositoryNode);
  const onRepository = (args: string[]) => ctl.exec(repository, ["pgbackrest", `--stanza=${stanza}`, ...args], { allowFailure: true, timeoutMs: 600_000 });

  const preflight = async (): Promise<Check[]> => {
    const repo2 = t.pgbackrest.repo2;
    if (!repo2) return [check("the stack has repo2", false, `stack ${t.stack} has no pgbackrest.repo2: losing the site would lose every backup (README "A second repository off the machine")`)];
    const checks = [check("the stack has repo2", true, `repo2: ${repo2.type} on ${repo2.host}:${repo2.path}${repo2.node ? ` (stand-in node ${repo2.node})` : ""}`)];
    const t0 = Date.now();
    const verify = await onRepository([`--repo=${SURVIVING_REPO}`, "--output=text", "--verbose", "verify"]);
    const output = `${verify.stdout}\n${verify.stderr}`;
    const verified = assertEstateVerified(parseVerifyText(output), { code: verify.code, output });
    checks.push({ ...verified, name: `repo2: ${verified.name}`, detail: `${verified.detail} (${((Date.now() - t0) / 1000).toFixed(1)} s over ${repo2.type})` });
    return checks;
  };

  const afterRecovery = async (): Promise<Check[]> => {
    const checks: Check[] = [];
    const repo1 = await pgbackrestInfoOnNode(ctl, repository, stanza, { repo: 1 }).catch((e: Error) => e);
    const rebuilt = !(repo1 instanceof Error) && repo1.statusCode === 0 && repo1.newestBackup !== null;
    checks.push(
      check(
        "repo1 rebuilt: a new stanza and a backup",
        rebuilt,
        repo1 instanceof Error ? repo1.message : rebuilt ? `repo1 holds ${repo1.backups.length} backup(s), newest ${repo1.newestBackup?.label}` : `repo1: ${repo1.statusMessage || `status ${repo1.statusCode}`}, ${repo1.backups.length} backups`,
      ),
    );
    const both = await onRepository(["check"]);
    checks.push(check("WAL reaches both repositories (pgbackrest check)", both.code === 0, both.code === 0 ? "pgbackrest check passed for repo1 and repo2" : `pgbackrest check failed (exit ${both.code}): ${pgbackrestError(`${both.stdout}\n${both.stderr}`)}`));
    return checks;
  };

  return runRecreateDrill({
    topology: t,
    recreate: opts.loseSite,
    reportsDir: opts.reportsDir,
    log: opts.log,
    nodeControl: ctl,
    writesPerSecond: opts.writesPerSecond,
    archiveWaitMs: opts.archiveWaitMs,
    recoveryTimeoutMs: opts.recoveryTimeoutMs,
    refuseWhenArchiveBehind: !opts.force,
    drill: "site-loss",
    survivingRepo: SURVIVING_REPO,
    destroyKeeps: "only repo2, off the machine, stays: every PostgreSQL node and repo1 go",
    preflight,
    afterRecovery,
  });
}

/**
 * The hook for a real stack: `pulumi destroy` (both repositories' volumes are retained), then repo1's
 * volume is deleted (the site's copy is gone), then `pulumi up`: bootstrapFrom auto restores from repo2.
 */
export function pulumiSiteLoss(stack: string, topology: Topology, ctl: NodeControl = controlFor(topology)): (phase: RecreatePhase) => Promise<void> {
  const recreate = pulumiRecreate(stack, { restoresByItself: true });
  const repository = nodeByName(topology, topology.pgbackrest.repositoryNode);
  return async (phase) => {
    await recreate(phase);
    if (phase === "destroy") await ctl.removeDataVolumes(repository);
  };
}

/** `homelab drill site-loss`: refuses without `yes`, without repo2, or when the stack would not restore by itself. */
export async function runSiteLossOnStack(opts: { stack: string; yes: boolean; force?: boolean; topologyFile?: string; reportsDir?: string }): Promise<DrillReport> {
  const { stack } = opts;
  if (!opts.yes) throw new RecreateRefusedError(`drill site-loss destroys every PostgreSQL node and repo1 of stack ${stack} and rebuilds them from repo2; pass --yes to go ahead`);
  const topology = await loadTopology({ stack, file: opts.topologyFile });
  if (!topology.pgbackrest.repo2) throw new RecreateRefusedError(`stack ${stack} has no pgbackrest.repo2: there is nothing off the machine to rebuild from (README "A second repository off the machine")`);
  const bootstrap = nodeByRole(topology, "postgres-primary").container.env.HOMELAB_BOOTSTRAP_FROM;
  if (bootstrap !== "auto" && bootstrap !== "backup") throw new RecreateRefusedError(`stack ${stack} has postgres.bootstrapFrom: ${bootstrap}: a rebuilt primary would not restore; set it to auto`);
  const standIn = topology.nodes.find((n) => n.name === topology.pgbackrest.repo2?.node);
  if (standIn?.container.volumes.some((v) => v.labels[LABEL_RETAIN] === "false")) {
    throw new RecreateRefusedError(`stack ${stack} has pgbackrest.purgeBackupsOnDestroy: true: pulumi destroy would delete repo2's stand-in volume too; set it to false first`);
  }
  return runSiteLossDrill({ topology, loseSite: pulumiSiteLoss(stack, topology), reportsDir: opts.reportsDir ?? "reports", force: opts.force });
}

// `npx tsx drills/site-loss.mts --stack <stack> --yes [--topology <file.json>] [--reports <dir>] [--force]`: the
// flags and the runner of `homelab drill site-loss`, defined once in cli/drill-commands.ts.
runIfMain(import.meta.url, "site-loss");
