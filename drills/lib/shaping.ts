// Traffic shaping of a node's network link for drills (the redis-replication-lag drill; the HA failover twin
// of a standby lagging past maximum_lag_on_failover): tc run from this host inside a container's network
// namespace through nsenter (the containers have no tc and no CAP_NET_ADMIN; this kernel has no netem, but
// htb does). Only a docker engine on this host qualifies: anything else is refused naming the node. The
// planners are pure and unit-tested (test/unit/drills-redis-lag.test.ts).
import { execFile } from "node:child_process";
import { docker } from "../../components/platform/docker-node.ts";
import type { TopologyNode } from "../../components/topology.ts";

/** A node cannot be shaped from here (not a local container, no tc/nsenter, not root): the reason names it. */
export class ShapingRefused extends Error {}

/** The shaping the drill adds: htb root 1:, the slow class 1:10 with a pfifo 10: leaf. */
export const THROTTLE_HANDLE = "1:";
export const SLOW_CLASS = "1:10";
/**
 * The slow class's queue: at most this long at the class's rate (at least 2 packets). Shallow on purpose:
 * behind htb's default leaf queue (txqueuelen, 1000 packets: tens of seconds at these rates) TCP's RTT, hence
 * its retransmission timeout, grows to seconds; the packets queued when the qdisc is deleted are dropped and
 * the catch-up then waits out that timeout (measured at 256 kbit: 4.3 s after the lift with 1000 packets,
 * 0.3 s with 10; at 64 kbit 3 s with 10 packets, 0.2 s with 2).
 */
export const THROTTLE_QUEUE_SECONDS = 0.25;
export const MTU_BYTES = 1514;

export function throttleQueuePackets(rateKbit: number): number {
  return Math.max(2, Math.floor((rateKbit * 125 * THROTTLE_QUEUE_SECONDS) / MTU_BYTES));
}

export interface ThrottlePlan {
  /** The primary's interface on the stack network. */
  dev: string;
  /** The replica's address: only packets to it are shaped. */
  dstIp: string;
  rateKbit: number;
  queuePackets?: number;
}

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/;

/**
 * The tc commands (argv after `tc`) that throttle `dev`'s egress to `dstIp` only: an htb root whose
 * unclassified traffic goes out unshaped (default 0: htb's direct queue), one class at rateKbit with a shallow
 * pfifo, and a u32 filter on the destination address. Pure: the drill runs them in the node's namespace.
 */
export function throttleCommands(p: ThrottlePlan): string[][] {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(p.dev)) throw new RangeError(`not an interface name: ${JSON.stringify(p.dev)}`);
  if (!IPV4.test(p.dstIp)) throw new RangeError(`not an IPv4 address: ${JSON.stringify(p.dstIp)} (the u32 filter matches ip dst)`);
  if (!Number.isInteger(p.rateKbit) || p.rateKbit < 8) throw new RangeError(`throttle rate ${p.rateKbit} kbit: a whole number >= 8`);
  const queue = p.queuePackets ?? throttleQueuePackets(p.rateKbit);
  if (!Number.isInteger(queue) || queue < 1) throw new RangeError(`throttle queue ${queue} packets: a whole number >= 1`);
  const rate = `${p.rateKbit}kbit`;
  return [
    ["qdisc", "add", "dev", p.dev, "root", "handle", THROTTLE_HANDLE, "htb", "default", "0"],
    // quantum: one full packet per round (rate / r2q is below the MTU at these rates; htb warns).
    ["class", "add", "dev", p.dev, "parent", THROTTLE_HANDLE, "classid", SLOW_CLASS, "htb", "rate", rate, "ceil", rate, "quantum", String(MTU_BYTES)],
    ["qdisc", "add", "dev", p.dev, "parent", SLOW_CLASS, "handle", "10:", "pfifo", "limit", String(queue)],
    ["filter", "add", "dev", p.dev, "parent", THROTTLE_HANDLE, "protocol", "ip", "prio", "1", "u32", "match", "ip", "dst", `${p.dstIp}/32`, "flowid", SLOW_CLASS],
  ];
}

/** Removes whatever root qdisc `dev` has (the kernel puts its default back). */
export function liftCommand(dev: string): string[] {
  return ["qdisc", "del", "dev", dev, "root"];
}

export interface Qdisc {
  kind: string;
  handle: string;
  /** "root", or the parent class id. */
  parent: string;
  dev?: string;
}

/** `tc qdisc show [dev X]` lines. */
export function parseTcQdiscs(text: string): Qdisc[] {
  const out: Qdisc[] = [];
  for (const line of text.split("\n")) {
    const m = /^qdisc (\S+) (\S+)(?: dev (\S+))? (?:(root)|parent (\S+))/.exec(line.trim());
    if (m) out.push({ kind: m[1]!, handle: m[2]!, parent: m[4] ?? m[5]!, ...(m[3] ? { dev: m[3] } : {}) });
  }
  return out;
}

/** The root qdisc someone added (the kernel's own defaults have handle 0:), or undefined: the interface is unshaped. */
export function addedRoot(qdiscs: readonly Qdisc[]): Qdisc | undefined {
  return qdiscs.find((q) => q.parent === "root" && q.handle !== "0:");
}

