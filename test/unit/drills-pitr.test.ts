import { describe, expect, it } from "vitest";
import {
  archiveGaps,
  archiveGetFailures,
  archivedTimelineHistories,
  archiverFailing,
  assertArchiveContinuous,
  assertArchivingWorks,
  assertBackupExisted,
  assertBackupFresh,
  assertEstateVerified,
  assertRecoveryWindowKept,
  explainRecoveryFailure,
  missingWalSegments,
  parseArchiveListing,
  parseVerifyText,
  parseWalSegmentName,
  pgbackrestError,
  pgbackrestRestoreArgs,
  pgPromotedReadProbe,
  walSegmentName,
  walSegmentOfLsn,
  walSpan,
  type ArchiverState,
} from "../../drills/lib/pitr.ts";

const seg = (tli: number, n: number) => walSegmentName({ timeline: tli, segno: BigInt(n) });

describe("WAL segment names", () => {
  it("parses timeline and segment number (16 MiB: 256 segments per log id)", () => {
    expect(parseWalSegmentName("000000010000000000000005")).toEqual({ timeline: 1, segno: 5n });
    expect(parseWalSegmentName("000000020000000A000000FF")).toEqual({ timeline: 2, segno: BigInt(0xa * 256 + 0xff) });
    expect(walSegmentName({ timeline: 2, segno: BigInt(0xa * 256 + 0xff) })).toBe("000000020000000A000000FF");
    expect(walSegmentName({ timeline: 1, segno: 256n })).toBe("000000010000000100000000");
  });

  it("refuses what is not a segment name, or a segment part past the log id", () => {
    expect(() => parseWalSegmentName("00000001000000000000005")).toThrow(/not a WAL segment name/);
    expect(() => parseWalSegmentName("000000010000000000000100")).toThrow(/segment part/);
    // 1 GiB segments: four per log id
    expect(parseWalSegmentName("000000010000000100000003", 1024 ** 3)).toEqual({ timeline: 1, segno: 7n });
    expect(() => parseWalSegmentName("000000010000000000000004", 1024 ** 3)).toThrow(/segment part/);
  });

  it("names the segment holding an LSN (not pg_walfile_name's previous one on a boundary)", () => {
    expect(walSegmentOfLsn("0/13027200", 1)).toBe("000000010000000000000013");
    expect(walSegmentOfLsn("0/14000000", 1)).toBe("000000010000000000000014");
    expect(walSegmentOfLsn("1/00000028", 3)).toBe("000000030000000100000000");
  });
});

const listing = JSON.stringify({
  ".": { type: "path" },
  "17-1": { type: "path" },
  "17-1/0000000100000000": { type: "path" },
  "17-1/0000000100000000/000000010000000000000001-daa9b6b685c1d4e7bb2709be1818f570fff5d9f2.zst": { type: "file", size: 2320006, time: 1 },
  "17-1/0000000100000000/000000010000000000000002-f3754a009e17072fe7378431592854026c7b1b6e.zst": { type: "file", size: 696, time: 1 },
  "17-1/0000000100000000/000000010000000000000002.00000028.backup": { type: "file", size: 338, time: 1 },
  "17-1/0000000100000000/000000010000000000000004-a0ae08a032d2e258dac87334d62923c197753479.zst": { type: "file", size: 762, time: 1 },
  "17-1/0000000100000000/000000010000000000000005.partial-c9708aa0aae853999787512cf86eca195943501a.zst": { type: "file", size: 9, time: 1 },
  "17-1/00000002.history-0123456789abcdef0123456789abcdef01234567.zst": { type: "file", size: 9, time: 1 },
  "17-1/00000002.history": { type: "file", size: 9, time: 1 },
  "17-1/0000000200000000/000000020000000000000005-c9708aa0aae853999787512cf86eca195943501a": { type: "file", size: 9, time: 1 },
  "archive.info": { type: "file", size: 255, time: 1 },
});

