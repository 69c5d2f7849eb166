import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  MAX_BACKENDS,
  MAX_MEMORY_BYTES,
  MIN_MEMORY_BYTES,
  TuneError,
  parseMemory,
  renderPostgresConf,
  tunePostgres,
  type TuneInput,
} from "../../components/postgres/index.ts";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

function problemsOf(input: unknown): string[] {
  try {
    tunePostgres(input as TuneInput);
  } catch (error) {
    expect(error).toBeInstanceOf(TuneError);
    return (error as TuneError).problems;
  }
  throw new Error(`expected a TuneError for ${JSON.stringify(input)}`);
}

/** The settings this project adds on top of PGTune, the same for every node (defaults). */
const REPLICATED_ARCHIVED = {
  wal_level: "replica",
  wal_log_hints: "on",
  max_wal_senders: "10",
  max_replication_slots: "10",
  hot_standby: "on",
  hot_standby_feedback: "on",
  archive_mode: "on",
  archive_command: "pgbackrest --stanza=main archive-push %p",
  archive_timeout: "1min",
  shared_preload_libraries: "pg_stat_statements",
  listen_addresses: "*",
  password_encryption: "scram-sha-256",
  idle_in_transaction_session_timeout: "10min",
};

// Golden examples: computed by hand from PGTune's selectors (le0pard/pgtune
// src/features/configuration/configurationSlice.js), memory in kB as PGTune does it.
describe("tunePostgres golden examples (PGTune formulas)", () => {
  it("16 GiB / 4 cpus / ssd / web / pg17", () => {
    // RAM = 16 * 1048576 = 16777216 kB
    // shared_buffers       = 16777216 / 4     = 4194304 kB  = 4GB
    // effective_cache_size = 16777216 * 3 / 4 = 12582912 kB = 12GB
    // maintenance_work_mem = 16777216 / 16    = 1048576 kB  = 1GB   (< 8GB cap)
    // work_mem = (16777216 - 4194304) / ((200 conns + 4 workers) * 3) = 12582912 / 612 = 20560.3 -> 20560kB (web: not halved; > 4MB floor)
    // wal_buffers = 3% of 4194304 = 125829 kB -> capped at 16MB
    // huge_pages: shared_buffers 4GB >= 2GB -> try
    // parallel (cpus >= 4): workers 4, per gather ceil(4/2) = 2, maintenance min(2, 4) = 2
    // max_slot_wal_keep_size = max(2 * 4GB, 1GB) = 8GB
    const settings = tunePostgres({ memoryBytes: 16 * GiB, cpus: 4, storage: "ssd", profile: "web", version: 17 });
    expect(settings).toEqual({
      listen_addresses: "*",
      max_connections: "200",
      password_encryption: "scram-sha-256",
      idle_in_transaction_session_timeout: "10min",
      shared_buffers: "4GB",
      huge_pages: "try",
      effective_cache_size: "12GB",
      maintenance_work_mem: "1GB",
      work_mem: "20560kB",
      wal_level: "replica",
      wal_log_hints: "on",
      wal_buffers: "16MB",
      wal_compression: "lz4",
      min_wal_size: "1GB",
      max_wal_size: "4GB",
      checkpoint_completion_target: "0.9",
      random_page_cost: "1.1",
      effective_io_concurrency: "200",
      default_statistics_target: "100",
      jit: "off",
      max_worker_processes: "4",
      max_parallel_workers: "4",
      max_parallel_workers_per_gather: "2",
      max_parallel_maintenance_workers: "2",
      max_wal_senders: "10",
      max_replication_slots: "10",
      max_slot_wal_keep_size: "8GB",
      hot_standby: "on",
      hot_standby_feedback: "on",
      archive_mode: "on",
      archive_command: "pgbackrest --stanza=main archive-push %p",
      archive_timeout: "1min",
      shared_preload_libraries: "pg_stat_statements",
    });
    // Order is part of the contract: connections, memory, wal, planner, parallelism, replication, archiving, monitoring.
    expect(Object.keys(settings)).toEqual([
      "listen_addresses", "max_connections", "password_encryption", "idle_in_transaction_session_timeout",
      "shared_buffers", "huge_pages", "effective_cache_size", "maintenance_work_mem", "work_mem",
      "wal_level", "wal_log_hints", "wal_buffers", "wal_compression", "min_wal_size", "max_wal_size", "checkpoint_completion_target",
      "random_page_cost", "effective_io_concurrency", "default_statistics_target", "jit",
      "max_worker_processes", "max_parallel_workers", "max_parallel_workers_per_gather", "max_parallel_maintenance_workers",
      "max_wal_senders", "max_replication_slots", "max_slot_wal_keep_size", "hot_standby", "hot_standby_feedback",
      "archive_mode", "archive_command", "archive_timeout",
      "shared_preload_libraries",
    ]);
  });

  it("64 GiB / 16 cpus / hdd / dw / pg17", () => {
    // RAM = 67108864 kB
    // shared_buffers = 16777216 kB = 16GB; effective_cache_size = 50331648 kB = 48GB
    // maintenance_work_mem = 67108864 / 8 (dw) = 8388608 kB = 8GB, which reaches the 8GB cap -> 8GB
    // autovacuum_work_mem: maintenance_work_mem >= 2GB -> 2GB; autovacuum_max_workers: 16 cpus -> 4
    // work_mem = (67108864 - 16777216) / ((40 + 16) * 3) = 50331648 / 168 = 299593.14; dw halves: 149796.57 -> 149796kB
    // per gather: ceil(16 / 2) = 8, not capped for dw; maintenance workers min(8, 4) = 4
    // max_slot_wal_keep_size = max(2 * 16GB, 1GB) = 32GB; jit left to PostgreSQL for dw
    const settings = tunePostgres({ memoryBytes: 64 * GiB, cpus: 16, storage: "hdd", profile: "dw" });
    expect(settings).toMatchObject({
      ...REPLICATED_ARCHIVED,
      max_connections: "40",
      shared_buffers: "16GB",
      huge_pages: "try",
      effective_cache_size: "48GB",
      maintenance_work_mem: "8GB",
      autovacuum_work_mem: "2GB",
      work_mem: "149796kB",
      wal_buffers: "16MB",
      wal_compression: "lz4",
      min_wal_size: "4GB",
      max_wal_size: "16GB",
      random_page_cost: "4",
      effective_io_concurrency: "2",
      default_statistics_target: "500",
      max_worker_processes: "16",
      max_parallel_workers: "16",
      max_parallel_workers_per_gather: "8",
      max_parallel_maintenance_workers: "4",
      autovacuum_max_workers: "4",
      max_slot_wal_keep_size: "32GB",
    });
    expect(settings).not.toHaveProperty("jit");
  });

  it("8 GiB / 2 cpus / nvme / oltp / pg17", () => {
    // RAM = 8388608 kB; shared_buffers 2097152 kB = 2GB (>= 2GB -> huge_pages try); effective_cache_size 6291456 kB = 6GB
    // maintenance_work_mem = 8388608 / 16 = 524288 kB = 512MB
    // cpus < 4: PGTune leaves parallel settings at PostgreSQL's defaults and counts 8 workers in work_mem:
    // work_mem = (8388608 - 2097152) / ((300 + 8) * 3) = 6291456 / 924 = 6808.97 -> 6808kB
    // wal_buffers = 3% of 2097152 = 62914 kB -> 16MB; nvme: random_page_cost 1.1, effective_io_concurrency 1000
    // max_slot_wal_keep_size = max(2 * 8GB, 1GB) = 16GB
    const settings = tunePostgres({ memoryBytes: 8 * GiB, cpus: 2, storage: "nvme", profile: "oltp" });
    expect(settings).toMatchObject({
      ...REPLICATED_ARCHIVED,
      max_connections: "300",
      shared_buffers: "2GB",
      huge_pages: "try",
      effective_cache_size: "6GB",
      maintenance_work_mem: "512MB",
      work_mem: "6808kB",
      wal_buffers: "16MB",
      min_wal_size: "2GB",
      max_wal_size: "8GB",
      random_page_cost: "1.1",
      effective_io_concurrency: "1000",
      default_statistics_target: "100",
      jit: "off",
      max_worker_processes: "8",
      max_parallel_workers: "8",
      max_parallel_workers_per_gather: "2",
      max_parallel_maintenance_workers: "2",
      max_slot_wal_keep_size: "16GB",
    });
    expect(settings).not.toHaveProperty("autovacuum_work_mem");
    expect(settings).not.toHaveProperty("autovacuum_max_workers");
  });

  it("1 GiB / 1 cpu / ssd / mixed / pg16 (small node)", () => {
    // RAM = 1048576 kB; shared_buffers 262144 kB = 256MB (huge_pages off); effective_cache_size 786432 kB = 768MB
    // maintenance_work_mem = 65536 kB = 64MB
    // work_mem = (1048576 - 262144) / ((100 + 8) * 3) = 786432 / 324 = 2427.3; mixed halves: 1213 -> raised to the 4MB floor
    // wal_buffers = 3% of 262144 = 7864.32 -> 7864kB (below 14MB, no rounding up)
    const settings = tunePostgres({ memoryBytes: 1 * GiB, cpus: 1, storage: "ssd", profile: "mixed", version: 16 });
    expect(settings).toMatchObject({
      ...REPLICATED_ARCHIVED,
      max_connections: "100",
      shared_buffers: "256MB",
      huge_pages: "off",
      effective_cache_size: "768MB",
      maintenance_work_mem: "64MB",
      work_mem: "4MB",
      wal_buffers: "7864kB",
      wal_compression: "lz4",
      min_wal_size: "1GB",
      max_wal_size: "4GB",
      jit: "off",
      max_slot_wal_keep_size: "8GB",
    });
  });

  it("2 GiB / 2 cpus / ssd / web / pg13", () => {
    // RAM = 2097152 kB; shared_buffers 524288 kB = 512MB; effective_cache_size 1572864 kB = 1536MB
    // maintenance_work_mem = 131072 kB = 128MB
    // work_mem = (2097152 - 524288) / ((200 + 8) * 3) = 1572864 / 624 = 2520.6 -> raised to the 4MB floor
    // wal_buffers = 3% of 524288 = 15728.6 -> 15728 kB, between 14MB and 16MB -> rounded up to 16MB
    // pg13: wal_compression on (pglz; lz4 needs 15)
    const settings = tunePostgres({ memoryBytes: 2 * GiB, cpus: 2, storage: "ssd", profile: "web", version: 13 });
    expect(settings).toMatchObject({
      max_connections: "200",
      shared_buffers: "512MB",
      huge_pages: "off",
      effective_cache_size: "1536MB",
      maintenance_work_mem: "128MB",
      work_mem: "4MB",
      wal_buffers: "16MB",
      wal_compression: "on",
    });
  });

  it("an explicit maxConnections enters work_mem", () => {
    // (16777216 - 4194304) / ((100 + 4) * 3) = 12582912 / 312 = 40329.8 -> 40329kB
    const settings = tunePostgres({ memoryBytes: 16 * GiB, cpus: 4, storage: "ssd", profile: "web", maxConnections: 100 });
    expect(settings.max_connections).toBe("100");
    expect(settings.work_mem).toBe("40329kB");
  });

  it("64 cpus: 5 autovacuum workers, non-dw per-gather capped at 4", () => {
    const settings = tunePostgres({ memoryBytes: 32 * GiB, cpus: 64, storage: "nvme", profile: "oltp" });
    expect(settings.autovacuum_max_workers).toBe("5");
    expect(settings.max_parallel_workers_per_gather).toBe("4");
    expect(settings.max_parallel_maintenance_workers).toBe("4");
    expect(settings.max_worker_processes).toBe("64");
  });

  it("the 256MiB floor is accepted and gives PostgreSQL-startable values", () => {
    const settings = tunePostgres({ memoryBytes: MIN_MEMORY_BYTES, cpus: 1, storage: "hdd", profile: "web" });
    expect(settings).toMatchObject({ shared_buffers: "64MB", effective_cache_size: "192MB", maintenance_work_mem: "16MB", work_mem: "4MB", wal_buffers: "1966kB" });
  });
});

