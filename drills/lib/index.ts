// drills/lib: everything a drill script needs, measured and unit-tested here so the scripts only orchestrate
// (docs/style.md "Drills"). Topology in, node control, workload writer, probes, measurement, checks, report out.
export * from "./topology.ts";
export * from "./nodes.ts";
export * from "./writer.ts";
export * from "./probe.ts";
export * from "./wait.ts";
export * from "./measure.ts";
export * from "./assert.ts";
export * from "./report.ts";
export * from "./log.ts";
