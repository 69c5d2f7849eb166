// Public surface of the postgres domain (STYLE.md: one index.ts per domain folder).
export * from "./tune.ts";
export * from "./conf.ts";
export * from "./hba.ts";
