// Shared by test/e2e/ha-patroni.test.ts and bench/ha-failover.mts: the HA stack (postgres.ha: patroni, e2e
// slot 11), and one unplanned failover as a client sees it through the stable primary endpoint.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { docker } from "../../components/platform/docker-node.ts";
import { EndpointWriter, HA_PROBE_SQL, failoverFromAcks, lostAcks, type FailoverMeasurement } from "../../drills/lib/ha.ts";
import pg from "pg";
import { controlFor } from "../../drills/lib/nodes.ts";
import { leaderOf, nodeOfMember, patroniMembers, waitClusterHealthy, type PatroniMember } from "../../drills/lib/patroni.ts";
import { ROOT, e2eSpec, type Tier } from "./harness.ts";

/** homelab/postgres-ha:17 is not among the images every run builds (only HA stacks use it): build it here. */
export function ensureHaImage(): void {
  execFileSync("bash", [path.join(ROOT, "scripts/build-images.sh"), "postgres-ha"], { stdio: ["ignore", "ignore", "inherit"], cwd: ROOT });
}

// e2e slot 11 (172.40.0.0/24); HA_E2E_SLOT moves it when an engine still holds slot 11's network (a Docker
// engine can keep a stale endpoint on a network a container was disconnected from, so `network rm` fails).
export const HA_SLOT = Number(process.env.HA_E2E_SLOT ?? 11);

export const HA_STACK = HA_SLOT === 11 ? "ha-patroni" : `ha-patroni-${HA_SLOT}`;

export function haSpec(stack = HA_STACK, overrides: Record<string, unknown> = {}) {
  return e2eSpec(stack, {
    postgres: { ha: "patroni", replicationMode: "sync" },
    objectives: { failover: { rto: "27s" } },
    redis: { enabled: false },
    duckdb: { enabled: false },
    ...overrides,
  }, HA_SLOT);
}

const container = (tier: Tier, node: string) => tier.plan.nodes.find((n) => n.name === node)?.hostname ?? node;

/** `patronictl list` as JSON, asked from the first PostgreSQL node that answers (the drills' own reader). */
export const members = (tier: Tier): Promise<PatroniMember[]> => patroniMembers(tier.topology, controlFor(tier.topology));

export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function leaderNode(tier: Tier, timeoutMs = 60_000): Promise<string> {
  const leader = await waitFor("a Patroni leader", timeoutMs, async () => leaderOf(tier.topology, await members(tier)));
  return leader.name;
}

/** Every member running, one leader, the others streaming (and, in sync mode, one of them the sync standby). */
export const waitHealthyCluster = (tier: Tier, timeoutMs = 120_000): Promise<PatroniMember[]> => waitClusterHealthy(tier.topology, controlFor(tier.topology), timeoutMs);

export function endpointConnection(tier: Tier, which: "primary" | "replicas" = "primary"): pg.ClientConfig {
  const ep = tier.topology.postgres.endpoints?.[which];
  if (!ep) throw new Error("topology has no postgres.endpoints (not an ha: patroni stack?)");
  return { host: ep.host, port: ep.port, user: tier.spec.postgres.appUser, database: tier.spec.postgres.database, password: tier.secrets.postgresAppPassword };
}

export async function endpointQuery<R extends pg.QueryResultRow>(tier: Tier, sql: string, params: unknown[] = [], which: "primary" | "replicas" = "primary"): Promise<R[]> {
  const c = new pg.Client({ ...endpointConnection(tier, which), connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return (await c.query<R>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

/** What a node that does not rejoin was doing: the member list and its last log lines (no secrets in either). */
export async function nodeEvidence(tier: Tier, node: string): Promise<string> {
  const logs = await docker(["logs", "--tail", "2000", container(tier, node)], { allowFailure: true });
  const all = `${logs.stdout}\n${logs.stderr}`.split("\n").filter((l) => l.trim() !== "" && !/Lock owner|no action\./.test(l));
  // What decides a rejoin (pg_rewind, missing WAL, the archive) is often older than the last lines' retry noise.
  const key = all.filter((l) => /rewind|requested WAL|archive|restore_command|timeline|slot|ERROR|PANIC/i.test(l)).slice(-15);
  return `members: ${JSON.stringify(await members(tier))}\n${node}'s rejoin lines:\n${key.join("\n")}\n${node}'s last log lines:\n${all.slice(-15).join("\n")}`;
}

/** Waits until the node streams as a standby; fails with its evidence. */
export async function waitRejoined(tier: Tier, node: string, timeoutMs: number): Promise<void> {
  try {
    await waitFor(`${node} streaming again as a standby`, timeoutMs, async () => {
      const me = (await members(tier)).find((x) => nodeOfMember(x.Member) === node);
      return me && me.Role !== "Leader" && me.State === "streaming" ? true : undefined;
    }, 500);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${await nodeEvidence(tier, node)}`, { cause: e });
  }
}

export interface KillRun extends FailoverMeasurement {
  killed: string;
  acked: number;
  lost: number[];
  /** docker start of the killed node -> it streams again as a standby (Patroni rejoin, pg_rewind when needed). */
  rejoinSeconds: number;
}

/** One unplanned failover: docker kill of the leader with NO drill running; Patroni and HAProxy do the rest. */
export async function killPrimaryRun(tier: Tier, run: string, log: (m: string) => void = console.log): Promise<KillRun> {
  await waitHealthyCluster(tier);
  await endpointQuery(tier, HA_PROBE_SQL);
  const killed = await leaderNode(tier);
  const writer = new EndpointWriter({ connection: endpointConnection(tier), run });
  writer.start();
  let m: FailoverMeasurement;
  let faultAtMs = 0;
  try {
    await waitFor("20 acknowledged writes before the fault", 60_000, async () => (writer.acks.length >= 20 ? true : undefined), 100).catch((e: Error) => {
      throw new Error(`${e.message} (${writer.acks.length} acknowledged; last errors: ${writer.errors.slice(-3).map((x) => x.message).join(" | ") || "none"})`);
    });
    faultAtMs = Date.now();
    await docker(["kill", container(tier, killed)]);
    log(`[ha] ${run}: docker kill ${killed} (the leader) at ${new Date(faultAtMs).toISOString()}`);
    m = await waitFor("a write acknowledged by a new primary", 90_000, async () => {
      const r = failoverFromAcks(writer.acks, faultAtMs);
      return "problem" in r ? undefined : r;
    }, 100);
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    await writer.stop();
  }
  const present = (await endpointQuery<{ seq: string }>(tier, "select seq from ha_probe where run = $1", [run])).map((r) => Number(r.seq));
  const lost = lostAcks(writer.acks, present);
  const t0 = Date.now();
  await docker(["start", container(tier, killed)]);
  await waitRejoined(tier, killed, 180_000);
  const rejoinSeconds = (Date.now() - t0) / 1000;
  log(`[ha] ${run}: RTO ${m.rtoSeconds.toFixed(2)}s (new primary ${m.newPrimary}), ${writer.acks.length} acknowledged writes, ${lost.length} lost, ${killed} rejoined in ${rejoinSeconds.toFixed(1)}s`);
  return { ...m, killed, acked: writer.acks.length, lost, rejoinSeconds };
}
