// The `topology` stack output (docs/architecture.md "Data flow" step 5): every node with its role, address,
// the container spec it was made from and the handle a drill controls it by. ONE zod schema, shared by the
// components (which export it) and the drills (which validate what they read with it), so a platform or a
// field added here works everywhere. Derived mechanically: the facts from the plan (plan.facts), the
// container from the one node applier's containerSpecOf, the handles from what the platform really made.
// No secrets in here: a drill that needs a password reads it from the node through its handle.
import { z } from "zod";
import type { HomelabSpec } from "./config/index.ts";
import { PLATFORMS } from "./config/schema.ts";
import { containerSpecOf, type ContainerSpec } from "./platform/docker-node.ts";
import { NODE_ROLES, platformOfPlan, publishedOf, type HomelabPlan, type NodeHandle, type PlanFacts } from "./platform/plan.ts";
import { stackSshTarget } from "./platform/machine-node.ts";

export const TOPOLOGY_VERSION = 2;

const name = z.string().min(1);
const port = z.number().int().min(0).max(65535);
const seconds = z.number().nonnegative();

const handleSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("docker"), container: name, dockerHost: name.optional() }),
  z.object({ kind: z.literal("libvirt"), domain: name, uri: name, ssh: name, identityFile: name, knownHosts: name }),
  z.object({ kind: z.literal("ssh"), target: name }),
]);

const containerSchema = z.object({
  name,
  hostname: name,
  image: name,
  env: z.record(z.string(), z.string()),
  labels: z.record(z.string(), z.string()),
  network: name,
  ipv4Address: name.optional(),
  publish: z.array(z.object({ host: name, hostPort: port, containerPort: port })),
  extraHosts: z.array(z.object({ hostname: name, ip: name })).optional(),
  volumes: z.array(z.object({ name, mountPath: name, labels: z.record(z.string(), z.string()) })),
  memoryBytes: z.number().int().positive(),
  cpus: z.number().positive(),
  restart: z.enum(["unless-stopped", "no"]),
  stopTimeoutSeconds: seconds,
  healthcheck: z.object({ test: z.array(z.string()).min(1), intervalSeconds: seconds, timeoutSeconds: seconds, retries: z.number().int().nonnegative(), startPeriodSeconds: seconds }),
});

const nodeSchema = z.object({
  name,
  role: z.enum(NODE_ROLES),
  hostname: name,
  /** Address inside the stack network (how nodes reach each other). */
  internal: z.object({ host: name, port: port.optional() }),
  /** Address a drill or a person on the host reaches the service at. */
  published: z.object({ host: name, port }).optional(),
  handle: handleSchema,
  /** Volumes holding the node's data (a drill "loses the disk" by removing them). */
  dataVolumes: z.array(name),
  /** What the node was made from: lets a drill re-create it exactly as the stack did (one node applier). */
  container: containerSchema,
});

const objectivePair = z.object({ rpo: seconds, rto: seconds });

export const topologySchema = z.object({
  version: z.literal(TOPOLOGY_VERSION),
  stack: name,
  /** What made the nodes; `mixed`: containers and VMs (hosts:, each node's handle says which). */
  platform: z.enum([...PLATFORMS, "mixed"]),
  network: z.object({ name, subnet: name, gateway: name }),
  postgres: z.object({
    database: name,
    appUser: name,
    replicationUser: name,
    readonlyUser: name,
    replicationMode: z.enum(["async", "sync"]),
    archiveTimeoutSeconds: seconds,
    /** Files (inside PG nodes) holding each role's password. */
    passwordFiles: z.record(z.string(), name),
    /** postgres.ha: patroni only (ADR 0017). */
    ha: z.object({ mode: z.literal("patroni"), scope: name, endpointNode: name, etcdNodes: z.array(name), ttlSeconds: seconds, loopWaitSeconds: seconds, retryTimeoutSeconds: seconds }).optional(),
    /** Stable client addresses (HAProxy, published on the host): the primary, and any replica. ha: patroni only. */
    endpoints: z.object({ primary: z.object({ host: name, port }), replicas: z.object({ host: name, port }) }).optional(),
  }),
  pgbackrest: z.object({
    stanza: name,
    repositoryNode: name,
    maxBackupAgeSeconds: seconds,
    tlsPort: port,
    repo2: z.object({ type: z.literal("sftp"), host: name, path: name, node: name.optional() }).optional(),
  }),
  redis: z.object({ appUser: name, adminUser: name, healthUser: name, passwordFiles: z.record(z.string(), name) }).optional(),
  /** The monitoring node (ADR 0016): Prometheus' URL on the host (published on docker.publishAddress) and the alerts it evaluates. */
  monitoring: z.object({ node: name, prometheus: z.url(), alerts: z.array(name) }).optional(),
  objectives: z.object({
    failover: z.object({ rpoWrites: z.number().int().nonnegative(), rpo: seconds.optional(), rto: seconds, redundancyRestored: seconds }),
    backupRestore: objectivePair,
    redis: objectivePair,
    recreate: objectivePair,
    siteLoss: objectivePair,
    /** Absent from topologies exported before the long-transaction drill: `pulumi up` adds it. */
    longTransaction: z.object({ detect: seconds, rto: seconds }).optional(),
    vacuumBloat: z.object({ rto: seconds }).optional(),
    wraparound: z.object({ rto: seconds }).optional(),
    switchover: z.object({ rto: seconds }).optional(),
    redisReplicationLag: z.object({ detect: seconds, rto: seconds }).optional(),
    queryTuning: z.object({ minSpeedup: z.number().min(1) }).optional(),
  }),
  nodes: z.array(nodeSchema).min(1),
});

