// The wraparound drill's pure parts (drills/wraparound.mts): PostgreSQL's XID limit arithmetic (varsup.c
// SetTransactionIdLimit, transam.c TransactionIdPrecedes) and where the drill moves the next XID, the pg_xact
// segment it needs, and what it reads from pg_controldata, warnings and the server log. The drill on a real
// tier, with its twin, is test/e2e/drill-wraparound.test.ts.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  WARN_AGE,
  XACT_SEGMENT_XIDS,
  XIDS_BEFORE_WRAP,
  XID_HALF,
  XID_SPACE,
  autovacuumWraparoundTables,
  copySettingArgs,
  oldestHolder,
  parseControlData,
  parseWraparoundWarnings,
  planXidAdvance,
  subtransZeroBytes,
  xactSegmentName,
  xidAdd,
  xidLimits,
  xidPrecedes,
  xidSub,
} from "../../drills/wraparound.mts";

const normalXid = fc.integer({ min: 3, max: XID_SPACE - 1 });

describe("XID arithmetic as PostgreSQL does it", () => {
  it("limits of a fresh cluster (oldest datfrozenxid 731, as the e2e tier's): the warning said 25,000,000 at 2,122,484,378", () => {
    expect(xidLimits(731)).toEqual({ oldestXid: 731, wrapLimit: 2_147_484_378, stopLimit: 2_144_484_378, warnLimit: 2_107_484_378 });
    expect(WARN_AGE).toBe(2_107_483_647);
  });

  it("modulo 2^32, skipping the special XIDs 0, 1, 2 in both directions", () => {
    expect(xidAdd(XID_SPACE - 1, 1)).toBe(3); // 0 -> past the special ones
    expect(xidAdd(XID_SPACE - 1, 3)).toBe(5); // 2 -> 5, as varsup.c adds FirstNormalTransactionId
    expect(xidAdd(XID_SPACE - 1, 4)).toBe(3);
    // On a special XID varsup.c subtracts FirstNormalTransactionId once more: 2 -> 2^32 - 1, 0 -> 2^32 - 3.
    expect(xidSub(3, 1)).toBe(XID_SPACE - 1);
    expect(xidSub(3, 3)).toBe(XID_SPACE - 3);
    expect(xidSub(3, 4)).toBe(XID_SPACE - 1); // not special: plain modulo
    expect(xidSub(4, 3)).toBe(XID_SPACE - 2); // 1 -> 2^32 - 2
    expect(xidSub(10, 5)).toBe(5);
  });

  it("a wrap limit on a special XID moves past them; a stop limit on one moves below them", () => {
    // oldest + 2^31 - 1 = 2^32 exactly -> 0 -> 3
    expect(xidLimits(2 ** 31 + 1).wrapLimit).toBe(3);
    // wrap 3,000,001 -> stop 1 -> 2^32 - 2
    const oldest = 3_000_001 - XID_HALF + XID_SPACE;
    expect(xidLimits(oldest).wrapLimit).toBe(3_000_001);
    expect(xidLimits(oldest).stopLimit).toBe(XID_SPACE - 2);
  });

  it("TransactionIdPrecedes: modulo-2^31 for normal XIDs, plain order with a special one", () => {
    expect(xidPrecedes(5, 10)).toBe(true);
    expect(xidPrecedes(10, 5)).toBe(false);
    expect(xidPrecedes(XID_SPACE - 10, 5)).toBe(true); // 5 is after the wrap
    expect(xidPrecedes(5, XID_SPACE - 10)).toBe(false);
    expect(xidPrecedes(7, 7)).toBe(false);
    expect(xidPrecedes(2, 3)).toBe(true);
    expect(xidPrecedes(3, 2)).toBe(false);
    expect(xidPrecedes(2, XID_SPACE - 1)).toBe(true);
  });

  it("property: every normal XID precedes the one 2^31 - 1 after it and follows the one 2^31 - 1 before it", () => {
    fc.assert(
      fc.property(normalXid, fc.integer({ min: 1, max: XID_HALF }), (x, d) => {
        const y = xidAdd(x, d);
        return xidPrecedes(x, y) && !xidPrecedes(y, x);
      }),
    );
  });
});

