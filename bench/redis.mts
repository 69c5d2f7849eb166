// `homelab bench redis --stack <s>`: a redis-benchmark baseline of the stack's Redis primary for GET, SET and
// INCR (issue 13 item 4). redis-benchmark runs on the node itself against 127.0.0.1 (the server's numbers,
// not the LAN's), in logical database 15 (refused unless it is empty, flushed afterwards), as a user made for
// the run: random password, only the benchmark's keys (`key:*`, `counter:*`) and commands, deleted when the
// run ends. redis-benchmark reads a password only from its argv (-a), so that password is a throwaway that
// opens nothing else; the stack's own passwords never leave their files (ADR 0020).
import { createHash, randomBytes } from "node:crypto";
import type { Topology, TopologyNode } from "../components/topology.ts";
import { controlFor, type NodeControl } from "../drills/lib/nodes.ts";
import { redisCliOnNode, redisInfoOnNode, type RedisNodeAuth } from "../drills/lib/redis.ts";
import { newRunId } from "../drills/lib/report.ts";
import { nodeByRole } from "../drills/lib/topology.ts";
import type { BenchMetric, BenchRun } from "./lib/history.ts";

export const BENCH_DB = 15;
export const REDIS_BENCH_TESTS = ["get", "set", "incr"] as const;

export interface RedisBenchOptions {
  topology: Topology;
  requests: number;
  clients: number;
  valueBytes: number;
  nodeControl?: NodeControl;
  log?: (line: string) => void;
}

