// Drill results as Prometheus textfile metrics (issue 12 item 3, ADR 0016): the last run of each drill of a
// stack, from reports/history.jsonl, in the node_exporter textfile format the alert rules HomelabDrillFailed
// and HomelabDrillOverdue read. Pure; delivering the file to a node_exporter is not wired yet (ADR 0016).
import type { HistoryEntry } from "./report.ts";

const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

export function renderDrillMetrics(history: HistoryEntry[], stack: string): string {
  const last = new Map<string, HistoryEntry>();
  for (const h of history) if (h.stack === stack) last.set(h.drill, h);
  const drills = [...last.values()].sort((a, b) => a.drill.localeCompare(b.drill));
  const lines: string[] = [];
  const family = (name: string, help: string, value: (h: HistoryEntry) => number | null) => {
    const rows = drills.map((h) => [h, value(h)] as const).filter(([, v]) => v !== null && Number.isFinite(v));
    if (rows.length === 0) return;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [h, v] of rows) lines.push(`${name}{drill="${escape(h.drill)}",stack="${escape(stack)}"} ${v}`);
  };
  family("homelab_drill_success", "1 when the last run of the drill met every objective", (h) => (h.verdict === "pass" ? 1 : 0));
  family("homelab_drill_last_run_timestamp_seconds", "When the last run of the drill finished", (h) => Date.parse(h.finished_at) / 1000);
  family("homelab_drill_rto_seconds", "Recovery time the last run measured", (h) => h.rtoSeconds);
  family("homelab_drill_rpo_seconds", "Time of acknowledged writes the last run lost", (h) => h.rpoSeconds);
  family("homelab_drill_rpo_writes", "Acknowledged writes the last run lost", (h) => h.lostWrites);
  return lines.length ? `${lines.join("\n")}\n` : "";
}
