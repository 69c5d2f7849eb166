// What every platform shares (docs/architecture.md "Data flow" step 3): the Platform interface the
// components hand NodePlans to, and the plumbing around it (node files out of the secret plan, start order,
// endpoints). Imported by the platforms themselves, so it imports none of them (no import cycle).
import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { publishedOf, type HomelabPlan, type NodeFile, type NodeHandle, type NodePlan } from "./plan.ts";

/** `docker`: the docker CLI through @pulumi/command (the default, what CI runs for real); `docker-api`: @pulumi/docker; `libvirt`: VMs (ADR 0018); `mixed`: nodes on both (ADR 0021). */
export type PlatformKind = "docker" | "docker-api" | "libvirt" | "mixed";

export interface PlatformOptions {
  /** Name prefix of the platform's own resources (the docker provider). */
  name: string;
  parent?: pulumi.Resource;
}

/** What a platform made for one node. */
export interface NodeResources {
  /** Up and healthy once this resource is created: depend on it. */
  ready: pulumi.Resource;
  /** Every resource made for the node: its volumes and its container. */
  resources: pulumi.Resource[];
  /** The container / VM name a drill controls the node by; resolves once the node is made. */
  handle: pulumi.Output<string>;
}

/** Shared by every call that creates resources. */
export interface CreateOptions {
  /** Logical name of the resource(s) made (children of the component are named from the component). */
  name: string;
  parent: pulumi.Resource;
}

export interface NodeOptions extends CreateOptions {
  /** Resources that must exist (nodes healthy) before this node starts. */
  dependsOn: pulumi.Resource[];
}

/** A shell command run inside a node (`docker exec`), e.g. `pgbackrest --stanza=main stanza-create`. */
export interface NodeCommand {
  create: pulumi.Input<string>;
  /** Run inside the node when the resource is deleted. Default: nothing. */
  delete?: pulumi.Input<string>;
  /** Changes to these re-run `create` (replacement). Default: none. */
  triggers?: pulumi.Input<unknown[]>;
  /** OS user inside the node. Default: the image's user (root). */
  user?: string;
}

export interface Platform {
  readonly kind: PlatformKind;
  /** The stack's network. Call once, before createNode. */
  createNetwork(plan: HomelabPlan, opts: CreateOptions): pulumi.Resource;
  /** One image per distinct ImageRef of the plan, built on the engine. Call once, before createNode. */
  createImages(plan: HomelabPlan, opts: CreateOptions): pulumi.Resource[];
  /** One node: its volumes, its container with the files (a secret Output) in place, started and healthy. */
  createNode(plan: HomelabPlan, node: NodePlan, files: pulumi.Output<NodeFile[]>, opts: NodeOptions): NodeResources;
  /** The handle of every node made so far, by node name, resolved once the node is made: the topology's. */
  handles(): Record<string, pulumi.Output<NodeHandle>>;
  /** A shell command inside a running node, as a local command on the machine running Pulumi. */
  runOnNode(name: string, node: NodePlan, cmd: NodeCommand, opts: { parent: pulumi.Resource; dependsOn: pulumi.Resource[] }): command.local.Command;
}

/** The network and the image a node needs; both must have been made (createNetwork, createImages) first. */
export function builtFor<N, I>(node: NodePlan, network: N | undefined, images: ReadonlyMap<string, I>): { network: N; image: I } {
  const image = images.get(node.image.name);
  if (!network || !image) throw new Error(`createNode ${node.name}: call createNetwork and createImages first`);
  return { network, image };
}

/** Memory in MiB as the engine takes it; never above the plan's budget. */
export function memoryMiB(bytes: number): number {
  return Math.max(6, Math.floor(bytes / 1024 ** 2));
}

/** Octal mode string as Docker and tar expect it: 0o640 -> "0640". */
export function octalMode(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}

/** Resource-name suffix of a volume: `homelab-local-pg-1-data` on node `homelab-local-pg-1` -> `data`. */
export function volumeSuffix(node: NodePlan, volumeName: string, index: number): string {
  const prefix = `${node.hostname}-`;
  return volumeName.startsWith(prefix) ? volumeName.slice(prefix.length) : `volume-${index + 1}`;
}

/**
 * Resource options of a node volume. The backup repository's volume is retained on `pulumi destroy`
 * (unless pgbackrest.purgeBackupsOnDestroy): losing the cluster must not lose its backups.
 */
export function volumeResourceOptions(volume: NodePlan["volumes"][number]): Pick<pulumi.CustomResourceOptions, "retainOnDelete" | "deleteBeforeReplace"> {
  // deleteBeforeReplace: the engine object has a fixed name, so a replacement cannot exist beside it.
  return { retainOnDelete: volume.retainOnDestroy, deleteBeforeReplace: true };
}

