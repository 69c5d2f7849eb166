import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatDuration, formatLsn, formatSeconds, measureRpo, parseLsn, rtoPhases, splitAtTarget, walGapBytes, type AcknowledgedWrite } from "../../drills/lib/measure.ts";

/** seqs 1..n acknowledged 10 ms apart from t=1000. */
const acks = (n: number, from = 1): AcknowledgedWrite[] => Array.from({ length: n }, (_, i) => ({ seq: from + i, clientTimeMs: 1000 + (from + i) * 10 }));
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe("measureRpo", () => {
  it("nothing lost: 0 writes, 0 s, last seqs reported", () => {
    const r = measureRpo({ acknowledged: acks(100), presentSeqs: range(1, 100) });
    expect(r).toMatchObject({ acknowledgedWrites: 100, lostWrites: 0, lostSeqs: [], ghostWrites: 0, rpoSeconds: 0, lastAcknowledgedSeq: 100, lastPresentSeq: 100, lastPresentAcknowledgedSeq: 100 });
  });

  it("a lost tail: count, first 20 lost seqs, time from the last acknowledged still present", () => {
    const r = measureRpo({ acknowledged: acks(100), presentSeqs: new Set(range(1, 70)) });
    expect(r.lostWrites).toBe(30);
    expect(r.lostSeqs).toEqual(range(71, 90));
    // seq 100 acknowledged at 2000, seq 70 at 1700
    expect(r.rpoSeconds).toBeCloseTo(0.3, 10);
    expect(r.lastAcknowledgedSeq).toBe(100);
    expect(r.lastPresentSeq).toBe(70);
    expect(r.lastPresentAcknowledgedSeq).toBe(70);
  });

  it("nothing present at all: RPO is the span of the whole log", () => {
    const r = measureRpo({ acknowledged: acks(50), presentSeqs: [] });
    expect(r.lostWrites).toBe(50);
    expect(r.rpoSeconds).toBeCloseTo((1500 - 1010) / 1000, 10);
    expect(r.lastPresentSeq).toBeNull();
    expect(r.lastPresentAcknowledgedSeq).toBeNull();
  });

  it("a hole with the last write present: counted as lost, RPO (time) 0 by definition", () => {
    const r = measureRpo({ acknowledged: acks(10), presentSeqs: [1, 2, 3, 5, 6, 7, 8, 9, 10] });
    expect(r.lostWrites).toBe(1);
    expect(r.lostSeqs).toEqual([4]);
    expect(r.rpoSeconds).toBe(0);
  });

  it("ghosts: present, never acknowledged, not uncertain; uncertain survivors are not ghosts", () => {
    const r = measureRpo({ acknowledged: acks(10), presentSeqs: [...range(1, 10), 11, 12, 40], uncertain: [11, 13] });
    expect(r.ghostWrites).toBe(2);
    expect(r.ghostSeqs).toEqual([12, 40]);
    expect(r.uncertainWrites).toBe(2);
    expect(r.uncertainPresent).toBe(1);
    expect(r.lastPresentSeq).toBe(40);
  });

  it("ignores probe rows (non-positive ids)", () => {
    const r = measureRpo({ acknowledged: acks(3), presentSeqs: [-3, -2, -1, 0, 1, 2, 3] });
    expect(r.ghostWrites).toBe(0);
    expect(r.lastPresentSeq).toBe(3);
  });

  it("an uncertain seq that was later acknowledged by a retry counts as acknowledged only", () => {
    const r = measureRpo({ acknowledged: acks(5), presentSeqs: range(1, 5), uncertain: [5] });
    expect(r.uncertainWrites).toBe(0);
    expect(r.ghostWrites).toBe(0);
  });

  it("an empty log: nothing lost, RPO 0, null seqs", () => {
    const r = measureRpo({ acknowledged: [], presentSeqs: [] });
    expect(r).toMatchObject({ acknowledgedWrites: 0, lostWrites: 0, rpoSeconds: 0, lastAcknowledgedSeq: null, lastPresentSeq: null });
  });

  it("uses client time, not seq order, for RPO (time)", () => {
    const log = [
      { seq: 1, clientTimeMs: 1000 },
      { seq: 2, clientTimeMs: 1100 },
      { seq: 3, clientTimeMs: 4100 },
    ];
    expect(measureRpo({ acknowledged: log, presentSeqs: [1, 2] }).rpoSeconds).toBeCloseTo(3, 10);
  });

  describe("properties", () => {
    // A log of distinct increasing seqs with increasing times, and a random subset removed.
    const logAndLoss = fc
      .uniqueArray(fc.integer({ min: 1, max: 100_000 }), { minLength: 0, maxLength: 300 })
      .chain((seqs) => {
        const sorted = [...seqs].sort((a, b) => a - b);
        return fc.tuple(
          fc.constant(sorted),
          fc.array(fc.integer({ min: 1, max: 50 }), { minLength: sorted.length, maxLength: sorted.length }),
          fc.array(fc.boolean(), { minLength: sorted.length, maxLength: sorted.length }),
        );
      })
      .map(([seqs, gaps, lostFlags]) => {
        let t = 0;
        const log = seqs.map((seq, i) => ({ seq, clientTimeMs: (t += gaps[i]!) }));
        const removed = seqs.filter((_, i) => lostFlags[i]);
        return { log, removed };
      });

    it("lostWrites equals the count removed, lostSeqs the first 20 of them", () => {
      fc.assert(
        fc.property(logAndLoss, ({ log, removed }) => {
          const gone = new Set(removed);
          const r = measureRpo({ acknowledged: log, presentSeqs: log.map((w) => w.seq).filter((s) => !gone.has(s)) });
          expect(r.lostWrites).toBe(removed.length);
          expect(r.lostSeqs).toEqual(removed.slice(0, 20));
          expect(r.ghostWrites).toBe(0);
          expect(r.rpoSeconds).toBeGreaterThanOrEqual(0);
          if (removed.length === 0) expect(r.rpoSeconds).toBe(0);
        }),
      );
    });

    it("RPO (time) is the time between the last acknowledged and the last one still present", () => {
      fc.assert(
        fc.property(logAndLoss, ({ log, removed }) => {
          const gone = new Set(removed);
          const kept = log.filter((w) => !gone.has(w.seq));
          const r = measureRpo({ acknowledged: log, presentSeqs: kept.map((w) => w.seq) });
          const last = log[log.length - 1];
          const lastKept = kept[kept.length - 1];
          const expected = removed.length === 0 || !last ? 0 : lastKept ? last.clientTimeMs - lastKept.clientTimeMs : last.clientTimeMs - log[0]!.clientTimeMs;
          expect(r.rpoSeconds).toBeCloseTo(expected / 1000, 9);
        }),
      );
    });

    it("ghosts: every extra present seq that is neither acknowledged nor uncertain is detected", () => {
      fc.assert(
        fc.property(
          logAndLoss,
          fc.uniqueArray(fc.integer({ min: 100_001, max: 200_000 }), { maxLength: 50 }),
          fc.uniqueArray(fc.integer({ min: 100_001, max: 200_000 }), { maxLength: 50 }),
          ({ log }, extra, uncertain) => {
            const u = new Set(uncertain);
            const r = measureRpo({ acknowledged: log, presentSeqs: [...log.map((w) => w.seq), ...extra], uncertain });
            const ghosts = extra.filter((s) => !u.has(s)).sort((a, b) => a - b);
            expect(r.ghostWrites).toBe(ghosts.length);
            expect(r.ghostSeqs).toEqual(ghosts.slice(0, 20));
            expect(r.uncertainPresent).toBe(extra.length - ghosts.length);
            expect(r.lostWrites).toBe(0);
          },
        ),
      );
    });

    it("accepts a Set or an array of present seqs alike", () => {
      fc.assert(
        fc.property(logAndLoss, ({ log, removed }) => {
          const gone = new Set(removed);
          const present = log.map((w) => w.seq).filter((s) => !gone.has(s));
          expect(measureRpo({ acknowledged: log, presentSeqs: new Set(present) })).toEqual(measureRpo({ acknowledged: log, presentSeqs: present }));
        }),
      );
    });
  });
});

