// The `topology` stack output (docs/architecture.md "Data flow" step 5): every node with its role, address and
// the handle a drill controls it by. Drills read ONLY this, never the Pulumi program. No secrets in here:
// a drill that needs a password reads it from the node through its handle (root on the node).
import type { HomelabSpec } from "./config/index.ts";
import type { HomelabPlan, NodeRole } from "./platform/plan.ts";

export const TOPOLOGY_VERSION = 1;

export type NodeHandle =
  | { kind: "docker"; container: string; dockerHost?: string }
  | { kind: "libvirt"; domain: string; uri: string; ssh: string }
  | { kind: "ssh"; target: string };

export interface TopologyNode {
  name: string;
  role: NodeRole;
  hostname: string;
  /** Address inside the stack network (how nodes reach each other). */
  internal: { host: string; port?: number };
  /** Address a drill or a person on the host reaches the service at. */
  published?: { host: string; port: number };
  handle: NodeHandle;
  /** Volumes holding the node's data (a drill "loses the disk" by removing them). */
  dataVolumes: string[];
  /** The Docker image and the env the node was created with: lets a drill re-create a lost node the same way. */
  image: string;
  env: Record<string, string>;
}

export interface Topology {
  version: typeof TOPOLOGY_VERSION;
  stack: string;
  platform: HomelabSpec["platform"];
  network: { name: string; subnet: string; gateway: string };
  postgres: {
    database: string;
    appUser: string;
    replicationUser: string;
    readonlyUser: string;
    replicationMode: "async" | "sync";
    archiveTimeoutSeconds: number;
    /** Files (inside PG nodes) holding each role's password. */
    passwordFiles: Record<string, string>;
  };
  pgbackrest: { stanza: string; repositoryNode: string; maxBackupAgeSeconds: number; tlsPort: number };
  redis?: { passwordFiles: Record<string, string>; appUser: string };
  objectives: HomelabSpec["objectives"];
  nodes: TopologyNode[];
}

export function topologyOf(spec: HomelabSpec, plan: HomelabPlan, opts: { dockerHost?: string } = {}): Topology {
  const pgRoles = {
    app: spec.postgres.appUser,
    replicator: "replicator",
    readonly: "analytics_ro",
  };
  return {
    version: TOPOLOGY_VERSION,
    stack: spec.stack,
    platform: spec.platform,
    network: { ...plan.network },
    postgres: {
      database: spec.postgres.database,
      appUser: pgRoles.app,
      replicationUser: pgRoles.replicator,
      readonlyUser: pgRoles.readonly,
      replicationMode: spec.postgres.replicationMode,
      archiveTimeoutSeconds: spec.postgres.archiveTimeout,
      passwordFiles: Object.fromEntries(Object.values(pgRoles).map((r) => [r, `/etc/homelab/secrets/${r}.password`])),
    },
    pgbackrest: { stanza: spec.pgbackrest.stanza, repositoryNode: "backup", maxBackupAgeSeconds: spec.pgbackrest.maxBackupAge, tlsPort: 8432 },
    redis: spec.redis.enabled
      ? { appUser: "app", passwordFiles: Object.fromEntries(["health", "app", "admin"].map((u) => [u, `/etc/homelab/secrets/${u}.password`])) }
      : undefined,
    objectives: spec.objectives,
    nodes: plan.nodes.map((n) => ({
      name: n.name,
      role: n.role,
      hostname: n.hostname,
      internal: { host: n.ipv4Address, port: n.ports[0]?.containerPort },
      published: n.ports[0] ? { host: plan.publishAddress, port: n.ports[0].hostPort } : undefined,
      handle: { kind: "docker", container: n.hostname, ...(opts.dockerHost ? { dockerHost: opts.dockerHost } : {}) },
      dataVolumes: n.volumes.map((v) => v.name),
      image: n.image.name,
      env: n.env,
    })),
  };
}
