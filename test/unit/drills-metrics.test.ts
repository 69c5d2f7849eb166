import { describe, expect, it } from "vitest";
import { renderDrillMetrics } from "../../drills/lib/metrics.ts";
import type { HistoryEntry } from "../../drills/lib/report.ts";

const entry = (over: Partial<HistoryEntry>): HistoryEntry => ({
  drill: "failover", stack: "local", runId: "r", started_at: "2026-12-01T10:00:00.000Z", finished_at: "2026-12-01T10:01:00.000Z",
  verdict: "pass", rtoSeconds: 4.5, rpoSeconds: 0, lostWrites: 0, objectives: {}, failedChecks: [], report: "x.json", ...over,
} as HistoryEntry);

describe("renderDrillMetrics", () => {
  it("the last run of each drill of the stack, in the textfile format the drill alerts read", () => {
    const text = renderDrillMetrics([
      entry({ verdict: "pass" }),
      entry({ verdict: "fail", finished_at: "2026-12-02T10:00:00.000Z", rtoSeconds: 12, lostWrites: 3 }),
      entry({ drill: "redis", rtoSeconds: null, rpoSeconds: null, lostWrites: null }),
      entry({ stack: "other", drill: "recreate" }),
    ], "local");
    expect(text).toContain('homelab_drill_success{drill="failover",stack="local"} 0');
    expect(text).toContain('homelab_drill_success{drill="redis",stack="local"} 1');
    expect(text).toContain(`homelab_drill_last_run_timestamp_seconds{drill="failover",stack="local"} ${Date.parse("2026-12-02T10:00:00.000Z") / 1000}`);
    expect(text).toContain('homelab_drill_rto_seconds{drill="failover",stack="local"} 12');
    expect(text).toContain('homelab_drill_rpo_writes{drill="failover",stack="local"} 3');
    expect(text).not.toMatch(/drill="redis".*rto|recreate/);
    expect(text.match(/^# TYPE homelab_drill_success gauge$/gm)).toHaveLength(1);
  });

  it("nothing for a stack that never ran a drill", () => {
    expect(renderDrillMetrics([entry({ stack: "other" })], "local")).toBe("");
  });
});
