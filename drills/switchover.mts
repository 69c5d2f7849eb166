// Drill: a planned switchover in postgres.ha: patroni (docs/drills.md "switchover"; rehearses
// runbooks/postgres-ha-failover.md "Switchover"). Maintenance on the primary's machine starts with moving the
// primary away: `patronictl switchover --leader <leader> --candidate <standby> --force`. A writer through the
// stable primary endpoint measures what the application sees: the gap from the command to the first write
// acknowledged by the new primary (held to objectives.switchover.rto), acknowledged writes lost (a planned
// switchover loses none: the old primary stops cleanly after its standby has everything), the candidate
// really leading afterwards, and the old leader streaming as a standby again (objectives.failover.redundancyRestored).
//
//   npx tsx drills/switchover.mts --stack <ha stack> [--reports reports]
import pg from "pg";
import type { Topology } from "../components/topology.ts";
import { assertNoAcknowledgedWriteLost, assertRtoWithin, check, drillStopped, type Check } from "./lib/assert.ts";
import { EndpointWriter, HA_PROBE_SQL, failoverFromAcks } from "./lib/ha.ts";
import { DrillLog } from "./lib/log.ts";
import { formatSeconds, measureRpo, rtoPhases, type RpoMeasurement, type RtoBreakdown } from "./lib/measure.ts";
import { controlFor, type NodeControl } from "./lib/nodes.ts";
import { PATRONICTL, describeMembers, endpointConfig, leaderOf, nodeOfMember, waitClusterHealthy, type PatroniMember } from "./lib/patroni.ts";
import { type DrillReport, concludeDrill, newRunId } from "./lib/report.ts";
import { onEndpoint } from "./ha-failover.mts";
import { nullOnTimeout, waitFor } from "./lib/wait.ts";
import { runIfMain } from "./lib/main.ts";

export interface SwitchoverDrillOptions {
  topology: Topology;
  reportsDir?: string;
  log?: DrillLog;
  nodeControl?: NodeControl;
}

/** The standby to switch to: the sync standby in sync mode, else the least lagging streaming one (pure). */
export function switchoverCandidate(members: readonly PatroniMember[]): PatroniMember | undefined {
  const sync = members.find((m) => m.Role === "Sync Standby" && m.State === "streaming");
  if (sync) return sync;
  const lag = (m: PatroniMember) => (typeof m["Lag in MB"] === "number" ? m["Lag in MB"] : Number.POSITIVE_INFINITY);
  return members.filter((m) => m.Role !== "Leader" && m.State === "streaming").sort((a, b) => lag(a) - lag(b))[0];
}

