// RedisServer: Redis 7 with AOF + RDB persistence and ACL users, plus an optional replica
// (docs/architecture.md "Components"). redis.conf and the ACL file come from the planners; this only makes the
// nodes, the replica after the primary it replicates from.
import * as pulumi from "@pulumi/pulumi";
import { createNodes, nodesWithRoles, readyEndpoint, type Endpoint, type NodeComponentArgs } from "../platform/index.ts";

/** Arguments of a RedisServer: the nodes with role redis (exactly one) and redis-replica (zero or one) of `plan`. */
export type RedisServerArgs = NodeComponentArgs;

export class RedisServer extends pulumi.ComponentResource {
  /** Where clients reach the Redis primary. */
  public readonly primary: pulumi.Output<Endpoint>;
  /** Where clients reach the replica (read-only); undefined without redis.replica. */
  public readonly replica: pulumi.Output<Endpoint | undefined>;
  /** Container names, primary first. */
  public readonly containers: pulumi.Output<string[]>;
  /** Ready resource of each node by node name. */
  public readonly readyNodes: Record<string, pulumi.Resource>;

  constructor(name: string, args: RedisServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("homelab:redis:RedisServer", name, {}, opts);
    const primaries = nodesWithRoles(this, args.plan, ["redis"], `RedisServer ${name}`);
    const replicas = args.plan.nodes.filter((n) => n.role === "redis-replica");
    if (primaries.length !== 1 || replicas.length > 1) {
      throw new pulumi.ResourceError(`RedisServer ${name}: args.plan has ${primaries.length} redis and ${replicas.length} redis-replica nodes; expected one redis and at most one redis-replica`, this);
    }
    const primary = primaries[0] as (typeof primaries)[number];
    const replica = replicas[0];

    const made = createNodes(this, args, [
      { node: primary, resourceName: `${name}-primary` },
      ...(replica ? [{ node: replica, resourceName: `${name}-replica` }] : []),
    ]);
    const madeFor = (nodeName: string) => made[nodeName] as NonNullable<(typeof made)[string]>;

    this.readyNodes = Object.fromEntries(Object.entries(made).map(([n, r]) => [n, r.ready]));
    this.primary = readyEndpoint(args.plan, primary, madeFor(primary.name));
    this.replica = replica ? readyEndpoint(args.plan, replica, madeFor(replica.name)) : pulumi.output(undefined);
    this.containers = pulumi.all([primary, ...replicas].map((n) => madeFor(n.name).handle));
    this.registerOutputs({ primary: this.primary, replica: this.replica, containers: this.containers });
  }
}