describe("tunePostgres replication and archiving", () => {
  const base = { memoryBytes: 4 * GiB, cpus: 2, storage: "ssd", profile: "web" } as const;

  it("uses the given stanza, archive timeout and replication limits", () => {
    const settings = tunePostgres({
      ...base,
      archive: { stanza: "homelab-prod", timeoutSeconds: 30 },
      replication: { maxWalSenders: 4, maxReplicationSlots: 3, maxSlotWalKeepSizeBytes: 2 * GiB, synchronousStandbyNames: "ANY 1 (pg_2, pg_3)" },
      idleInTransactionSessionTimeoutMs: 90_000,
    });
    expect(settings).toMatchObject({
      archive_command: "pgbackrest --stanza=homelab-prod archive-push %p",
      archive_timeout: "30s",
      max_wal_senders: "4",
      max_replication_slots: "3",
      max_slot_wal_keep_size: "2GB",
      synchronous_standby_names: "ANY 1 (pg_2, pg_3)",
      idle_in_transaction_session_timeout: "90s",
    });
    const keys = Object.keys(settings);
    expect(keys.indexOf("synchronous_standby_names")).toBeGreaterThan(keys.indexOf("hot_standby_feedback"));
    expect(keys.indexOf("synchronous_standby_names")).toBeLessThan(keys.indexOf("archive_mode"));
  });

  it("leaves synchronous_standby_names out for asynchronous replication", () => {
    expect(tunePostgres({ ...base, replication: { synchronousStandbyNames: undefined } })).not.toHaveProperty("synchronous_standby_names");
  });

  it("idle_in_transaction_session_timeout 0 disables it", () => {
    expect(tunePostgres({ ...base, idleInTransactionSessionTimeoutMs: 0 }).idle_in_transaction_session_timeout).toBe("0");
  });

  it("is deterministic", () => {
    const input: TuneInput = { ...base, extraSettings: { log_min_duration_statement: "250ms", track_io_timing: true } };
    expect(renderPostgresConf(tunePostgres(input))).toBe(renderPostgresConf(tunePostgres(input)));
  });
});

