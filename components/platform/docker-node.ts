// THE node applier of the docker platform: one module creates, replaces and waits for a node, from its
// NodePlan (docs/architecture.md "Data flow" step 3). Everything that makes a container calls it:
//   - `pulumi up` (the default `docker` platform, components/platform/docker-cmd.ts) runs applyNodeScript as
//     a @pulumi/command local command,
//   - the e2e harness (applyPlan below) and
//   - the drills' node re-creation (drills/lib/scratch-node.ts: copies, rebuilds, role swaps)
// run the very same script through runApplyNode. So what the tests prove is what `pulumi up` builds.
//
// A node is first turned into a ContainerSpec (pure, plain data, no secrets: the topology output carries it,
// so a drill can re-create a node exactly as the stack made it). Files are not in the spec: they hold
// passwords and keys, and reach the container as a tar stream on the script's stdin (base64), never argv,
// env or a file on the host.
import path from "node:path";
import tar from "tar-stream";
import { $, type ProcessOutput } from "zx";
import { networkKindOf, startOrder, type Healthcheck, type HomelabPlan, type NodeFile, type NodePlan } from "./plan.ts";

export const LABEL_STACK = "dev.homelab-data.stack";
export const LABEL_NODE = "dev.homelab-data.node";
export const LABEL_RETAIN = "dev.homelab-data.retain-on-destroy";

/** One container as the engine runs it: everything `docker create` needs, nothing secret. */
export interface ContainerSpec {
  /** Container name (the handle a drill controls the node by). */
  name: string;
  /** Host name inside the container: the node's identity (its TLS certificate names it). */
  hostname: string;
  image: string;
  /** Non-secret environment only. */
  env: Record<string, string>;
  labels: Record<string, string>;
  network: string;
  /** Static address on the stack network; absent: the engine picks one (a drill's disposable copy). */
  ipv4Address?: string;
  /** Published ports; hostPort 0 lets the engine pick a free one. */
  publish: { host: string; hostPort: number; containerPort: number }[];
  /** /etc/hosts entries for the stack's nodes that are not containers on this network (VMs): Docker's DNS knows only containers. */
  extraHosts?: { hostname: string; ip: string }[];
  volumes: { name: string; mountPath: string; labels: Record<string, string> }[];
  memoryBytes: number;
  cpus: number;
  restart: "unless-stopped" | "no";
  stopTimeoutSeconds: number;
  healthcheck: Healthcheck;
}

/** The container of a planned node (pure). */
export function containerSpecOf(plan: Pick<HomelabPlan, "network" | "publishAddress" | "labels" | "nodes">, node: NodePlan): ContainerSpec {
  const elsewhere = plan.nodes.filter((n) => networkKindOf(n.platform) !== "docker");
  return {
    name: node.hostname,
    hostname: node.hostname,
    image: node.image.name,
    env: { ...node.env },
    labels: { ...plan.labels, [LABEL_NODE]: node.name },
    network: plan.network.name,
    ipv4Address: node.ipv4Address,
    publish: node.ports.map((p) => ({ host: plan.publishAddress, hostPort: p.hostPort, containerPort: p.containerPort })),
    ...(elsewhere.length > 0 ? { extraHosts: elsewhere.map((n) => ({ hostname: n.hostname, ip: n.ipv4Address })) } : {}),
    volumes: node.volumes.map((v) => ({ name: v.name, mountPath: v.mountPath, labels: { ...plan.labels, [LABEL_RETAIN]: String(v.retainOnDestroy) } })),
    memoryBytes: node.memoryBytes,
    cpus: node.cpus,
    restart: "unless-stopped",
    stopTimeoutSeconds: node.stopTimeoutSeconds,
    healthcheck: { ...node.healthcheck, test: [...node.healthcheck.test] },
  };
}

/**
 * How long the applier waits for a new node to report healthy: its start period, every retry, and a
 * minute of slack for image entrypoints that copy files before the first check.
 */
export function healthTimeoutSeconds(h: Healthcheck): number {
  return h.startPeriodSeconds + h.retries * (h.intervalSeconds + h.timeoutSeconds) + 60;
}

