// Node re-creation for drills, through the ONE node applier (components/platform/docker-node.ts) that
// `pulumi up` and the e2e harness use: a drill never builds a container its own way. What a node is made
// from is its topology entry's `container` (the stack's own ContainerSpec); its /etc/homelab files
// (passwords, keys, configs) are read out of the old container into memory with `docker cp` BEFORE the node
// is lost, never written to the host's disk, and streamed into the new one. From a snapshot a drill makes
//   - the node again, same name, address, ports and volume names (rebuildNode on new empty volumes,
//     recreateContainer on the same ones, e.g. with another HOMELAB_ROLE for pg_rewind), or
//   - a disposable copy with the node's identity (hostname, certificate, /etc/homelab) under another name, on
//     a new volume, at an address and host port the engine picks: a restore target that the repository's
//     `tls-server-auth` lets in (components/postgres/image/README.md "pgBackRest over TLS").
// What is decided here is pure and unit-tested (test/unit/drills-scratch-node.test.ts).
import { LABEL_NODE, LABEL_RETAIN, docker, dockerBuffer, dockerEnv, runApplyNode, type ContainerSpec } from "../../components/platform/docker-node.ts";
import type { TopologyNode } from "../../components/topology.ts";
import type { ControlledNode } from "./node-types.ts";

/** Marks what a drill made for itself (copies, scratch volumes): never part of the stack's plan. */
export const LABEL_DRILL_SCRATCH = "dev.homelab-data.drill-scratch";

/** A node a drill can re-create: its handle and the container spec it is made from. */
export type RecreatableNode = ControlledNode & Pick<TopologyNode, "container">;

export interface NodeSnapshot {
  node: RecreatableNode;
  /** The node's /etc/homelab as a tar stream (`docker cp <ctr>:/etc/homelab -`): holds secrets, never log it. */
  etcTar: Buffer;
}

function dockerHandle(node: ControlledNode): { container: string; dockerHost?: string } {
  if (node.handle.kind !== "docker") throw new Error(`node ${node.name}: handle kind ${node.handle.kind} is not a docker handle`);
  return node.handle;
}

/** The node's spec with env entries replaced (pure). */
export function withEnv(spec: ContainerSpec, env: Record<string, string>): ContainerSpec {
  return { ...spec, env: { ...spec.env, ...env } };
}

/**
 * The spec of a disposable copy of `spec` (pure): another container name and node label, its data volumes
 * renamed `<name>-<suffix of the original>` and marked scratch (never retained), no static address (the
 * original's stays free for the node's own rebuild), every published port on an ephemeral host port of the
 * same host address, no restart policy, and the drill-scratch label so a teardown by stack label sweeps it.
 * The hostname stays: it is the identity the repository's TLS trusts.
 */
export function copySpec(spec: ContainerSpec, o: { name: string; nodeLabel: string; env?: Record<string, string> }): ContainerSpec {
  return {
    ...spec,
    name: o.name,
    env: { ...spec.env, ...(o.env ?? {}) },
    labels: { ...spec.labels, [LABEL_NODE]: o.nodeLabel, [LABEL_DRILL_SCRATCH]: "true" },
    ipv4Address: undefined,
    publish: spec.publish.map((p) => ({ ...p, hostPort: 0 })),
    volumes: spec.volumes.map((v) => ({
      name: `${o.name}-${v.name.split("-").slice(-1)[0] ?? "data"}`,
      mountPath: v.mountPath,
      labels: { ...v.labels, [LABEL_RETAIN]: "false", [LABEL_NODE]: o.nodeLabel, [LABEL_DRILL_SCRATCH]: "true" },
    })),
    restart: "no",
  };
}

/** Snapshot of a node (running, stopped or killed; its container must still exist). */
export async function snapshotDockerNode(node: RecreatableNode): Promise<NodeSnapshot> {
  const h = dockerHandle(node);
  const etcTar = await dockerBuffer(["cp", `${h.container}:/etc/homelab`, "-"], { env: dockerEnv(h.dockerHost) });
  return { node, etcTar };
}

async function refuseExistingVolumes(spec: ContainerSpec, dockerHost?: string): Promise<void> {
  for (const v of spec.volumes) {
    const exists = await docker(["volume", "inspect", v.name], { env: dockerEnv(dockerHost), allowFailure: true });
    if (exists.code === 0) throw new Error(`volume ${v.name} already exists: refusing to restore into data that is already there`);
  }
}