describe("tunePostgres extraSettings", () => {
  const base = { memoryBytes: 4 * GiB, cpus: 4, storage: "ssd", profile: "web" } as const;

  it("appends new settings last in the caller's order and overrides tuned ones in place", () => {
    const settings = tunePostgres({ ...base, extraSettings: { track_io_timing: true, "pg_stat_statements.track": "all", work_mem: "8MB", log_lock_waits: false, statement_timeout: 30000 } });
    const keys = Object.keys(settings);
    expect(keys.slice(-4)).toEqual(["track_io_timing", "pg_stat_statements.track", "log_lock_waits", "statement_timeout"]);
    expect(settings.track_io_timing).toBe("on");
    expect(settings.log_lock_waits).toBe("off");
    expect(settings.statement_timeout).toBe("30000");
    expect(settings.work_mem).toBe("8MB");
    expect(keys.indexOf("work_mem")).toBe(keys.indexOf("maintenance_work_mem") + 1);
  });

  it("accepts safe values of guarded settings", () => {
    const settings = tunePostgres({
      ...base,
      extraSettings: { wal_level: "logical", archive_mode: "always", hot_standby: true, fsync: "on", shared_preload_libraries: "pg_stat_statements,auto_explain" },
    });
    expect(settings).toMatchObject({ wal_level: "logical", archive_mode: "always", hot_standby: "on", shared_preload_libraries: "pg_stat_statements,auto_explain" });
  });

  it.each([
    ["wal_level", "minimal"],
    ["archive_mode", "off"],
    ["archive_mode", false],
    ["archive_command", "/bin/true"],
    ["archive_library", "basic_archive"],
    ["archive_timeout", 0],
    ["max_connections", 500],
    ["max_wal_senders", 0],
    ["max_replication_slots", 0],
    ["max_slot_wal_keep_size", -1],
    ["synchronous_standby_names", "*"],
    ["idle_in_transaction_session_timeout", 0],
    ["hot_standby", "off"],
    ["wal_log_hints", false],
    ["fsync", "off"],
    ["full_page_writes", false],
    ["password_encryption", "md5"],
    ["data_checksums", "on"],
    ["shared_preload_libraries", "auto_explain"],
    ["WAL_LEVEL", "minimal"],
  ])("refuses extraSettings.%s = %j", (name, value) => {
    const problems = problemsOf({ ...base, extraSettings: { [name]: value } });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(`extraSettings.${name}`);
    expect(problems[0]).toContain(typeof value === "string" ? JSON.stringify(value) : String(value));
  });

  it("refuses malformed names and values", () => {
    const problems = problemsOf({ ...base, extraSettings: { "bad name": 1, ok_name: Number.NaN, other: "two\nlines", nested: { a: 1 } } });
    expect(problems.map((p) => p.split(":")[0])).toEqual(["extraSettings.bad name", "extraSettings.ok_name", "extraSettings.other", "extraSettings.nested"]);
  });
});

