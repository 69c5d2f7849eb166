// Node control: how a drill kills, stops, starts and runs commands on a node, through the handle the
// topology gives it (docs/architecture.md "Data flow" step 5). One interface, one implementation per platform:
// docker (here) and libvirt VMs (machine-control.ts); plain SSH hosts refused loudly until written.
import { docker, dockerEnv, type RunResult } from "../../components/platform/docker-node.ts";
import type { Topology, TopologyNode } from "../../components/topology.ts";
import { MachineNodeControl } from "./machine-control.ts";
import { recreateContainer, snapshotDockerNode, type NodeSnapshot } from "./scratch-node.ts";
import { waitFor, WaitTimeoutError } from "./wait.ts";

export type { ControlledNode, ExecOptions, ExecResult, NodeControl, RecreateOptions } from "./node-types.ts";
import type { ControlledNode, ExecOptions, ExecResult, NodeControl, RecreateOptions } from "./node-types.ts";

export class UnsupportedPlatformError extends Error {}

function dockerHandle(node: ControlledNode): { container: string; dockerHost?: string } {
  if (node.handle.kind !== "docker") throw new UnsupportedPlatformError(`node ${node.name}: handle kind ${node.handle.kind} is not a docker handle`);
  return node.handle;
}

export class DockerNodeControl implements NodeControl {
  readonly platform = "docker";
  /** /etc/homelab of each node as the stack made it, read the first time the node is re-created. */
  private readonly snapshots = new Map<string, NodeSnapshot>();

  async recreate(node: ControlledNode & Pick<TopologyNode, "container">, opts: RecreateOptions = {}): Promise<void> {
    let snapshot = this.snapshots.get(node.name);
    if (!snapshot) {
      snapshot = await snapshotDockerNode(node);
      this.snapshots.set(node.name, snapshot);
    }
    await recreateContainer(snapshot, opts);
  }

  private run(node: ControlledNode, args: string[], opts: { input?: string | Buffer; allowFailure?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    const h = dockerHandle(node);
    // A remote engine (ssh://nuc) is addressed per node, like the stack was built.
    const env = dockerEnv(h.dockerHost);
    return docker(args, { ...opts, env });
  }

  private async state(node: ControlledNode): Promise<{ exists: boolean; status: string; health: string }> {
    const r = await this.run(node, ["inspect", "--format", "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", dockerHandle(node).container], { allowFailure: true });
    if (r.code !== 0) return { exists: false, status: "missing", health: "none" };
    const [status = "", health = "none"] = r.stdout.trim().split("/");
    return { exists: true, status, health };
  }

  async kill(node: ControlledNode, signal = "KILL"): Promise<void> {
    const { container } = dockerHandle(node);
    await this.run(node, ["kill", "--signal", signal, container]);
    if (signal !== "KILL" && signal !== "SIGKILL" && signal !== "9") return;
    const name = `SIG${signal.replace(/^SIG/, "")}`;
    await waitFor(`${node.name}: container ${container} down after ${name}`, async () => !(await this.isRunning(node)), { timeoutMs: 15_000, intervalMs: 50 }).catch((e: unknown) => {
      if (!(e instanceof WaitTimeoutError)) throw e;
      throw new Error(`${node.name}: container ${container} still running 15 s after ${name}${e.lastError ? ` (last error: ${e.lastError})` : ""}`, { cause: e });
    });
  }

  async stop(node: ControlledNode, timeoutS: number): Promise<void> {
    await this.run(node, ["stop", "--time", String(Math.max(0, Math.round(timeoutS))), dockerHandle(node).container], { timeoutMs: (timeoutS + 30) * 1000 });
  }

  async start(node: ControlledNode): Promise<void> {
    await this.run(node, ["start", dockerHandle(node).container]);
  }

  exec(node: ControlledNode, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (argv.length === 0) throw new Error(`exec on ${node.name}: empty command`);
    const args = ["exec"];
    if (opts.input !== undefined) args.push("-i");
    if (opts.user) args.push("--user", opts.user);
    for (const [k, v] of Object.entries(opts.env ?? {})) args.push("--env", `${k}=${v}`);
    args.push(dockerHandle(node).container, ...argv);
    return this.run(node, args, { input: opts.input, allowFailure: opts.allowFailure, timeoutMs: opts.timeoutMs }).catch((e: Error) => {
      // docker() names only "docker exec <container>"; say which node and which program failed.
      throw new Error(`${node.name}: ${argv[0]} failed: ${e.message}`);
    });
  }

  async isRunning(node: ControlledNode): Promise<boolean> {
    const s = await this.state(node);
    return s.status === "running" || s.status === "restarting";
  }

  async removeDataVolumes(node: ControlledNode): Promise<string[]> {
    const { container } = dockerHandle(node);
    const s = await this.state(node);
    if (s.status === "running" || s.status === "restarting" || s.status === "paused") {
      throw new Error(`${node.name} is ${s.status}: kill or stop it before removing its data volumes`);
    }
    if (s.exists) await this.run(node, ["rm", container]);
    const removed: string[] = [];
    for (const volume of node.dataVolumes) {
      const r = await this.run(node, ["volume", "rm", volume], { allowFailure: true });
      if (r.code === 0) removed.push(volume);
      else if (!/no such volume/i.test(r.stderr)) throw new Error(`${node.name}: docker volume rm ${volume} failed: ${r.stderr.trim()}`);
    }
    return removed;
  }

  async waitHealthy(node: ControlledNode, timeoutMs: number): Promise<void> {
    let last = { exists: false, status: "missing", health: "none" };
    let lastError: string | undefined;
    const healthy = (s: typeof last) => s.status === "running" && (s.health === "healthy" || s.health === "none");
    // Ends early on a state it cannot leave by itself (exited, dead, gone): no point waiting out the timeout.
    const settled = await waitFor(
      `${node.name} healthy`,
      async () => {
        last = await this.state(node);
        return healthy(last) || last.status === "exited" || last.status === "dead" || !last.exists ? last : undefined;
      },
      { timeoutMs },
    ).catch((e: unknown) => {
      if (!(e instanceof WaitTimeoutError)) throw e;
      lastError = e.lastError;
      return undefined;
    });
    if (settled && healthy(settled)) return;
    const logs = last.exists ? await this.run(node, ["logs", "--tail", "20", dockerHandle(node).container], { allowFailure: true }) : undefined;
    const tail = logs ? `; last log lines:\n${(logs.stdout + logs.stderr).trim()}` : "";
    throw new Error(`${node.name} did not become healthy within ${formatMs(timeoutMs)} (state ${last.status}/${last.health}${lastError ? `; last error: ${lastError}` : ""})${tail}`);
  }
}

const formatMs = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/**
 * Each node by the control of its own handle's kind (a stack placed on several hosts, `hosts:`): a drill
 * kills a primary VM with virsh and reads the repository container with docker exec, unchanged.
 */
export class PlacedNodeControl implements NodeControl {
  readonly platform = "mixed";
  constructor(private readonly byKind: Readonly<Partial<Record<"docker" | "libvirt", NodeControl>>>) {}

