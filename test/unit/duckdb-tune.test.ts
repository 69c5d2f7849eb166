// The DuckDB host's memory_limit and threads from its node's size (components/duckdb/tune.ts), as the plan
// hands them to the service, and the schema's floor. That the tuned host mirrors a table larger than its
// node is test/e2e/duckdb-scale.test.ts's part.
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../components/config/index.ts";
import { DUCKDB_MIN_NODE_MEMORY_BYTES, DUCKDB_SERVICE_RESERVE_BYTES, tuneDuckDb } from "../../components/duckdb/tune.ts";
import { planHomelab, redactedSecrets } from "../../components/plan.ts";

const MiB = 1024 * 1024;

describe("DuckDB host tuning", () => {
  it("gives DuckDB half of what the service leaves, in whole MiB, and one thread per CPU", () => {
    expect(tuneDuckDb({ memoryBytes: 256 * MiB, cpus: 1 })).toEqual({ memoryLimitBytes: 72 * MiB, memoryLimit: "72MiB", threads: 1 });
    expect(tuneDuckDb({ memoryBytes: 4096 * MiB, cpus: 4 })).toEqual({ memoryLimitBytes: 1992 * MiB, memoryLimit: "1992MiB", threads: 4 });
    // Never the node's whole memory (the old default, and the OOM crash loop at size).
    for (const mib of [240, 256, 300, 512, 1024, 8192]) {
      const t = tuneDuckDb({ memoryBytes: mib * MiB, cpus: 2 });
      expect(t.memoryLimitBytes + DUCKDB_SERVICE_RESERVE_BYTES, `${mib} MiB`).toBeLessThan(mib * MiB);
      expect(t.memoryLimitBytes, `${mib} MiB`).toBeGreaterThanOrEqual(64 * MiB);
    }
  });

  it("the plan hands the tuning to the service", () => {
    const node = planHomelab(validateConfig("t", { duckdb: { node: { memory: "1GiB", cpus: 2 } } }), redactedSecrets()).nodes.find((n) => n.role === "duckdb")!;
    expect(node.env).toMatchObject({ HOMELAB_DUCKDB_MEMORY_LIMIT: "456MiB", HOMELAB_DUCKDB_THREADS: "2" });
    expect(node.memoryBytes).toBe(1024 * MiB);
  });

  it("the schema refuses a DuckDB node too small to leave DuckDB its floor, naming the key, the value and the minimum", () => {
    expect(DUCKDB_MIN_NODE_MEMORY_BYTES).toBe(240 * MiB);
    expect(() => validateConfig("t", { duckdb: { node: { memory: "200MiB" } } })).toThrow(/duckdb\.node\.memory.*200MiB.*at least 240MiB: 112MiB for the service and a DuckDB memory_limit of 64MiB/s);
    expect(() => validateConfig("t", { duckdb: { enabled: false, node: { memory: "200MiB" } } })).not.toThrow();
    expect(() => validateConfig("t", { duckdb: { node: { memory: "240MiB" } } })).not.toThrow();
  });
});
