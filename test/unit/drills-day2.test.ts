// The day-2 drills' pure parts: which sessions are the root of a lock queue (long-transaction), what a VACUUM
// reclaimed (vacuum-bloat). The drills on a real tier, with their twins, are test/e2e/drill-*.test.ts.
import { describe, expect, it } from "vitest";
import { rootBlockers, type BlockedBackend } from "../../drills/long-transaction.mts";

const b = (pid: number, state: string, xactSeconds: number) => ({ pid, state, xactSeconds, query: `q${pid}` });

describe("rootBlockers", () => {
  it("names the session at the head of the queue, not the waiters blocking each other behind it", () => {
    // INSERT (10) waits for the ALTER (11), which waits for the idle transaction (12).
    const blocked: BlockedBackend[] = [
      { pid: 10, query: "INSERT", waitingSeconds: 2, blockers: [b(11, "active", 2)] },
      { pid: 11, query: "ALTER TABLE", waitingSeconds: 2, blockers: [b(12, "idle in transaction", 40)] },
    ];
    expect(rootBlockers(blocked).map((r) => r.pid)).toEqual([12]);
  });

  it("orders idle-in-transaction roots first, then the oldest transaction; nothing blocked, nothing named", () => {
    const blocked: BlockedBackend[] = [
      { pid: 20, query: "UPDATE", waitingSeconds: 1, blockers: [b(21, "active", 90), b(22, "idle in transaction (aborted)", 5), b(23, "idle in transaction", 30)] },
    ];
    expect(rootBlockers(blocked).map((r) => r.pid)).toEqual([23, 22, 21]);
    expect(rootBlockers([])).toEqual([]);
  });
});

describe("vacuum-bloat: what a VACUUM reclaimed", () => {
  it("the share of dead tuples removed and left, the free space gained, the file size change", async () => {
    const { reclaimed } = await import("../../drills/vacuum-bloat.mts");
    const before = { table_len: 20 << 20, tuple_count: 20_000, dead_tuple_count: 100_000, dead_tuple_percent: 80, free_space: 200_000, free_percent: 1 };
    expect(reclaimed(before, { ...before, dead_tuple_count: 0, free_space: 17_000_000 })).toEqual({ deadRemovedRatio: 1, remainingDeadRatio: 0, freedBytes: 16_800_000, tableLenChange: 0 });
    expect(reclaimed(before, before).remainingDeadRatio).toBe(1);
    expect(reclaimed({ ...before, dead_tuple_count: 0 }, { ...before, dead_tuple_count: 0 }).remainingDeadRatio).toBe(0);
  });
});

describe("query-tuning: what the workload added to pg_stat_statements, and the scans of a plan", () => {
  it("diffs against the snapshot per queryid, most total time first, statements the workload did not run left out", async () => {
    const { statementDeltas } = await import("../../drills/query-tuning.mts");
    const before = [
      { queryid: "1", query: "SELECT slow", calls: 10, total_exec_time: 100 },
      { queryid: "2", query: "SELECT fast", calls: 5, total_exec_time: 1 },
      { queryid: "3", query: "CREATE TABLE", calls: 1, total_exec_time: 3 },
    ];
    const after = [
      { queryid: "1", query: "SELECT slow", calls: 20, total_exec_time: 300 },
      { queryid: "2", query: "SELECT fast", calls: 35, total_exec_time: 4 },
      { queryid: "3", query: "CREATE TABLE", calls: 1, total_exec_time: 3 },
      { queryid: "4", query: "SELECT new", calls: 2, total_exec_time: 50 },
    ];
    expect(statementDeltas(before, after)).toEqual([
      { queryid: "1", query: "SELECT slow", calls: 10, total_exec_time: 200, mean_exec_time: 20 },
      { queryid: "4", query: "SELECT new", calls: 2, total_exec_time: 50, mean_exec_time: 25 },
      { queryid: "2", query: "SELECT fast", calls: 30, total_exec_time: 3, mean_exec_time: 0.1 },
    ]);
  });

  it("names every scan node with its relation or index", async () => {
    const { planScans } = await import("../../drills/query-tuning.mts");
    expect(planScans({ "Node Type": "Limit", Plans: [{ "Node Type": "Sort", Plans: [{ "Node Type": "Seq Scan", "Relation Name": "t" }] }] })).toEqual(["Seq Scan on t"]);
    expect(planScans({ "Node Type": "Limit", Plans: [{ "Node Type": "Index Scan", "Index Name": "t_fix", "Relation Name": "t" }] })).toEqual(["Index Scan using t_fix"]);
  });
});
