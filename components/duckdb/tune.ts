// The DuckDB host's memory and threads, planned from its node's size (issue 13, ADR 0019). Pure.
// DuckDB's memory_limit bounds its buffer manager only; beside it the node holds Node.js and the service,
// the DuckDB library's own code and allocations outside the buffer manager (CSV reader and parquet
// writer buffers, per thread), and the pg COPY stream. With memory_limit at the node's whole limit (the
// image's old default), a table larger than the node OOM-killed the service at every sync: a crash loop.
// Beyond memory_limit DuckDB spills to its temp directory on the data volume.

const MiB = 1024 * 1024;

/** What the node keeps for everything but DuckDB's buffer manager: Node.js, the service, the library. */
export const DUCKDB_SERVICE_RESERVE_BYTES = 112 * MiB;
/** Share of the rest given to memory_limit: DuckDB overshoots it by per-thread buffers it does not track. */
export const DUCKDB_MEMORY_SHARE = 0.5;
/** The smallest memory_limit worth running: below it DuckDB spills even small sorts and hash tables. */
export const DUCKDB_MIN_MEMORY_LIMIT_BYTES = 64 * MiB;
/** The smallest node memory that yields DUCKDB_MIN_MEMORY_LIMIT_BYTES (the schema refuses less). */
export const DUCKDB_MIN_NODE_MEMORY_BYTES = DUCKDB_SERVICE_RESERVE_BYTES + Math.ceil(DUCKDB_MIN_MEMORY_LIMIT_BYTES / DUCKDB_MEMORY_SHARE);

export interface DuckDbTuning {
  /** DuckDB memory_limit, whole MiB. */
  memoryLimitBytes: number;
  /** The same as DuckDB reads it (HOMELAB_DUCKDB_MEMORY_LIMIT). */
  memoryLimit: string;
  /** DuckDB threads: one per CPU of the node. */
  threads: number;
}

export function tuneDuckDb(node: { memoryBytes: number; cpus: number }): DuckDbTuning {
  if (!(node.memoryBytes >= DUCKDB_MIN_NODE_MEMORY_BYTES)) throw new Error(`tuneDuckDb: node memory ${node.memoryBytes} bytes is below ${DUCKDB_MIN_NODE_MEMORY_BYTES} (the schema refuses it)`);
  const limitMiB = Math.floor(((node.memoryBytes - DUCKDB_SERVICE_RESERVE_BYTES) * DUCKDB_MEMORY_SHARE) / MiB);
  return { memoryLimitBytes: limitMiB * MiB, memoryLimit: `${limitMiB}MiB`, threads: Math.max(1, Math.floor(node.cpus)) };
}