describe("tunePostgres input validation", () => {
  const base: TuneInput = { memoryBytes: 4 * GiB, cpus: 4, storage: "ssd", profile: "web" };

  it("collects every problem and throws once", () => {
    const problems = problemsOf({
      memoryBytes: 100 * MiB,
      cpus: 0,
      storage: "tape",
      profile: "desktop",
      version: 18,
      maxConnections: 1_000_000,
      archive: { stanza: "main; rm -rf /", timeoutSeconds: 0 },
      replication: { maxWalSenders: 0, maxReplicationSlots: -1, maxSlotWalKeepSizeBytes: -1, synchronousStandbyNames: "" },
      idleInTransactionSessionTimeoutMs: -5,
    });
    expect(problems.map((p) => p.split(":")[0])).toEqual([
      "memoryBytes",
      "cpus",
      "storage",
      "profile",
      "version",
      "maxConnections",
      "archive.stanza",
      "archive.timeoutSeconds",
      "replication.maxWalSenders",
      "replication.maxReplicationSlots",
      "replication.maxSlotWalKeepSizeBytes",
      "replication.synchronousStandbyNames",
      "idleInTransactionSessionTimeoutMs",
    ]);
    // Each problem names the value and what is accepted.
    expect(problems[0]).toContain("104857600");
    expect(problems[0]).toContain("256MiB");
    expect(problems[2]).toContain('"tape"');
    expect(problems[2]).toContain("hdd, ssd, nvme");
    expect(problems[3]).toContain("desktop");
  });

  it("TuneError's message lists the problems", () => {
    expect(() => tunePostgres({ ...base, cpus: 1.5 })).toThrow(/cpus: 1.5 is not accepted/);
  });

  it("checks the MAX_BACKENDS sum", () => {
    const problems = problemsOf({ ...base, cpus: 1024, maxConnections: MAX_BACKENDS - 1000, replication: { maxWalSenders: 100 } });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^maxConnections: .*MAX_BACKENDS/);
  });

  it("accepts the version range 13..17 and defaults to 17", () => {
    for (const version of [13, 14, 15, 16, 17]) expect(() => tunePostgres({ ...base, version })).not.toThrow();
    expect(tunePostgres(base).wal_compression).toBe("lz4");
    expect(problemsOf({ ...base, version: 12 })[0]).toMatch(/^version: 12 .* 13 to 17/);
  });

  it("refuses a max_slot_wal_keep_size that is not whole MiB or below one WAL segment", () => {
    expect(problemsOf({ ...base, replication: { maxSlotWalKeepSizeBytes: 1.5 * MiB } })[0]).toMatch(/^replication\.maxSlotWalKeepSizeBytes/);
    expect(problemsOf({ ...base, replication: { maxSlotWalKeepSizeBytes: 8 * MiB } })[0]).toMatch(/^replication\.maxSlotWalKeepSizeBytes/);
  });
});

