import { mkdtemp, readFile, readdir, rm, writeFile, appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { assertNoAcknowledgedWriteLost, assertRtoWithin, type Check } from "../../drills/lib/assert.ts";
import { DrillLog } from "../../drills/lib/log.ts";
import { measureRpo, rtoPhases } from "../../drills/lib/measure.ts";
import {
  exitCodeFor,
  loadHistory,
  makeReport,
  niceScale,
  valueAxis,
  renderChartSvg,
  renderHistoryMarkdown,
  renderReportMarkdown,
  verdictFor,
  writeReport,
  xmlEscape,
  type DrillReport,
  type HistoryEntry,
} from "../../drills/lib/report.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "drills-report-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function failoverReport(opts: { runId: string; startedAt: string; lost: number; rtoMs: number; objectiveRto?: number; drill?: string }): DrillReport {
  const acknowledged = Array.from({ length: 100 }, (_, i) => ({ seq: i + 1, clientTimeMs: 1000 + i * 10 }));
  const rpo = measureRpo({ acknowledged, presentSeqs: acknowledged.slice(0, 100 - opts.lost).map((a) => a.seq) });
  const rto = rtoPhases(
    [
      { name: "detection", atMs: 5000 + opts.rtoMs * 0.2 },
      { name: "promotion", atMs: 5000 + opts.rtoMs * 0.9 },
      { name: "reconnect", atMs: 5000 + opts.rtoMs },
    ],
    5000,
  );
  const objectiveRto = opts.objectiveRto ?? 10;
  const checks: Check[] = [assertNoAcknowledgedWriteLost(rpo, 0), assertRtoWithin(rto.totalSeconds, objectiveRto)];
  const started = Date.parse(opts.startedAt);
  return {
    drill: opts.drill ?? "failover",
    stack: "dev",
    runId: opts.runId,
    started_at: opts.startedAt,
    finished_at: new Date(started + 42_000).toISOString(),
    objectives: { rtoSeconds: objectiveRto, rpoWrites: 0 },
    phases: [
      { name: "start writer", startedAt: opts.startedAt, durationMs: 1200, ok: true },
      { name: "kill primary | hard", startedAt: new Date(started + 1200).toISOString(), durationMs: 300, ok: true, detail: "docker kill\nSIGKILL" },
    ],
    rpo: { ...rpo, walGapBytes: 4096 },
    rto,
    verdict: verdictFor(checks),
    checks,
    evidence: { oldPrimary: "hl-pg-1", newTimeline: 2, lsnAtFault: "0/3000060", note: "<b>&</b>" },
  };
}

/** Minimal XML well-formedness: every tag closed in order, attributes quoted, no stray '&' or '<'. */
function assertWellFormedXml(xml: string): { elements: Map<string, number> } {
  const elements = new Map<string, number>();
  const stack: string[] = [];
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, "");
  const token = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|([^<]+)|(<)/g;
  let m: RegExpExecArray | null;
  let pos = 0;
  while ((m = token.exec(body))) {
    if (m.index !== pos) throw new Error(`unparsed text at ${pos}: ${body.slice(pos, pos + 40)}`);
    pos = token.lastIndex;
    const [, closing, name, attrs, selfClosing, text, stray] = m;
    if (stray) throw new Error(`stray '<' at ${m.index}: ${body.slice(m.index, m.index + 40)}`);
    if (text !== undefined) {
      if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(text)) throw new Error(`unescaped & in text: ${text.slice(0, 40)}`);
      continue;
    }
    if (!name) continue; // comment
    if (attrs && /&(?!(amp|lt|gt|quot|apos);)/.test(attrs)) throw new Error(`unescaped & in attributes of <${name}>`);
    if (closing) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
    } else {
      elements.set(name, (elements.get(name) ?? 0) + 1);
      if (!selfClosing) stack.push(name);
    }
  }
  if (pos !== body.length) throw new Error(`trailing garbage at ${pos}`);
  if (stack.length > 0) throw new Error(`unclosed: ${stack.join(" > ")}`);
  return { elements };
}

describe("verdict and exit code", () => {
  const pass: Check = { name: "a", ok: true, detail: "" };
  const fail: Check = { name: "b", ok: false, detail: "" };
  it("passes only when there are checks and all passed", () => {
    expect(verdictFor([pass, pass])).toBe("pass");
    expect(verdictFor([pass, fail])).toBe("fail");
    expect(verdictFor([])).toBe("fail");
  });
  it("exit code 0 only when every check passed, whatever the verdict field claims", () => {
    expect(exitCodeFor({ verdict: "pass", checks: [pass] })).toBe(0);
    expect(exitCodeFor({ verdict: "pass", checks: [pass, fail] })).toBe(1);
    expect(exitCodeFor({ verdict: "fail", checks: [pass] })).toBe(1);
    expect(exitCodeFor({ verdict: "pass", checks: [] })).toBe(1);
  });
});

