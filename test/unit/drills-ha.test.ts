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
