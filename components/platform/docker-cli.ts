// NodePlans -> `docker` CLI calls. Pure argv builders (unit-tested) plus a small runner that the e2e
// harness, `homelab up --engine docker-cli` and the command-provider platform share, so every path that
// builds the tier without the Pulumi docker plugin builds it the same way.
import { spawn } from "node:child_process";
import path from "node:path";
import tar from "tar-stream";
import { startOrder, type HomelabPlan, type NodeFile, type NodePlan } from "./plan.ts";

export const LABEL_STACK = "dev.homelab-data.stack";
export const LABEL_NODE = "dev.homelab-data.node";
export const LABEL_RETAIN = "dev.homelab-data.retain-on-destroy";

function labelArgs(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]);
}

export function networkCreateArgs(plan: HomelabPlan): string[] {
  return ["network", "create", "--driver", "bridge", "--subnet", plan.network.subnet, "--gateway", plan.network.gateway, ...labelArgs(plan.labels), plan.network.name];
}

export function volumeCreateArgs(plan: HomelabPlan, volume: NodePlan["volumes"][number]): string[] {
  return ["volume", "create", ...labelArgs({ ...plan.labels, [LABEL_RETAIN]: String(volume.retainOnDestroy) }), volume.name];
}

/** `docker create` for one node: resources, health, restart policy, static address, published ports. */
export function containerCreateArgs(plan: HomelabPlan, node: NodePlan): string[] {
  const [kind, ...cmd] = node.healthcheck.test;
  const healthCmd = kind === "CMD-SHELL" ? cmd.join(" ") : cmd.map(shellQuote).join(" ");
  return [
    "create",
    "--name", node.hostname,
    "--hostname", node.hostname,
    "--network", plan.network.name,
    "--ip", node.ipv4Address,
    "--memory", String(node.memoryBytes),
    "--memory-swap", String(node.memoryBytes),
    "--cpus", String(node.cpus),
    "--restart", "unless-stopped",
    "--stop-timeout", String(node.stopTimeoutSeconds),
    "--health-cmd", healthCmd,
    "--health-interval", `${node.healthcheck.intervalSeconds}s`,
    "--health-timeout", `${node.healthcheck.timeoutSeconds}s`,
    "--health-retries", String(node.healthcheck.retries),
    "--health-start-period", `${node.healthcheck.startPeriodSeconds}s`,
    ...labelArgs({ ...plan.labels, [LABEL_NODE]: node.name }),
    ...Object.entries(node.env).flatMap(([k, v]) => ["--env", `${k}=${v}`]),
    ...node.volumes.flatMap((v) => ["--volume", `${v.name}:${v.mountPath}`]),
    ...node.ports.flatMap((p) => ["--publish", `${plan.publishAddress}:${p.hostPort}:${p.containerPort}`]),
    node.image.name,
  ];
}

export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Files as a tar archive rooted at `/` (parents included), for `docker cp - <container>:/`. Every entry has
 * mtime 0 so the same files always make the same bytes: the docker-cli platform compares its (secret)
 * stdin between runs, and a changing archive would replace every container on every `up`.
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

