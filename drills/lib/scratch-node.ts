// Node snapshots for drills that lose a node's disk and must build nodes again: what the engine really ran
// (`docker inspect`), the labels of its volumes, and its /etc/homelab files (passwords, keys, configs,
// streamed into memory with `docker cp`, never written to the host's disk), taken BEFORE the node is lost.
// From a snapshot a drill creates
//   - the node again, same name, address, ports and volume names (a rebuild), or
//   - a disposable copy with the node's identity (hostname, certificate, /etc/homelab) under another name, on
//     a new volume, at an address and host port the engine picks: a restore target that the repository's
//     `tls-server-auth` lets in (components/postgres/image/README.md "pgBackRest over TLS").
// The argv comes from dockerCreateArgsFromInspect (docker-replace.ts); what is decided here is pure and
// unit-tested (test/unit/drills-scratch-node.test.ts).
import { spawn } from "node:child_process";
import { docker, LABEL_NODE, LABEL_RETAIN } from "../../components/platform/docker-cli.ts";
import { dockerCreateArgsFromInspect, inspectContainer, type ContainerInspect } from "./docker-replace.ts";
import type { ControlledNode } from "./nodes.ts";

/** Marks what a drill made for itself (copies, scratch volumes): never part of the stack's plan. */
export const LABEL_DRILL_SCRATCH = "dev.homelab-data.drill-scratch";

export interface NodeSnapshot {
  node: ControlledNode;
  inspect: ContainerInspect;
  /** Labels of each data volume, by volume name (the stack's labels, retain-on-destroy...). */
  volumeLabels: Record<string, Record<string, string>>;
  /** The node's /etc/homelab as a tar stream (`docker cp <ctr>:/etc/homelab -`): holds secrets, never log it. */
  etcTar: Buffer;
}

export interface CopyOptions {
  /** Container name of the copy (also its volume's name prefix). */
  name: string;
  /** Data volumes: mount path -> volume name. Mounts not listed are dropped. */
  volumes: Record<string, string>;
  /** Node label of the copy (what `dev.homelab-data.node` says). */
  nodeLabel: string;
}

function dockerEnv(node: ControlledNode): NodeJS.ProcessEnv {
  if (node.handle.kind !== "docker") throw new Error(`node ${node.name}: handle kind ${node.handle.kind} is not a docker handle`);
  return node.handle.dockerHost ? { ...process.env, DOCKER_HOST: node.handle.dockerHost } : process.env;
}

function containerOf(node: ControlledNode): string {
  if (node.handle.kind !== "docker") throw new Error(`node ${node.name}: handle kind ${node.handle.kind} is not a docker handle`);
  return node.handle.container;
}

/**
 * The inspect of a disposable copy of `old` (pure): another name and node label, the listed volumes only,
 * no static address (the engine picks one: the original's stays free for the node's own rebuild), every
 * published port on an ephemeral host port of the same host address, no restart policy, and the
 * drill-scratch label so a teardown by stack label sweeps it too.
 */
export function copyInspect(old: ContainerInspect, o: CopyOptions): ContainerInspect {
  const networks = Object.fromEntries(Object.entries(old.NetworkSettings.Networks ?? {}).map(([name]) => [name, { IPAMConfig: null, IPAddress: "" }]));
  const ports = Object.fromEntries(Object.entries(old.HostConfig.PortBindings ?? {}).map(([port, bindings]) => [port, (bindings ?? []).map((b) => ({ HostIp: b.HostIp ?? "", HostPort: "" }))]));
  const mounts = (old.Mounts ?? [])
    .filter((m) => o.volumes[m.Destination] !== undefined)
    .map((m) => ({ Type: "volume", Name: o.volumes[m.Destination]!, Destination: m.Destination, RW: true }));
  const missing = Object.keys(o.volumes).filter((dest) => !(old.Mounts ?? []).some((m) => m.Destination === dest));
  if (missing.length > 0) throw new Error(`container ${old.Name.replace(/^\//, "")} mounts nothing at ${missing.join(", ")}: a copy replaces existing data mounts only`);
  return {
    ...old,
    Name: `/${o.name}`,
    Config: { ...old.Config, Labels: { ...(old.Config.Labels ?? {}), [LABEL_NODE]: o.nodeLabel, [LABEL_DRILL_SCRATCH]: "true" } },
    HostConfig: { ...old.HostConfig, PortBindings: ports, RestartPolicy: { Name: "no" } },
    Mounts: mounts,
    NetworkSettings: { ...old.NetworkSettings, Networks: networks },
  };
}

/** Labels for a copy's volume: the original's stack labels, never retained, marked as scratch. */
export function copyVolumeLabels(original: Record<string, string> | undefined, nodeLabel: string): Record<string, string> {
  return { ...(original ?? {}), [LABEL_RETAIN]: "false", [LABEL_NODE]: nodeLabel, [LABEL_DRILL_SCRATCH]: "true" };
}

/** `docker cp <ctr>:<dir> -` into memory (works on a stopped or killed container). */
function readTree(container: string, dir: string, env: NodeJS.ProcessEnv): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn("docker", ["cp", `${container}:${dir}`, "-"], { env, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`docker cp ${container}:${dir} - failed (exit ${code}): ${Buffer.concat(err).toString().trim()}`));
    });
  });
}

/** Snapshot of a node (running, stopped or killed; its container must still exist). */
export async function snapshotDockerNode(node: ControlledNode): Promise<NodeSnapshot> {
  const env = dockerEnv(node);
  const inspect = await inspectContainer(node);
  const volumeLabels: Record<string, Record<string, string>> = {};
  for (const volume of node.dataVolumes) {
    const r = await docker(["volume", "inspect", "--format", "{{json .Labels}}", volume], { env, allowFailure: true });
    volumeLabels[volume] = r.code === 0 ? ((JSON.parse(r.stdout.trim() || "null") as Record<string, string> | null) ?? {}) : {};
  }
  const etcTar = await readTree(containerOf(node), "/etc/homelab", env);
  return { node, inspect, volumeLabels, etcTar };
}