/** One node's files out of the secret plan; fails loudly if the secret plan lost the node. */
export function nodeFiles(securePlan: pulumi.Output<HomelabPlan>, nodeName: string): pulumi.Output<NodeFile[]> {
  return pulumi.secret(
    securePlan.apply((p) => {
      const node = p.nodes.find((n) => n.name === nodeName);
      if (!node) throw new Error(`node ${nodeName} is in the structural plan but not in the plan built with the real secrets`);
      return node.files;
    }),
  );
}

/**
 * Creates `nodes` in start order under a component, resolving each NodePlan.dependsOn to the ready resource
 * of a node made here or by an earlier component (`readyNodes`). Returns every node's resources by node name.
 */
export function createNodes(
  component: pulumi.ComponentResource,
  args: { plan: HomelabPlan; securePlan: pulumi.Output<HomelabPlan>; platform: Platform; readyNodes?: Record<string, pulumi.Resource> },
  nodes: { node: NodePlan; resourceName: string }[],
): Record<string, NodeResources> {
  const made: Record<string, NodeResources> = {};
  const byName = new Map(nodes.map((n) => [n.node.name, n]));
  const ordered: { node: NodePlan; resourceName: string }[] = [];
  const visit = (entry: { node: NodePlan; resourceName: string }, trail: string[]) => {
    if (ordered.includes(entry)) return;
    if (trail.includes(entry.node.name)) throw new pulumi.ResourceError(`node dependency cycle: ${[...trail, entry.node.name].join(" -> ")}`, component);
    for (const dep of entry.node.dependsOn) {
      const local = byName.get(dep);
      if (local) visit(local, [...trail, entry.node.name]);
    }
    ordered.push(entry);
  };
  for (const entry of nodes) visit(entry, []);
  for (const { node, resourceName } of ordered) {
    const dependsOn = node.dependsOn.map((dep) => {
      const ready = made[dep]?.ready ?? args.readyNodes?.[dep];
      if (!ready) {
        throw new pulumi.ResourceError(`node ${node.name} depends on node ${dep}, which is neither part of this component nor made before it (pass it in readyNodes)`, component);
      }
      return ready;
    });
    made[node.name] = args.platform.createNode(args.plan, node, nodeFiles(args.securePlan, node.name), { name: resourceName, parent: component, dependsOn });
  }
  return made;
}

/** Where a client reaches a node's service: inside the stack network and, when published, on the host. */
export interface Endpoint {
  node: string;
  hostname: string;
  /** Static address on the stack network. */
  host: string;
  port: number;
  published?: { host: string; port: number };
}

export function endpointOf(plan: HomelabPlan, node: NodePlan): Endpoint {
  const port = node.ports[0];
  return {
    node: node.name,
    hostname: node.hostname,
    host: node.ipv4Address,
    port: port?.containerPort ?? 0,
    ...(port ? { published: publishedOf(plan, node) } : {}),
  };
}

/** The endpoint as an Output that resolves once the node is made (so consumers depend on it). */
export function readyEndpoint(plan: HomelabPlan, node: NodePlan, made: NodeResources): pulumi.Output<Endpoint> {
  return made.handle.apply(() => endpointOf(plan, node));
}

/** What every node-making component takes (PostgresCluster, BackupRepository, RedisServer, DuckDbHost). */
export interface NodeComponentArgs {
  /** The stack's structural plan (made with redacted secrets): names, addresses, ports, volumes. */
  plan: HomelabPlan;
  /** The same plan made with the real secrets, as a Pulumi secret: node files come only from here. */
  securePlan: pulumi.Output<HomelabPlan>;
  /** Where the nodes are made (platformFor); its network and images must exist already. */
  platform: Platform;
  /** Ready resources of nodes made by other components, by node name (for NodePlan.dependsOn). Default: none. */
  readyNodes?: Record<string, pulumi.Resource>;
}

/** The plan's nodes with one of `roles`; a ResourceError naming the roles when there are none. */
export function nodesWithRoles(component: pulumi.ComponentResource, plan: HomelabPlan, roles: NodePlan["role"][], what: string): NodePlan[] {
  const nodes = plan.nodes.filter((n) => roles.includes(n.role));
  if (nodes.length === 0) {
    throw new pulumi.ResourceError(`${what}: args.plan has no node with role ${roles.join(" or ")}; plan nodes: ${plan.nodes.map((n) => `${n.name} (${n.role})`).join(", ")}`, component);
  }
  return nodes;
}