describe("splitAtTarget", () => {
  it("acknowledged by T: present; started after T: absent; straddling T: ambiguous", () => {
    const writes = [
      { seq: 1, startedAtMs: 90, clientTimeMs: 95 },
      { seq: 2, startedAtMs: 98, clientTimeMs: 100 },
      { seq: 3, startedAtMs: 99, clientTimeMs: 103 },
      { seq: 4, startedAtMs: 101, clientTimeMs: 104 },
      { seq: 5, clientTimeMs: 120 },
    ];
    expect(splitAtTarget(writes, 100)).toEqual({ mustBePresent: [1, 2], mustBeAbsent: [4, 5], ambiguous: [3] });
  });
});

describe("LSNs", () => {
  it("parses high/low halves as 64 bits", () => {
    expect(parseLsn("0/0")).toBe(0n);
    expect(parseLsn("16/B374D848")).toBe((0x16n << 32n) + 0xb374d848n);
    expect(parseLsn("FFFFFFFF/FFFFFFFF")).toBe(0xffffffffffffffffn);
    expect(parseLsn(" 0/3000060 ")).toBe(0x3000060n);
  });

  it("round-trips", () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }), (n) => {
        expect(parseLsn(formatLsn(n))).toBe(n);
      }));
    expect(formatLsn(0x16b374d848n)).toBe("16/B374D848");
  });

  it("refuses what is not an LSN, naming it", () => {
    for (const bad of ["", "16", "16/", "/1", "G/1", "123456789/0", "1/2/3", "0x1/0"]) expect(() => parseLsn(bad)).toThrow(/not a PostgreSQL LSN/);
  });

  it("walGapBytes is pg_wal_lsn_diff(a, b), across the 4 GiB boundary and negative", () => {
    expect(walGapBytes("0/3000060", "0/3000000")).toBe(0x60);
    expect(walGapBytes("1/0", "0/FFFFFFFF")).toBe(1);
    expect(walGapBytes("16/B374D848", "16/B374D848")).toBe(0);
    expect(walGapBytes("0/100", "0/200")).toBe(-256);
    expect(walGapBytes("2/0", "0/0")).toBe(2 * 2 ** 32);
  });

  it("refuses a gap a number cannot hold exactly", () => {
    expect(() => walGapBytes("FFFFFFFF/FFFFFFFF", "0/0")).toThrow(/beyond/);
  });
});

