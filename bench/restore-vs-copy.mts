// Benchmark: `pgbackrest restore` against a plain copy of the same data directory, at two sizes in ONE run
// (issue 9's closing numbers): the e2e tier as it comes up, then after `pgbench -i -s <scale>` (scale 60 is
// about 0.9 GiB). Each size is measured by the backup-restore drill itself (variant latest, --fresh-backup:
// the restore of a backup that holds all the data, nothing left to replay), whose evidence.restoreVsCopy
// times the restore command and a tar copy of the restored directory on the same engine, side by side.
//
//   npx tsx bench/restore-vs-copy.mts [--scale 60] [--slot 9]
//
// Brings up its own small tier (test/e2e/harness.ts, slot 9: 172.38.0.0/24, ports from 26332) and removes
// it at the end. Prints one table; exits 1 when a drill run fails.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { runBackupRestoreDrill } from "../drills/backup-restore.mts";
import { e2eSpec, ensureImages, startTier, type Tier } from "../test/e2e/harness.ts";

interface Row {
  size: string;
  dataMiB: number;
  restoreSeconds: number;
  copySeconds: number;
  ratio: number;
  restoreMiBps: number;
  copyMiBps: number;
  backupSeconds: number;
}

const positiveInt = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag}: got ${JSON.stringify(v)}; expected a whole number >= 1`);
  return n;
};

async function measure(tier: Tier, label: string, reports: string): Promise<Row> {
  const t0 = Date.now();
  const report = await runBackupRestoreDrill({ topology: tier.topology, reportsDir: reports, variant: "latest", freshBackup: true });
  if (report.verdict !== "pass") throw new Error(`${label}: the backup-restore drill failed: ${report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join("; ")}`);
  const v = report.evidence.restoreVsCopy as { restoreSeconds: number; copySeconds: number; copiedBytes: number; ratio: number };
  const backupPhase = report.phases.find((p) => p.name.startsWith("full backup on the repository host"));
  const mib = v.copiedBytes / 1048576;
  console.log(`[bench] ${label}: drill ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return {
    size: label,
    dataMiB: Math.round(mib * 10) / 10,
    restoreSeconds: v.restoreSeconds,
    copySeconds: v.copySeconds,
    ratio: v.ratio,
    restoreMiBps: Math.round((mib / v.restoreSeconds) * 10) / 10,
    copyMiBps: Math.round((mib / v.copySeconds) * 10) / 10,
    backupSeconds: backupPhase ? Math.round(backupPhase.durationMs / 100) / 10 : Number.NaN,
  };
}

async function main(opts: { scale: number; slot: number }): Promise<void> {
  ensureImages();
  const spec = e2eSpec(`bench-restore`, { redis: { enabled: false }, duckdb: { enabled: false }, postgres: { node: { memory: "512MiB" } }, pgbackrest: { node: { memory: "256MiB" } } }, opts.slot);
  const tier = await startTier(spec);
  const scratch = mkdtempSync(path.join(tmpdir(), "bench-restore-"));
  const rows: Row[] = [];
  try {
    rows.push(await measure(tier, "e2e size", path.join(scratch, "small")));
    const t0 = Date.now();
    const init = await tier.exec("pg-1", ["pgbench", "-i", "-q", "-s", String(opts.scale), tier.spec.postgres.database], { user: "postgres", allowFailure: true });
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    const size = (await tier.sql("pg-1", "select pg_size_pretty(pg_database_size(current_database()))", tier.spec.postgres.database))[0]?.[0];
    console.log(`[bench] pgbench -i -s ${opts.scale}: ${((Date.now() - t0) / 1000).toFixed(1)} s, database ${size}`);
    rows.push(await measure(tier, `pgbench scale ${opts.scale}`, path.join(scratch, "large")));
  } finally {
    await tier.teardown();
    rmSync(scratch, { recursive: true, force: true });
  }
  console.log("\n| data | MiB | backup s | restore s | restore MiB/s | plain copy s | copy MiB/s | restore / copy |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) console.log(`| ${r.size} | ${r.dataMiB} | ${r.backupSeconds} | ${r.restoreSeconds} | ${r.restoreMiBps} | ${r.copySeconds} | ${r.copyMiBps} | x${r.ratio} |`);
}

const program = new Command("bench/restore-vs-copy.mts")
  .description("pgbackrest restore vs a plain copy of the same data directory, at the e2e size and after pgbench -i -s <scale>, in one run")
  .option("--scale <n>", "pgbench scale factor for the large size (60 is about 0.9 GiB)", positiveInt("--scale"), 60)
  .option("--slot <n>", "e2e network slot (subnet 172.(29+slot).0.0/24)", positiveInt("--slot"), 9)
  .action(async (opts: { scale: number; slot: number }) => {
    try {
      await main(opts);
    } catch (e) {
      console.error(`bench: ${(e as Error).message}`);
      process.exitCode = 1;
    }
  });
await program.parseAsync(process.argv);