describe("makeReport", () => {
  it("derives the verdict from the checks and stamps the times", () => {
    const base = { drill: "redis", stack: "dev", runId: "x", objectives: { rpoSeconds: 1 }, phases: [], rpo: null, rto: null, evidence: {}, startedAtMs: Date.UTC(2025, 0, 1), finishedAtMs: Date.UTC(2025, 0, 1, 0, 1) };
    const r = makeReport({ ...base, checks: [{ name: "a", ok: true, detail: "" }] });
    expect(r).toMatchObject({ verdict: "pass", started_at: "2025-01-01T00:00:00.000Z", finished_at: "2025-01-01T00:01:00.000Z" });
    expect(r).not.toHaveProperty("startedAtMs");
    expect(makeReport({ ...base, checks: [{ name: "a", ok: false, detail: "" }] }).verdict).toBe("fail");
  });
});

describe("writeReport", () => {
  it("writes JSON + Markdown under <dir>/<drill>/ and appends a history line", async () => {
    const report = failoverReport({ runId: "r1", startedAt: "2025-03-01T10:00:00.000Z", lost: 0, rtoMs: 4200 });
    const paths = await writeReport(report, dir);
    expect(paths.json).toBe(path.join(dir, "failover", "20250301T100000.000Z-r1.json"));
    expect(paths.markdown).toBe(path.join(dir, "failover", "20250301T100000.000Z-r1.md"));
    expect(JSON.parse(await readFile(paths.json, "utf8"))).toEqual(report);
    const history = await loadHistory(dir);
    expect(history).toHaveLength(1);
    expect(history[0]).toMatchObject({ drill: "failover", runId: "r1", verdict: "pass", rtoSeconds: 4.2, rpoSeconds: 0, lostWrites: 0, failedChecks: [], report: "failover/20250301T100000.000Z-r1.json" });
  });

  it("never overwrites an earlier run and accumulates history", async () => {
    const report = failoverReport({ runId: "r1", startedAt: "2025-03-01T10:00:00.000Z", lost: 0, rtoMs: 4200 });
    await expect(writeReport(report, dir)).rejects.toThrow(/EEXIST/);
    await writeReport(failoverReport({ runId: "r2", startedAt: "2025-03-02T10:00:00.000Z", lost: 3, rtoMs: 14_200 }), dir);
    await writeReport(failoverReport({ runId: "b1", drill: "backup-restore", startedAt: "2025-03-01T12:00:00.000Z", lost: 0, rtoMs: 60_000, objectiveRto: 180 }), dir);
    const history = await loadHistory(dir);
    expect(history.map((h) => h.runId)).toEqual(["r1", "b1", "r2"]);
    expect(history[2]).toMatchObject({ verdict: "fail", failedChecks: ["no acknowledged write lost", "RTO within objective"], lostWrites: 3 });
    expect((await readdir(path.join(dir, "failover"))).sort()).toEqual(["20250301T100000.000Z-r1.json", "20250301T100000.000Z-r1.md", "20250302T100000.000Z-r2.json", "20250302T100000.000Z-r2.md"]);
  });

  it("sanitises drill and run names used in paths", async () => {
    const report = failoverReport({ runId: "../../x y", drill: "../evil", startedAt: "2025-03-03T00:00:00.000Z", lost: 0, rtoMs: 1000 });
    const sub = await mkdtemp(path.join(dir, "sanitise-"));
    const paths = await writeReport(report, sub);
    expect(path.dirname(paths.json)).toBe(path.join(sub, ".._evil"));
    expect(path.basename(paths.json)).toBe("20250303T000000.000Z-.._.._x_y.json");
  });

  it("refuses a report whose started_at is not a date", async () => {
    await expect(writeReport({ ...failoverReport({ runId: "z", startedAt: "2025-03-03T00:00:00.000Z", lost: 0, rtoMs: 1 }), started_at: "yesterday" }, dir)).rejects.toThrow(/not a date/);
  });
});

