// Benchmark: unplanned failover in postgres.ha: patroni (issue 11's acceptance), N runs in ONE stack: each run
// docker-kills the Patroni leader with no drill running, a writer through HAProxy's primary endpoint measures
// RTO (fault -> first acknowledged write) and the acknowledged writes lost, and the killed node is started
// again and timed until it streams as a standby. Prints every run, then median and worst beside the anchors.
//
//   npx tsx bench/ha-failover.mts [--runs 5] [--mode sync|async]      (npm run bench:ha)
//
// Brings up its own tier (test/e2e/ha-lib.ts haSpec: slot 11, 172.40.0.0/24, or HA_E2E_SLOT) and removes it.
// Exits 1 when a run lost an acknowledged write in sync mode or missed the stack's RTO objective.
import { Command, InvalidArgumentError } from "commander";
import { summarizeRuns } from "../drills/lib/ha.ts";
import { ensureImages, startTier } from "../test/e2e/harness.ts";
import { ensureHaImage, haSpec, killPrimaryRun, type KillRun } from "../test/e2e/ha-lib.ts";

const opts = new Command()
  .option("--runs <n>", "kill runs", (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 50) throw new InvalidArgumentError("expected a whole number 1-50");
    return n;
  }, 5)
  .option("--mode <mode>", "replication mode: sync or async", "sync")
  .parse()
  .opts<{ runs: number; mode: "sync" | "async" }>();

ensureImages();
ensureHaImage();
const spec = haSpec("ha-bench", { postgres: { ha: "patroni", replicationMode: opts.mode } });
const tier = await startTier(spec);
const runs: KillRun[] = [];
let failed = false;
try {
  for (let i = 1; i <= opts.runs; i++) runs.push(await killPrimaryRun(tier, `bench-${i}`));
} catch (e) {
  console.error(`[bench] run ${runs.length + 1} failed: ${(e as Error).message}`);
  failed = true;
} finally {
  await tier.teardown();
}
const ha = tier.topology.postgres.ha;
console.log(`\nunplanned failover, postgres.ha: patroni, ${opts.mode}, ttl ${ha?.ttlSeconds}s loop_wait ${ha?.loopWaitSeconds}s retry_timeout ${ha?.retryTimeoutSeconds}s, objective RTO ${spec.objectives.failover.rto}s`);
console.log("| run | killed | RTO s | acked | lost | rejoin s |\n|---|---|---|---|---|---|");
runs.forEach((r, i) => console.log(`| ${i + 1} | ${r.killed} | ${r.rtoSeconds.toFixed(2)} | ${r.acked} | ${r.lost.length} | ${r.rejoinSeconds.toFixed(1)} |`));
if (runs.length > 0) {
  const s = summarizeRuns(runs.map((r) => r.rtoSeconds));
  const rejoin = summarizeRuns(runs.map((r) => r.rejoinSeconds));
  console.log(`\nRTO median ${s.medianSeconds.toFixed(2)}s, worst ${s.worstSeconds.toFixed(2)}s, best ${s.bestSeconds.toFixed(2)}s over ${s.runs} runs; rejoin median ${rejoin.medianSeconds.toFixed(1)}s, worst ${rejoin.worstSeconds.toFixed(1)}s`);
  console.log("anchors: Pigsty \"fast\" preset avg 14s, Patroni defaults (ttl 30) 30-40s, CloudNativePG e2e failover < 10s, switchover < 20s");
  if (runs.some((r) => r.rtoSeconds > spec.objectives.failover.rto)) failed = true;
  if (opts.mode === "sync" && runs.some((r) => r.lost.length > 0)) failed = true;
}
process.exit(failed || runs.length < opts.runs ? 1 : 0);