function labelArgs(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]);
}

export function networkCreateArgs(plan: HomelabPlan): string[] {
  return ["network", "create", "--driver", "bridge", "--subnet", plan.network.subnet, "--gateway", plan.network.gateway, ...labelArgs(plan.labels), plan.network.name];
}

export function volumeCreateArgs(volume: ContainerSpec["volumes"][number]): string[] {
  return ["volume", "create", ...labelArgs(volume.labels), volume.name];
}

/** `docker create` for one container: resources, health, restart policy, address, published ports. */
export function containerCreateArgs(spec: ContainerSpec): string[] {
  const [kind, ...cmd] = spec.healthcheck.test;
  const healthCmd = kind === "CMD-SHELL" ? cmd.join(" ") : cmd.map(shellQuote).join(" ");
  return [
    "create",
    "--name", spec.name,
    "--hostname", spec.hostname,
    "--network", spec.network,
    ...(spec.ipv4Address ? ["--ip", spec.ipv4Address] : []),
    "--memory", String(spec.memoryBytes),
    "--memory-swap", String(spec.memoryBytes),
    "--cpus", String(spec.cpus),
    "--restart", spec.restart,
    "--stop-timeout", String(spec.stopTimeoutSeconds),
    "--health-cmd", healthCmd,
    "--health-interval", `${spec.healthcheck.intervalSeconds}s`,
    "--health-timeout", `${spec.healthcheck.timeoutSeconds}s`,
    "--health-retries", String(spec.healthcheck.retries),
    "--health-start-period", `${spec.healthcheck.startPeriodSeconds}s`,
    ...labelArgs(spec.labels),
    ...Object.entries(spec.env).flatMap(([k, v]) => ["--env", `${k}=${v}`]),
    ...spec.volumes.flatMap((v) => ["--volume", `${v.name}:${v.mountPath}`]),
    ...spec.publish.flatMap((p) => ["--publish", `${p.host}:${p.hostPort === 0 ? "" : p.hostPort}:${p.containerPort}`]),
    ...(spec.extraHosts ?? []).flatMap((h) => ["--add-host", `${h.hostname}:${h.ip}`]),
    spec.image,
  ];
}

export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

const sh = (argv: string[]) => argv.map(shellQuote).join(" ");
const quiet = (argv: string[]) => `${sh(argv)} >/dev/null`;

/** Clean stop (PostgreSQL gets its shutdown), then remove; succeeds when the container is already gone. */
export function removeNodeScript(spec: Pick<ContainerSpec, "name" | "stopTimeoutSeconds">): string {
  return `${quiet(["docker", "stop", "--time", String(spec.stopTimeoutSeconds), spec.name])} 2>&1 </dev/null || true\n${quiet(["docker", "rm", "-f", "-v", spec.name])} 2>&1 </dev/null || true`;
}

export interface ApplyOptions {
  /** Where the files tar (base64 on stdin) is unpacked inside the container. Default "/". */
  filesDir?: string;
  /** Wait until the container reports healthy. Default true. */
  waitHealthy?: boolean;
  /** Seconds to wait for health. Default healthTimeoutSeconds(spec.healthcheck). */
  timeoutSeconds?: number;
}

/**
 * Creates or replaces one node, as one POSIX sh script: the old container (an earlier one of the same name,
 * or a leftover of an interrupted run) is stopped cleanly and removed, its volumes are created when missing
 * (data lives there, so a replacement keeps it), the new container is created, the files arrive from stdin
 * (a base64 tar), it starts, and the script waits until it reports healthy. Exits non-zero with the
 * container's last log lines when it stops or stays unhealthy.
 */