export interface RedisBenchRow {
  test: string;
  rps: number;
  avgMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** redis-benchmark --csv (Redis 7: test, rps, avg, min, p50, p95, p99, max latency in ms) (pure). */
export function parseRedisBenchmarkCsv(text: string): RedisBenchRow[] {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l.startsWith('"'));
  const header = lines[0]?.split(",").map((c) => c.replace(/"/g, ""));
  const want = ["test", "rps", "avg_latency_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "max_latency_ms"];
  if (!header || want.some((w) => !header.includes(w))) throw new Error(`redis-benchmark printed no CSV header with ${want.join(", ")}: ${text.trim().split("\n").slice(0, 2).join(" | ") || "(nothing)"}`);
  return lines.slice(1).map((line) => {
    const cells = line.split(",").map((c) => c.replace(/"/g, ""));
    const at = (name: string) => cells[header.indexOf(name)] ?? "";
    const num = (name: string) => {
      const v = Number(at(name));
      if (!Number.isFinite(v)) throw new Error(`redis-benchmark: ${name} of ${at("test")} is not a number: ${JSON.stringify(at(name))}`);
      return v;
    };
    return { test: at("test"), rps: num("rps"), avgMs: num("avg_latency_ms"), p50Ms: num("p50_latency_ms"), p95Ms: num("p95_latency_ms"), p99Ms: num("p99_latency_ms"), maxMs: num("max_latency_ms") };
  });
}

/** The run's metrics: per test, requests/s and p50/p99 latency (pure). */
export function redisBenchMetrics(rows: readonly RedisBenchRow[]): Record<string, BenchMetric> {
  const metrics: Record<string, BenchMetric> = {};
  for (const r of rows) {
    const t = r.test.toLowerCase();
    metrics[`${t}Rps`] = { value: r.rps, unit: "req/s", better: "higher" };
    metrics[`${t}P50`] = { value: r.p50Ms, unit: "ms", better: "lower" };
    metrics[`${t}P99`] = { value: r.p99Ms, unit: "ms", better: "lower" };
  }
  return metrics;
}

export async function runRedisBench(o: RedisBenchOptions): Promise<BenchRun> {
  const t = o.topology;
  const log = o.log ?? ((l: string) => console.log(l));
  if (!t.redis) throw new Error(`stack ${t.stack} has no Redis (redis.enabled: false): nothing to benchmark`);
  const ctl = o.nodeControl ?? controlFor(t);
  const node: TopologyNode = nodeByRole(t, "redis");
  const adminFile = t.redis.passwordFiles[t.redis.adminUser];
  if (!adminFile) throw new Error(`the topology names no password file for Redis user ${t.redis.adminUser}; re-run \`homelab up --stack ${t.stack}\``);
  const admin: RedisNodeAuth = { user: t.redis.adminUser, passwordFile: adminFile };
  const cli = (args: string[], timeoutMs?: number) => redisCliOnNode(ctl, node, admin, args, { timeoutMs });
  const startedAt = new Date();
  const runId = newRunId();
  const user = `homelab-bench-${runId}`;

  const keys = await cli(["-n", String(BENCH_DB), "DBSIZE"]);
  if (keys !== "0") throw new Error(`Redis database ${BENCH_DB} on ${node.name} holds ${keys} keys: bench redis writes there and flushes it afterwards, so it must be empty`);
  const memory = await redisInfoOnNode(ctl, node, admin, "memory");
  const server = await redisInfoOnNode(ctl, node, admin, "server");
  const used = Number(memory.used_memory ?? 0);
  const max = Number(memory.maxmemory ?? 0);
  // Each request of SET and INCR may add a key: values plus ~80 bytes of overhead per key.
  const need = o.requests * 2 * (o.valueBytes + 80);
  if (max > 0 && used + need > max * 0.9) {
    throw new Error(`Redis on ${node.name} has ${((max - used) / 1048576).toFixed(1)} MiB free of maxmemory ${(max / 1048576).toFixed(0)} MiB; --requests ${o.requests} with --value-bytes ${o.valueBytes} may need ${(need / 1048576).toFixed(1)} MiB (keep it under 90%): lower --requests`);
  }
  const password = randomBytes(24).toString("hex");
  const hash = createHash("sha256").update(password).digest("hex");
  try {
    // Only the hash crosses redis-cli's argv (ACL SETUSER #<sha256>).
    await cli(["ACL", "SETUSER", user, "on", `#${hash}`, "resetkeys", "~key:*", "~counter:*", "resetchannels", "-@all", "+get", "+set", "+incr", "+ping", "+select"]);
    log(`bench redis: redis-benchmark on ${node.name}: ${REDIS_BENCH_TESTS.join(", ")}, ${o.requests} requests each, ${o.clients} clients, ${o.valueBytes}-byte values, random keys (db ${BENCH_DB})`);
    const port = String(node.internal.port ?? 6379);
    // The throwaway password goes through stdin and a shell variable: only redis-benchmark's own argv holds it.
    const script = 'read -r pw; exec redis-benchmark -h 127.0.0.1 -p "$1" --user "$2" -a "$pw" --dbnum "$3" -t "$4" -n "$5" -c "$6" -d "$7" -r 100000 --csv';
    const r = await ctl.exec(node, ["sh", "-c", script, "bench", port, user, String(BENCH_DB), REDIS_BENCH_TESTS.join(","), String(o.requests), String(o.clients), String(o.valueBytes)], { input: `${password}\n`, allowFailure: true, timeoutMs: 1_800_000 });
    if (r.code !== 0) throw new Error(`redis-benchmark failed (exit ${r.code}): ${(r.stderr + r.stdout).trim().split("\n").slice(-3).join(" | ")}`);
    const rows = parseRedisBenchmarkCsv(r.stdout);
    if (rows.length !== REDIS_BENCH_TESTS.length) throw new Error(`redis-benchmark reported ${rows.map((x) => x.test).join(", ") || "nothing"}; expected ${REDIS_BENCH_TESTS.join(", ")}`);
    const persistence = await redisInfoOnNode(ctl, node, admin, "persistence");
    return {
      bench: "redis",
      stack: t.stack,
      runId,
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      params: { requests: o.requests, clients: o.clients, valueBytes: o.valueBytes, node: node.name },
      metrics: redisBenchMetrics(rows),
      evidence: { rows, version: server.redis_version, aofEnabled: persistence.aof_enabled, maxmemory: max, usedMemoryBefore: used, replicas: t.nodes.filter((n) => n.role === "redis-replica").map((n) => n.name), memoryBytes: node.container.memoryBytes, cpus: node.container.cpus },
    };
  } finally {
    await cli(["-n", String(BENCH_DB), "FLUSHDB"], 60_000).catch((e: Error) => log(`bench redis: could not flush db ${BENCH_DB}: ${e.message}`));
    await cli(["ACL", "DELUSER", user]).catch((e: Error) => log(`bench redis: could not delete user ${user}: ${e.message}`));
  }
}
