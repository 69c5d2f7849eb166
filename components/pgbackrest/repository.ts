// BackupRepository: the pgBackRest repository host (TLS server mode) and, with repo2 on the stack's own
// stand-in SFTP node, that node; then the steps that make it useful
// from day one, in order, once the cluster is up (postUpSteps, shared with the e2e harness): stanza-create,
// check (WAL reaches the repository), and a first full backup. Scheduled backups are the crontab file in
// the repository node's plan; retention is in its pgbackrest.conf.
import * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import { postUpSteps } from "../plan.ts";
import { shellQuote } from "../platform/docker-node.ts";
import { createNodes, nodesWithRoles, type NodeComponentArgs } from "../platform/index.ts";
import type { NodePlan } from "../platform/plan.ts";

/** pgBackRest runs as the postgres OS user in the homelab/postgres image (components/postgres/image). */
export const PGBACKREST_OS_USER = "postgres";

export interface BackupRepositoryArgs extends NodeComponentArgs {
  /** pgBackRest stanza (spec.pgbackrest.stanza). */
  stanza: string;
  /** Take a full backup right after the stanza is created, so a restore is possible from day one. Default: true. */
  initialBackup?: boolean;
}

export class BackupRepository extends pulumi.ComponentResource {
  /** The stanza the repository holds. */
  public readonly stanza: pulumi.Output<string>;
  /** Container name of the repository host. */
  public readonly container: pulumi.Output<string>;
  /** The engine volume holding the repository. */
  public readonly repositoryVolume: pulumi.Output<string>;
  /** True when the repository volume outlives `pulumi destroy` (pgbackrest.purgeBackupsOnDestroy: false). */
  public readonly retainedOnDestroy: pulumi.Output<boolean>;
  /** The post-up commands, in the order they run (stanza-create, check, full-backup); see bootstrapStanza. */
  public steps: command.local.Command[] = [];
  /** Ready resource of the repository node by node name. */
  public readonly readyNodes: Record<string, pulumi.Resource>;

  constructor(name: string, args: BackupRepositoryArgs, opts?: pulumi.ComponentResourceOptions) {
    super("homelab:pgbackrest:BackupRepository", name, {}, opts);
    const repos = nodesWithRoles(this, args.plan, ["backup-repository"], `BackupRepository ${name}`);
    if (repos.length !== 1) throw new pulumi.ResourceError(`BackupRepository ${name}: args.plan has ${repos.length} backup-repository nodes; expected exactly one`, this);
    const repo = repos[0] as (typeof repos)[number];
    if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(args.stanza)) {
      throw new pulumi.ResourceError(`BackupRepository ${name}: args.stanza: got ${JSON.stringify(args.stanza)}; expected letters, digits, '-' or '_' (at most 64 chars)`, this);
    }
    const volume = repo.volumes[0];
    if (!volume) throw new pulumi.ResourceError(`BackupRepository ${name}: node ${repo.name} has no volume for the repository`, this);

    // repo2's stand-in SFTP server (ADR 0013), when the stack runs one: made before the repository host,
    // which reaches it for stanza-create and backups.
    const standIns = args.plan.nodes.filter((n) => n.role === "repo2-sftp");
    const all = createNodes(this, args, [...standIns.map((node) => ({ node, resourceName: `${name}-repo2` })), { node: repo, resourceName: name }]);
    const made = all[repo.name];
    if (!made) throw new Error(`BackupRepository ${name}: node ${repo.name} was not made`);

    this.readyNodes = Object.fromEntries(Object.entries(all).map(([node, r]) => [node, r.ready]));
    this.stanza = pulumi.output(args.stanza);
    this.container = made.handle;
    this.repositoryVolume = made.handle.apply(() => volume.name);
    this.retainedOnDestroy = pulumi.output(volume.retainOnDestroy);
    this.registerOutputs({ stanza: this.stanza, container: this.container, repositoryVolume: this.repositoryVolume, retainedOnDestroy: this.retainedOnDestroy });
    this.bootstrapArgs = { name, args, repo, volumeName: volume.name, ready: made.ready };
  }

  private readonly bootstrapArgs: { name: string; args: BackupRepositoryArgs; repo: NodePlan; volumeName: string; ready: pulumi.Resource };

  /**
   * The post-up steps (postUpSteps: stanza-create, check, first full backup) once the database nodes are
   * ready. The repository node itself is made first: the primary creates the stanza on it before it reports
   * ready (components/postgres/image entrypoint), so archiving works from the first WAL segment.
   */
  bootstrapStanza(clusterNodes: pulumi.Resource[]): command.local.Command[] {
    const { name, args, repo, volumeName, ready } = this.bootstrapArgs;
    if (clusterNodes.length === 0) throw new pulumi.ResourceError(`BackupRepository ${name}: bootstrapStanza needs the PostgresCluster's readyNodes`, this);
    if (this.steps.length > 0) throw new pulumi.ResourceError(`BackupRepository ${name}: bootstrapStanza called twice`, this);
    const initialBackup = args.initialBackup ?? true;
    const steps = postUpSteps(args.plan, args.stanza).filter((s) => initialBackup || s.name !== "full-backup");
    let previous: pulumi.Resource[] = [ready, ...clusterNodes];
    this.steps = steps.map((step) => {
      if (step.node !== repo.name) throw new pulumi.ResourceError(`BackupRepository ${name}: post-up step ${step.name} runs on ${step.node}, not on the repository node ${repo.name}`, this);
      const cmd = args.platform.runOnNode(
        `${name}-${step.name}`,
        repo,
        { create: step.command.map(shellQuote).join(" "), ...(step.deleteScript ? { delete: step.deleteScript } : {}), user: PGBACKREST_OS_USER, triggers: [args.stanza, volumeName] },
        { parent: this, dependsOn: previous },
      );
      previous = [cmd];
      return cmd;
    });
    return this.steps;
  }
}