// ---------- property-based ----------

const validInput: fc.Arbitrary<TuneInput> = fc.record(
  {
    memoryBytes: fc.oneof(
      fc.integer({ min: 256, max: 16 * 1024 * 1024 }).map((mib) => mib * MiB),
      fc.bigInt({ min: BigInt(MIN_MEMORY_BYTES), max: BigInt(MAX_MEMORY_BYTES) }).map(Number),
    ),
    cpus: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 1024 })),
    storage: fc.constantFrom("hdd", "ssd", "nvme"),
    profile: fc.constantFrom("web", "oltp", "dw", "mixed"),
    version: fc.integer({ min: 13, max: 17 }),
    maxConnections: fc.integer({ min: 4, max: 100_000 }),
    archive: fc.record({ stanza: fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,20}$/), timeoutSeconds: fc.integer({ min: 1, max: 86_400 }) }),
    replication: fc.record(
      {
        maxWalSenders: fc.integer({ min: 1, max: 1000 }),
        maxReplicationSlots: fc.integer({ min: 1, max: 1000 }),
        maxSlotWalKeepSizeBytes: fc.integer({ min: 16, max: 1024 * 1024 }).map((mib) => mib * MiB),
        synchronousStandbyNames: fc.constantFrom("FIRST 1 (replica_1)", "ANY 1 (pg_1, pg_2)", "*"),
      },
      { requiredKeys: [] },
    ),
    idleInTransactionSessionTimeoutMs: fc.integer({ min: 0, max: 2_147_483_647 }),
  },
  { requiredKeys: ["memoryBytes", "cpus", "storage", "profile"] },
);

