// Drill results as Prometheus textfile metrics (issue 12 item 3, ADR 0016): the last run of each drill of a
// stack, from reports/history.jsonl, in the node_exporter textfile format the alert rules HomelabDrillFailed
// and HomelabDrillOverdue read. renderDrillMetrics is pure; publishDrillMetrics writes the file to the
// monitoring node after every drill (`homelab drill`), where a textfile-only node_exporter serves it.
import { DRILL_METRICS_DIR } from "../../components/monitoring/prometheus.ts";
import type { Topology } from "../../components/topology.ts";
import { controlFor } from "./nodes.ts";
import { loadHistory, type HistoryEntry } from "./report.ts";
import { nodeByName } from "./topology.ts";

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

/**
 * The stack's drill results from `<reportsDir>/history.jsonl`, written to the monitoring node's textfile
 * directory (atomically: a temporary name node_exporter ignores, then a rename). Returns where, or undefined
 * when the stack has no monitoring node.
 */
export async function publishDrillMetrics(topology: Topology, reportsDir: string): Promise<string | undefined> {
  if (!topology.monitoring) return undefined;
  const node = nodeByName(topology, topology.monitoring.node);
  const text = renderDrillMetrics(await loadHistory(reportsDir), topology.stack);
  const file = `${DRILL_METRICS_DIR}/drills.prom`;
  const r = await controlFor(topology).exec(node, ["sh", "-c", `cat > ${DRILL_METRICS_DIR}/.drills.prom.tmp && mv -f ${DRILL_METRICS_DIR}/.drills.prom.tmp ${file}`], {
    user: "prometheus",
    input: text,
    allowFailure: true,
    timeoutMs: 15_000,
  });
  if (r.code !== 0) throw new Error(`${node.name}: writing ${file} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return `${node.name}:${file}`;
}
