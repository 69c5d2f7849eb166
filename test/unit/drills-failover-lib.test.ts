// drills/lib pieces the failover drill added: the failure detector's rule, single-user mode output, the
// timeline history.
import { describe, expect, it } from "vitest";
import { parseTimelineHistory } from "../../drills/lib/measure.ts";
import { parseSingleUserOutput, queryStoppedCluster, type ExecOptions, type NodeControl } from "../../drills/lib/nodes.ts";
import { consecutiveFailuresAfter, type ProbeAttempt } from "../../drills/lib/probe.ts";

const ok = (startedAtMs: number, endedAtMs = startedAtMs + 5): ProbeAttempt => ({ startedAtMs, endedAtMs, ok: true });
const ko = (startedAtMs: number, endedAtMs = startedAtMs + 5): ProbeAttempt => ({ startedAtMs, endedAtMs, ok: false, error: "ECONNREFUSED" });

describe("consecutiveFailuresAfter", () => {
  it("declares down when N attempts in a row failed, at the moment the last of them was known", () => {
    const attempts = [ok(0), ok(100), ko(200), ko(300), ko(400), ko(500)];
    expect(consecutiveFailuresAfter(attempts, 150, 3)).toBe(405);
    expect(consecutiveFailuresAfter(attempts, 150, 1)).toBe(205);
    expect(consecutiveFailuresAfter(attempts, 150, 5)).toBeUndefined();
  });

  it("a success in between restarts the count; attempts before the instant never count", () => {
    expect(consecutiveFailuresAfter([ko(100), ko(200), ok(300), ko(400), ko(500), ko(600)], 0, 3)).toBe(605);
    expect(consecutiveFailuresAfter([ko(100), ko(200), ko(300), ok(400)], 150, 3)).toBeUndefined();
  });

  it("orders by start time and takes the latest end among the run (overlapping attempts)", () => {
    // A hung attempt started at 200 fails (times out) only at 1200, after the ones started later.
    const attempts = [ko(300, 310), ko(400, 405), ko(200, 1200)];
    expect(consecutiveFailuresAfter(attempts, 0, 3)).toBe(1200);
    expect(consecutiveFailuresAfter(attempts, 0, 2)).toBe(1200);
    expect(consecutiveFailuresAfter(attempts, 250, 2)).toBe(405);
  });

  it("refuses a count below 1", () => {
    expect(() => consecutiveFailuresAfter([], 0, 0)).toThrow(/consecutive must be/);
  });
});

// What `postgres --single` printed for a 4-column query over 3 rows (PostgreSQL 17.12, the stack's image).
const SINGLE_USER = [
  "",
  "PostgreSQL stand-alone backend 17.12 (Debian 17.12-0+deb13u1)",
  "backend> \t 1: a\t(typeid = 23, len = 4, typmod = -1, byval = t)",
  "\t 2: b\t(typeid = 23, len = 4, typmod = -1, byval = t)",
  '\t 3: c\t(typeid = 25, len = -1, typmod = -1, byval = f)',
  "\t 4: d\t(typeid = 23, len = 4, typmod = -1, byval = t)",
  "\t----",
  '\t 1: a = "1"\t(typeid = 23, len = 4, typmod = -1, byval = t)',
  '\t 2: b = "1"\t(typeid = 23, len = 4, typmod = -1, byval = t)',
  '\t 3: c = "x "y""\t(typeid = 25, len = -1, typmod = -1, byval = f)',
  "\t----",
  '\t 1: a = "2"\t(typeid = 23, len = 4, typmod = -1, byval = t)',
  '\t 3: c = "x "y""\t(typeid = 25, len = -1, typmod = -1, byval = f)',
  "\t----",
  "backend> ",
].join("\n");

describe("single-user mode", () => {
  it("parses rows by column name; a NULL column (no line printed) is null", () => {
    expect(parseSingleUserOutput(SINGLE_USER)).toEqual([
      { a: "1", b: "1", c: 'x "y"', d: null },
      { a: "2", b: null, c: 'x "y"', d: null },
    ]);
  });

  it("an empty result is no rows; output without a header is no rows", () => {
    expect(parseSingleUserOutput(["backend> \t 1: a\t(typeid = 23, len = 4, typmod = -1, byval = t)", "\t----", "backend> "].join("\n"))).toEqual([]);
    expect(parseSingleUserOutput("PostgreSQL stand-alone backend 17.12\nbackend> ")).toEqual([]);
  });

  function fakeControl(result: { code: number; stdout: string; stderr: string }, seen: { argv?: readonly string[]; opts?: ExecOptions }): NodeControl {
    return {
      platform: "fake",
      exec: async (_node, argv, opts) => {
        seen.argv = argv;
        seen.opts = opts;
        return result;
      },
    } as Partial<NodeControl> as NodeControl;
  }
  const node = { name: "pg-1", handle: { kind: "docker" as const, container: "c" }, dataVolumes: [] };

  it("queryStoppedCluster runs postgres --single as postgres with the SQL on stdin and returns the one row", async () => {
    const seen: { argv?: readonly string[]; opts?: ExecOptions } = {};
    const ctl = fakeControl({ code: 0, stdout: SINGLE_USER.split("\t----\n\t 1: a = \"2\"")[0] + "\t----\nbackend> ", stderr: "LOG:  database system was interrupted" }, seen);
    expect(await queryStoppedCluster(ctl, node, "select 1", { database: "app" })).toEqual({ a: "1", b: "1", c: 'x "y"', d: null });
    expect(seen.argv).toEqual(["sh", "-c", 'exec postgres --single -D "$PGDATA" "$1"', "sh", "app"]);
    expect(seen.opts).toMatchObject({ user: "postgres", input: "select 1\n" });
  });

  it("queryStoppedCluster fails with the server's error, on a bad exit, and on more than one line of SQL", async () => {
    const err = fakeControl({ code: 0, stdout: "backend> ", stderr: '2026-11-21 05:07:15.618 GMT [8] ERROR:  relation "drill_seq" does not exist' }, {});
    await expect(queryStoppedCluster(err, node, "select 1", { database: "app" })).rejects.toThrow(/pg-1: postgres --single: ERROR: {2}relation "drill_seq" does not exist/);
    const bad = fakeControl({ code: 1, stdout: "", stderr: "FATAL:  lock file exists" }, {});
    await expect(queryStoppedCluster(bad, node, "select 1", { database: "app" })).rejects.toThrow(/exit 1/);
    await expect(queryStoppedCluster(bad, node, "select 1;\nselect 2", { database: "app" })).rejects.toThrow(/one line of SQL/);
  });
});

describe("parseTimelineHistory", () => {
  it("takes the newest branch point", () => {
    expect(parseTimelineHistory("1\t0/6082398\tno recovery target specified\n\n2\t0/9050C08\tno recovery target specified\n")).toEqual({ parentTimeline: 2, switchpoint: "0/9050C08" });
    expect(parseTimelineHistory("")).toBeUndefined();
    expect(() => parseTimelineHistory("1\tnot-an-lsn\treason")).toThrow(/not a PostgreSQL LSN/);
  });
});