export function applyNodeScript(spec: ContainerSpec, opts: ApplyOptions = {}): string {
  const name = spec.name;
  const timeout = opts.timeoutSeconds ?? healthTimeoutSeconds(spec.healthcheck);
  const state = sh(["docker", "inspect", "--format", "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", name]);
  const logs = `${sh(["docker", "logs", "--tail", "30", name])} >&2 || true`;
  const lines = [
    "set -eu",
    removeNodeScript(spec),
    ...spec.volumes.map((v) => `${quiet(["docker", "volume", "inspect", v.name])} 2>&1 || ${quiet(["docker", ...volumeCreateArgs(v)])} </dev/null`),
    `${quiet(["docker", ...containerCreateArgs(spec)])} </dev/null`,
    `base64 -d | ${sh(["docker", "cp", "-", `${name}:${opts.filesDir ?? "/"}`])}`,
    `${quiet(["docker", "start", name])} </dev/null`,
  ];
  if (opts.waitHealthy === false) return lines.join("\n");
  return [
    ...lines,
    `deadline=$(( $(date +%s) + ${timeout} ))`,
    "while :; do",
    `  s=$(${state} 2>/dev/null || echo missing)`,
    '  case "$s" in',
    "    */healthy) break ;;",
    // "unhealthy" is not final: a check that passed once during start-up (initdb's temporary server) makes
    // later failures count, and the node turns healthy again once it is really up.
    `    exited/*|dead/*|missing) echo "${name} stopped while starting (state $s)" >&2; ${logs}; exit 1 ;;`,
    "  esac",
    `  if [ "$(date +%s)" -ge "$deadline" ]; then echo "${name} not healthy within ${timeout}s (state $s)" >&2; ${logs}; exit 1; fi`,
    "  sleep 1",
    "done",
  ].join("\n");
}

/**
 * Files as a tar archive rooted at `/` (parents included), for `docker cp - <container>:/`. Every entry has
 * mtime 0 so the same files always make the same bytes: the platform compares its (secret) stdin between
 * runs, and a changing archive would replace every container on every `up`.
 */
