// MonitoringServer: the monitoring node (Prometheus and the exporters, ADR 0016). Its NodePlan depends on
// every other node, so it is made last.
import * as pulumi from "@pulumi/pulumi";
import { createNodes, nodesWithRoles, readyEndpoint, type Endpoint, type NodeComponentArgs } from "../platform/index.ts";

/**
 * Arguments of a MonitoringServer: the node with role monitoring of `plan`. `readyNodes` must hold every node
 * it scrapes (so its first samples are of a tier that is up).
 */
export type MonitoringServerArgs = NodeComponentArgs;

export class MonitoringServer extends pulumi.ComponentResource {
  /** Where Prometheus (its HTTP API and UI) is reached. */
  public readonly endpoint: pulumi.Output<Endpoint>;
  /** Container name of the host. */
  public readonly container: pulumi.Output<string>;
  /** Ready resource of the node by node name. */
  public readonly readyNodes: Record<string, pulumi.Resource>;

  constructor(name: string, args: MonitoringServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("homelab:monitoring:MonitoringServer", name, {}, opts);
    const hosts = nodesWithRoles(this, args.plan, ["monitoring"], `MonitoringServer ${name}`);
    if (hosts.length !== 1) throw new pulumi.ResourceError(`MonitoringServer ${name}: args.plan has ${hosts.length} monitoring nodes; expected exactly one`, this);
    const host = hosts[0] as (typeof hosts)[number];

    const made = createNodes(this, args, [{ node: host, resourceName: name }])[host.name];
    if (!made) throw new Error(`MonitoringServer ${name}: node ${host.name} was not made`);

    this.readyNodes = { [host.name]: made.ready };
    this.endpoint = readyEndpoint(args.plan, host, made);
    this.container = made.handle;
    this.registerOutputs({ endpoint: this.endpoint, container: this.container });
  }
}