export async function runSwitchoverDrill(opts: SwitchoverDrillOptions): Promise<DrillReport> {
  const t = opts.topology;
  const log = opts.log ?? new DrillLog();
  const ctl = opts.nodeControl ?? controlFor(t);
  const startedAtMs = Date.now();
  const runId = newRunId();
  const rtoObjective = t.objectives.switchover?.rto ?? NaN;
  const objectives = { rtoSeconds: rtoObjective, rpoWrites: 0, redundancyRestoredSeconds: t.objectives.failover.redundancyRestored };
  const checks: Check[] = [];
  const evidence: Record<string, unknown> = {};
  let rto: RtoBreakdown | null = null;
  let rpo: RpoMeasurement | null = null;
  let writer: EndpointWriter | undefined;
  let endpoint: pg.ClientConfig | undefined;
  log.info(`drill switchover on stack ${t.stack} (run ${runId}): objectives first write on the new primary <= ${formatSeconds(rtoObjective)} after the command, 0 acknowledged writes lost`);
  try {
    if (!t.postgres.ha) throw new Error(`stack ${t.stack} is not postgres.ha: patroni: on a manual stack the failover drill rehearses the operator's promotion`);
    if (!t.objectives.switchover) throw new Error(`the topology of stack ${t.stack} has no objectives.switchover: re-run \`homelab up --stack ${t.stack}\` with this version`);
    endpoint = await endpointConfig(t, ctl);
    const before = await log.step("preflight: a leader, every member streaming", () => waitClusterHealthy(t, ctl, 120_000), describeMembers);
    const leader = leaderOf(t, before);
    const candidate = switchoverCandidate(before);
    if (!leader || !candidate) throw new Error(`no leader and streaming standby to switch between: ${describeMembers(before)}`);
    const leaderMember = before.find((m) => m.Role === "Leader")!.Member;
    evidence.from = leaderMember;
    evidence.to = candidate.Member;
    await onEndpoint(endpoint, (c) => c.query(HA_PROBE_SQL));
    writer = new EndpointWriter({ connection: endpoint, run: runId });
    writer.start();
    const w = writer;
    await waitFor("20 writes acknowledged through the primary endpoint", () => w.acks.length >= 20, { timeoutMs: 60_000, state: () => `${w.acks.length} acknowledged` });

    const commandAtMs = Date.now();
    const out = await log.step(`switchover: patronictl switchover --leader ${leaderMember} --candidate ${candidate.Member} --force`, async () => {
      const r = await ctl.exec(leader, [...PATRONICTL, "switchover", "--leader", leaderMember, "--candidate", candidate.Member, "--force"], { user: "postgres", allowFailure: true, timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`patronictl switchover failed (exit ${r.code}): ${(r.stdout + r.stderr).trim().split("\n").slice(-3).join(" | ")}`);
      return r.stdout.trim().split("\n").filter((l) => /switched over|Successfully|scheduled/i.test(l)).join(" | ");
    });
    evidence.patronictl = out;
    const m = await log.step("observe: the first write acknowledged by the new primary", () => nullOnTimeout(waitFor("a write acknowledged by the new primary", () => {
      const r = failoverFromAcks(w.acks, commandAtMs);
      return "problem" in r ? undefined : r;
    }, { timeoutMs: rtoObjective * 2000 + 30_000 })), (r) => (r ? `${formatSeconds(r.rtoSeconds)} after the command, by ${r.newPrimary}` : "none"));
    await new Promise((r) => setTimeout(r, 500));
    await w.stop();
    if (!m) throw new Error("no write was acknowledged by another server after the switchover");
    // The longest the application waited between two acknowledged writes around the switch.
    const acks = w.acks.filter((a) => a.atMs >= commandAtMs - 1000);
    const gapMs = acks.slice(1).reduce((g, a, i) => Math.max(g, a.atMs - acks[i]!.atMs), 0);
    evidence.longestWriteGapSeconds = gapMs / 1000;
    rto = rtoPhases([{ name: "switchover", atMs: m.firstAckAfterFault.atMs }], commandAtMs);
    checks.push(assertRtoWithin(m.rtoSeconds, rtoObjective, "switchover (command -> first write acknowledged by the new primary)"));
    const present = await onEndpoint(endpoint, async (c) => (await c.query<{ seq: string }>("SELECT seq FROM ha_probe WHERE run = $1", [runId])).rows.map((r) => Number(r.seq)));
    rpo = measureRpo({ acknowledged: w.acks.map((a) => ({ seq: a.seq, clientTimeMs: a.atMs })), presentSeqs: present });
    checks.push(assertNoAcknowledgedWriteLost(rpo, 0));

    const after = await log.step("after: the candidate leads, the old leader streams as a standby", () => waitClusterHealthy(t, ctl, t.objectives.failover.redundancyRestored * 1000 + 30_000), describeMembers);
    const redundancySeconds = (Date.now() - m.firstAckAfterFault.atMs) / 1000;
    const newLeader = after.find((x) => x.Role === "Leader")?.Member;
    checks.push(check("the candidate leads", newLeader === candidate.Member, `leader now ${newLeader ?? "none"} (${nodeOfMember(newLeader ?? "")}), asked for ${candidate.Member}`));
    checks.push(check("redundancy restored", redundancySeconds <= t.objectives.failover.redundancyRestored, `${leaderMember} streams as a standby ${formatSeconds(redundancySeconds)} after the new primary's first write (objective ${formatSeconds(t.objectives.failover.redundancyRestored)})`, { objective: t.objectives.failover.redundancyRestored, measured: Number(redundancySeconds.toFixed(2)), unit: "s" }));
    rto = { ...rto, redundancyRestoredSeconds: redundancySeconds } as RtoBreakdown;
  } catch (e) {
    checks.push(drillStopped(log, e));
  } finally {
    await writer?.stop().catch(() => undefined);
    if (endpoint) await onEndpoint(endpoint, (c) => c.query("DELETE FROM ha_probe WHERE run = $1", [runId])).catch(() => undefined);
  }
  return concludeDrill({ drill: "switchover", stack: t.stack, runId, startedAtMs, objectives, phases: log.phases(), rpo, rto, checks, evidence }, { reportsDir: opts.reportsDir, log });
}

runIfMain(import.meta.url, "switchover");