/** A node's files as a tar archive (see filesTar). */
export const nodeFilesTar = (node: NodePlan): Promise<Buffer> => filesTar(node.files);

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `docker <args>`; never logs its input (tar streams carry secrets). */
export function docker(args: string[], opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; allowFailure?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("docker", args, { env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    const timer = opts.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs) : undefined;
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`docker ${args[0]}: ${e.message} (is the Docker CLI installed?)`));
    });
    child.on("close", (code) => {
      if (timer) clearTimeout(timer);
      const result = { code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
      if (result.code !== 0 && !opts.allowFailure) {
        reject(new Error(`docker ${args.slice(0, 2).join(" ")} failed (exit ${result.code}): ${result.stderr.trim().split("\n").slice(-3).join(" | ")}`));
      } else resolve(result);
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

export async function containerHealth(container: string): Promise<string> {
  const r = await docker(["inspect", "--format", "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", container], { allowFailure: true });
  return r.code === 0 ? r.stdout.trim() : "missing";
}

export async function waitHealthy(container: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    last = await containerHealth(container);
    if (last.endsWith("/healthy")) return;
    // "unhealthy" is not final: a check that passed once during start-up (initdb's temporary server) makes
    // later failures count, and the node turns healthy again once it is really up.
    if (last.startsWith("exited") || last.startsWith("dead") || last === "missing") break;
    await sleep(250);
  }
  const logs = await docker(["logs", "--tail", "30", container], { allowFailure: true });
  throw new Error(`${container} did not become healthy within ${Math.round(timeoutMs / 1000)}s (state ${last}); last log lines:\n${(logs.stdout + logs.stderr).trim()}`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Creates and starts one node (files copied in before start) without waiting for health. */
export async function createNode(plan: HomelabPlan, node: NodePlan): Promise<void> {
  for (const v of node.volumes) {
    const exists = await docker(["volume", "inspect", v.name], { allowFailure: true });
    if (exists.code !== 0) await docker(volumeCreateArgs(plan, v));
  }
  await docker(containerCreateArgs(plan, node));
  if (node.files.length > 0) await docker(["cp", "-", `${node.hostname}:/`], { input: await nodeFilesTar(node) });
  await docker(["start", node.hostname]);
}

/** Brings a whole plan up: network, then nodes level by level (a level starts together), each healthy. */
export async function applyPlan(plan: HomelabPlan, opts: { healthTimeoutMs?: number; only?: (n: NodePlan) => boolean; log?: (m: string) => void } = {}): Promise<void> {
  const log = opts.log ?? (() => {});
  const net = await docker(["network", "inspect", plan.network.name], { allowFailure: true });
  if (net.code !== 0) await docker(networkCreateArgs(plan));
  const nodes = startOrder(plan.nodes).filter(opts.only ?? (() => true));
  const level = new Map<string, number>();
  for (const n of nodes) level.set(n.name, Math.max(0, ...n.dependsOn.map((d) => (level.get(d) ?? -1) + 1)));
  const levels = [...new Set(level.values())].sort((a, b) => a - b);
  for (const l of levels) {
    const batch = nodes.filter((n) => level.get(n.name) === l);
    await Promise.all(
      batch.map(async (n) => {
        const t0 = Date.now();
        await createNode(plan, n);
        await waitHealthy(n.hostname, opts.healthTimeoutMs ?? 180_000);
        log(`${n.hostname} healthy in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      }),
    );
  }
}

/** Removes every container and the network of the stack; volumes too, except retained ones unless purge. */
export async function destroyPlan(plan: HomelabPlan, opts: { purgeRetained: boolean }): Promise<void> {
  await removeByLabel(`${LABEL_STACK}=${plan.stack}`, opts);
}

export async function removeByLabel(label: string, opts: { purgeRetained: boolean }): Promise<void> {
  const ids = (await docker(["ps", "-aq", "--filter", `label=${label}`], { allowFailure: true })).stdout.split(/\s+/).filter(Boolean);
  if (ids.length > 0) await docker(["rm", "-f", "-v", ...ids], { allowFailure: true });
  const nets = (await docker(["network", "ls", "-q", "--filter", `label=${label}`], { allowFailure: true })).stdout.split(/\s+/).filter(Boolean);
  if (nets.length > 0) await docker(["network", "rm", ...nets], { allowFailure: true });
  const vols = await docker(["volume", "ls", "--format", `{{.Name}} {{.Label "${LABEL_RETAIN}"}}`, "--filter", `label=${label}`], { allowFailure: true });
  const doomed = vols.stdout
    .split("\n")
    .map((l) => l.trim().split(" "))
    .filter(([name, retain]) => name && (opts.purgeRetained || retain !== "true"))
    .map(([name]) => name as string);
  if (doomed.length > 0) await docker(["volume", "rm", "-f", ...doomed], { allowFailure: true });
}