describe("archive listing (pgbackrest repo-ls --recurse --output=json)", () => {
  it("keeps whole segments only, with their archive id; partial segments, backup labels and histories are not segments", () => {
    expect(parseArchiveListing(listing).map((s) => `${s.archiveId}:${s.segment}`)).toEqual([
      "17-1:000000010000000000000001",
      "17-1:000000010000000000000002",
      "17-1:000000010000000000000004",
      "17-1:000000020000000000000005",
    ]);
    expect(archivedTimelineHistories(listing)).toEqual([2]);
    expect(() => parseArchiveListing("P00 ERROR")).toThrow(/did not print JSON/);
  });
});

describe("archiveGaps", () => {
  const names = parseArchiveListing(listing).map((s) => s.segment);

  it("names the missing segments between two present ones", () => {
    expect(archiveGaps(names)).toEqual([{ after: seg(1, 2), before: seg(1, 4), missing: [seg(1, 3)], missingCount: 1 }]);
  });

  it("merges timelines: a new timeline continuing its parent's segments is no gap", () => {
    expect(archiveGaps([seg(1, 7), seg(1, 8), seg(2, 8), seg(2, 9), seg(3, 10)])).toEqual([]);
    expect(archiveGaps([seg(1, 7), seg(2, 10)])[0]).toMatchObject({ missing: [seg(1, 8), seg(1, 9)], missingCount: 2 });
  });

  it("checks from a start segment only, and reports a start that is itself missing", () => {
    expect(archiveGaps(names, seg(1, 4))).toEqual([]);
    expect(archiveGaps([seg(1, 5), seg(1, 6)], seg(1, 3))).toEqual([{ after: "(none before it)", before: seg(1, 5), missing: [seg(1, 3), seg(1, 4)], missingCount: 2 }]);
    expect(archiveGaps([], seg(1, 3))).toEqual([{ after: "(none before it)", before: "(none)", missing: [seg(1, 3)], missingCount: 1 }]);
  });

  it("lists the first ten of a long gap and counts all of them", () => {
    const [gap] = archiveGaps([seg(1, 1), seg(1, 300)]);
    expect(gap?.missing).toHaveLength(10);
    expect(gap?.missingCount).toBe(298);
    expect(gap?.missing[0]).toBe(seg(1, 2));
  });
});

describe("missingWalSegments", () => {
  it("is empty when every segment from..to is on to's timeline or an earlier one down to from's", () => {
    expect(missingWalSegments([seg(1, 4), seg(1, 5), seg(1, 6)], seg(1, 4), seg(1, 6))).toEqual({ missing: [], missingCount: 0 });
    expect(missingWalSegments([seg(1, 4), seg(1, 5), seg(2, 5), seg(2, 6)], seg(1, 4), seg(2, 6))).toEqual({ missing: [], missingCount: 0 });
  });

  it("names what is missing, on to's timeline; a later timeline's segment does not stand in", () => {
    expect(missingWalSegments([seg(2, 4), seg(2, 6), seg(3, 5)], seg(2, 4), seg(2, 6))).toEqual({ missing: [seg(2, 5)], missingCount: 1 });
    expect(missingWalSegments([seg(1, 4)], seg(1, 4), seg(1, 6))).toEqual({ missing: [seg(1, 5), seg(1, 6)], missingCount: 2 });
    expect(() => missingWalSegments([], seg(1, 6), seg(1, 4))).toThrow(/backwards/);
  });
});

