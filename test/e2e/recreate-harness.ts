// The e2e stand-in for `pulumi destroy` + `pulumi up` with `postgres.bootstrapFrom: backup`, as the recreate
// drill's hook: destroy removes every container, the network and every data volume of the stack EXCEPT
// the backup repository's; create applies the plan of the same stack with bootstrapFrom=backup and the SAME
// secrets (passwords, TLS certificates), so the re-created nodes trust the repository and vice versa.
import type { HomelabSpec } from "../../components/config/index.ts";
import { planHomelab, postUpSteps, type HomelabSecrets } from "../../components/plan.ts";
import { LABEL_STACK, applyPlan, docker } from "../../components/platform/docker-node.ts";
import type { HomelabPlan } from "../../components/platform/plan.ts";

export type RecreatePhase = "destroy" | "create";

export interface RecreateOptions {
  /** Keep the repository node running, not only its volume (default false: like `pulumi destroy`). */
  keepRepositoryNode?: boolean;
  /** Also remove the repository's volume: the "backups gone" fault (default false). */
  dropRepository?: boolean;
  /** Site loss: repo1's volume goes as well; only repo2 (the SFTP stand-in's volume, "off the machine") stays. */
  loseRepo1?: boolean;
  /** Create with the stack's own bootstrapFrom (default: backup, as the recreate runbook says). */
  keepBootstrapFrom?: boolean;
  /** After create, run the post-up steps as `pulumi up` does (stanza-create, check, first backups). */
  postUp?: boolean;
  /** Per-node health timeout of the create phase (default 300 s). */
  healthTimeoutMs?: number;
  log?: (message: string) => void;
}

/** The stack's spec with the primary bootstrapped from the repository's latest backup + archived WAL. */
export function specFromBackup(spec: HomelabSpec): HomelabSpec {
  return { ...spec, postgres: { ...spec.postgres, bootstrapFrom: "backup" } };
}

/** Volumes of the repository node(s) of a plan: what a destroy keeps. */
export function repositoryVolumes(plan: HomelabPlan): string[] {
  // repo2's stand-in SFTP node keeps its volume too (pgbackrest.purgeBackupsOnDestroy, as repo1's).
  return plan.nodes.filter((n) => n.role === "backup-repository" || n.role === "repo2-sftp").flatMap((n) => n.volumes.map((v) => v.name));
}

const lines = (s: string) => s.split(/\s+/).filter(Boolean);

/**
 * Removes the stack from the engine but the backup repository: containers (the repository's too unless
 * keepRepositoryNode), the network (unless the repository node stays on it) and every volume but the
 * repository's. Selects by the stack label, like removeByLabel, so leftovers of earlier runs go too.
 * Returns what it removed and kept.
 */
export async function destroyAllButRepository(plan: HomelabPlan, opts: RecreateOptions = {}): Promise<{ containers: string[]; volumes: string[]; kept: string[] }> {
  const label = `label=${LABEL_STACK}=${plan.stack}`;
  const repositoryNodes = new Set(plan.nodes.filter((n) => n.role === "backup-repository").map((n) => n.hostname));
  const repo1Volumes = new Set(plan.nodes.filter((n) => n.role === "backup-repository").flatMap((n) => n.volumes.map((v) => v.name)));
  const keepVolumes = new Set(opts.dropRepository ? [] : repositoryVolumes(plan).filter((v) => !(opts.loseRepo1 && repo1Volumes.has(v))));
  const names = lines((await docker(["ps", "-a", "--format", "{{.Names}}", "--filter", label])).stdout);
  const containers = names.filter((n) => !(opts.keepRepositoryNode && repositoryNodes.has(n)));
  // -f: a kill, like the platform's delete of a running container; -v: anonymous volumes only.
  if (containers.length > 0) await docker(["rm", "-f", "-v", ...containers]);
  if (!opts.keepRepositoryNode) {
    const nets = lines((await docker(["network", "ls", "-q", "--filter", label])).stdout);
    if (nets.length > 0) await docker(["network", "rm", ...nets]);
  }
  const allVolumes = lines((await docker(["volume", "ls", "-q", "--filter", label])).stdout);
  const volumes = allVolumes.filter((v) => !keepVolumes.has(v));
  if (volumes.length > 0) await docker(["volume", "rm", "-f", ...volumes]);
  const kept = allVolumes.filter((v) => keepVolumes.has(v));
  opts.log?.(`destroyed stack ${plan.stack}: ${containers.length} containers, ${volumes.length} volumes; kept ${kept.join(", ") || "nothing"}${opts.keepRepositoryNode ? " and the repository node" : ""}`);
  return { containers, volumes, kept };
}

/**
 * The recreate drill's hook for an e2e stack: "destroy" as destroyAllButRepository, "create" applies the
 * plan of `spec` with bootstrapFrom=backup and the same `secrets` (every node healthy, like `pulumi up`).
 */
export function recreateHook(spec: HomelabSpec, secrets: HomelabSecrets, opts: RecreateOptions = {}): (phase: RecreatePhase) => Promise<void> {
  const plan = planHomelab(opts.keepBootstrapFrom ? spec : specFromBackup(spec), secrets);
  return async (phase) => {
    if (phase === "destroy") {
      await destroyAllButRepository(plan, opts);
      return;
    }
    const t0 = Date.now();
    // A repository node that was kept running is not created again (its name is taken).
    await applyPlan(plan, { timeoutSeconds: Math.round((opts.healthTimeoutMs ?? 300_000) / 1000), log: opts.log, only: (n) => !(opts.keepRepositoryNode && n.role === "backup-repository") });
    opts.log?.(`re-created stack ${plan.stack} from backup in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    if (opts.postUp) {
      for (const step of postUpSteps(plan, spec.pgbackrest.stanza)) {
        const s0 = Date.now();
        const node = plan.nodes.find((n) => n.name === step.node);
        await docker(["exec", "--user", "postgres", node?.hostname ?? step.node, ...step.command]);
        opts.log?.(`post-up ${step.name} in ${((Date.now() - s0) / 1000).toFixed(1)}s`);
      }
    }
  };
}
