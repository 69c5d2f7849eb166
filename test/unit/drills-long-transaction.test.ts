// The long-transaction drill's pure part: which sessions are the root of a lock queue. The drill on a real
// tier, and its twin, are test/e2e/drill-long-transaction.test.ts.
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