/** Applies `spec` with the snapshot's /etc/homelab through the node applier; waits until healthy. */
function apply(snapshot: NodeSnapshot, spec: ContainerSpec, opts: { timeoutSeconds?: number } = {}): Promise<void> {
  return runApplyNode(spec, snapshot.etcTar, { filesDir: "/etc", dockerHost: dockerHandle(snapshot.node).dockerHost, timeoutSeconds: opts.timeoutSeconds });
}

/**
 * A disposable copy of the snapshotted node (copySpec) on new, EMPTY volumes, with `env` over the node's,
 * up and healthy. Returns it as a node drills can control.
 */
export async function createNodeCopy(snapshot: NodeSnapshot, o: { name: string; nodeLabel: string; env: Record<string, string>; timeoutSeconds?: number }): Promise<RecreatableNode> {
  const spec = copySpec(snapshot.node.container, o);
  const dockerHost = dockerHandle(snapshot.node).dockerHost;
  await refuseExistingVolumes(spec, dockerHost);
  const copy: RecreatableNode = { name: o.nodeLabel, handle: { kind: "docker", container: spec.name, ...(dockerHost ? { dockerHost } : {}) }, dataVolumes: spec.volumes.map((v) => v.name), container: spec };
  try {
    await apply(snapshot, spec, o);
  } catch (e) {
    await removeNodeCopy(copy).catch(() => {});
    throw e;
  }
  return copy;
}

/**
 * The snapshotted node again as the stack made it (its topology `container`, with `env` over it), on its
 * data volumes re-created EMPTY. Its old container must be gone with its volumes (`removeDataVolumes`).
 */
export async function rebuildNode(snapshot: NodeSnapshot, o: { env?: Record<string, string>; timeoutSeconds?: number } = {}): Promise<void> {
  const spec = withEnv(snapshot.node.container, o.env ?? {});
  await refuseExistingVolumes(spec, dockerHandle(snapshot.node).dockerHost);
  await apply(snapshot, spec, o);
}

/**
 * Replaces the node's container (stopped, or stopped cleanly here by the applier) by the stack's spec with
 * `env` over it, on the SAME volumes: another HOMELAB_ROLE for pg_rewind, or back to exactly what the stack
 * made (no `env`), so a later `pulumi up` finds what it created.
 */
export async function recreateContainer(snapshot: NodeSnapshot, o: { env?: Record<string, string>; timeoutSeconds?: number } = {}): Promise<void> {
  await apply(snapshot, withEnv(snapshot.node.container, o.env ?? {}), o);
}

/** Removes a copy made by createNodeCopy: its container and volumes (only ones marked drill-scratch). */
export async function removeNodeCopy(copy: ControlledNode): Promise<void> {
  const h = dockerHandle(copy);
  const env = dockerEnv(h.dockerHost);
  await docker(["rm", "-f", h.container], { env, allowFailure: true });
  for (const volume of copy.dataVolumes) {
    const label = await docker(["volume", "inspect", "--format", `{{index .Labels "${LABEL_DRILL_SCRATCH}"}}`, volume], { env, allowFailure: true });
    if (label.code !== 0) continue;
    if (label.stdout.trim() !== "true") throw new Error(`volume ${volume} is not a drill's scratch volume: not removing it`);
    await docker(["volume", "rm", "-f", volume], { env, allowFailure: true });
  }
}

/** Where the host reaches `containerPort` of a node: the host address and port the engine published. */
export async function publishedAddress(node: ControlledNode, containerPort: number): Promise<{ host: string; port: number }> {
  const h = dockerHandle(node);
  const r = await docker(["port", h.container, `${containerPort}/tcp`], { env: dockerEnv(h.dockerHost) });
  const first = r.stdout.split("\n").map((l) => l.trim()).find((l) => /:\d+$/.test(l) && !l.startsWith("["));
  const m = first ? /^(.*):(\d+)$/.exec(first) : null;
  if (!m) throw new Error(`${node.name}: port ${containerPort} is not published (docker port: ${r.stdout.trim() || "nothing"})`);
  const host = m[1] === "0.0.0.0" ? "127.0.0.1" : m[1]!;
  return { host, port: Number(m[2]) };
}
