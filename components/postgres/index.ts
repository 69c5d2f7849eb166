// Public surface of the postgres domain (docs/style.md: one index.ts per domain folder).
export * from "./tune.ts";
export * from "./conf.ts";
export * from "./hba.ts";
export * from "./patroni.ts";
export * from "./haproxy.ts";
