// Homelab: the whole data tier of one stack (docs/architecture.md "Components"): the network and images, the
// PostgreSQL cluster, the pgBackRest repository, Redis and the DuckDB host, and the `topology` output the
// drills read.
//
// Two plans of the same spec: the structural one (redacted secrets) is plain data known at construction,
// so every resource name, address, port and volume is fixed in `pulumi preview`; the secure one
// (the real secrets, a Pulumi secret) only ever feeds node file contents.
import * as pulumi from "@pulumi/pulumi";
import type { HomelabSpec } from "./config/index.ts";
import { DuckDbHost } from "./duckdb/host.ts";
import { MonitoringServer } from "./monitoring/server.ts";
import { BackupRepository } from "./pgbackrest/repository.ts";
import { PlanError, planHomelab, type HomelabSecrets } from "./plan.ts";
import { assertPlatformSupported, platformFor, type NodeComponentArgs, type Platform, type PlatformKind } from "./platform/index.ts";
import type { HomelabPlan } from "./platform/plan.ts";
import { PostgresCluster } from "./postgres/cluster.ts";
import { RedisServer } from "./redis/server.ts";
import { redactedSecrets } from "./secrets.ts";
import { topologyOf, type Topology } from "./topology.ts";

export interface HomelabArgs {
  /** The validated stack (validateConfig / loadStackSpec). */
  spec: HomelabSpec;
  /** Every secret of the stack (readSecrets); must be a Pulumi secret. */
  secrets: pulumi.Output<HomelabSecrets>;
}

export class Homelab extends pulumi.ComponentResource {
  /** Every node with role, addresses and the handle a drill controls it by (no secrets). */
  public readonly topology: pulumi.Output<Topology>;
  /** Which platform made the nodes. */
  public readonly platform: PlatformKind;
  /** The structural plan (redacted secrets): what was made, for callers and tests. */
  public readonly plan: HomelabPlan;
  public readonly postgres: PostgresCluster;
  public readonly backups: BackupRepository;
  public readonly redis?: RedisServer;
  public readonly duckdb?: DuckDbHost;
  public readonly monitoring?: MonitoringServer;

  constructor(name: string, args: HomelabArgs, opts?: pulumi.ComponentResourceOptions) {
    // Before anything is registered: an unsupported platform creates nothing.
    assertPlatformSupported(args.spec);
    super("homelab:index:Homelab", name, {}, opts);
    const { spec } = args;
    this.plan = this.structuralPlan(spec);
    const plan = this.plan;
    // The real plan, computed where the secrets are: it never leaves a secret Output.
    const securePlan = pulumi.secret(args.secrets.apply((s) => planHomelab(spec, s)));

    const platform: Platform = platformFor(spec, { name, parent: this }, plan);
    this.platform = platform.kind;
    platform.createNetwork(plan, { name: `${name}-network`, parent: this });
    platform.createImages(plan, { name: `${name}-image`, parent: this });

    const base: NodeComponentArgs = { plan, securePlan, platform };
    // The repository first: the primary creates the stanza on it before reporting ready (plan: pg-1 depends
    // on backup); the stanza/check/first-backup steps run once the cluster is up.
    this.backups = new BackupRepository(`${name}-backup`, { ...base, readyNodes: {}, stanza: spec.pgbackrest.stanza }, { parent: this });
    this.postgres = new PostgresCluster(`${name}-postgres`, { ...base, readyNodes: { ...this.backups.readyNodes } }, { parent: this });
    this.backups.bootstrapStanza(Object.values(this.postgres.readyNodes));
    let ready = { ...this.backups.readyNodes, ...this.postgres.readyNodes };
    if (plan.nodes.some((n) => n.role === "redis")) {
      this.redis = new RedisServer(`${name}-redis`, { ...base, readyNodes: ready }, { parent: this });
      ready = { ...ready, ...this.redis.readyNodes };
    }
    if (plan.nodes.some((n) => n.role === "duckdb")) {
      this.duckdb = new DuckDbHost(`${name}-duckdb`, { ...base, readyNodes: ready }, { parent: this });
      ready = { ...ready, ...this.duckdb.readyNodes };
    }
    if (plan.nodes.some((n) => n.role === "monitoring")) {
      this.monitoring = new MonitoringServer(`${name}-monitoring`, { ...base, readyNodes: ready }, { parent: this });
    }

    this.topology = pulumi.all(platform.handles()).apply((handles) => topologyOf(spec, plan, handles));
    this.registerOutputs({ topology: this.topology });
  }

  private structuralPlan(spec: HomelabSpec): HomelabPlan {
    try {
      return planHomelab(spec, redactedSecrets());
    } catch (err) {
      if (err instanceof PlanError) throw new pulumi.ResourceError(`stack ${spec.stack}: ${err.problems.join("; ")}`, this);
      throw err;
    }
  }
}
