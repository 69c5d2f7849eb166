// A postgres.ha: patroni stack as a drill sees it (ADR 0017): Patroni's member list (patronictl, run inside a
// PostgreSQL node as postgres), the leader, a healthy cluster, the stable primary endpoint as the app user,
// and when the new leader took the lock (its Patroni log). Pure parts are unit-tested (test/unit/drills-ha.test.ts).
import type { Topology, TopologyNode } from "../../components/topology.ts";
import { readSecret, type NodeControl } from "./nodes.ts";
import { pgNodes } from "./topology.ts";
import { waitFor } from "./wait.ts";

export const PATRONICTL = ["patronictl", "-c", "/etc/patroni/patroni.yml"];

export interface PatroniMember { Member: string; Host: string; Role: string; State: string; TL?: number; "Lag in MB"?: number | string }

/** Node name of a Patroni member name (pg_1 -> pg-1). */
export const nodeOfMember = (member: string) => member.replace(/_/g, "-");

/** `patronictl list -f json`, from the first PostgreSQL node that answers; [] when none does. */
export async function patroniMembers(t: Topology, ctl: NodeControl, exclude: readonly string[] = []): Promise<PatroniMember[]> {
  for (const n of pgNodes(t).filter((x) => !exclude.includes(x.name))) {
    const r = await ctl.exec(n, [...PATRONICTL, "list", "-f", "json"], { user: "postgres", allowFailure: true, timeoutMs: 15_000 }).catch(() => undefined);
    if (r?.code !== 0) continue;
    try {
      return JSON.parse(r.stdout) as PatroniMember[];
    } catch {
      /* the next node */
    }
  }
  return [];
}

/** One running leader, every other member streaming, and in sync mode a sync standby (pure). */
export function clusterHealthy(members: readonly PatroniMember[], o: { size: number; sync: boolean }): boolean {
  return members.length === o.size && members.filter((m) => m.Role === "Leader" && m.State === "running").length === 1 && members.every((m) => m.Role === "Leader" || m.State === "streaming") && (!o.sync || members.some((m) => m.Role === "Sync Standby"));
}

/** Waits (polling every 100 ms) until clusterHealthy; rejects naming what the members were doing. */
export async function waitClusterHealthy(t: Topology, ctl: NodeControl, timeoutMs: number): Promise<PatroniMember[]> {
  const sync = t.postgres.replicationMode === "sync";
  let last: PatroniMember[] = [];
  return waitFor(`a healthy Patroni cluster (a leader, every other member streaming${sync ? ", a sync standby" : ""})`, async () => {
    last = await patroniMembers(t, ctl);
    return clusterHealthy(last, { size: pgNodes(t).length, sync }) ? last : undefined;
  }, { timeoutMs, state: () => describeMembers(last) });
}

export function describeMembers(members: readonly PatroniMember[]): string {
  return members.length ? members.map((m) => `${m.Member} ${m.Role} ${m.State}${m.TL !== undefined ? ` TL${m.TL}` : ""}${m["Lag in MB"] !== undefined && m.Role !== "Leader" ? ` lag ${m["Lag in MB"]} MB` : ""}`).join(", ") : "no member answered patronictl list";
}

export function leaderOf(t: Topology, members: readonly PatroniMember[]): TopologyNode | undefined {
  const m = members.find((x) => x.Role === "Leader" && x.State === "running");
  return m ? pgNodes(t).find((n) => n.name === nodeOfMember(m.Member)) : undefined;
}

/** The primary endpoint (HAProxy) as the app user: what an application connects to. */
export async function endpointConfig(t: Topology, ctl: NodeControl, which: "primary" | "replicas" = "primary"): Promise<{ host: string; port: number; user: string; password: string; database: string }> {
  const ep = t.postgres.endpoints?.[which];
  if (!ep) throw new Error(`the topology of stack ${t.stack} has no postgres.endpoints: not a postgres.ha: patroni stack`);
  const file = t.postgres.passwordFiles[t.postgres.appUser];
  if (!file) throw new Error(`the topology names no password file for ${t.postgres.appUser}`);
  const password = await readSecret(ctl, pgNodes(t)[0]!, file);
  return { host: ep.host, port: ep.port, user: t.postgres.appUser, password, database: t.postgres.database };
}

/**
 * When a member took the leader lock after `sinceMs`, from its Patroni log ("%(asctime)s": local time of the
 * node, UTC in the images): "promoted self to leader by acquiring session lock" (pure).
 */
export function leaderLockAt(log: string, sinceMs: number): number | undefined {
  for (const line of log.split("\n")) {
    const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d),(\d{3}) INFO: (promoted self to leader by acquiring session lock|acquired session lock as a leader)/.exec(line.trim());
    if (!m) continue;
    const at = Date.parse(`${m[1]}T${m[2]}.${m[3]}Z`);
    if (at >= sinceMs) return at;
  }
  return undefined;
}
