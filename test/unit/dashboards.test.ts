// The Grafana dashboard (components/monitoring/dashboards.ts): the committed JSON is what the renderer makes,
// its layout is a valid Grafana grid, and every metric an alert reads has a panel. That each query returns
// data from a live Prometheus is test/e2e/monitoring.test.ts's part.
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DASHBOARD_ROWS, dashboardQueries, planAlertRules, renderDashboard } from "../../components/monitoring/index.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
interface Panel { id: number; type: string; gridPos: { x: number; y: number; w: number; h: number }; targets?: { expr: string; refId: string; datasource: { uid: string } }[] }

describe("Grafana dashboard", () => {
  const dashboard = JSON.parse(renderDashboard()) as { uid: string; schemaVersion: number; panels: Panel[]; templating: { list: { name: string; type: string }[] } };

  it("dashboards/homelab.json is the renderer's output (npm run dashboards rewrites it)", () => {
    expect(readFileSync(path.join(ROOT, "dashboards/homelab.json"), "utf8")).toBe(renderDashboard());
  });

  it("lays panels on Grafana's 24-column grid without overlap, ids unique, every query on the chosen data source", () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const taken = new Set<string>();
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w, `panel ${p.id}`).toBeLessThanOrEqual(24);
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          expect(taken.has(`${x},${y}`), `panel ${p.id} overlaps at ${x},${y}`).toBe(false);
          taken.add(`${x},${y}`);
        }
      if (p.type === "row") continue;
      expect(p.targets?.length, `panel ${p.id}`).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource.uid).toBe("${datasource}");
      expect(new Set(p.targets?.map((t) => t.refId)).size).toBe(p.targets?.length);
    }
    expect(dashboard.templating.list).toEqual([expect.objectContaining({ name: "datasource", type: "datasource" })]);
    expect(dashboard.panels.filter((p) => p.type === "row").map((p) => (p as unknown as { title: string }).title)).toEqual(DASHBOARD_ROWS.map((r) => r.title));
  });

  it("shows every metric an alert rule reads", () => {
    const rules = planAlertRules({ stack: "t", maxBackupAgeSeconds: 3600, archiveTimeoutSeconds: 60, replicationLagMaxSeconds: 30, maxSlotWalKeepSizeBytes: 1 << 30, slotWalRetainedRatio: 0.8, diskUsedRatio: 0.85, drillMaxAgeSeconds: 86400, pendingForSeconds: 60, analyticsSyncIntervalSeconds: 300 });
    const metricsOf = (expr: string) => new Set(expr.match(/\b(?:homelab|pg|redis|node)_[a-z_]+\b/g) ?? []);
    const shown = new Set(dashboardQueries().flatMap((q) => [...metricsOf(q.expr)]));
    const missing = rules.flatMap((r) => [...metricsOf(r.expr)].filter((m) => !shown.has(m)).map((m) => `${r.alert}: ${m}`));
    expect(missing).toEqual([]);
  });
});
