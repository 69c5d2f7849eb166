// drills/lib/archive.ts: `pgbackrest --output=json info` parsing and WAL segment order.
import { describe, expect, it } from "vitest";
import { compareWalSegments, isWalSegment, parsePgbackrestInfo, walSegmentEndLsn, walTimeline } from "../../drills/lib/archive.ts";

// Shape of pgBackRest 2.55's JSON info (trimmed to what the parser reads, plus fields it must ignore).
const INFO = JSON.stringify([
  {
    name: "main",
    status: { code: 0, message: "ok", lock: { backup: { held: false } } },
    cipher: "none",
    db: [{ id: 1, "system-id": 7400000000, version: "17" }],
    archive: [
      { database: { id: 1, "repo-key": 1 }, id: "17-1", max: "000000010000000000000009", min: "000000010000000000000001" },
      { database: { id: 1, "repo-key": 1 }, id: "17-1", max: "00000002000000000000000B", min: "00000002000000000000000A" },
    ],
    backup: [
      { label: "20250101-030000F", type: "full", timestamp: { start: 1735700000, stop: 1735700060 }, archive: { start: "000000010000000000000003", stop: "000000010000000000000003" } },
      { label: "20250101-030000F_20250102-030000I", type: "incr", timestamp: { start: 1735786400, stop: 1735786430 }, archive: { start: "000000010000000000000007", stop: "000000010000000000000007" } },
    ],
  },
]);

describe("parsePgbackrestInfo", () => {
  it("finds the newest backup by stop time and the newest archived segment over every archive entry", () => {
    const s = parsePgbackrestInfo(INFO, "main");
    expect(s.statusCode).toBe(0);
    expect(s.backups).toHaveLength(2);
    expect(s.newestBackup).toEqual({ label: "20250101-030000F_20250102-030000I", type: "incr", stopMs: 1735786430_000, archiveStart: "000000010000000000000007", archiveStop: "000000010000000000000007" });
    expect(s.newestArchivedWal).toBe("00000002000000000000000B");
  });

  it("reports a stanza that is not there, one without backups, and output that is not JSON", () => {
    expect(parsePgbackrestInfo(INFO, "other")).toMatchObject({ statusCode: 1, newestBackup: null, newestArchivedWal: null });
    expect(parsePgbackrestInfo(JSON.stringify([{ name: "main", status: { code: 2, message: "no valid backups" }, archive: [], backup: [] }]), "main")).toMatchObject({ statusCode: 2, statusMessage: "no valid backups", newestBackup: null });
    expect(() => parsePgbackrestInfo("ERROR: [056]: unable to find primary cluster", "main")).toThrow(/did not print JSON/);
  });
});

describe("WAL segments", () => {
  it("orders by timeline, then position; reads the timeline", () => {
    expect(compareWalSegments("000000010000000000000009", "00000001000000000000000A")).toBe(-1);
    expect(compareWalSegments("000000020000000000000001", "0000000100000000000000FF")).toBe(1);
    expect(compareWalSegments("000000010000000000000009", "000000010000000000000009")).toBe(0);
    expect(walTimeline("0000000A0000000000000001")).toBe(10);
    expect(isWalSegment("00000001000000000000000a")).toBe(false);
    expect(() => compareWalSegments("x", "000000010000000000000009")).toThrow(RangeError);
  });
});

describe("walSegmentEndLsn", () => {
  it("is where the next segment starts (pg_walfile_name of it names the next segment)", () => {
    expect(walSegmentEndLsn("000000010000000000000009")).toBe("0/A000000");
    expect(walSegmentEndLsn("0000000200000001000000FF")).toBe("2/0");
    expect(walSegmentEndLsn("00000001000000000000003F", 64 * 1024 ** 2)).toBe("1/0");
    expect(() => walSegmentEndLsn("000000010000000000000003", 1000)).toThrow(RangeError);
  });
});
