// e2e harness: applies the SAME NodePlans `pulumi up` would to a real Docker engine (docs/architecture.md
// "Testing pyramid"), runs the same post-up steps, and removes everything it made, even on failure.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { validateConfig, type HomelabSpec } from "../../components/config/index.ts";
import { generateTlsBundle } from "../../components/pgbackrest/tls.ts";
import { planHomelab, postUpSteps, redactedSecrets, type HomelabSecrets } from "../../components/plan.ts";
import { applyPlan, docker, removeByLabel, LABEL_STACK } from "../../components/platform/docker-node.ts";
import type { HomelabPlan } from "../../components/platform/plan.ts";
import { topologyOf, type Topology } from "../../components/topology.ts";
import { generatePassword } from "../../cli/stack-commands.ts";
import { generateSftpKeys } from "../../components/pgbackrest/sftp.ts";
import { DrillLog } from "../../drills/lib/log.ts";

export const ROOT = path.resolve(import.meta.dirname, "../..");

export interface Tier {
  spec: HomelabSpec;
  plan: HomelabPlan;
  secrets: HomelabSecrets;
  topology: Topology;
  bringUpSeconds: number;
  /** Host port of a node's first published port. */
  port(node: string): number;
  exec(node: string, command: string[], opts?: { user?: string; allowFailure?: boolean; input?: string }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** SQL as the OS user postgres over the node's socket (peer auth): rows of '|'-separated fields. */
  sql(node: string, sql: string, database?: string): Promise<string[][]>;
  teardown(): Promise<void>;
}

/** Fails loudly (never skips) when there is no engine: the e2e layer is where the truth is. */
export async function requireDocker(): Promise<void> {
  const r = await docker(["info", "--format", "{{.ServerVersion}}"], { allowFailure: true });
  if (r.code !== 0) throw new Error(`no Docker engine reachable (docker info: ${r.stderr.trim()}); start dockerd or run .ci/run, which installs and starts it`);
}

/** Builds the images when missing (scripts/build-images.sh is a fast no-op when they are current). */
export function ensureImages(): void {
  const script = path.join(ROOT, "scripts/build-images.sh");
  if (!existsSync(script)) throw new Error("scripts/build-images.sh is missing");
  const t0 = Date.now();
  execFileSync("bash", [script], { stdio: ["ignore", "ignore", "inherit"], cwd: ROOT });
  console.log(`[e2e] images ready in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
}

export function makeSecrets(spec: HomelabSpec): HomelabSecrets {
  const hostnames = planHomelab(spec, redactedSecrets()).nodes.map((n) => n.hostname);
  return {
    postgresSuperuserPassword: generatePassword(),
    postgresAppPassword: generatePassword(),
    postgresReplicationPassword: generatePassword(),
    postgresReadonlyPassword: generatePassword(),
    redisAppPassword: generatePassword(),
    redisReplicaPassword: generatePassword(),
    redisHealthPassword: generatePassword(),
    redisAdminPassword: generatePassword(),
    tls: generateTlsBundle(hostnames),
    repo2CipherPass: generatePassword(),
    repo2Ssh: generateSftpKeys(spec.stack),
    postgresMonitorPassword: generatePassword(),
    redisMonitorPassword: generatePassword(),
  };
}

/** A stack spec for tests: small nodes; each test file picks its own stack name, subnet and ports. */
export function e2eSpec(stack: string, overrides: Record<string, unknown> = {}, slot = 0): HomelabSpec {
  const subnet = `172.${29 + slot}.0.0/24`;
  const base: Record<string, unknown> = {
    docker: { subnet, basePort: 25432 + slot * 100 },
    postgres: {
      replicas: 1,
      replicationMode: "async",
      // The host reaches published ports from the bridge gateway (.1); the lower half only, so a client
      // at .200 proves pg_hba refuses networks outside the allowed list.
      allowedClientCidrs: [`172.${29 + slot}.0.0/25`],
      archiveTimeout: "10s",
      node: { memory: "320MiB", cpus: 1, storage: "ssd" },
    },
    pgbackrest: { node: { memory: "192MiB" } },
    redis: { maxmemory: "48MiB", node: { memory: "96MiB" } },
    duckdb: { syncInterval: "1h", node: { memory: "256MiB" } },
    // Off unless a test is about it (test/e2e/monitoring.test.ts): the other e2e files do not pay for it.
    monitoring: { enabled: false },
  };
  return validateConfig(stack, deepMerge(base, overrides));
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = v && typeof v === "object" && !Array.isArray(v) && prev && typeof prev === "object" && !Array.isArray(prev) ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** Brings the tier up, runs the post-up steps, prints bring-up time. Call teardown() in afterAll. */
export async function startTier(spec: HomelabSpec, opts: { postUp?: boolean } = {}): Promise<Tier> {
  await requireDocker();
  const secrets = makeSecrets(spec);
  const plan = planHomelab(spec, secrets);
  const label = `${LABEL_STACK}=${spec.stack}`;
  await removeByLabel(label, { purgeRetained: true }); // leftovers of an interrupted earlier run
  const byName = new Map(plan.nodes.map((n) => [n.name, n]));
  const exec: Tier["exec"] = async (node, command, o = {}) => {
    const target = byName.get(node)?.hostname ?? node;
    return docker(["exec", ...(o.input !== undefined ? ["-i"] : []), ...(o.user ? ["--user", o.user] : []), target, ...command], { allowFailure: o.allowFailure, input: o.input });
  };
  const teardown = async () => {
    await removeByLabel(label, { purgeRetained: true });
  };
  const t0 = Date.now();
  try {
    await applyPlan(plan, { log: (m) => console.log(`[e2e] ${m}`) });
    if (opts.postUp !== false) {
      for (const step of postUpSteps(plan, spec.pgbackrest.stanza)) {
        const s0 = Date.now();
        await exec(step.node, step.command, { user: "postgres" });
        console.log(`[e2e] ${step.name} in ${((Date.now() - s0) / 1000).toFixed(1)}s`);
      }
    }
  } catch (err) {
    await teardown();
    throw err;
  }
  const bringUpSeconds = (Date.now() - t0) / 1000;
  console.log(`[e2e] bring-up of stack ${spec.stack} (${plan.nodes.length} nodes): ${bringUpSeconds.toFixed(1)}s`);
  return {
    spec,
    plan,
    secrets,
    topology: topologyOf(spec, plan),
    bringUpSeconds,
    port: (node) => {
      const p = byName.get(node)?.ports[0];
      if (!p) throw new Error(`node ${node} publishes no port`);
      return p.hostPort;
    },
    exec,
    sql: async (node, sql, database = "postgres") => {
      const r = await exec(node, ["psql", "-X", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql], { user: "postgres" });
      return r.stdout.split("\n").filter((l) => l !== "").map((l) => l.split("|"));
    },
    teardown,
  };
}

/** Sum of the memory in use over the stack's containers (docker stats), in bytes. */
export async function tierMemoryBytes(stack: string): Promise<{ total: number; perContainer: Record<string, number> }> {
  const ids = (await docker(["ps", "-q", "--filter", `label=${LABEL_STACK}=${stack}`])).stdout.split(/\s+/).filter(Boolean);
  const r = await docker(["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", ...ids]);
  const perContainer: Record<string, number> = {};
  for (const line of r.stdout.trim().split("\n")) {
    const [name, usage] = line.split(" ");
    const m = /^([\d.]+)([KMG]i?B|B)/.exec(usage ?? "");
    if (!name || !m) continue;
    const unit: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1e3, MB: 1e6, GB: 1e9 };
    perContainer[name] = Math.round(Number(m[1]) * (unit[m[2] as string] ?? 1));
  }
  return { total: Object.values(perContainer).reduce((a, b) => a + b, 0), perContainer };
}

/** What the engine still holds of a stack: must be empty after teardown. */
export async function leftovers(stack: string): Promise<string[]> {
  const filter = `label=${LABEL_STACK}=${stack}`;
  const out: string[] = [];
  for (const [kind, args] of [
    ["container", ["ps", "-aq", "--filter", filter]],
    ["volume", ["volume", "ls", "-q", "--filter", filter]],
    ["network", ["network", "ls", "-q", "--filter", filter]],
  ] as const) {
    const r = await docker([...args]);
    for (const id of r.stdout.split(/\s+/).filter(Boolean)) out.push(`${kind} ${id}`);
  }
  return out;
}

/**
 * A container's memory as `docker stats` counts it (usage less inactive file pages), read from the host's
 * cgroup files: a sample costs microseconds, where `docker stats --no-stream` takes seconds and, on a loaded
 * machine, can miss a whole short run (CI saw a peak of 0 that way). cgroup v1 (the memory controller's own
 * hierarchy, as on the build machines) or v2.
 */
export async function containerMemoryReader(container: string): Promise<() => number> {
  const { dir, v1 } = await containerCgroup(container);
  const [usageFile, inactiveKey] = v1 ? ["memory.usage_in_bytes", "total_inactive_file"] : ["memory.current", "inactive_file"];
  const read = () => Number(readFileSync(path.join(dir, usageFile), "utf8")) - memoryStat(dir, inactiveKey);
  read(); // fails now, naming the file, rather than in the sampler
  return read;
}

/** A container's memory cgroup directory on the host: cgroup v1 (the memory controller's own hierarchy) or v2. */
async function containerCgroup(container: string): Promise<{ dir: string; v1: boolean }> {
  const pid = (await docker(["inspect", "-f", "{{.State.Pid}}", container])).stdout.trim();
  const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n");
  const v1 = lines.map((l) => /^\d+:memory:(.*)$/.exec(l)?.[1]).find((p) => p !== undefined);
  if (v1 !== undefined) return { dir: path.join("/sys/fs/cgroup/memory", v1), v1: true };
  const v2 = lines.find((l) => l.startsWith("0::"))?.slice(3);
  if (v2 === undefined) throw new Error(`container ${container}: no memory cgroup in /proc/${pid}/cgroup`);
  return { dir: path.join("/sys/fs/cgroup", v2), v1: false };
}

function memoryStat(dir: string, key: string): number {
  const m = new RegExp(`^${key} (\\d+)$`, "m").exec(readFileSync(path.join(dir, "memory.stat"), "utf8"));
  if (!m) throw new Error(`${dir}/memory.stat: no ${key}`);
  return Number(m[1]);
}

/**
 * A container's memory less its page cache (heaps, stacks, kernel objects: what `free` counts as used). The page
 * cache a container is charged for depends on which container first read a file: a binary another node or
 * an image build read first costs this one nothing, one it reads first costs it the whole file, so a
 * working set with page cache in it (docker stats) moves by tens of MiB between runs of the same stack.
 */
export async function containerUsedBytes(container: string): Promise<number> {
  const { dir, v1 } = await containerCgroup(container);
  const [usageFile, cacheKey] = v1 ? ["memory.usage_in_bytes", "total_cache"] : ["memory.current", "file"];
  return Number(readFileSync(path.join(dir, usageFile), "utf8")) - memoryStat(dir, cacheKey);
}

/** The anonymous resident memory (RssAnon) of every process named `comm` in a container, read on the host. */
export async function processAnonBytes(container: string, comm: string): Promise<number> {
  const top = (await docker(["top", container, "-eo", "pid,comm"])).stdout.trim().split("\n").slice(1);
  const pids = top.map((l) => l.trim().split(/\s+/)).filter(([, c]) => c === comm.slice(0, 15)).map(([p]) => p);
  if (!pids.length) throw new Error(`container ${container}: no process named ${comm}`);
  return pids.reduce((sum, pid) => sum + 1024 * Number(/^RssAnon:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN), 0);
}

/** Samples a container's memory every intervalMs while `work` runs: its idle value before, and the peak. */
export async function withMemorySampling<T>(container: string, work: () => Promise<T>, intervalMs = 100): Promise<{ result: T; idleBytes: number; peakBytes: number; samples: number }> {
  const read = await containerMemoryReader(container);
  const idleBytes = read();
  let peakBytes = 0;
  let samples = 0;
  const sample = () => {
    try {
      peakBytes = Math.max(peakBytes, read());
      samples++;
    } catch (err) {
      // The container restarted (its cgroup is gone until it runs again): the test's own checks say so.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  try {
    const result = await work();
    sample();
    return { result, idleBytes, peakBytes, samples };
  } finally {
    clearInterval(timer);
  }
}

/** A drill log that prints indented, without colour (the e2e output). */
export const quietLog = (): DrillLog => new DrillLog({ stream: { write: (s: string) => process.stdout.write(`  ${s}`) }, color: false });

/** A drill log that also runs `on[text]` once when a line containing `text` is printed (fault injection). */
export function watchingLog(on: Record<string, () => void>): DrillLog {
  const pending = new Map(Object.entries(on));
  return new DrillLog({
    color: false,
    stream: {
      write: (line: string) => {
        process.stdout.write(`  ${line}`);
        for (const [text, fn] of pending) {
          if (line.includes(text)) {
            pending.delete(text);
            fn();
          }
        }
      },
    },
  });
}
