// The ONLY input of a drill (docs/architecture.md "Data flow" step 5): the stack's `topology` output, from
// `pulumi stack output topology --json` or a JSON file, validated before anything is touched with the
// components' own schema (components/topology.ts), so what a stack exports is exactly what drills accept.
import { readFile } from "node:fs/promises";
import { $ } from "zx";
import { TOPOLOGY_VERSION, topologySchema, type Topology, type TopologyNode } from "../../components/topology.ts";
import type { NodeRole } from "../../components/platform/plan.ts";
import { psqlOnNode, type NodeControl } from "./nodes.ts";

export type { Topology, TopologyNode, NodeRole };

export class TopologyError extends Error {}

/** Validates a parsed topology (or a whole `pulumi stack output --json` object holding one). */
export function parseTopology(value: unknown, source: string): Topology {
  const candidate = value && typeof value === "object" && !("version" in value) && "topology" in value ? (value as { topology: unknown }).topology : value;
  if (candidate && typeof candidate === "object" && "version" in candidate && (candidate as { version: unknown }).version !== TOPOLOGY_VERSION) {
    throw new TopologyError(`${source}: topology version ${JSON.stringify((candidate as { version: unknown }).version)} is not supported; these drills read version ${TOPOLOGY_VERSION}`);
  }
  const parsed = topologySchema.safeParse(candidate);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  - ${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new TopologyError(`${source}: not a valid topology (version ${TOPOLOGY_VERSION}):\n${problems.join("\n")}`);
  }
  const t = parsed.data;
  const names = new Set<string>();
  for (const n of t.nodes) {
    if (names.has(n.name)) throw new TopologyError(`${source}: node name ${n.name} appears twice`);
    names.add(n.name);
  }
  return t;
}