const mem = (settings: Record<string, string>, key: string) => parseMemory(settings[key] ?? "missing");
const int = (settings: Record<string, string>, key: string) => Number(settings[key]);

describe("tunePostgres properties", () => {
  it("valid input always gives settings inside PostgreSQL's documented ranges", () => {
    fc.assert(
      fc.property(validInput, (input) => {
        const s = tunePostgres(input);
        // runtime-config-resource: shared_buffers >= 128kB, work_mem >= 64kB, maintenance_work_mem >= 1MB
        expect(mem(s, "shared_buffers")).toBeGreaterThanOrEqual(128 * 1024);
        expect(mem(s, "work_mem")).toBeGreaterThanOrEqual(64 * 1024);
        expect(mem(s, "maintenance_work_mem")).toBeGreaterThanOrEqual(1024 * 1024);
        expect(mem(s, "maintenance_work_mem")).toBeLessThanOrEqual(8 * GiB);
        expect(mem(s, "shared_buffers") + mem(s, "effective_cache_size")).toBeLessThanOrEqual(input.memoryBytes);
        // work_mem's PostgreSQL maximum is MAX_KILOBYTES (INT_MAX kB)
        expect(mem(s, "work_mem")).toBeLessThanOrEqual(2_147_483_647 * 1024);
        // wal_buffers: at least 32kB, at most one 16MB segment
        expect(mem(s, "wal_buffers")).toBeGreaterThanOrEqual(32 * 1024);
        expect(mem(s, "wal_buffers")).toBeLessThanOrEqual(16 * MiB);
        // xlog.c: min_wal_size and max_wal_size must be at least twice wal_segment_size (2 * 16MB)
        expect(mem(s, "min_wal_size")).toBeGreaterThanOrEqual(32 * MiB);
        expect(mem(s, "max_wal_size")).toBeGreaterThanOrEqual(mem(s, "min_wal_size"));
        expect(mem(s, "max_slot_wal_keep_size")).toBeGreaterThanOrEqual(16 * MiB);
        expect(int(s, "effective_io_concurrency")).toBeGreaterThanOrEqual(0);
        expect(int(s, "effective_io_concurrency")).toBeLessThanOrEqual(1000);
        expect(Number(s.random_page_cost)).toBeGreaterThan(0);
        expect(Number(s.checkpoint_completion_target)).toBeGreaterThanOrEqual(0);
        expect(Number(s.checkpoint_completion_target)).toBeLessThanOrEqual(1);
        expect(int(s, "default_statistics_target")).toBeGreaterThanOrEqual(1);
        expect(int(s, "default_statistics_target")).toBeLessThanOrEqual(10_000);
        const workers = int(s, "max_worker_processes");
        for (const key of ["max_parallel_workers", "max_parallel_workers_per_gather", "max_parallel_maintenance_workers"]) {
          expect(int(s, key)).toBeGreaterThanOrEqual(0);
          expect(int(s, key)).toBeLessThanOrEqual(Math.min(workers, 1024));
        }
        expect(int(s, "max_parallel_workers_per_gather")).toBeLessThanOrEqual(int(s, "max_parallel_workers"));
        expect(int(s, "max_connections")).toBeGreaterThanOrEqual(4);
        const backends = int(s, "max_connections") + Number(s.autovacuum_max_workers ?? 3) + 1 + workers + int(s, "max_wal_senders");
        expect(backends).toBeLessThanOrEqual(MAX_BACKENDS);
        expect(["replica", "logical"]).toContain(s.wal_level);
        expect(s.archive_mode).toBe("on");
        expect(s.archive_command).toMatch(/^pgbackrest --stanza=[A-Za-z0-9][A-Za-z0-9_.-]* archive-push %p$/);
        expect(["on", "off", "try"]).toContain(s.huge_pages);
        expect(s.hot_standby).toBe("on");
        expect(s.wal_log_hints).toBe("on");
        // Every value renders as postgresql.conf.
        expect(renderPostgresConf(s).split("\n").filter((l) => l && !l.startsWith("#"))).toHaveLength(Object.keys(s).length);
      }),
      { numRuns: 500 },
    );
  });

  it("same input, same settings, same order", () => {
    fc.assert(
      fc.property(validInput, (input) => {
        expect(Object.entries(tunePostgres(input))).toEqual(Object.entries(tunePostgres(structuredClone(input))));
      }),
      { numRuns: 100 },
    );
  });

  type Corruption = [field: string, patch: (input: TuneInput) => unknown];
  const corruption: fc.Arbitrary<Corruption> = fc.oneof(
    fc.oneof(fc.integer({ min: -1e9, max: MIN_MEMORY_BYTES - 1 }), fc.constant(Number.NaN), fc.double({ min: 300 * MiB, max: GiB, noInteger: true }), fc.constant(MAX_MEMORY_BYTES + 1))
      .map((v): Corruption => ["memoryBytes", (i) => ({ ...i, memoryBytes: v })]),
    fc.oneof(fc.integer({ min: -100, max: 0 }), fc.integer({ min: 1025, max: 1e6 }), fc.double({ min: 1, max: 64, noInteger: true }))
      .map((v): Corruption => ["cpus", (i) => ({ ...i, cpus: v })]),
    fc.string().filter((v) => !["hdd", "ssd", "nvme"].includes(v)).map((v): Corruption => ["storage", (i) => ({ ...i, storage: v })]),
    fc.oneof(fc.constant("desktop"), fc.string()).filter((v) => !["web", "oltp", "dw", "mixed"].includes(v)).map((v): Corruption => ["profile", (i) => ({ ...i, profile: v })]),
    fc.oneof(fc.integer({ min: -5, max: 12 }), fc.integer({ min: 18, max: 99 }), fc.constant(16.5)).map((v): Corruption => ["version", (i) => ({ ...i, version: v })]),
    fc.oneof(fc.integer({ min: -10, max: 3 }), fc.integer({ min: MAX_BACKENDS + 1, max: 1e7 })).map((v): Corruption => ["maxConnections", (i) => ({ ...i, maxConnections: v })]),
    fc.constantFrom("", " main", "a b", "x;reboot", "$(id)", "-flag", "a".repeat(65)).map((v): Corruption => ["archive.stanza", (i) => ({ ...i, archive: { stanza: v, timeoutSeconds: 60 } })]),
    fc.oneof(fc.integer({ min: -100, max: 0 }), fc.integer({ min: 86_401, max: 1e8 })).map((v): Corruption => ["archive.timeoutSeconds", (i) => ({ ...i, archive: { stanza: "main", timeoutSeconds: v } })]),
    fc.integer({ min: -10, max: 0 }).map((v): Corruption => ["replication.maxWalSenders", (i) => ({ ...i, replication: { maxWalSenders: v } })]),
    fc.constantFrom(-1, 0, 1024, 15 * MiB, 16 * MiB + 1).map((v): Corruption => ["replication.maxSlotWalKeepSizeBytes", (i) => ({ ...i, replication: { maxSlotWalKeepSizeBytes: v } })]),
    fc.integer({ min: -1e6, max: -1 }).map((v): Corruption => ["idleInTransactionSessionTimeoutMs", (i) => ({ ...i, idleInTransactionSessionTimeoutMs: v })]),
    fc.constantFrom<[string, unknown]>(["wal_level", "minimal"], ["archive_mode", "off"], ["fsync", false], ["hot_standby", "off"], ["password_encryption", "md5"])
      .map(([name, v]): Corruption => [`extraSettings.${name}`, (i) => ({ ...i, extraSettings: { [name]: v } })]),
  );

  it("invalid input is rejected with a problem naming the field", () => {
    const sane: fc.Arbitrary<TuneInput> = validInput.map((i) => ({ ...i, maxConnections: undefined, replication: undefined, archive: undefined, idleInTransactionSessionTimeoutMs: undefined }));
    fc.assert(
      fc.property(sane, corruption, (input, [field, patch]) => {
        const problems = problemsOf(patch(input));
        expect(problems.some((p) => p.startsWith(`${field}:`))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("several bad fields are all reported at once", () => {
    fc.assert(
      fc.property(validInput, fc.uniqueArray(corruption, { minLength: 2, maxLength: 5, selector: ([field]) => field.split(".")[0] }), (input, corruptions) => {
        const broken = corruptions.reduce((acc, [, patch]) => patch(acc as TuneInput), { ...input, replication: undefined, archive: undefined } as unknown);
        const problems = problemsOf(broken);
        for (const [field] of corruptions) expect(problems.some((p) => p.startsWith(`${field}:`))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
