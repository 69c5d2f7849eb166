// What a platform needs to make one host of the tier: the NodePlan (docs/architecture.md "Data flow" step 2).
// Plain data, no Pulumi types: the docker platform, the docker-cli platform and the e2e harness all
// apply the same plans, so what the tests prove is what `pulumi up` builds.
import type { Platform } from "../config/schema.ts";

export const NODE_ROLES = ["postgres-primary", "postgres-replica", "backup-repository", "redis", "redis-replica", "duckdb", "repo2-sftp", "monitoring", "etcd", "postgres-endpoint"] as const;
export type NodeRole = (typeof NODE_ROLES)[number];
export type { Platform };

export interface ImageRef {
  /** Local tag, e.g. homelab/postgres:17. */
  name: string;
  /** Build context, relative to the project root. */
  context: string;
  /** Base image build arg (made locally with debootstrap when no registry is reachable). */
  baseImage: string;
}

export interface NodeFile {
  /** Absolute path inside the node. */
  path: string;
  content: string;
  /** Octal file mode, e.g. 0o600. */
  mode: number;
  /** Holds a password, key or hash: travels as a Pulumi secret, never printed. */
  secret: boolean;
}

export interface NodeVolume {
  /** Volume name on the engine (stack-prefixed). */
  name: string;
  mountPath: string;
  /** The backup repository's volume outlives `destroy` unless the stack says purgeBackupsOnDestroy. */
  retainOnDestroy: boolean;
}

export interface NodePort {
  name: string;
  containerPort: number;
  /** Published on publishAddress:hostPort. */
  hostPort: number;
}

export interface Healthcheck {
  test: string[];
  intervalSeconds: number;
  timeoutSeconds: number;
  retries: number;
  startPeriodSeconds: number;
}

export interface NodePlan {
  /** Logical node name inside the stack: pg-1, pg-2, backup, redis, redis-replica, duckdb. */
  name: string;
  /** Container / VM / host name: `${prefix}-${name}`. */
  hostname: string;
  role: NodeRole;
  image: ImageRef;
  /** Non-secret environment only: passwords travel in files. */
  env: Record<string, string>;
  files: NodeFile[];
  volumes: NodeVolume[];
  ports: NodePort[];
  healthcheck: Healthcheck;
  memoryBytes: number;
  cpus: number;
  /** Static address on the stack network (pg_hba rules name it). */
  ipv4Address: string;
  /** Nodes that must be healthy before this one starts. */
  dependsOn: string[];
  /** Seconds the engine waits after SIGTERM before SIGKILL (PostgreSQL needs a clean shutdown). */
  stopTimeoutSeconds: number;
  /** The host the stack places the node on (a key of `hosts:`, or the platform's name without one). */
  host: string;
  /** What makes the node there: a container (docker, docker-api) or a VM (libvirt). */
  platform: Platform;
}

export interface NetworkPlan {
  name: string;
  subnet: string;
  gateway: string;
}

/** How a drill or a client reaches a node: the platform's real handle of what it made. */
export type NodeHandle =
  | { kind: "docker"; container: string; dockerHost?: string }
  | { kind: "libvirt"; domain: string; uri: string; ssh: string; identityFile: string; knownHosts: string }
  | { kind: "ssh"; target: string };

/**
 * Facts of the tier the planners decided while building the nodes (role names, where each password file
 * is, the stanza, the repository node, ports): recorded once here, so the topology output and anything else
 * read them instead of repeating them.
 */