describe("rtoPhases", () => {
  it("splits fault -> recovery into consecutive phases and a total", () => {
    const r = rtoPhases(
      [
        { name: "detection", atMs: 1800 },
        { name: "promotion", atMs: 3000 },
        { name: "reconnect", atMs: 3250 },
      ],
      1000,
    );
    expect(r.phases).toEqual([
      { name: "detection", startedAtMs: 1000, endedAtMs: 1800, durationMs: 800 },
      { name: "promotion", startedAtMs: 1800, endedAtMs: 3000, durationMs: 1200 },
      { name: "reconnect", startedAtMs: 3000, endedAtMs: 3250, durationMs: 250 },
    ]);
    expect(r.totalMs).toBe(2250);
    expect(r.totalSeconds).toBe(2.25);
  });

  it("the sum of the phases is the total", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e9 }), fc.array(fc.integer({ min: 0, max: 100_000 }), { maxLength: 8 }), (fault, gaps) => {
        let t = fault;
        const r = rtoPhases(
          gaps.map((g, i) => ({ name: `p${i}`, atMs: (t += g) })),
          fault,
        );
        expect(r.phases.reduce((s, p) => s + p.durationMs, 0)).toBe(r.totalMs);
      }),
    );
  });

  it("no marks: total 0", () => {
    expect(rtoPhases([], 5)).toEqual({ faultAtMs: 5, phases: [], totalMs: 0, totalSeconds: 0 });
  });

  it("refuses marks out of order or before the fault (a drill bug), naming them", () => {
    expect(() => rtoPhases([{ name: "detection", atMs: 900 }], 1000)).toThrow(/"detection".*before "fault"/);
    expect(() =>
      rtoPhases(
        [
          { name: "detection", atMs: 2000 },
          { name: "promotion", atMs: 1500 },
        ],
        1000,
      ),
    ).toThrow(/"promotion".*500 ms before "detection"/);
    expect(() => rtoPhases([{ name: "x", atMs: Number.NaN }], 0)).toThrow(/no time/);
  });
});

describe("formatDuration", () => {
  it.each([
    [0, "0 s"],
    [0.4, "0 ms"],
    [850, "850 ms"],
    [999.4, "999 ms"],
    [1000, "1 s"],
    [1230, "1.23 s"],
    [4199.999, "4.2 s"],
    [9996, "10 s"],
    [10_000, "10 s"],
    [14_200, "14.2 s"],
    [59_940, "59.9 s"],
    [59_960, "1 min"],
    [125_000, "2 min 05 s"],
    [3_600_000, "1 h"],
    [3_720_000, "1 h 02 min"],
    [-1500, "-1.5 s"],
    [Number.NaN, "n/a"],
    [Number.POSITIVE_INFINITY, "∞"],
  ])("%s ms -> %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("formatSeconds takes seconds", () => {
    expect(formatSeconds(14.2)).toBe("14.2 s");
    expect(formatSeconds(14.2 - 10)).toBe("4.2 s");
  });
});