describe("loadHistory", () => {
  it("is empty when there is no history yet", async () => {
    expect(await loadHistory(path.join(dir, "nothing-here"))).toEqual([]);
  });

  it("names the file and line of a malformed entry", async () => {
    const sub = await mkdtemp(path.join(dir, "bad-"));
    await writeFile(path.join(sub, "history.jsonl"), "\n");
    await appendFile(path.join(sub, "history.jsonl"), '{"drill":"x"}\n');
    await expect(loadHistory(sub)).rejects.toThrow(/history\.jsonl:2: not a history entry: stack: /);
    await writeFile(path.join(sub, "history.jsonl"), "{oops\n");
    await expect(loadHistory(sub)).rejects.toThrow(/history\.jsonl:1: not JSON/);
  });
});

describe("Markdown", () => {
  it("a passing report: verdict, objectives vs measured, phases, evidence", () => {
    const md = renderReportMarkdown(failoverReport({ runId: "r1", startedAt: "2025-03-01T10:00:00.000Z", lost: 0, rtoMs: 4200 }));
    expect(md).toMatch(/^# Drill `failover`: PASS\n/);
    expect(md).toContain("All 2 checks passed.");
    expect(md).toContain("| Check | Objective | Measured | Result |");
    expect(md).toContain("| RTO within objective | 10 s | 4.2 s | ✔ pass |");
    expect(md).toContain("| no acknowledged write lost | 0 writes | 0 writes | ✔ pass |");
    expect(md).toContain("| rtoSeconds | 10 |");
    expect(md).toContain("| RTO | 4.2 s |");
    expect(md).toContain("|   promotion | 2.94 s |");
    expect(md).toContain("| WAL gap | 4096 bytes |");
    // table cells escape pipes and newlines
    expect(md).toContain("| 2 | kill primary \\| hard |");
    expect(md).toContain("docker kill<br>SIGKILL");
    expect(md).toContain('"newTimeline": 2');
    expect(md).not.toContain("## Failed checks");
  });

  it("a failing report lists failed checks with their detail", () => {
    const md = renderReportMarkdown(failoverReport({ runId: "r2", startedAt: "2025-03-02T10:00:00.000Z", lost: 3, rtoMs: 14_200 }));
    expect(md).toMatch(/^# Drill `failover`: FAIL\n/);
    expect(md).toContain("2 of 2 checks failed.");
    expect(md).toContain("## Failed checks");
    expect(md).toContain("- **RTO within objective**: RTO 14.2 s exceeds objective 10 s by 4.2 s");
    expect(md).toContain("- **no acknowledged write lost**: 3 of 100 acknowledged writes lost, objective allows 0: exceeds it by 3; lost seqs 98, 99, 100");
    expect(md).toContain("| lost seqs (first 20) | 98, 99, 100 |");
  });

  it("a report without checks says it proved nothing", () => {
    const md = renderReportMarkdown({ ...failoverReport({ runId: "r", startedAt: "2025-03-01T10:00:00.000Z", lost: 0, rtoMs: 1 }), checks: [], verdict: "fail", rpo: null, rto: null, phases: [], evidence: {} });
    expect(md).toContain("No check was recorded");
    expect(md).toContain("No phase recorded.");
    expect(md).toContain("None recorded.");
  });

  it("history: a summary per drill and a table of runs", async () => {
    const md = renderHistoryMarkdown(await loadHistory(dir));
    expect(md).toContain("| Drill | Runs | Passed | Last run | Last verdict | Last RTO | Last RPO |");
    expect(md).toContain("| backup-restore | 1 | 1 | 2025-03-01T12:00:00.000Z | ✔ pass | 1 min | 0 s |");
    expect(md).toContain("| failover | 2 | 1 | 2025-03-02T10:00:00.000Z | ✖ FAIL | 14.2 s | 30 ms |");
    expect(md).toContain("## failover");
    expect(md).toContain("| 2025-03-02T10:00:00.000Z | dev | r2 | ✖ FAIL | 14.2 s | 30 ms | 3 | no acknowledged write lost, RTO within objective | failover/20250302T100000.000Z-r2.json |");
    expect(renderHistoryMarkdown([])).toContain("No drill has run yet");
  });
});

describe("SVG chart", () => {
  const entry = (drill: string, day: number, rto: number | null, rpo: number | null, verdict: "pass" | "fail" = "pass"): HistoryEntry => ({
    drill,
    stack: "dev",
    runId: `${drill}-${day}`,
    started_at: new Date(Date.UTC(2025, 2, day, 10)).toISOString(),
    finished_at: new Date(Date.UTC(2025, 2, day, 10, 1)).toISOString(),
    verdict,
    rtoSeconds: rto,
    rpoSeconds: rpo,
    lostWrites: 0,
    objectives: { rtoSeconds: 10, rpoSeconds: 1 },
    failedChecks: verdict === "pass" ? [] : ["RTO within objective"],
    report: `${drill}/x.json`,
  });
  const history = [entry("failover", 1, 4.2, 0), entry("failover", 2, 14.2, 0.3, "fail"), entry("failover", 3, 5, 0), entry("redis", 1, 1.1, 0.9), entry("redis", 4, 0.8, 1.2), entry("backup-restore & <pitr>", 2, 60, 5)];

  it("is well-formed XML with one polyline per drill in each panel (RTO, RPO), axes, labels and a legend", () => {
    const svg = renderChartSvg(history);
    const { elements } = assertWellFormedXml(svg);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    const panels = svg.split('<g class="panel"').slice(1);
    expect(panels).toHaveLength(2);
    expect(panels[0]).toContain('data-metric="rtoSeconds"');
    expect(panels[1]).toContain('data-metric="rpoSeconds"');
    for (const panel of panels) {
      const drills = [...panel.matchAll(/<polyline data-drill="([^"]+)"/g)].map((m) => m[1]);
      expect(drills.sort()).toEqual(["backup-restore &amp; &lt;pitr&gt;", "failover", "redis"]);
      expect(panel.match(/class="axis"/g)).toHaveLength(2);
    }
    expect(elements.get("polyline")).toBe(6);
    expect(elements.get("circle")).toBe(history.length * 2 + 1); // points + the legend's "failed run" marker
    expect(svg).toContain("RTO (seconds)");
    expect(svg).toContain("RPO (seconds)");
    expect(svg).toContain('<g class="legend">');
    expect(svg).toContain(">failover</text>");
    expect(svg).toContain(">redis</text>");
    // the failover line joins its 3 runs in time order; the failed run is drawn red
    expect(panels[0]!.match(/<polyline data-drill="failover"[^>]*points="([^"]+)"/)![1]!.split(" ")).toHaveLength(3);
    expect(svg).toMatch(/fill="#d62728"[^>]*><title>failover 2025-03-02T10:00:00.000Z: RTO 14.2 s \(fail\)<\/title>/);
    expect(svg).toContain('class="objective"');
  });

  it("skips a drill's line in a panel where it has no value", () => {
    const svg = renderChartSvg([entry("failover", 1, 4, null), entry("failover", 2, 5, null), entry("redis", 1, 1, 0.5)]);
    assertWellFormedXml(svg);
    const [rto, rpo] = svg.split('<g class="panel"').slice(1);
    expect(rto!.match(/<polyline/g)).toHaveLength(2);
    expect(rpo!.match(/<polyline/g)).toHaveLength(1);
  });

  it("renders a single run and an empty history", () => {
    assertWellFormedXml(renderChartSvg([entry("failover", 1, 4, 0)]));
    const empty = renderChartSvg([]);
    assertWellFormedXml(empty);
    expect(empty).toContain("No drill has run yet.");
  });

  it("the checker itself rejects broken XML", () => {
    expect(() => assertWellFormedXml("<svg><g></svg>")).toThrow();
    expect(() => assertWellFormedXml("<svg>a & b</svg>")).toThrow();
    expect(() => assertWellFormedXml('<svg x="1" <g/></svg>')).toThrow();
    expect(() => assertWellFormedXml("<svg>")).toThrow();
  });

  it("switches to a log scale when drills differ by orders of magnitude, so short RTOs stay readable", () => {
    const svg = renderChartSvg(history);
    expect(svg).toContain('data-metric="rtoSeconds" data-scale="log"');
    expect(svg).toContain("RTO (seconds), log scale");
    const narrow = renderChartSvg([entry("failover", 1, 4, 0.2), entry("failover", 2, 6, 0.1)]);
    expect(narrow).toContain('data-metric="rtoSeconds" data-scale="linear"');
    const lin = valueAxis([4, 6, 10]);
    expect(lin.kind).toBe("linear");
    expect(lin.ticks).toEqual([0, 2, 4, 6, 8, 10]);
    expect(lin.fraction(5)).toBe(0.5);
    const log = valueAxis([0, 0.3, 5, 180]);
    expect(log.kind).toBe("log");
    expect(log.ticks).toEqual([0, 0.1, 1, 10, 100, 1000]);
    expect(log.fraction(0)).toBe(0);
    expect(log.fraction(1000)).toBeCloseTo(1, 10);
    // monotonic: a longer RTO is always drawn higher
    for (let v = 0; v < 999; v += 7.3) expect(log.fraction(v + 1)).toBeGreaterThan(log.fraction(v));
    expect(valueAxis([]).ticks).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
  });

  it("xmlEscape and niceScale", () => {
    expect(xmlEscape(`<a href="x">&'</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;");
    expect(niceScale(14.2)).toEqual({ max: 15, step: 5 });
    expect(niceScale(0)).toEqual({ max: 1, step: 0.2 });
    expect(niceScale(0.9)).toEqual({ max: 1, step: 0.2 });
    expect(niceScale(60)).toEqual({ max: 60, step: 20 });
  });
});

describe("DrillLog", () => {
  function capture(isTTY: boolean) {
    const chunks: string[] = [];
    let t = Date.UTC(2025, 2, 1, 9, 8, 7, 6);
    const log = new DrillLog({ stream: { write: (c: string) => chunks.push(c), isTTY }, now: () => (t += 1230) - 1230, utc: true });
    return { log, chunks, advance: (ms: number) => (t += ms) };
  }

  it("prints timestamped phases without ANSI when not a TTY and records them for the report", async () => {
    const { log, chunks } = capture(false);
    const p = log.phase("kill primary");
    expect(p.done("container hl-pg-1 killed")).toBe(1230);
    p.fail("ignored: a phase finishes once");
    await expect(
      log.step("promote replica", () => {
        throw new Error("pg_promote timed out");
      }),
    ).rejects.toThrow("pg_promote timed out");
    expect(chunks.join("")).toBe(
      [
        "[09:08:07.006] ▶ kill primary",
        "[09:08:08.236] ✔ kill primary (1.23 s) container hl-pg-1 killed",
        "[09:08:09.466] ▶ promote replica",
        "[09:08:10.696] ✖ promote replica (1.23 s) pg_promote timed out",
        "",
      ].join("\n"),
    );
    expect(log.phases()).toEqual([
      { name: "kill primary", startedAt: "2025-03-01T09:08:07.006Z", durationMs: 1230, ok: true, detail: "container hl-pg-1 killed" },
      { name: "promote replica", startedAt: "2025-03-01T09:08:09.466Z", durationMs: 1230, ok: false, detail: "pg_promote timed out" },
    ]);
  });

  it("colours on a TTY unless NO_COLOR is set", () => {
    vi.stubEnv("NO_COLOR", "");
    const tty = capture(true);
    tty.log.phase("x").done();
    expect(tty.chunks.join("")).toContain("\x1b[32m✔\x1b[0m");
    vi.stubEnv("NO_COLOR", "1");
    const plain = capture(true);
    plain.log.phase("x").done();
    expect(plain.chunks.join("")).not.toContain("\x1b[");
    vi.unstubAllEnvs();
  });
});

describe("chart time axis", () => {
  it("adds seconds when the runs span less than an hour, so tick labels do not repeat", async () => {
    const { shortTime } = await import("../../drills/lib/report.ts");
    const t = Date.parse("2026-11-21T05:45:12Z");
    expect(shortTime(t)).toBe("11-21 05:45");
    expect(shortTime(t, 50_000)).toBe("11-21 05:45:12");
  });
});

describe("concludeDrill", () => {
  it("writes the report, prints every check with its mark, then the verdict and the report's paths", async () => {
    const { concludeDrill } = await import("../../drills/lib/report.ts");
    const { mkdtempSync, existsSync } = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    const dir = mkdtempSync(path.join(os.tmpdir(), "conclude-"));
    const lines: string[] = [];
    const report = await concludeDrill(
      {
        drill: "failover",
        stack: "t",
        runId: "r1",
        startedAtMs: Date.parse("2026-11-21T06:00:00Z"),
        objectives: { rtoSeconds: 10 },
        phases: [],
        rpo: null,
        rto: null,
        checks: [
          { name: "replica streaming", ok: true, detail: "pg-2 streaming" },
          { name: "RTO within objective", ok: false, detail: "RTO 12 s exceeds objective 10 s by 2 s" },
        ],
        evidence: {},
      },
      { reportsDir: dir, log: { info: (m) => lines.push(m) } },
    );
    expect(report.verdict).toBe("fail");
    expect(lines[0]).toBe("✔ replica streaming: pg-2 streaming");
    expect(lines[1]).toBe("✖ RTO within objective: RTO 12 s exceeds objective 10 s by 2 s");
    expect(lines[2]).toMatch(/^verdict FAIL; report .*failover\/.*\.json, .*failover\/.*\.md$/);
    expect(existsSync(path.join(dir, "history.jsonl"))).toBe(true);
  });
});
