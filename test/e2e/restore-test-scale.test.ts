// The scheduled restore test at a size that shows restore throughput (issue 9's closing note): opt-in, as it
// loads pgbench at HOMELAB_E2E_RESTORE_SCALE (60 is about 1 GB) into a real tier on slot 4, takes a full
// backup, runs homelab-restore-test on the repository node, and sets its restore time against a plain copy
// of the same data directory on the same engine's disk. Prints the numbers; holds them to sanity only.
//   HOMELAB_IMAGE_NAMESPACE=... HOMELAB_E2E_RESTORE_SCALE=60 npx vitest run test/e2e/restore-test-scale.test.ts
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRestoreTestHistory } from "../../drills/lib/restore-test.ts";
import { e2eSpec, ensureImages, leftovers, startTier, withMemorySampling, type Tier } from "./harness.ts";

const SCALE = Number(process.env.HOMELAB_E2E_RESTORE_SCALE ?? "0");
const STACK = "e2e-restoretest-scale";
const SLOT = 4;
let tier: Tier;

const seconds = (t0: number) => (Date.now() - t0) / 1000;

describe.skipIf(!(SCALE > 0))(`scheduled restore test at pgbench scale ${SCALE}`, () => {
  beforeAll(async () => {
    ensureImages();
    tier = await startTier(e2eSpec(STACK, { redis: { enabled: false }, duckdb: { enabled: false } }, SLOT));
  }, 900_000);

  afterAll(async () => {
    await tier?.teardown();
    expect(await leftovers(STACK)).toEqual([]);
  }, 300_000);

  it("restores, starts and amchecks the backup; restore time against a plain copy of the same bytes", async () => {
    const db = tier.spec.postgres.database;
    let t0 = Date.now();
    await tier.exec("pg-1", ["pgbench", "-i", "-q", "-s", String(SCALE), db], { user: "postgres" });
    const loadSeconds = seconds(t0);
    t0 = Date.now();
    await tier.exec("backup", ["pgbackrest", `--stanza=${tier.spec.pgbackrest.stanza}`, "--type=full", "backup"], { user: "postgres" });
    const backupSeconds = seconds(t0);

    const repo = tier.plan.nodes.find((n) => n.name === "backup")!.hostname;
    const { result: run, idleBytes: idle, peakBytes: peak } = await withMemorySampling(repo, () =>
      tier.exec("backup", ["homelab-restore-test", "--budget", "3600"], { user: "postgres", allowFailure: true }),
    );
    expect(run.code, run.stdout).toBe(0);
    const r = parseRestoreTestHistory((await tier.exec("backup", ["homelab-restore-test", "--history"])).stdout).records.at(-1)!;
    expect(r.verdict).toBe("pass");
    expect(r.bytesRestored!).toBeGreaterThan(SCALE * 12 * 1024 ** 2);

    // The same data directory copied file by file on the primary's node (the engine's one disk): what a
    // restore costs beyond moving the bytes (decompression, checksums, the manifest).
    t0 = Date.now();
    await tier.exec("pg-1", ["sh", "-c", "cp -a /var/lib/postgresql/data /var/lib/postgresql/plain-copy && sync && du -sb /var/lib/postgresql/plain-copy"], { user: "postgres" });
    const copySeconds = seconds(t0);
    await tier.exec("pg-1", ["rm", "-rf", "/var/lib/postgresql/plain-copy"], { user: "postgres" });

    const mib = (b: number) => Math.round(b / 1048576);
    console.log(
      `[e2e] restore test at scale ${SCALE}: ${mib(r.bytesRestored!)} MiB (repository ${mib(r.backup!.repositoryBytes ?? 0)} MiB); pgbench -i ${loadSeconds.toFixed(1)}s, full backup ${backupSeconds.toFixed(1)}s; ` +
        `restore ${r.restoreSeconds}s at ${r.restoreMBps} MB/s, recovery ${r.recoverySeconds}s, amcheck ${r.amcheck!.relations} relations in ${r.amcheckSeconds}s, total ${r.totalSeconds}s; ` +
        `plain copy ${copySeconds.toFixed(1)}s -> restore/plain-copy ${(r.restoreSeconds! / copySeconds).toFixed(2)}; repository node memory ${mib(idle)} MiB idle, peak ${mib(peak)} MiB of ${mib(tier.spec.pgbackrest.node.memory)} MiB`,
    );
    expect(peak).toBeLessThan(tier.spec.pgbackrest.node.memory);
  }, 3_600_000);
});
