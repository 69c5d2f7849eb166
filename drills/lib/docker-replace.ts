// Replacing a stopped docker node's container by one with another role on the SAME data volume, same
// name, address, published ports, limits, health check and labels: how a failover drill turns a killed
// primary into a `HOMELAB_ROLE=restore` node that pg_rewind can work on (components/postgres/image/README.md
// "Drill recipes"). The container is rebuilt from `docker inspect` of the old one (what the engine really
// ran), with the image and env a caller takes from the topology; its /etc/homelab files are streamed from
// the old container to the new one, never through the host's disk (they hold passwords and keys).
import { spawn } from "node:child_process";
import { docker } from "../../components/platform/docker-cli.ts";
import type { ControlledNode } from "./nodes.ts";

/** The parts of `docker inspect <container>` a replacement copies. */
export interface ContainerInspect {
  Name: string;
  Config: {
    Hostname?: string;
    Labels?: Record<string, string> | null;
    StopTimeout?: number | null;
    Healthcheck?: { Test?: string[] | null; Interval?: number; Timeout?: number; StartPeriod?: number; Retries?: number } | null;
  };
  HostConfig: {
    Memory?: number;
    MemorySwap?: number;
    NanoCpus?: number;
    RestartPolicy?: { Name?: string; MaximumRetryCount?: number } | null;
    PortBindings?: Record<string, { HostIp?: string; HostPort?: string }[] | null> | null;
  };
  Mounts?: { Type: string; Name?: string; Source?: string; Destination: string; RW?: boolean }[] | null;
  NetworkSettings: { Networks?: Record<string, { IPAMConfig?: { IPv4Address?: string } | null; IPAddress?: string }> | null };
  State?: { Status?: string };
}

export interface ReplacementSpec {
  /** Image of the new container (the topology node's). */
  image: string;
  /** Its whole environment (the topology node's env with the overrides applied). */
  env: Record<string, string>;
}

/** docker inspect gives durations in nanoseconds; docker create takes "1000ms". */
const durationArg = (ns: number) => `${Math.round(ns / 1e6)}ms`;

