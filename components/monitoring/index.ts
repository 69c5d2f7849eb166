// The monitoring domain (issue 12, ADR 0016): Prometheus, its exporters and the alert rules of a stack.
export * from "./prometheus.ts";
export * from "./rules.ts";
export * from "./dashboards.ts";
export { MonitoringServer, type MonitoringServerArgs } from "./server.ts";