describe("planXidAdvance", () => {
  it("the e2e tier's advance: 753 -> 2,122,484,378 in segment 07E8, 25,000,000 before the wrap limit", () => {
    expect(planXidAdvance({ nextXid: 753, epoch: 0, oldestXid: 731 })).toEqual({
      oldestXid: 731,
      wrapLimit: 2_147_484_378,
      stopLimit: 2_144_484_378,
      warnLimit: 2_107_484_378,
      nextXid: 753,
      epoch: 0,
      targetXid: 2_122_484_378,
      targetEpoch: 0,
      advancedBy: 2_122_483_625,
      warningRemaining: 25_000_000,
      ageAfter: 2_122_483_647,
      xactSegment: "07E8",
    });
  });

  it("past 2^32: the epoch goes up by one and the special XIDs are not counted as advanced", () => {
    const p = planXidAdvance({ nextXid: 3_100_000_000, epoch: 5, oldestXid: 3_000_000_000 });
    expect(p.wrapLimit).toBe(852_516_351);
    expect(p.targetXid).toBe(827_516_351);
    expect(p.targetEpoch).toBe(6);
    expect(p.advancedBy).toBe(XID_SPACE - 3_100_000_000 + 827_516_351 - 3);
    expect(p.xactSegment).toBe("0315");
    expect(p.ageAfter).toBe(XID_HALF - XIDS_BEFORE_WRAP);
  });

  it("a target that would land on a special XID moves below them (2^32 - 2), and the warning counts 3 more", () => {
    const oldest = XIDS_BEFORE_WRAP + 1 - XID_HALF + XID_SPACE; // wrap limit 25,000,001
    const p = planXidAdvance({ nextXid: oldest + 10, epoch: 0, oldestXid: oldest });
    expect(p.wrapLimit).toBe(XIDS_BEFORE_WRAP + 1);
    expect(p.targetXid).toBe(XID_SPACE - 2);
    expect(p.targetEpoch).toBe(0);
    expect(p.warningRemaining).toBe(XIDS_BEFORE_WRAP + 3);
  });

  it("refuses a cluster already past its warning limit, margins outside (3M, 40M], and special XIDs", () => {
    const { warnLimit } = xidLimits(731);
    expect(() => planXidAdvance({ nextXid: warnLimit, epoch: 0, oldestXid: 731 })).toThrow(/already past its wraparound warning limit/);
    expect(() => planXidAdvance({ nextXid: warnLimit - 1, epoch: 0, oldestXid: 731 })).not.toThrow();
    expect(() => planXidAdvance({ nextXid: 753, epoch: 0, oldestXid: 731 }, 3_000_000)).toThrow(RangeError);
    expect(() => planXidAdvance({ nextXid: 753, epoch: 0, oldestXid: 731 }, 40_000_001)).toThrow(RangeError);
    expect(planXidAdvance({ nextXid: 753, epoch: 0, oldestXid: 731 }, 40_000_000).warningRemaining).toBe(40_000_000);
    expect(() => planXidAdvance({ nextXid: 2, epoch: 0, oldestXid: 731 })).toThrow(RangeError);
    expect(() => planXidAdvance({ nextXid: 753, epoch: 0, oldestXid: 1 })).toThrow(RangeError);
  });

  it("property: from any cluster short of its warning limit, the target is a normal XID past the warning and short of the stop limit", () => {
    fc.assert(
      fc.property(normalXid, fc.integer({ min: 0, max: WARN_AGE - 1 }), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 3_000_001, max: 40_000_000 }), (oldestXid, age, epoch, margin) => {
        const nextXid = xidAdd(oldestXid, age);
        const p = planXidAdvance({ nextXid, epoch, oldestXid }, margin);
        const wrapped = p.targetXid < nextXid;
        expect(p.targetXid).toBeGreaterThanOrEqual(3);
        expect(p.targetXid).toBeLessThan(XID_SPACE);
        expect(xidPrecedes(nextXid, p.targetXid)).toBe(true);
        expect(xidPrecedes(p.targetXid, p.warnLimit)).toBe(false); // past the warning: every XID warns
        expect(xidPrecedes(p.targetXid, p.stopLimit)).toBe(true); // short of the stop: XIDs still assigned
        expect(p.targetEpoch).toBe(epoch + (wrapped ? 1 : 0));
        // Normal XIDs between: the counter from nextXid, past the special ones when it wraps, lands on the target.
        expect((nextXid + p.advancedBy + (wrapped ? 3 : 0)) % XID_SPACE).toBe(p.targetXid);
        expect([margin, margin + 3]).toContain(p.warningRemaining);
        expect(p.xactSegment).toBe(xactSegmentName(p.targetXid));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("pg_xact and pg_subtrans sizes", () => {
  it("segment names: 1,048,576 transactions a segment, 4 hex digits", () => {
    expect(XACT_SEGMENT_XIDS).toBe(4 * 8192 * 32);
    expect(xactSegmentName(0)).toBe("0000");
    expect(xactSegmentName(1_048_575)).toBe("0000");
    expect(xactSegmentName(1_048_576)).toBe("0001");
    expect(xactSegmentName(0x1200000)).toBe("0012"); // the pg_resetwal docs' example: -x 0x1200000
    expect(xactSegmentName(2_122_484_378)).toBe("07E8");
    expect(xactSegmentName(XID_SPACE - 1)).toBe("0FFF");
  });

  it("pg_subtrans a start zeroes from a prepared transaction to the next XID: 8 KiB per 2048 XIDs (the twin's ~7.9 GiB)", () => {
    expect(subtransZeroBytes(0)).toBe(0);
    expect(subtransZeroBytes(1)).toBe(8192);
    expect(subtransZeroBytes(2048)).toBe(8192);
    expect(subtransZeroBytes(2049)).toBe(16_384);
    expect(subtransZeroBytes(2_122_483_623) / 1024 ** 3).toBeCloseTo(7.91, 2);
  });
});

describe("what the drill reads", () => {
  const controldata = `pg_control version number:            1700
Catalog version number:               202406281
Database system identifier:           7445678901234567890
Database cluster state:               shut down
pg_control last modified:             Fri 04 Dec 2026 03:28:47 AM UTC
Latest checkpoint location:           0/50002D0
Latest checkpoint's REDO location:    0/50002D0
Latest checkpoint's REDO WAL file:    000000020000000000000005
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   2
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:754
Latest checkpoint's NextOID:          24576
Latest checkpoint's NextMultiXactId:  1
Latest checkpoint's NextMultiOffset:  0
Latest checkpoint's oldestXID:        731
Latest checkpoint's oldestXID's DB:   1
Latest checkpoint's oldestActiveXID:  0
Latest checkpoint's oldestMultiXid:   1
`;

  it("pg_controldata: state, next XID with its epoch, oldest XID and its database, timeline", () => {
    expect(parseControlData(controldata)).toEqual({ state: "shut down", epoch: 0, nextXid: 754, oldestXid: 731, oldestXidDatabase: 1, timeline: 2 });
    expect(parseControlData(controldata.replace("0:754", "7:4294967295")).epoch).toBe(7);
    expect(() => parseControlData(controldata.replace(/^Latest checkpoint's oldestXID: .*$/m, ""))).toThrow(/no "Latest checkpoint's oldestXID"/);
    expect(() => parseControlData(controldata.replace("0:754", "754"))).toThrow(/expected <epoch>:<xid>/);
  });

  it("wraparound warnings: by name from a backend, by OID from the start-up process", () => {
    const text = `2026-12-04 03:31:17.332 GMT [4457] WARNING:  database with OID 1 must be vacuumed within 25000000 transactions
2026-12-04 03:31:17.332 GMT [4457] HINT:  To avoid XID assignment failures, execute a database-wide VACUUM in that database.
WARNING:  database "template1" must be vacuumed within 24999999 transactions
HINT:  To avoid transaction ID assignment failures, execute a database-wide VACUUM in that database.
WARNING:  cutoff for removing and freezing tuples is far in the past`;
    expect(parseWraparoundWarnings(text)).toEqual([
      { text: "database with OID 1 must be vacuumed within 25000000 transactions", databaseOid: 1, remaining: 25_000_000 },
      { text: 'database "template1" must be vacuumed within 24999999 transactions', database: "template1", remaining: 24_999_999 },
    ]);
    expect(parseWraparoundWarnings("WARNING:  cutoff for removing and freezing tuples is far in the past")).toEqual([]);
  });

  it("autovacuum's anti-wraparound runs per database, from log_autovacuum_min_duration=0 lines", () => {
    const log = `2026-12-04 03:42:52.465 GMT [1816] LOG:  automatic aggressive vacuum to prevent wraparound of table "postgres.pg_catalog.pg_statistic": index scans: 0
2026-12-04 03:42:52.466 GMT [1816] LOG:  automatic aggressive vacuum to prevent wraparound of table "postgres.pg_catalog.pg_type": index scans: 0
2026-12-04 03:42:52.554 GMT [2547] LOG:  automatic aggressive vacuum to prevent wraparound of table "app.pg_toast.pg_toast_3596": index scans: 0
2026-12-04 03:42:53.000 GMT [2547] LOG:  automatic vacuum of table "app.public.t": index scans: 0`;
    expect(autovacuumWraparoundTables(log)).toEqual({ postgres: 2, app: 1 });
    expect(autovacuumWraparoundTables("")).toEqual({});
  });

  it("the copy's settings: no TCP listener, no archiving, no standby, no TLS; anything but a plain word refused", () => {
    const args = copySettingArgs({ max_prepared_transactions: "2" });
    expect(args.filter((a) => a !== "-c")).toEqual(expect.arrayContaining(["listen_addresses=", "archive_mode=off", "primary_conninfo=", "synchronous_standby_names=", "ssl=off", "max_prepared_transactions=2"]));
    expect(args.filter((_, i) => i % 2 === 0).every((a) => a === "-c")).toBe(true);
    expect(copySettingArgs({ archive_mode: "on" })).toContain("archive_mode=on"); // extra wins (never used so)
    expect(() => copySettingArgs({ archive_command: "rm -rf /" })).toThrow(/not a plain word/);
    expect(() => copySettingArgs({ "x;y": "1" })).toThrow(/not a plain word/);
  });

  it("the oldest holder across prepared transactions, sessions and slots, with what ends it", () => {
    const none = { prepared: [], sessions: [], slots: [] };
    expect(oldestHolder(none)).toBeUndefined();
    const h = {
      prepared: [{ gid: "homelab-drill-forgotten", age: 2_122_483_628, prepared: "2026-12-04T03:40:20Z", owner: "postgres", database: "app" }],
      sessions: [{ pid: 42, usename: "app", application_name: "report", state: "idle in transaction", xmin_age: 10, xid_age: null, xact_start: "2026-12-04T03:40:00Z" }],
      slots: [{ slot: "pg_2", active: false, xmin_age: 500, catalog_xmin_age: null }],
    };
    expect(oldestHolder(h)).toMatchObject({ kind: "prepared", name: "prepared transaction 'homelab-drill-forgotten'", age: 2_122_483_628, fix: "COMMIT PREPARED or ROLLBACK PREPARED it" });
    expect(oldestHolder({ ...h, prepared: [] })).toMatchObject({ kind: "slot", name: "replication slot pg_2", age: 500 });
    expect(oldestHolder({ ...h, prepared: [], slots: [] })).toMatchObject({ kind: "session", name: "session pid 42", age: 10 });
  });
});