/** `docker create` argv re-creating `old` with `spec`'s image and env (pure; unit-tested). */
export function dockerCreateArgsFromInspect(old: ContainerInspect, spec: ReplacementSpec): string[] {
  const name = old.Name.replace(/^\//, "");
  const args = ["create", "--name", name];
  if (old.Config.Hostname) args.push("--hostname", old.Config.Hostname);
  const networks = Object.entries(old.NetworkSettings.Networks ?? {});
  // `docker create` joins one network; a node of this stack has exactly one (the stack network).
  if (networks.length !== 1) throw new Error(`container ${name}: ${networks.length} networks (${networks.map(([n]) => n).join(", ") || "none"}); a replacement re-creates exactly one`);
  const [network, endpoint] = networks[0]!;
  args.push("--network", network);
  const ip = endpoint.IPAMConfig?.IPv4Address || endpoint.IPAddress;
  // A static address (IPAMConfig) must stay: pg_hba rules and the other nodes name it.
  if (endpoint.IPAMConfig?.IPv4Address) args.push("--ip", ip!);
  const h = old.HostConfig;
  if (h.Memory) args.push("--memory", String(h.Memory));
  if (h.MemorySwap) args.push("--memory-swap", String(h.MemorySwap));
  if (h.NanoCpus) args.push("--cpus", String(h.NanoCpus / 1e9));
  const restart = h.RestartPolicy?.Name;
  if (restart && restart !== "no") args.push("--restart", restart === "on-failure" && h.RestartPolicy?.MaximumRetryCount ? `on-failure:${h.RestartPolicy.MaximumRetryCount}` : restart);
  if (old.Config.StopTimeout !== undefined && old.Config.StopTimeout !== null) args.push("--stop-timeout", String(old.Config.StopTimeout));
  const hc = old.Config.Healthcheck;
  const test = hc?.Test ?? [];
  if (test[0] === "NONE") args.push("--no-healthcheck");
  else if (test[0] === "CMD-SHELL" || test[0] === "CMD") {
    args.push("--health-cmd", test[0] === "CMD-SHELL" ? test.slice(1).join(" ") : test.slice(1).map(shellWord).join(" "));
    if (hc?.Interval) args.push("--health-interval", durationArg(hc.Interval));
    if (hc?.Timeout) args.push("--health-timeout", durationArg(hc.Timeout));
    if (hc?.StartPeriod) args.push("--health-start-period", durationArg(hc.StartPeriod));
    if (hc?.Retries) args.push("--health-retries", String(hc.Retries));
  }
  for (const [k, v] of Object.entries(old.Config.Labels ?? {}).sort(([a], [b]) => a.localeCompare(b))) args.push("--label", `${k}=${v}`);
  for (const [k, v] of Object.entries(spec.env)) args.push("--env", `${k}=${v}`);
  for (const m of old.Mounts ?? []) {
    const source = m.Type === "volume" ? m.Name : m.Type === "bind" ? m.Source : undefined;
    if (!source) throw new Error(`container ${name}: mount of type ${m.Type} at ${m.Destination} cannot be re-created`);
    args.push("--volume", `${source}:${m.Destination}${m.RW === false ? ":ro" : ""}`);
  }
  for (const [port, bindings] of Object.entries(h.PortBindings ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    for (const b of bindings ?? []) args.push("--publish", `${b.HostIp ? `${b.HostIp}:` : ""}${b.HostPort ?? ""}:${port}`);
  }
  args.push(spec.image);
  return args;
}

function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function handleOf(node: ControlledNode): { container: string; env: NodeJS.ProcessEnv } {
  if (node.handle.kind !== "docker") throw new Error(`node ${node.name}: handle kind ${node.handle.kind} is not a docker handle; only docker nodes can be replaced`);
  const env = node.handle.dockerHost ? { ...process.env, DOCKER_HOST: node.handle.dockerHost } : process.env;
  return { container: node.handle.container, env };
}

export async function inspectContainer(node: ControlledNode): Promise<ContainerInspect> {
  const { container, env } = handleOf(node);
  const r = await docker(["inspect", "--type", "container", container], { env });
  const parsed = JSON.parse(r.stdout) as ContainerInspect[];
  if (!parsed[0]) throw new Error(`docker inspect ${container}: no such container`);
  return parsed[0];
}

/** `docker cp <from>:<path> -` piped into `docker cp - <to>:<parent>`: a directory tree, container to container. */
function copyTree(from: string, to: string, dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const parent = dir.replace(/\/[^/]+\/?$/, "") || "/";
  return new Promise((resolve, reject) => {
    const out = spawn("docker", ["cp", `${from}:${dir}`, "-"], { env, stdio: ["ignore", "pipe", "pipe"] });
    const into = spawn("docker", ["cp", "-", `${to}:${parent}`], { env, stdio: ["pipe", "ignore", "pipe"] });
    const errors: string[] = [];
    out.stderr.on("data", (c: Buffer) => errors.push(c.toString()));
    into.stderr.on("data", (c: Buffer) => errors.push(c.toString()));
    out.stdout.pipe(into.stdin);
    let pending = 2;
    let failed = false;
    const done = (what: string) => (code: number | null) => {
      if (code !== 0 && !failed) {
        failed = true;
        reject(new Error(`docker cp ${what} failed (exit ${code}): ${errors.join(" ").trim()}`));
      }
      if (--pending === 0 && !failed) resolve();
    };
    out.on("error", reject);
    into.on("error", reject);
    out.on("close", done(`${from}:${dir} -`));
    into.on("close", done(`- ${to}:${parent}`));
  });
}

export interface ReplaceResult {
  /** The `docker create` argv used (no secrets: env is non-secret by the stack's contract). */
  createArgs: string[];
  previousStatus: string;
}

/**
 * Replaces `node`'s stopped container (killed or exited; a running one is refused: replacing a live
 * database is never what a drill means) by a new one from `spec`, carrying `carryDirs` (absolute paths)
 * over from the old container, then starts it. The data volumes stay as they are.
 */
export async function replaceDockerContainer(node: ControlledNode, spec: ReplacementSpec, opts: { carryDirs?: string[] } = {}): Promise<ReplaceResult> {
  const { container, env } = handleOf(node);
  const old = await inspectContainer(node);
  const status = old.State?.Status ?? "unknown";
  if (status === "running" || status === "restarting" || status === "paused") throw new Error(`${node.name}: container ${container} is ${status}; stop or kill it before replacing it`);
  const createArgs = dockerCreateArgsFromInspect(old, spec);
  // The old container is renamed, not removed, until the new one holds the files: a failure halfway
  // leaves both, never neither.
  const aside = `${container}-replaced-${Date.now().toString(36)}`;
  await docker(["rename", container, aside], { env });
  try {
    await docker(createArgs, { env });
  } catch (e) {
    await docker(["rename", aside, container], { env, allowFailure: true });
    throw e;
  }
  try {
    for (const dir of opts.carryDirs ?? []) await copyTree(aside, container, dir, env);
  } catch (e) {
    await docker(["rm", container], { env, allowFailure: true });
    await docker(["rename", aside, container], { env, allowFailure: true });
    throw e;
  }
  await docker(["rm", aside], { env });
  await docker(["start", container], { env });
  return { createArgs, previousStatus: status };
}