describe("preflight checks", () => {
  const backup = { label: "20261121-051925F", type: "full", stopMs: Date.parse("2026-11-21T05:00:00Z"), archiveStart: seg(1, 4), archiveStop: seg(1, 5) };

  it("backup age: passes within the policy, fails naming 'newest backup older than policy' and by how much", () => {
    const now = Date.parse("2026-11-21T06:00:00Z");
    expect(assertBackupFresh(backup, 26 * 3600, now)).toMatchObject({ ok: true, measured: 3600, objective: 93600, unit: "s" });
    const old = assertBackupFresh(backup, 60, now);
    expect(old.ok).toBe(false);
    expect(old.detail).toMatch(/^newest backup older than policy: 20261121-051925F \(full\) finished 1 h ago, policy allows 1 min \(exceeded by 59 min\)/);
    expect(assertBackupFresh(null, 60, now)).toMatchObject({ ok: false, measured: "none" });
    expect(assertBackupFresh(null, 60, now).detail).toMatch(/no backup in the repository/);
  });

  it("archive continuity: names each missing segment and where", () => {
    const gaps = archiveGaps([seg(1, 4), seg(1, 6)], seg(1, 4));
    const c = assertArchiveContinuous(gaps, { fromSegment: seg(1, 4), newestArchived: seg(1, 6) });
    expect(c.ok).toBe(false);
    expect(c.detail).toBe(`WAL segment ${seg(1, 5)} missing from the repository (between ${seg(1, 4)} and ${seg(1, 6)}): a restore cannot replay past it (checked ${seg(1, 4)} .. ${seg(1, 6)})`);
    expect(c.measured).toBe(1);
    expect(assertArchiveContinuous([], { fromSegment: seg(1, 4), newestArchived: seg(1, 6) }).ok).toBe(true);
    expect(assertArchiveContinuous([], { fromSegment: null, newestArchived: seg(1, 6) }).ok).toBe(false);
  });

  const archiver = (over: Partial<ArchiverState> = {}): ArchiverState => ({
    archiveMode: "on",
    archiveCommand: "pgbackrest --stanza=main archive-push %p",
    archivedCount: 10,
    lastArchivedWal: seg(1, 9),
    lastArchivedTime: "2026-11-21T05:00:10+00:00",
    failedCount: 0,
    lastFailedWal: null,
    lastFailedTime: null,
    ...over,
  });

  it("archiving: a failed pgbackrest check fails naming archive_command and pgBackRest's error", () => {
    const out = [
      "2026-11-21 05:07:34.761 P00   INFO: check repo1 (standby)",
      "2026-11-21 05:07:34.767 P00  ERROR: [068]: archive_command 'false' must contain pgbackrest",
      "2026-11-21 05:07:34.767 P00   INFO: check command end: aborted with exception [068]",
    ].join("\n");
    const c = assertArchivingWorks({ code: 68, output: out }, archiver({ archiveCommand: "false" }));
    expect(c.ok).toBe(false);
    expect(c.detail).toMatch(/^archive_command failing: pgbackrest check failed \(exit 68\): ERROR: \[068\]: archive_command 'false' must contain pgbackrest; archive_mode=on, archive_command='false'/);
  });

  it("archiving: fails when the archiver's last attempt failed after its last success, even if check passed", () => {
    const failing = archiver({ failedCount: 3, lastFailedWal: seg(1, 10), lastFailedTime: "2026-11-21T05:00:20+00:00" });
    expect(archiverFailing(failing)).toBe(true);
    expect(archiverFailing(archiver({ failedCount: 3, lastFailedWal: seg(1, 7), lastFailedTime: "2026-11-21T05:00:01+00:00" }))).toBe(false);
    expect(archiverFailing(archiver({ lastArchivedTime: null, lastFailedTime: "2026-11-21T05:00:01+00:00" }))).toBe(true);
    const c = assertArchivingWorks({ code: 0, output: "" }, failing);
    expect(c.ok).toBe(false);
    expect(c.detail).toMatch(/^archive_command failing: the archiver's last attempt failed \(00000001000000000000000A at 2026-11-21T05:00:20\+00:00\) after its last success/);
    expect(assertArchivingWorks({ code: 0, output: "" }, archiver()).ok).toBe(true);
    expect(assertArchivingWorks({ code: 0, output: "" }, archiver({ archiveMode: "off" })).detail).toMatch(/archive_mode is off/);
  });

  it("pgbackrestError: the ERROR line with its continuation, without the hints", () => {
    const out = [
      "2026-11-21 05:08:18.913 P00  ERROR: [082]: WAL segment 000000010000000000000008 was not archived before the 20000ms timeout",
      "                                    HINT: check the archive_command to ensure that all options are correct (especially --stanza).",
    ].join("\n");
    expect(pgbackrestError(out)).toBe("ERROR: [082]: WAL segment 000000010000000000000008 was not archived before the 20000ms timeout");
    expect(pgbackrestError("a\nlast line\n")).toBe("last line");
  });
});

describe("restore", () => {
  it("pitr: to the target time, promoting there; both variants never archive into the stanza", () => {
    expect(pgbackrestRestoreArgs({ stanza: "main", variant: "pitr", targetTime: "2026-11-21 05:19:29.306987+00", set: "20261121-051925F" })).toEqual([
      "pgbackrest", "--stanza=main", "restore", "--set=20261121-051925F", "--type=time", "--target=2026-11-21 05:19:29.306987+00", "--target-action=promote", "--archive-mode=off",
    ]);
    expect(pgbackrestRestoreArgs({ stanza: "main", variant: "latest" })).toEqual(["pgbackrest", "--stanza=main", "restore", "--type=default", "--archive-mode=off"]);
    expect(() => pgbackrestRestoreArgs({ stanza: "main", variant: "pitr" })).toThrow(/target time/);
  });

  it("explains a recovery that stopped short: the FATAL line and the segment archive-get could not find", () => {
    const log = [
      "2026-11-21 05:12:20.168 P00   INFO: archive-get command begin 2.55.1: [000000010000000000000013, pg_wal/RECOVERYXLOG]",
      "2026-11-21 05:12:20.170 P00   INFO: unable to find 000000010000000000000013 in the archive",
      "2026-11-21 05:12:20.171 GMT [189] FATAL:  recovery ended before configured recovery target was reached",
      "2026-11-21 05:12:20.172 GMT [181] LOG:  startup process (PID 189) exited with exit code 1",
    ].join("\n");
    expect(explainRecoveryFailure(log)).toBe("recovery ended before configured recovery target was reached; archive-get could not find WAL segment 000000010000000000000013 in the repository");
    expect(explainRecoveryFailure("2026 P00 INFO: unable to find 00000002.history in the archive\nLOG: database system is ready")).toBeUndefined();
  });
});

describe("pgPromotedReadProbe", () => {
  it("fails while the restored node has no address yet, and on a refused connection", async () => {
    await expect(pgPromotedReadProbe(() => undefined)()).rejects.toThrow(/not reachable yet/);
    await expect(pgPromotedReadProbe(() => ({ host: "127.0.0.1", port: 1, user: "x", password: "x", database: "x" }))()).rejects.toThrow(/ECONNREFUSED/);
  });
});

// Printed by pgBackRest 2.55.1 `verify --output=text --verbose` on the e2e tier: healthy, then with 2 bytes
// of the newest backup's bundle overwritten and a file of the older backup deleted.
/** A verify report in pgBackRest 2.55.1's exact layout: one archive id, then each backup with its counts. */
function verifyReport(status: string, backups: { label: string; status: string; valid: number; missing?: number; checksum?: number }[]): string {
  const damage = (missing = 0, checksum = 0) => `    missing: ${missing}, checksum invalid: ${checksum}, size invalid: 0, other: 0`;
  return [
    "stanza: main",
    `status: ${status}`,
    "  archiveId: 17-1, total WAL checked: 4, total valid WAL: 4",
    damage(),
    ...backups.flatMap((b) => [`  backup: ${b.label}, status: ${b.status}, total files checked: 1264, total valid files: ${b.valid}`, damage(b.missing, b.checksum)]),
    "",
  ].join("\n");
}
const VERIFY_OK = verifyReport("ok", [
  { label: "20261202-055115F", status: "valid", valid: 1264 },
  { label: "20261202-055118F", status: "valid", valid: 1264 },
]);
const VERIFY_DAMAGED = verifyReport("error", [
  { label: "20261202-055115F", status: "invalid", valid: 1263, missing: 1 },
  { label: "20261202-055118F", status: "invalid", valid: 1262, checksum: 2 },
]);

describe("pgbackrest verify over the whole estate", () => {
  it("parses every archive id and backup with its counts, once even when a log line repeats the report", () => {
    const logged = `2026-12-02 05:51:20.293 P00   INFO: stanza: main\n${VERIFY_DAMAGED.split("\n").slice(1).map((l) => `                                    ${l}`).join("\n")}\n${VERIFY_DAMAGED}`;
    for (const text of [VERIFY_DAMAGED, logged]) {
      const r = parseVerifyText(text);
      expect(r.status).toBe("error");
      expect(r.items.map((i) => `${i.kind} ${i.name} ${i.status} ${i.checked}/${i.valid} m${i.missing} c${i.checksumInvalid}`)).toEqual([
        "archive 17-1 null 4/4 m0 c0",
        "backup 20261202-055115F invalid 1264/1263 m1 c0",
        "backup 20261202-055118F invalid 1264/1262 m0 c2",
      ]);
    }
  });

  it("passes a healthy estate and names every damaged backup with its bad file count and kind", () => {
    const ok = assertEstateVerified(parseVerifyText(VERIFY_OK), { code: 0, output: VERIFY_OK });
    expect(ok).toMatchObject({ ok: true, detail: "2 backups (20261202-055115F, 20261202-055118F) and 4 archived WAL files valid", measured: 0 });
    const bad = assertEstateVerified(parseVerifyText(VERIFY_DAMAGED), { code: 0, output: VERIFY_DAMAGED });
    expect(bad.ok).toBe(false);
    expect(bad.detail).toBe("pgbackrest verify found damage: backup 20261202-055115F invalid: 1 of 1264 files bad (missing: 1); backup 20261202-055118F invalid: 2 of 1264 files bad (checksum invalid: 2)");
    expect(bad.measured).toBe(3);
  });

  it("fails when verify itself fails, lists no backup, or reports an error status with clean counts", () => {
    expect(assertEstateVerified({ status: null, items: [] }, { code: 1, output: "ERROR: [055]: unable to load info file" }).detail).toMatch(/^pgbackrest verify failed \(exit 1\): /);
    expect(assertEstateVerified({ status: "ok", items: [] }, { code: 0, output: "" }).detail).toMatch(/listed no backup/);
    const clean = parseVerifyText(VERIFY_OK.replace("status: ok", "status: error"));
    expect(assertEstateVerified(clean, { code: 0, output: "" })).toMatchObject({ ok: false, detail: "pgbackrest verify says status error" });
  });
});

describe("recovery window kept", () => {
  it("passes when every backup from before is still there (a drill's own backup, expired again, does not count)", () => {
    const c = assertRecoveryWindowKept(["20261201-030000F", "20261202-030000F"], ["20261202-030000F", "20261201-030000F"]);
    expect(c).toMatchObject({ ok: true, measured: 0 });
    expect(c.detail).toContain("oldest restore point 20261201-030000F unchanged");
  });

  it("fails naming every backup the drill made disappear and the oldest restore point before and after", () => {
    const c = assertRecoveryWindowKept(["20261201-030000F", "20261202-030000F"], ["20261202-030000F", "20261202-101500F"]);
    expect(c).toMatchObject({ ok: false, measured: 1 });
    expect(c.detail).toBe("the drill shrank the recovery window: backup 20261201-030000F gone (oldest restore point was 20261201-030000F, now 20261202-030000F)");
  });
});

describe("a backup existed before the drill", () => {
  const newest = { label: "20261201-030000F", type: "full", stopMs: Date.parse("2026-12-01T03:00:40Z"), archiveStart: "000000010000000000000004", archiveStop: "000000010000000000000004" };
  it("passes naming the newest existing backup and its age", () => {
    const c = assertBackupExisted(newest, Date.parse("2026-12-01T05:00:40Z"));
    expect(c).toMatchObject({ ok: true, measured: 1 });
    expect(c.detail).toBe("newest backup 20261201-030000F (full) finished 2 h before the drill");
  });
  it("fails when the repository held none, naming the backup the drill took instead", () => {
    const c = assertBackupExisted(null, Date.now(), { freshLabel: "20261202-070000F" });
    expect(c).toMatchObject({ ok: false, measured: 0, objective: 1 });
    expect(c.detail).toMatch(/^the repository held no backup before the drill: a disaster would have had nothing to restore \(the drill took 20261202-070000F to rehearse the restore\)/);
  });
});

describe("walSpan", () => {
  it("counts segments and bytes from the backup's start to the target, across a timeline switch", () => {
    const span = walSpan({ segment: "000000010000000000000004", lsn: "0/4000028" }, { segment: "000000020000000100000002", lsn: "1/2000100" });
    expect(span.segments).toBe(0x102 - 0x4 + 1);
    expect(span.bytes).toBe(0x102000100 - 0x4000028);
  });
  it("refuses a span that runs backwards", () => {
    expect(() => walSpan({ segment: "000000010000000000000009", lsn: "0/9000000" }, { segment: "000000010000000000000004", lsn: "0/4000000" })).toThrow(/runs backwards/);
  });
});

describe("recovery window kept, from an empty repository", () => {
  it("passes when there was no backup before (the drill's own, the only one, is kept)", () => {
    expect(assertRecoveryWindowKept([], ["20261202-070000F"]).ok).toBe(true);
  });
});

describe("archiveGetFailures (a restored node's log)", () => {
  // From a real restore across timelines with pgBackRest 2.55's async archive-get (pgbackrest#2423).
  const log = [
    "2026-12-02 07:16:40.330 P00   INFO: archive-get command begin 2.55.1: [00000002000000000000000B, pg_wal/RECOVERYXLOG] --archive-async --exec-id=239-1",
    "2026-12-02 07:16:40.356 P00   INFO: found 00000002000000000000000B in the archive asynchronously",
    "2026-12-02 07:16:40.363 P00   INFO: archive-get command end: completed successfully (36ms)",
    "2026-12-02 07:16:40.388 P00   INFO: archive-get command begin 2.55.1: [00000003000000000000000C, pg_wal/RECOVERYXLOG] --archive-async --exec-id=241-38d4455d",
    "2026-12-02 07:17:40.420 P00  ERROR: [082]: unable to get WAL file '00000003000000000000000C' from the archive asynchronously after 60 second(s)",
    "2026-12-02 07:17:40.420 P00   INFO: archive-get command end: aborted with exception [082]",
    "2026-12-02 07:17:40.436 P00   INFO: archive-get command begin 2.55.1: [00000002000000000000000C, pg_wal/RECOVERYXLOG] --archive-async --exec-id=1290-2",
    "2026-12-02 07:17:40.555 P00   INFO: unable to find 00000002000000000000000C in the archive",
    "2026-12-02 07:17:40.555 P00   INFO: archive-get command end: completed successfully (125ms)",
    "2026-12-02 07:17:40.570 P00   INFO: archive-get command begin 2.55.1: [00000003000000000000000C, pg_wal/RECOVERYXLOG] --archive-async --exec-id=1293-6902a734",
    "2026-12-02 07:17:40.897 P00   INFO: found 00000003000000000000000C in the archive asynchronously",
    "2026-12-02 07:17:40.898 P00   INFO: archive-get command end: completed successfully (331ms)",
  ].join("\n");
  it("names the call that errored, not the ones that found the file or found nothing", () => {
    expect(archiveGetFailures(log)).toEqual([{ file: "00000003000000000000000C", error: "[082]: unable to get WAL file '00000003000000000000000C' from the archive asynchronously after 60 second(s)" }]);
  });
  it("is empty for a clean recovery", () => {
    expect(archiveGetFailures(log.split("\n").slice(0, 3).join("\n"))).toEqual([]);
  });
});