export interface LoadTopologyOptions {
  /** Pulumi stack to read `topology` from (default: the selected stack). */
  stack?: string;
  /** A JSON file holding the topology (`--topology file.json`); wins over `stack`. */
  file?: string;
  /** Directory to run pulumi in (the project root). */
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export async function loadTopology(opts: LoadTopologyOptions = {}): Promise<Topology> {
  if (opts.file) {
    let text: string;
    try {
      text = await readFile(opts.file, "utf8");
    } catch (e) {
      throw new TopologyError(`cannot read topology file ${opts.file}: ${(e as Error).message}`, { cause: e });
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new TopologyError(`topology file ${opts.file} is not JSON: ${(e as Error).message}`, { cause: e });
    }
    return parseTopology(value, opts.file);
  }
  const args = ["stack", "output", "topology", "--json", ...(opts.stack ? ["--stack", opts.stack] : [])];
  const command = `pulumi ${args.join(" ")}`;
  // zx quotes each element of args; quiet + not verbose: nothing of the command or its output is echoed.
  // stdin closed: a pulumi that would prompt (no stack selected, a passphrase) fails instead of hanging.
  const r = await $({ cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"], nothrow: true, quiet: true, verbose: false })`pulumi ${args}`;
  // zx runs the command through bash: a spawn failure (e.g. no such cwd) comes back as `cause`, "not found"
  // as exit 127, a signal as no exit code.
  if (r.cause) throw new TopologyError(`\`${command}\` could not run (in ${opts.cwd ?? process.cwd()}): ${r.cause.message}`);
  if (r.exitCode === 127) throw new TopologyError(`\`${command}\` could not run: the pulumi CLI is not installed or not on PATH. Install it, or pass --topology <file.json> (a saved \`pulumi stack output topology --json\`)`);
  if (r.exitCode === null) throw new TopologyError(`\`${command}\` could not run: killed by ${r.signal ?? "a signal"}`);
  if (r.exitCode !== 0) throw new TopologyError(`\`${command}\` failed (exit ${r.exitCode}): ${r.stderr.trim().split("\n").slice(-5).join(" | ")}`);
  let value: unknown;
  try {
    value = JSON.parse(r.stdout);
  } catch (e) {
    throw new TopologyError(`\`${command}\` printed something that is not JSON (${(e as Error).message}); is \`topology\` exported by the stack?`);
  }
  return parseTopology(value, `\`${command}\``);
}

// ----------------------------------------------------------------------------------------------- helpers

export function nodeByName(t: Topology, name: string): TopologyNode {
  const node = t.nodes.find((n) => n.name === name);
  if (!node) throw new TopologyError(`topology of stack ${t.stack} has no node ${name} (nodes: ${t.nodes.map((n) => n.name).join(", ")})`);
  return node;
}

export function nodesByRole(t: Topology, role: NodeRole): TopologyNode[] {
  return t.nodes.filter((n) => n.role === role);
}

/** The first node built with `role`. Roles are as built: after a failover ask currentPrimary(). */
export function nodeByRole(t: Topology, role: NodeRole): TopologyNode {
  const node = t.nodes.find((n) => n.role === role);
  if (!node) throw new TopologyError(`topology of stack ${t.stack} has no ${role} node (roles: ${[...new Set(t.nodes.map((n) => n.role))].join(", ")})`);
  return node;
}

/** Every PostgreSQL node (primary and replicas as built), primary first. */
export function pgNodes(t: Topology): TopologyNode[] {
  return [...nodesByRole(t, "postgres-primary"), ...nodesByRole(t, "postgres-replica")];
}

export type PgNodeState = { node: TopologyNode; state: "primary" | "replica" } | { node: TopologyNode; state: "unreachable"; error: string };

/** Asks each PostgreSQL node `select pg_is_in_recovery()` through node control, all at once. */
export async function pgNodeStates(t: Topology, ctl: NodeControl, opts: { timeoutMs?: number } = {}): Promise<PgNodeState[]> {
  return Promise.all(
    pgNodes(t).map(async (node): Promise<PgNodeState> => {
      try {
        const answer = await psqlOnNode(ctl, node, "select pg_is_in_recovery()", { timeoutMs: opts.timeoutMs ?? 5000 });
        if (answer === "f") return { node, state: "primary" };
        if (answer === "t") return { node, state: "replica" };
        return { node, state: "unreachable", error: `unexpected answer ${JSON.stringify(answer)}` };
      } catch (e) {
        return { node, state: "unreachable", error: (e as Error).message };
      }
    }),
  );
}

/**
 * The node that is primary NOW (roles move after a failover). Throws when none answers as primary, and
 * when more than one does: that is split brain, which a drill must never paper over.
 */
export async function currentPrimary(t: Topology, ctl: NodeControl, opts: { timeoutMs?: number } = {}): Promise<TopologyNode> {
  const states = await pgNodeStates(t, ctl, opts);
  const primaries = states.filter((s) => s.state === "primary");
  const describe = () => states.map((s) => `${s.node.name}: ${s.state === "unreachable" ? `unreachable (${s.error})` : s.state}`).join("; ");
  if (primaries.length === 1) return primaries[0]!.node;
  if (primaries.length === 0) throw new TopologyError(`no PostgreSQL node of stack ${t.stack} answers as primary (${describe()})`);
  throw new TopologyError(`split brain: ${primaries.map((p) => p.node.name).join(" and ")} each answer pg_is_in_recovery() = false (${describe()})`);
}

/**
 * How a drill on the host reaches PostgreSQL on `node`: its published address. The password comes from
 * readSecret(ctl, node, t.postgres.passwordFiles[user]); never from the topology, which holds none.
 */
export function pgClientConfig(t: Topology, node: TopologyNode, auth: { user: string; password: string; database?: string }): { host: string; port: number; user: string; password: string; database: string } {
  if (!node.published) throw new TopologyError(`node ${node.name} publishes no port: drills reach PostgreSQL at its published address`);
  return { host: node.published.host, port: node.published.port, user: auth.user, password: auth.password, database: auth.database ?? t.postgres.database };
}