export interface PlanFacts {
  postgres: {
    database: string;
    appUser: string;
    replicationUser: string;
    readonlyUser: string;
    replicationMode: "async" | "sync";
    archiveTimeoutSeconds: number;
    /** Path (inside every PostgreSQL node) of each role's password file, by role name. */
    passwordFiles: Record<string, string>;
    /** Present with postgres.ha: patroni (ADR 0017): Patroni fails over; clients connect through HAProxy. */
    ha?: {
      mode: "patroni";
      /** Patroni's cluster name (scope) in the DCS. */
      scope: string;
      /** The HAProxy node and the etcd nodes. */
      endpointNode: string;
      etcdNodes: string[];
      ttlSeconds: number;
      loopWaitSeconds: number;
      retryTimeoutSeconds: number;
    };
    /** Stable client addresses as published on the host (ha: patroni only): the primary, and any replica. */
    endpoints?: { primary: { host: string; port: number }; replicas: { host: string; port: number } };
  };
  pgbackrest: {
    stanza: string;
    repositoryNode: string;
    maxBackupAgeSeconds: number;
    tlsPort: number;
    /** The second repository (ADR 0013), when configured: where it is, and the stand-in node serving it. */
    repo2?: { type: "sftp"; host: string; path: string; node?: string };
  };
  /** Present when Redis is part of the stack. */
  redis?: { appUser: string; adminUser: string; healthUser: string; passwordFiles: Record<string, string> };
  /** Present when the stack runs a monitoring node (issue 12, ADR 0016). */
  monitoring?: { node: string; prometheus: string; alerts: string[] };
}

export interface HomelabPlan {
  stack: string;
  /** Name prefix of every engine object: homelab-<stack>. */
  prefix: string;
  /** The network of the stack's `platform` (the one every node is on without `hosts:`). */
  network: NetworkPlan;
  /** The stack's network on each kind of host it places nodes on: the Docker bridge, the libvirt NAT network. */
  networks: Partial<Record<NetworkKind, NetworkPlan>>;
  nodes: NodePlan[];
  publishAddress: string;
  /** Labels every engine object carries, so teardown can find leftovers. */
  labels: Record<string, string>;
  facts: PlanFacts;
}

/** Which network a node sits on: containers on the Docker bridge, VMs on the libvirt NAT network. */
export type NetworkKind = "docker" | "libvirt";
export const networkKindOf = (platform: Platform): NetworkKind => (platform === "libvirt" ? "libvirt" : "docker");

/** The plan as one platform sees it: its own network as `network` (every node stays, for names and addresses). */
export function planOn(plan: HomelabPlan, kind: NetworkKind): HomelabPlan {
  const network = plan.networks[kind];
  if (!network) throw new Error(`plan of stack ${plan.stack}: no ${kind} network (no node is placed on a ${kind} host)`);
  return { ...plan, network };
}

/** The platform of a stack as its topology records it: the one every node is made by, or `mixed`. */
export function platformOfPlan(plan: Pick<HomelabPlan, "nodes">): Platform | "mixed" {
  const kinds = [...new Set(plan.nodes.map((n) => n.platform))];
  return kinds.length === 1 ? kinds[0]! : "mixed";
}

/** The kinds of network the plan's nodes sit on (docker, libvirt, or both). */
export const kindsOfPlan = (plan: Pick<HomelabPlan, "nodes">): Set<NetworkKind> => new Set(plan.nodes.map((n) => networkKindOf(n.platform)));

/** The plan's nodes a platform makes. */
export const nodesOn = (plan: Pick<HomelabPlan, "nodes">, kind: NetworkKind): NodePlan[] => plan.nodes.filter((n) => networkKindOf(n.platform) === kind);

/**
 * Where the host reaches a node's first service port: a container's published on the host, a VM's at its own
 * address (VMs publish nothing: the host is .1 on their network).
 */
export function publishedOf(plan: Pick<HomelabPlan, "publishAddress">, node: NodePlan): { host: string; port: number } | undefined {
  const port = node.ports[0];
  if (!port) return undefined;
  return node.platform === "libvirt" ? { host: node.ipv4Address, port: port.containerPort } : { host: plan.publishAddress, port: port.hostPort };
}

/** Nodes ordered so each comes after what it depends on. */
export function startOrder(nodes: NodePlan[]): NodePlan[] {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const done = new Set<string>();
  const out: NodePlan[] = [];
  const visit = (node: NodePlan, trail: string[]) => {
    if (done.has(node.name)) return;
    if (trail.includes(node.name)) throw new Error(`dependency cycle: ${[...trail, node.name].join(" -> ")}`);
    for (const dep of node.dependsOn) {
      const target = byName.get(dep);
      if (!target) throw new Error(`node ${node.name} depends on unknown node ${dep}`);
      visit(target, [...trail, node.name]);
    }
    done.add(node.name);
    out.push(node);
  };
  for (const node of nodes) visit(node, []);
  return out;
}
