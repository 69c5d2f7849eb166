import { describe, expect, it } from "vitest";
import { failoverFromAcks, lostAcks, splitBrainEvidence, summarizeRuns, type EndpointAck } from "../../drills/lib/ha.ts";

const ack = (seq: number, atMs: number, server: string): EndpointAck => ({ seq, atMs, serverAtMs: atMs, server });

describe("drills/lib/ha", () => {
  it("failoverFromAcks: RTO from the fault to the first write another server acknowledged", () => {
    const acks = [ack(1, 100, "a"), ack(2, 200, "a"), ack(3, 1200, "a"), ack(4, 25_000, "b")];
    // a write the OLD server acknowledged after the fault (in flight) is not the recovery
    expect(failoverFromAcks(acks, 1000)).toMatchObject({ rtoSeconds: 24, newPrimary: "b", lastAckBeforeFault: { seq: 2 } });
    expect(failoverFromAcks(acks.slice(0, 3), 1000)).toEqual({ problem: expect.stringContaining("no write was acknowledged by another server") });
  });

  it("lostAcks: acknowledged but not present", () => {
    expect(lostAcks([ack(1, 1, "a"), ack(2, 2, "a"), ack(3, 3, "b")], [1, 3])).toEqual([2]);
  });

  it("summarizeRuns: median (odd and even counts) and worst", () => {
    expect(summarizeRuns([23, 21, 25, 22, 24])).toEqual({ runs: 5, medianSeconds: 23, worstSeconds: 25, bestSeconds: 21 });
    expect(summarizeRuns([2, 4]).medianSeconds).toBe(3);
    expect(() => summarizeRuns([])).toThrow(/no runs/);
  });

  it("splitBrainEvidence: overlap when the old primary acknowledged after the new one started", () => {
    expect(splitBrainEvidence([{ serverAtMs: 100 }, { serverAtMs: 500 }], [{ serverAtMs: 900 }])).toEqual({ overlapMs: 0, lastOldMs: 500, firstNewMs: 900 });
    expect(splitBrainEvidence([{ serverAtMs: 1000 }], [{ serverAtMs: 900 }, { serverAtMs: 950 }]).overlapMs).toBe(100);
    expect(splitBrainEvidence([], [{ serverAtMs: 1 }]).overlapMs).toBe(0);
  });
});

describe("HA drills: Patroni's member list, the leader lock in its log, the switchover candidate, the budgets", () => {
  const member = (Member: string, Role: string, State: string, lag?: number) => ({ Member, Host: "h", Role, State, ...(lag === undefined ? {} : { "Lag in MB": lag }) });
  it("healthy: one running leader, every other member streaming, a sync standby in sync mode", async () => {
    const { clusterHealthy } = await import("../../drills/lib/patroni.ts");
    const ok = [member("pg_1", "Leader", "running"), member("pg_2", "Sync Standby", "streaming")];
    expect(clusterHealthy(ok, { size: 2, sync: true })).toBe(true);
    expect(clusterHealthy([member("pg_1", "Leader", "running"), member("pg_2", "Replica", "streaming")], { size: 2, sync: true })).toBe(false);
    expect(clusterHealthy([member("pg_1", "Leader", "running"), member("pg_2", "Replica", "streaming")], { size: 2, sync: false })).toBe(true);
    expect(clusterHealthy([member("pg_1", "Leader", "running"), member("pg_2", "Replica", "starting")], { size: 2, sync: false })).toBe(false);
    expect(clusterHealthy([member("pg_1", "Leader", "running")], { size: 2, sync: false })).toBe(false);
    expect(clusterHealthy([member("pg_1", "Leader", "running"), member("pg_2", "Leader", "running")], { size: 2, sync: false })).toBe(false);
  });

  it("the lock time from the new leader's Patroni log (UTC), only after the fault", async () => {
    const { leaderLockAt } = await import("../../drills/lib/patroni.ts");
    const log = ["2026-12-04 03:50:01,123 INFO: no action. I am (pg_2), a secondary, and following a leader (pg_1)", "2026-12-04 03:50:20,456 INFO: promoted self to leader by acquiring session lock", "2026-12-04 03:50:21,000 INFO: no action. I am (pg_2), the leader with the lock"].join("\n");
    expect(leaderLockAt(log, Date.parse("2026-12-04T03:50:00Z"))).toBe(Date.parse("2026-12-04T03:50:20.456Z"));
    expect(leaderLockAt(log, Date.parse("2026-12-04T03:51:00Z"))).toBeUndefined();
  });

  it("switchover goes to the sync standby, else to the least lagging streaming standby", async () => {
    const { switchoverCandidate } = await import("../../drills/switchover.mts");
    expect(switchoverCandidate([member("pg_1", "Leader", "running"), member("pg_2", "Replica", "streaming", 3), member("pg_3", "Sync Standby", "streaming", 9)])?.Member).toBe("pg_3");
    expect(switchoverCandidate([member("pg_1", "Leader", "running"), member("pg_2", "Replica", "streaming", 3), member("pg_3", "Replica", "streaming", 0)])?.Member).toBe("pg_3");
    expect(switchoverCandidate([member("pg_1", "Leader", "running"), member("pg_2", "Replica", "stopped")])).toBeUndefined();
  });

  it("each failover phase beside the part of the objective Patroni's timing gives it", async () => {
    const { budgetsOf } = await import("../../drills/ha-failover.mts");
    const { planPatroniTiming } = await import("../../components/postgres/patroni.ts");
    const rto = { totalMs: 24_000, totalSeconds: 24, phases: [{ name: "leader lock", startMs: 0, durationMs: 22_000 }, { name: "endpoint", startMs: 22_000, durationMs: 2_000 }] };
    expect(budgetsOf(rto as never, planPatroniTiming(27))).toEqual(["leader lock 22 s of 23 s", "endpoint 2 s of 4 s"]);
    expect(budgetsOf(rto as never, planPatroniTiming(5))).toEqual([]);
  });

  it("the lag twin reads maximum_lag_on_failover from show-config and patronictl's lag in MB", async () => {
    const { maximumLagOnFailover, memberLagBytes } = await import("../../drills/ha-failover.mts");
    expect(maximumLagOnFailover("loop_wait: 1\nmaximum_lag_on_failover: 1048576\nttl: 20\n")).toBe(1048576);
    expect(maximumLagOnFailover("ttl: 20\n")).toBe(1048576);
    expect(memberLagBytes(member("pg_2", "Replica", "streaming", 7.5))).toBe(7.5 * 1048576);
    expect(memberLagBytes({ ...member("pg_2", "Replica", "streaming"), "Lag in MB": "unknown" })).toBeUndefined();
    expect(memberLagBytes(member("pg_1", "Leader", "running"))).toBeUndefined();
  });

  it("the archived WAL segments a node restored after the fault, from its PostgreSQL log", async () => {
    const { restoredSegmentsSince } = await import("../../drills/ha-failover.mts");
    const log = ['2026-12-04 04:14:41.100 UTC [77] LOG:  restored log file "000000050000000000000012" from archive', "2026-12-04 04:14:41,200 INFO: no action", '2026-12-04 04:14:42.300 UTC [77] LOG:  restored log file "000000050000000000000013" from archive'].join("\n");
    expect(restoredSegmentsSince(log, Date.parse("2026-12-04T04:14:41.000Z"))).toEqual(["000000050000000000000012", "000000050000000000000013"]);
    expect(restoredSegmentsSince(log, Date.parse("2026-12-04T04:14:42.000Z"))).toEqual(["000000050000000000000013"]);
  });
});