export type Topology = z.infer<typeof topologySchema>;
export type TopologyNode = Topology["nodes"][number];
export type { NodeHandle };

// The schema and the types the platforms and planners use must describe the same things.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameHandle: Same<z.infer<typeof handleSchema>, NodeHandle> = true;
const sameContainer: Same<z.infer<typeof containerSchema>, ContainerSpec> = true;
const sameFacts: Same<Pick<Topology, "postgres" | "pgbackrest" | "redis" | "monitoring">, PlanFacts> = true;
void [sameHandle, sameContainer, sameFacts];

/** The handle of each node as the docker platform names containers (what the e2e harness makes). */
export function dockerHandles(plan: HomelabPlan, dockerHost?: string): Record<string, NodeHandle> {
  return Object.fromEntries(plan.nodes.map((n) => [n.name, { kind: "docker", container: containerSpecOf(plan, n).name, ...(dockerHost ? { dockerHost } : {}) } satisfies NodeHandle]));
}

/** The handle of each node as the libvirt platform names domains and reaches them (components/platform/libvirt-platform.ts). */
export function libvirtHandles(spec: Pick<HomelabSpec, "stack" | "libvirt">, plan: HomelabPlan): Record<string, NodeHandle> {
  return Object.fromEntries(
    plan.nodes.map((n) => {
      const t = stackSshTarget(spec.stack, n.ipv4Address);
      return [n.name, { kind: "libvirt", domain: n.hostname, uri: spec.libvirt?.uri ?? "qemu:///system", ssh: `${t.user}@${t.host}`, identityFile: t.identityFile, knownHosts: t.knownHosts } satisfies NodeHandle];
    }),
  );
}

/** The handles a stack's platform makes, derived from the plan (what `homelab up` prints before asking pulumi). */
export function handlesOf(spec: HomelabSpec, plan: HomelabPlan): Record<string, NodeHandle> {
  const vms = libvirtHandles(spec, plan);
  const containers = dockerHandles(plan, spec.docker.host);
  return Object.fromEntries(plan.nodes.map((n) => [n.name, (n.platform === "libvirt" ? vms : containers)[n.name]!]));
}

/** The topology of a plan, with each node's handle from what the platform made (`handles`, by node name). */
export function topologyOf(spec: HomelabSpec, plan: HomelabPlan, handles: Record<string, NodeHandle> = handlesOf(spec, plan)): Topology {
  return {
    version: TOPOLOGY_VERSION,
    stack: spec.stack,
    platform: platformOfPlan(plan),
    network: { ...plan.network },
    ...structuredClone(plan.facts),
    objectives: spec.objectives,
    nodes: plan.nodes.map((n) => {
      const handle = handles[n.name];
      if (!handle) throw new Error(`topology: the platform made no handle for node ${n.name}`);
      const container = containerSpecOf(plan, n);
      return {
        name: n.name,
        role: n.role,
        hostname: n.hostname,
        internal: { host: n.ipv4Address, port: n.ports[0]?.containerPort },
        published: publishedOf(plan, n),
        handle,
        dataVolumes: container.volumes.map((v) => v.name),
        container,
      };
    }),
  };
}