async function createVolume(name: string, labels: Record<string, string>, env: NodeJS.ProcessEnv): Promise<void> {
  const exists = await docker(["volume", "inspect", name], { env, allowFailure: true });
  if (exists.code === 0) throw new Error(`volume ${name} already exists: refusing to restore into data that is already there`);
  await docker(["volume", "create", ...Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]), name], { env });
}

/** Creates the container from `inspect` with `image`/`env`, puts the snapshot's /etc/homelab in, starts it. */
async function createAndStart(snapshot: NodeSnapshot, inspect: ContainerInspect, spec: { image: string; env: Record<string, string> }, env: NodeJS.ProcessEnv): Promise<string[]> {
  const args = dockerCreateArgsFromInspect(inspect, spec);
  const name = inspect.Name.replace(/^\//, "");
  await docker(args, { env });
  try {
    await docker(["cp", "-", `${name}:/etc`], { env, input: snapshot.etcTar });
    await docker(["start", name], { env });
  } catch (e) {
    await docker(["rm", "-f", name], { env, allowFailure: true });
    throw e;
  }
  return args;
}

/**
 * A disposable copy of the snapshotted node: new, EMPTY volumes (named `<name>-<suffix of the original>`),
 * the node's hostname and files, `image` and `env`. Returns it as a node drills can control.
 */
export async function createNodeCopy(snapshot: NodeSnapshot, o: { name: string; nodeLabel: string; image: string; env: Record<string, string> }): Promise<ControlledNode & { createArgs: string[] }> {
  const env = dockerEnv(snapshot.node);
  const volumes: Record<string, string> = {};
  const created: string[] = [];
  for (const m of snapshot.inspect.Mounts ?? []) {
    if (m.Type !== "volume" || !m.Name || !snapshot.node.dataVolumes.includes(m.Name)) continue;
    const volume = `${o.name}-${m.Name.split("-").slice(-1)[0] ?? "data"}`;
    volumes[m.Destination] = volume;
    await createVolume(volume, copyVolumeLabels(snapshot.volumeLabels[m.Name], o.nodeLabel), env);
    created.push(volume);
  }
  const node: ControlledNode = { name: o.nodeLabel, handle: { ...(snapshot.node.handle as { kind: "docker"; container: string; dockerHost?: string }), container: o.name }, dataVolumes: created };
  try {
    const createArgs = await createAndStart(snapshot, copyInspect(snapshot.inspect, { name: o.name, volumes, nodeLabel: o.nodeLabel }), o, env);
    return { ...node, createArgs };
  } catch (e) {
    for (const v of created) await docker(["volume", "rm", "-f", v], { env, allowFailure: true });
    throw e;
  }
}

/**
 * The snapshotted node again, as it was (name, address, published ports, limits, labels, files), with
 * `image` and `env`, on its data volumes re-created EMPTY with their original labels. Its old container
 * must be gone (`NodeControl.removeDataVolumes` removes it with the volumes).
 */
export async function rebuildNode(snapshot: NodeSnapshot, spec: { image: string; env: Record<string, string> }): Promise<string[]> {
  const env = dockerEnv(snapshot.node);
  for (const volume of snapshot.node.dataVolumes) await createVolume(volume, snapshot.volumeLabels[volume] ?? {}, env);
  return createAndStart(snapshot, snapshot.inspect, spec, env);
}

/** Replaces the node's STOPPED container by one with `spec` on the same volumes (e.g. another HOMELAB_ROLE). */
export async function recreateContainer(snapshot: NodeSnapshot, spec: { image: string; env: Record<string, string> }): Promise<string[]> {
  const env = dockerEnv(snapshot.node);
  await docker(["rm", containerOf(snapshot.node)], { env });
  return createAndStart(snapshot, snapshot.inspect, spec, env);
}

/** Removes a copy made by createNodeCopy: its container and volumes (only ones marked drill-scratch). */
export async function removeNodeCopy(copy: ControlledNode): Promise<void> {
  const env = dockerEnv(copy);
  await docker(["rm", "-f", containerOf(copy)], { env, allowFailure: true });
  for (const volume of copy.dataVolumes) {
    const label = await docker(["volume", "inspect", "--format", `{{index .Labels "${LABEL_DRILL_SCRATCH}"}}`, volume], { env, allowFailure: true });
    if (label.code !== 0) continue;
    if (label.stdout.trim() !== "true") throw new Error(`volume ${volume} is not a drill's scratch volume: not removing it`);
    await docker(["volume", "rm", "-f", volume], { env, allowFailure: true });
  }
}

/** Where the host reaches `containerPort` of a node: the host address and port the engine published. */
export async function publishedAddress(node: ControlledNode, containerPort: number): Promise<{ host: string; port: number }> {
  const r = await docker(["port", containerOf(node), `${containerPort}/tcp`], { env: dockerEnv(node) });
  const first = r.stdout.split("\n").map((l) => l.trim()).find((l) => /:\d+$/.test(l) && !l.startsWith("["));
  const m = first ? /^(.*):(\d+)$/.exec(first) : null;
  if (!m) throw new Error(`${node.name}: port ${containerPort} is not published (docker port: ${r.stdout.trim() || "nothing"})`);
  const host = m[1] === "0.0.0.0" ? "127.0.0.1" : m[1]!;
  return { host, port: Number(m[2]) };
}
