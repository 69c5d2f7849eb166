// `homelab drill` argument handling and `homelab report` rendering, through the real bin.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { makeReport, writeReport } from "../../drills/lib/report.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const homelab = (...args: string[]) => {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin/homelab.mjs"), ...args], { cwd: ROOT, encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

describe("homelab drill", () => {
  it("rejects an unknown drill naming the accepted ones", () => {
    const r = homelab("drill", "nosuch", "--topology", "/tmp/none.json");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^homelab: drill: got "nosuch"; expected one of redis, backup-restore, failover, recreate, all$/m);
  });

  it("needs a stack or a topology file", () => {
    const r = homelab("drill", "failover");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--stack <name> or --topology <file> is required/);
  });

  it("reports a missing topology file as a user mistake, not a crash", () => {
    const r = homelab("drill", "redis", "--topology", "/nonexistent/topology.json");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^homelab: .*topology\.json/m);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe("homelab report", () => {
  it("renders the history as Markdown with an SVG chart of RTO and RPO per drill", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "homelab-reports-"));
    const t0 = Date.parse("2026-11-01T10:00:00Z");
    for (const [i, drill] of ["failover", "failover", "redis"].entries()) {
      const startedAtMs = t0 + i * 86_400_000;
      await writeReport(
        makeReport({
          drill,
          stack: "local",
          runId: `run${i}`,
          startedAtMs,
          finishedAtMs: startedAtMs + 30_000,
          objectives: { rtoSeconds: 10 },
          phases: [],
          rpo: null,
          rto: { faultAtMs: startedAtMs, phases: [], totalMs: 3000 + i * 500, totalSeconds: 3 + i * 0.5 },
          checks: [{ name: "rto", ok: i !== 1, detail: i === 1 ? "RTO 12 s exceeds objective 10 s by 2 s" : "ok" }],
          evidence: {},
        }),
        dir,
      );
    }
    const r = homelab("report", "--reports", dir);
    expect(r.code).toBe(0);
    const md = readFileSync(path.join(dir, "REPORT.md"), "utf8");
    expect(md).toMatch(/failover/);
    expect(md).toMatch(/redis/);
    expect(md).toContain("![RTO and RPO per drill over time](chart.svg)");
    const svg = readFileSync(path.join(dir, "chart.svg"), "utf8");
    expect(svg.startsWith("<svg") || svg.startsWith("<?xml")).toBe(true);
    expect(svg.match(/<polyline/g)?.length).toBeGreaterThanOrEqual(2);
  });

  it("says how to get history when there is none", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "homelab-empty-"));
    const r = homelab("report", "--reports", dir);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no drill history .*run `homelab drill <name> --stack <stack>` first/);
  });
});