export async function filesTar(files: NodeFile[]): Promise<Buffer> {
  const pack = tar.pack();
  const dirs = new Set<string>();
  const epoch = new Date(0);
  for (const file of files) {
    let dir = path.posix.dirname(file.path);
    const chain: string[] = [];
    while (dir !== "/" && !dirs.has(dir)) {
      chain.unshift(dir);
      dirs.add(dir);
      dir = path.posix.dirname(dir);
    }
    for (const d of chain) pack.entry({ name: d.slice(1), type: "directory", mode: 0o755, mtime: epoch });
    pack.entry({ name: file.path.slice(1), mode: file.mode, mtime: epoch }, file.content);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The files as filesTar, base64 for the script's stdin. */
export async function filesTarBase64(files: NodeFile[]): Promise<string> {
  return (await filesTar(files)).toString("base64");
}

// ------------------------------------------------------------------------------------------- running

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment of a docker call on a remote engine (`ssh://user@nuc`), or the process's own. */
export function dockerEnv(dockerHost?: string): NodeJS.ProcessEnv {
  return dockerHost ? { ...process.env, DOCKER_HOST: dockerHost } : process.env;
}

const run = (argv: string[], opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; timeoutMs?: number }) =>
  // quiet + verbose off: nothing a command reads or prints (tar streams with secrets) reaches the log.
  $({ input: opts.input ?? "", env: opts.env ?? process.env, nothrow: true, quiet: true, verbose: false, ...(opts.timeoutMs ? { timeout: opts.timeoutMs, timeoutSignal: "SIGKILL" as const } : {}) })`${argv}`;

function failure(what: string, out: ProcessOutput): Error {
  return new Error(`${what} failed (exit ${out.exitCode ?? out.signal}): ${out.stderr.trim().split("\n").slice(-3).join(" | ")}`);
}

/** Runs `docker <args>`; never logs its input (tar streams carry secrets). */
export async function docker(args: string[], opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; allowFailure?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
  let out: ProcessOutput;
  try {
    out = await run(["docker", ...args], opts);
  } catch (e) {
    throw new Error(`docker ${args[0]}: ${(e as Error).message} (is the Docker CLI installed?)`, { cause: e });
  }
  const result = { code: out.exitCode ?? -1, stdout: out.stdout, stderr: out.stderr };
  if (result.code !== 0 && !opts.allowFailure) throw failure(`docker ${args.slice(0, 2).join(" ")}`, out);
  return result;
}

/** `docker <args>` whose stdout is binary (`docker cp <ctr>:<dir> -`: a tar stream, may hold secrets). */
export async function dockerBuffer(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<Buffer> {
  const out = await run(["docker", ...args], opts);
  if (out.exitCode !== 0) throw failure(`docker ${args.slice(0, 2).join(" ")}`, out);
  return out.buffer();
}

/**
 * Applies one node: runs applyNodeScript (the script `pulumi up` runs) with the files tar on stdin. `files`
 * is a tar archive (filesTar, or a node's /etc/homelab read back with dockerBuffer) unpacked at
 * opts.filesDir.
 */
export async function runApplyNode(spec: ContainerSpec, files: Buffer, opts: ApplyOptions & { dockerHost?: string } = {}): Promise<void> {
  const out = await run(["sh", "-c", applyNodeScript(spec, opts)], { input: files.toString("base64"), env: dockerEnv(opts.dockerHost) });
  if (out.exitCode !== 0) throw new Error(`node ${spec.name}: ${out.stderr.trim() || `apply failed (exit ${out.exitCode})`}`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The network of a plan: made when missing (adopted when a run was interrupted). */
export async function ensureNetwork(plan: HomelabPlan): Promise<void> {
  const net = await docker(["network", "inspect", plan.network.name], { allowFailure: true });
  if (net.code !== 0) await docker(networkCreateArgs(plan));
}

/**
 * Brings a whole plan up through the one applier: network, then nodes level by level (a level starts
 * together), each healthy before the next level. What the e2e harness uses for a tier without Pulumi.
 */
export async function applyPlan(plan: HomelabPlan, opts: { timeoutSeconds?: number; only?: (n: NodePlan) => boolean; log?: (m: string) => void } = {}): Promise<void> {
  const log = opts.log ?? (() => {});
  await ensureNetwork(plan);
  const nodes = startOrder(plan.nodes).filter(opts.only ?? (() => true));
  const level = new Map<string, number>();
  for (const n of nodes) level.set(n.name, Math.max(0, ...n.dependsOn.map((d) => (level.get(d) ?? -1) + 1)));
  const levels = [...new Set(level.values())].sort((a, b) => a - b);
  for (const l of levels) {
    const batch = nodes.filter((n) => level.get(n.name) === l);
    await Promise.all(
      batch.map(async (n) => {
        const t0 = Date.now();
        await runApplyNode(containerSpecOf(plan, n), await filesTar(n.files), { timeoutSeconds: opts.timeoutSeconds });
        log(`${n.hostname} healthy in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      }),
    );
  }
}

/** Removes every container and the network of the stack; volumes too, except retained ones unless purge. */
export async function removeByLabel(label: string, opts: { purgeRetained: boolean; dockerHost?: string }): Promise<void> {
  const env = dockerEnv(opts.dockerHost);
  const ids = (await docker(["ps", "-aq", "--filter", `label=${label}`], { allowFailure: true, env })).stdout.split(/\s+/).filter(Boolean);
  if (ids.length > 0) await docker(["rm", "-f", "-v", ...ids], { allowFailure: true, env });
  const nets = (await docker(["network", "ls", "-q", "--filter", `label=${label}`], { allowFailure: true, env })).stdout.split(/\s+/).filter(Boolean);
  if (nets.length > 0) await docker(["network", "rm", ...nets], { allowFailure: true, env });
  const vols = await docker(["volume", "ls", "--format", `{{.Name}} {{.Label "${LABEL_RETAIN}"}}`, "--filter", `label=${label}`], { allowFailure: true, env });
  const doomed = vols.stdout
    .split("\n")
    .map((l) => l.trim().split(" "))
    .filter(([name, retain]) => name && (opts.purgeRetained || retain !== "true"))
    .map(([name]) => name as string);
  if (doomed.length > 0) await docker(["volume", "rm", "-f", ...doomed], { allowFailure: true, env });
}

export async function containerHealth(container: string, env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await docker(["inspect", "--format", "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", container], { allowFailure: true, env });
  return r.code === 0 ? r.stdout.trim() : "missing";
}
