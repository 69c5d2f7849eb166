import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  assertDigestsEqual,
  assertNoAcknowledgedWriteLost,
  assertNoWriteAfterFault,
  assertRowsEqualAtTarget,
  assertRpoWithin,
  assertRtoWithin,
  assertWritesResumedWithin,
  check,
} from "../../drills/lib/assert.ts";
import { measureRpo, type AcknowledgedWrite } from "../../drills/lib/measure.ts";

const acks = (n: number): AcknowledgedWrite[] => Array.from({ length: n }, (_, i) => ({ seq: i + 1, clientTimeMs: 10_000 + i * 100 }));
const range = (a: number, b: number) => Array.from({ length: Math.max(0, b - a + 1) }, (_, i) => a + i);

describe("assertNoAcknowledgedWriteLost", () => {
  it("passes with nothing lost, stating the counts", () => {
    const c = assertNoAcknowledgedWriteLost(measureRpo({ acknowledged: acks(50), presentSeqs: range(1, 50) }));
    expect(c).toMatchObject({ name: "no acknowledged write lost", ok: true, objective: 0, measured: 0, unit: "writes" });
    expect(c.detail).toMatch(/^0 of 50 acknowledged writes lost/);
  });

  it("fails with the evidence: how many, by how much, which seqs", () => {
    const c = assertNoAcknowledgedWriteLost(measureRpo({ acknowledged: acks(50), presentSeqs: range(1, 47) }));
    expect(c.ok).toBe(false);
    expect(c.detail).toContain("3 of 50 acknowledged writes lost, objective allows 0: exceeds it by 3");
    expect(c.detail).toContain("lost seqs 48, 49, 50");
    expect(c.detail).toContain("last acknowledged seq 50, last acknowledged still present 47");
  });

  it("honours an allowance (async mode) and lists long losses briefly", () => {
    const rpo = measureRpo({ acknowledged: acks(100), presentSeqs: range(1, 60) });
    expect(assertNoAcknowledgedWriteLost(rpo, 40).ok).toBe(true);
    const c = assertNoAcknowledgedWriteLost(rpo, 39);
    expect(c.ok).toBe(false);
    expect(c.detail).toContain("exceeds it by 1");
    expect(c.detail).toContain("61, 62, 63, 64, 65, 66, 67, 68, 69, 70, … (40 in all)");
  });
});

describe("assertRpoWithin", () => {
  it("passes and fails at the objective, stating the excess", () => {
    const rpo = measureRpo({ acknowledged: acks(100), presentSeqs: range(1, 80) }); // 2 s
    expect(assertRpoWithin(rpo, 2)).toMatchObject({ ok: true, measured: 2, objective: 2, unit: "s" });
    const c = assertRpoWithin(rpo, 1);
    expect(c.ok).toBe(false);
    expect(c.detail).toBe("RPO 2 s exceeds objective 1 s by 1 s (20 acknowledged writes lost; first lost seqs 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, … (20 in all))");
  });
});

describe("assertRtoWithin", () => {
  it("states which objective was missed and by how much", () => {
    expect(assertRtoWithin(14.2, 10).detail).toBe("RTO 14.2 s exceeds objective 10 s by 4.2 s");
    expect(assertRtoWithin(14.2, 10)).toMatchObject({ ok: false, objective: 10, measured: 14.2 });
    expect(assertRtoWithin(3.25, 10)).toMatchObject({ ok: true, detail: "RTO 3.25 s within objective 10 s" });
    expect(assertRtoWithin(10, 10).ok).toBe(true);
  });

  it("an unmeasured RTO (never recovered) fails instead of throwing", () => {
    for (const v of [undefined, null, Number.NaN, Number.POSITIVE_INFINITY]) {
      const c = assertRtoWithin(v, 10, "redundancy restored");
      expect(c.ok).toBe(false);
      expect(c.name).toBe("redundancy restored within objective");
      expect(c.detail).toMatch(/not measured/);
    }
  });

  it("passes exactly when rto <= objective", () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1e5, noNaN: true }), fc.double({ min: 0, max: 1e5, noNaN: true }), (rto, objective) => {
        expect(assertRtoWithin(rto, objective).ok).toBe(rto <= objective);
      }),
    );
  });
});

