// DuckDbHost: the analytics host that pulls the app database from a PostgreSQL replica into DuckDB on a
// schedule (docs/architecture.md "Components"). Its NodePlan depends on that replica, so it is made after it.
import * as pulumi from "@pulumi/pulumi";
import { createNodes, nodesWithRoles, readyEndpoint, type Endpoint, type NodeComponentArgs } from "../platform/index.ts";

/**
 * Arguments of a DuckDbHost: the node with role duckdb of `plan`. `readyNodes` must hold the PostgreSQL
 * replica it reads from (PostgresCluster.readyNodes).
 */
export type DuckDbHostArgs = NodeComponentArgs;

export class DuckDbHost extends pulumi.ComponentResource {
  /** Where the DuckDB host's HTTP endpoint is reached. */
  public readonly endpoint: pulumi.Output<Endpoint>;
  /** Container name of the host. */
  public readonly container: pulumi.Output<string>;
  /** Ready resource of the node by node name. */
  public readonly readyNodes: Record<string, pulumi.Resource>;

  constructor(name: string, args: DuckDbHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("homelab:duckdb:DuckDbHost", name, {}, opts);
    const hosts = nodesWithRoles(this, args.plan, ["duckdb"], `DuckDbHost ${name}`);
    if (hosts.length !== 1) throw new pulumi.ResourceError(`DuckDbHost ${name}: args.plan has ${hosts.length} duckdb nodes; expected exactly one`, this);
    const host = hosts[0] as (typeof hosts)[number];

    const made = createNodes(this, args, [{ node: host, resourceName: name }])[host.name];
    if (!made) throw new Error(`DuckDbHost ${name}: node ${host.name} was not made`);

    this.readyNodes = { [host.name]: made.ready };
    this.endpoint = readyEndpoint(args.plan, host, made);
    this.container = made.handle;
    this.registerOutputs({ endpoint: this.endpoint, container: this.container });
  }
}