  private of(node: ControlledNode): NodeControl {
    const ctl = node.handle.kind === "ssh" ? undefined : this.byKind[node.handle.kind];
    if (!ctl) throw new UnsupportedPlatformError(`node ${node.name}: no drill control for its ${node.handle.kind} handle`);
    return ctl;
  }
  async kill(node: ControlledNode, signal?: string) { return this.of(node).kill(node, signal); }
  async stop(node: ControlledNode, timeoutS: number) { return this.of(node).stop(node, timeoutS); }
  async start(node: ControlledNode) { return this.of(node).start(node); }
  async exec(node: ControlledNode, argv: readonly string[], opts?: ExecOptions) { return this.of(node).exec(node, argv, opts); }
  async isRunning(node: ControlledNode) { return this.of(node).isRunning(node); }
  async removeDataVolumes(node: ControlledNode) { return this.of(node).removeDataVolumes(node); }
  async waitHealthy(node: ControlledNode, timeoutMs: number) { return this.of(node).waitHealthy(node, timeoutMs); }
  async recreate(node: ControlledNode & Pick<TopologyNode, "container">, opts?: RecreateOptions) { return this.of(node).recreate(node, opts); }
}

/** Node control for every node of a topology, by the kind of the nodes' handles; refuses kinds drills cannot drive yet. */
export function controlFor(topology: Pick<Topology, "platform" | "nodes">): NodeControl {
  const kinds = [...new Set(topology.nodes.map((n) => n.handle.kind))];
  const ssh = topology.nodes.find((n) => n.handle.kind === "ssh");
  if (ssh) throw new UnsupportedPlatformError(`drills drive containers and VMs; node ${ssh.name} of the ${topology.platform} platform has an ssh handle (plain SSH hosts are not built yet)`);
  if (kinds.length === 1 && kinds[0] === "docker") return new DockerNodeControl();
  if (kinds.length === 1 && kinds[0] === "libvirt") return new MachineNodeControl();
  return new PlacedNodeControl({ docker: new DockerNodeControl(), libvirt: new MachineNodeControl() });
}

/** Reads a secret file on a node (root inside it). The value is never logged; errors name only the path. */
export async function readSecret(ctl: NodeControl, node: ControlledNode, path: string): Promise<string> {
  const r = await ctl.exec(node, ["cat", "--", path], { allowFailure: true, timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`${node.name}: cannot read secret file ${path} (exit ${r.code}): ${r.stderr.trim()}`);
  const value = r.stdout.replace(/\r?\n$/, "");
  if (value === "") throw new Error(`${node.name}: secret file ${path} is empty`);
  return value;
}

/**
 * Runs SQL on a PostgreSQL node as the OS user postgres over the local socket (peer auth), unaligned and
 * tuples-only: what a drill uses to ask a node about itself (pg_is_in_recovery, LSNs) even when the network
 * path is broken. Several statements: one -c each (output lines in order). Rejects with psql's error.
 */
export async function psqlOnNode(ctl: NodeControl, node: ControlledNode, sql: string | readonly string[], opts: { database?: string; timeoutMs?: number } = {}): Promise<string> {
  // Several statements go as several -c: each its own transaction, so ALTER SYSTEM (refused inside a
  // transaction block) can precede pg_reload_conf() in one round trip.
  const commands = (typeof sql === "string" ? [sql] : sql).flatMap((s) => ["-c", s]);
  const r = await ctl.exec(node, ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", opts.database ?? "postgres", ...commands], { user: "postgres", allowFailure: true, timeoutMs: opts.timeoutMs ?? 10_000 });
  if (r.code !== 0) throw new Error(`${node.name}: psql failed (exit ${r.code}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  return r.stdout.trim();
}

/** An extension a drill needs in a database, and whether the drill made it (then release() drops it again). */
export interface BorrowedExtension {
  created: boolean;
  release(): Promise<void>;
}

/** Creates extension `name` in `database` on `node` when it is missing; leaves one the user has in place. */
export async function borrowExtension(ctl: NodeControl, node: ControlledNode, name: string, database: string): Promise<BorrowedExtension> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new RangeError(`not an extension name: ${JSON.stringify(name)}`);
  const created = (await psqlOnNode(ctl, node, `SELECT count(*) FROM pg_extension WHERE extname = '${name}'`, { database })) === "0";
  if (created) await psqlOnNode(ctl, node, `CREATE EXTENSION ${name}`, { database });
  return {
    created,
    async release() {
      if (created) await psqlOnNode(ctl, node, `DROP EXTENSION IF EXISTS ${name}`, { database });
    },
  };
}

/**
 * Runs one SELECT on a STOPPED PostgreSQL data directory in single-user mode (`postgres --single`, as the OS
 * user postgres): crash recovery runs first, then the query, then a shutdown checkpoint. No listener, no
 * archiver, no replication: nobody can write to the cluster while it is read. What a drill uses to see
 * what a killed primary held before pg_rewind discards it (pg_rewind runs this same single-user recovery
 * itself when the target was not shut down cleanly). Returns the row's columns by name (one row only).
 */
export async function queryStoppedCluster(ctl: NodeControl, node: ControlledNode, sql: string, opts: { database: string; timeoutMs?: number }): Promise<Record<string, string | null>> {
  if (/[\n\r]/.test(sql)) throw new Error("queryStoppedCluster: one line of SQL (single-user mode ends a statement at a newline)");
  // PGDATA comes from the image's environment; settings stay as configured (archive_mode untouched, so no
  // segment waiting to be archived is recycled by the shutdown checkpoint).
  const r = await ctl.exec(node, ["sh", "-c", 'exec postgres --single -D "$PGDATA" "$1"', "sh", opts.database], { user: "postgres", input: `${sql}\n`, allowFailure: true, timeoutMs: opts.timeoutMs ?? 120_000 });
  if (r.code !== 0) throw new Error(`${node.name}: postgres --single failed (exit ${r.code}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  const error = /\b(?:ERROR|FATAL):\s+.*$/m.exec(`${r.stdout}\n${r.stderr}`);
  if (error) throw new Error(`${node.name}: postgres --single: ${error[0]}`);
  const rows = parseSingleUserOutput(r.stdout);
  if (rows.length !== 1) throw new Error(`${node.name}: postgres --single returned ${rows.length} rows for a one-row query`);
  return rows[0]!;
}

/**
 * Rows printed by single-user mode (src/backend/access/common/printtup.c debugtup): a header block naming
 * the columns, then per row `\t N: name = "value"\t(typeid = ...)` lines ended by `\t----`. A NULL column
 * prints no line at all, so every column named in the header is present in each row, null when missing.
 */
export function parseSingleUserOutput(stdout: string): Record<string, string | null>[] {
  // Blocks end at a `----` line; the text after the last one (the next prompt) is no block.
  const blocks: string[][] = [[]];
  for (const line of stdout.split("\n")) {
    if (/^\s*----\s*$/.test(line)) blocks.push([]);
    else blocks[blocks.length - 1]!.push(line);
  }
  const terminated = blocks.slice(0, -1);
  const header = /^\s*(?:backend>\s*)?\d+: (\S+)\s+\(typeid = /;
  const value = /^\s*(?:backend>\s*)?\d+: (\S+) = "(.*)"\s+\(typeid = /;
  const rows: Record<string, string | null>[] = [];
  let columns: string[] | undefined;
  for (const block of terminated) {
    if (columns === undefined) {
      const names = block.map((l) => header.exec(l)?.[1]).filter((n): n is string => n !== undefined);
      if (names.length > 0) columns = names;
      continue;
    }
    const row: Record<string, string | null> = Object.fromEntries(columns.map((c) => [c, null]));
    for (const line of block) {
      const m = value.exec(line);
      if (m) row[m[1]!] = m[2]!;
    }
    rows.push(row);
  }
  return rows;
}