/** `Sent N bytes M pkt (dropped D, ...` of the block that starts with `header` in `tc -s class|qdisc show` output. */
export function tcBlockStats(text: string, header: RegExp): { sentBytes: number; sentPackets: number; dropped: number; rate?: string } | undefined {
  const lines = text.split("\n");
  const i = lines.findIndex((l) => header.test(l));
  if (i < 0) return undefined;
  const rate = / rate (\S+)/.exec(lines[i]!)?.[1];
  for (const l of lines.slice(i + 1, i + 3)) {
    const m = /Sent (\d+) bytes (\d+) pkt \(dropped (\d+)/.exec(l);
    if (m) return { sentBytes: Number(m[1]), sentPackets: Number(m[2]), dropped: Number(m[3]), ...(rate ? { rate } : {}) };
  }
  return undefined;
}

/** The interface holding `ip` in `ip -o -4 addr show` output. */
export function devOfAddress(text: string, ip: string): string | undefined {
  for (const line of text.split("\n")) {
    const m = /^\d+:\s+(\S+)\s+inet (\d+\.\d+\.\d+\.\d+)\//.exec(line.trim());
    if (m && m[2] === ip) return m[1]!.replace(/@.*$/, "");
  }
  return undefined;
}


// ---------------------------------------------------------------------------------------------------- host side

export interface HostResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program on this host (tc and ip through nsenter); a missing program is a ShapingRefused naming it. */
export function hostRun(argv: readonly string[], timeoutMs = 10_000): Promise<HostResult> {
  return new Promise((resolve, reject) => {
    // tc lives in /usr/sbin (iproute2), nsenter in /usr/bin: found even when PATH has no sbin (a non-login root shell).
    const env = { ...process.env, PATH: `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin` };
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, encoding: "utf8", env }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const e = err as NodeJS.ErrnoException & { code?: string | number };
      if (e.code === "ENOENT") return reject(new ShapingRefused(`${argv[0]} is not installed on this host: the throttle runs tc inside the node's network namespace through nsenter (util-linux, iproute2)`));
      resolve({ code: typeof e.code === "number" ? e.code : 1, stdout: stdout ?? "", stderr: stderr || e.message });
    });
  });
}

/** A node's network namespace as this host sees it: the container's pid and its interface on the stack network. */
export interface NodeNetns {
  node: string;
  pid: number;
  dev: string;
  ip: string;
}

export const nsenter = (ns: NodeNetns, argv: readonly string[]) => hostRun(["nsenter", "-t", String(ns.pid), "-n", ...argv]);
export const tcIn = (ns: NodeNetns, args: readonly string[]) => nsenter(ns, ["tc", ...args]);
export const oneLine = (r: HostResult) => (r.stderr || r.stdout).trim().split("\n").slice(-2).join(" | ");

/**
 * Refuses, naming the node and why, unless the node is a container of a docker engine on THIS host: tc must
 * run in its network namespace, entered from the host (the containers have no tc and no CAP_NET_ADMIN).
 */
export function refuseUnlessLocalDocker(node: Pick<TopologyNode, "name" | "handle">, env: NodeJS.ProcessEnv = process.env): { container: string } {
  const h = node.handle;
  if (h.kind !== "docker") throw new ShapingRefused(`node ${node.name}: the throttle runs tc from this host inside the node's network namespace (nsenter), which needs a container of a docker engine on this host; its handle is ${h.kind}`);
  if (h.dockerHost) throw new ShapingRefused(`node ${node.name} runs on the docker engine at ${h.dockerHost}: the throttle runs tc in its network namespace from the engine's own host (nsenter); run the drill there`);
  if (env.DOCKER_HOST && !env.DOCKER_HOST.startsWith("unix://")) throw new ShapingRefused(`node ${node.name}: DOCKER_HOST=${env.DOCKER_HOST} is a remote engine; the throttle needs nsenter into the node's network namespace on this host`);
  return { container: h.container };
}

export async function netnsOf(node: TopologyNode): Promise<NodeNetns> {
  const h = refuseUnlessLocalDocker(node);
  const ip = node.container.ipv4Address ?? node.internal.host;
  const pid = Number((await docker(["inspect", "-f", "{{.State.Pid}}", h.container])).stdout.trim());
  if (!(pid > 0)) throw new ShapingRefused(`node ${node.name}: container ${h.container} is not running (pid ${pid})`);
  const r = await hostRun(["nsenter", "-t", String(pid), "-n", "ip", "-o", "-4", "addr", "show"]);
  if (r.code !== 0) throw new ShapingRefused(`node ${node.name}: cannot enter the network namespace of pid ${pid} (${oneLine(r)}): the drill needs root on the docker engine's host`);
  const dev = devOfAddress(r.stdout, ip);
  if (!dev) throw new ShapingRefused(`node ${node.name}: no interface with ${ip} in the namespace of pid ${pid} (${r.stdout.trim().split("\n").length} addresses): is the engine on this host?`);
  return { node: node.name, pid, dev, ip };
}

export async function qdiscsOf(ns: NodeNetns): Promise<Qdisc[]> {
  const r = await tcIn(ns, ["qdisc", "show", "dev", ns.dev]);
  if (r.code !== 0) throw new Error(`${ns.node}: tc qdisc show dev ${ns.dev} failed: ${oneLine(r)}`);
  return parseTcQdiscs(r.stdout);
}

export const describeQdiscs = (ns: NodeNetns, q: readonly Qdisc[]) => `${ns.node}:${ns.dev} ${q.map((x) => `${x.kind} ${x.handle} ${x.parent === "root" ? "root" : `parent ${x.parent}`}`).join(", ") || "none"}`;
