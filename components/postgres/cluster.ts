// PostgresCluster: the primary and its streaming replicas (docs/architecture.md "Components"). The thinking
// (tuning, pg_hba, replication slots, sync/async) is in the planners; this only hands the cluster's
// NodePlans to the platform, replicas after the primary they clone from.
import * as pulumi from "@pulumi/pulumi";
import { createNodes, readyEndpoint, type Endpoint, type NodeComponentArgs } from "../platform/index.ts";

/**
 * Arguments of a PostgresCluster: the nodes with role postgres-primary (exactly one) and
 * postgres-replica (zero or more) of `plan`.
 */
export type PostgresClusterArgs = NodeComponentArgs;

export class PostgresCluster extends pulumi.ComponentResource {
  /** Where clients reach the primary (read-write). */
  public readonly primary: pulumi.Output<Endpoint>;
  /** Where clients reach each replica (read-only, hot standby), in plan order. */
  public readonly replicas: pulumi.Output<Endpoint[]>;
  /** Container names of every node, primary first: the handles drills use. */
  public readonly containers: pulumi.Output<string[]>;
  /** Ready resource of each node by node name: what needs the cluster up depends on these. */
  public readonly readyNodes: Record<string, pulumi.Resource>;

  constructor(name: string, args: PostgresClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("homelab:postgres:PostgresCluster", name, {}, opts);
    const primaries = args.plan.nodes.filter((n) => n.role === "postgres-primary");
    if (primaries.length !== 1) {
      throw new pulumi.ResourceError(
        `PostgresCluster ${name}: args.plan has ${primaries.length} postgres-primary nodes (${primaries.map((n) => n.name).join(", ") || "none"}); expected exactly one`,
        this,
      );
    }
    const primary = primaries[0] as (typeof primaries)[number];
    const replicas = args.plan.nodes.filter((n) => n.role === "postgres-replica");

    const made = createNodes(this, args, [
      { node: primary, resourceName: `${name}-primary` },
      ...replicas.map((node, i) => ({ node, resourceName: `${name}-replica-${i + 1}` })),
    ]);
    const madeFor = (nodeName: string) => made[nodeName] as NonNullable<(typeof made)[string]>;

    this.readyNodes = Object.fromEntries(Object.entries(made).map(([n, r]) => [n, r.ready]));
    this.primary = readyEndpoint(args.plan, primary, madeFor(primary.name));
    this.replicas = pulumi.all(replicas.map((n) => readyEndpoint(args.plan, n, madeFor(n.name))));
    this.containers = pulumi.all([primary, ...replicas].map((n) => madeFor(n.name).handle));
    this.registerOutputs({ primary: this.primary, replicas: this.replicas, containers: this.containers });
  }
}