describe("assertWritesResumedWithin", () => {
  it("measures from the fault to the first acknowledged write", () => {
    expect(assertWritesResumedWithin(1000, 4500, 10)).toMatchObject({ ok: true, measured: 3.5, detail: "first acknowledged write 3.5 s after the fault, within objective 10 s" });
    const late = assertWritesResumedWithin(1000, 13_000, 10);
    expect(late.ok).toBe(false);
    expect(late.detail).toBe("first acknowledged write 12 s after the fault exceeds objective 10 s by 2 s");
  });

  it("fails when writes never resumed, or when the instant precedes the fault", () => {
    expect(assertWritesResumedWithin(1000, undefined, 10)).toMatchObject({ ok: false, measured: "none" });
    expect(assertWritesResumedWithin(1000, 900, 10).detail).toMatch(/BEFORE the fault/);
    expect(assertWritesResumedWithin(1000, 900, 10).ok).toBe(false);
  });

  it("names what resumed for read-only recovery", () => {
    expect(assertWritesResumedWithin(0, 500, 1, "successful read").detail).toContain("first successful read 500 ms after the fault");
  });
});

describe("assertNoWriteAfterFault", () => {
  it("passes when the old primary has nothing past the boundary (or nothing at all)", () => {
    expect(assertNoWriteAfterFault(1400, 1400).ok).toBe(true);
    expect(assertNoWriteAfterFault(10, 1400).ok).toBe(true);
    expect(assertNoWriteAfterFault(null, 1400)).toMatchObject({ ok: true, measured: "none" });
  });

  it("flags split brain with the seqs", () => {
    const c = assertNoWriteAfterFault(1450, 1400);
    expect(c.ok).toBe(false);
    expect(c.detail).toContain("split brain");
    expect(c.detail).toContain("seq 1450, 50 past the last seq sent before the fault (1400)");
  });
});

describe("assertRowsEqualAtTarget", () => {
  it("passes on set equality regardless of order and duplicates", () => {
    expect(assertRowsEqualAtTarget([3, 1, 2], [1, 2, 3, 3])).toMatchObject({ ok: true, detail: "all 3 expected ids present, none other" });
  });

  it("lists the first differences both ways", () => {
    const c = assertRowsEqualAtTarget(range(1, 100), [...range(1, 95), 101, 102]);
    expect(c.ok).toBe(false);
    expect(c.detail).toBe("5 expected but absent: 96, 97, 98, 99, 100; 2 present but not expected: 101, 102 (expected 100, found 97)");
    const many = assertRowsEqualAtTarget(range(1, 30), []);
    expect(many.detail).toContain("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, … (30 in all)");
  });

  it("ok exactly when the sets are equal", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 })), fc.array(fc.integer({ min: 0, max: 50 })), (a, b) => {
        const equal = new Set(a).size === new Set(b).size && a.every((x) => b.includes(x));
        expect(assertRowsEqualAtTarget(a, b).ok).toBe(equal);
      }),
    );
  });
});

describe("assertDigestsEqual", () => {
  it("compares single digests", () => {
    expect(assertDigestsEqual("abc", "abc").ok).toBe(true);
    const c = assertDigestsEqual("0123456789abcdef0123", "fedcba9876543210fedc");
    expect(c.ok).toBe(false);
    expect(c.detail).toBe("digest 0123456789ab… differs from fedcba987654…");
  });

  it("compares per table and names the tables that differ or are missing", () => {
    expect(assertDigestsEqual({ incidents: "1:a", audit_log: "1:b" }, { audit_log: "1:b", incidents: "1:a" })).toMatchObject({ ok: true, detail: "2 table digests match (audit_log, incidents)" });
    const c = assertDigestsEqual({ incidents: "10:a", audit_log: "10:b", paging: "0:x" }, { incidents: "9:z", audit_log: "10:b" });
    expect(c.ok).toBe(false);
    expect(c.detail).toBe("2 of 3 tables differ: incidents: 10:a vs 9:z; paging: 0:x vs missing");
  });
});

describe("checks never throw", () => {
  it("on odd input", () => {
    const empty = measureRpo({ acknowledged: [], presentSeqs: [] });
    expect(() => [assertNoAcknowledgedWriteLost(empty), assertRpoWithin(empty, 0), assertRowsEqualAtTarget([], []), assertDigestsEqual({}, {}), check("x", true, "y")]).not.toThrow();
    expect(assertRpoWithin(empty, 0).ok).toBe(true);
  });
});
