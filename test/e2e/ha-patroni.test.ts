// postgres.ha: patroni (ADR 0017, issue 11) on a real engine, e2e slot 11 (172.40.0.0/24): real Patroni 4,
// a 3-member etcd and HAProxy. No drill runs: the test only injects faults (docker kill, docker network
// disconnect) and watches through the stable primary endpoint, as a client would. 5 kill runs with median and
// worst: `npm run bench:ha` (bench/ha-failover.mts); here HA_E2E_RUNS (default 1) keeps the suite short.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../../components/platform/docker-node.ts";
import { EndpointWriter, HA_PROBE_SQL, failoverFromAcks, splitBrainEvidence, summarizeRuns } from "../../drills/lib/ha.ts";
import { RUNNERS } from "../../cli/drill-commands.ts";
import { runHaFailoverDrill } from "../../drills/ha-failover.mts";
import { leftovers, startTier, type Tier } from "./harness.ts";
import { HA_STACK, endpointQuery, ensureHaImage, haSpec, killPrimaryRun, leaderNode, waitFor, waitHealthyCluster, waitRejoined, type KillRun } from "./ha-lib.ts";

const RUNS = Number(process.env.HA_E2E_RUNS ?? 1);

describe("postgres.ha: patroni (Patroni + etcd + HAProxy)", () => {
  let tier: Tier;
  beforeAll(async () => {
    ensureHaImage();
    tier = await startTier(haSpec());
  }, 300_000);
  afterAll(async () => {
    await tier?.teardown();
    expect(await leftovers(HA_STACK)).toEqual([]);
  }, 120_000);

  it("routes the primary port to the leader and the replicas port to a standby; the topology names both endpoints", async () => {
    const m = await waitHealthyCluster(tier);
    expect(m.find((x) => x.Role === "Sync Standby"), JSON.stringify(m)).toBeDefined();
    const base = tier.spec.docker.basePort;
    expect(tier.topology.postgres.endpoints).toEqual({ primary: { host: "127.0.0.1", port: base + 10 }, replicas: { host: "127.0.0.1", port: base + 11 } });
    const leader = await leaderNode(tier);
    const leaderAddr = tier.plan.nodes.find((n) => n.name === leader)?.ipv4Address;
    const [p] = await endpointQuery<{ addr: string; ro: boolean }>(tier, "select host(inet_server_addr()) as addr, pg_is_in_recovery() as ro");
    expect(p).toEqual({ addr: leaderAddr, ro: false });
    const [r] = await endpointQuery<{ addr: string; ro: boolean }>(tier, "select host(inet_server_addr()) as addr, pg_is_in_recovery() as ro", [], "replicas");
    expect(r?.ro).toBe(true);
    expect(r?.addr).not.toBe(leaderAddr);
  }, 180_000);

  it(`docker kill of the primary, no drill running: writes through the endpoint resume by themselves, 0 acknowledged writes lost (sync), ${RUNS} run(s)`, async () => {
    const runs: KillRun[] = [];
    for (let i = 1; i <= RUNS; i++) runs.push(await killPrimaryRun(tier, `kill-${i}`));
    const s = summarizeRuns(runs.map((r) => r.rtoSeconds));
    console.log(`[ha] RTO over ${s.runs} run(s): median ${s.medianSeconds.toFixed(2)}s, worst ${s.worstSeconds.toFixed(2)}s (ttl ${tier.topology.postgres.ha?.ttlSeconds}s, loop_wait ${tier.topology.postgres.ha?.loopWaitSeconds}s); anchors: Pigsty "fast" avg 14s, Patroni defaults 30-40s, CNPG e2e failover < 10s`);
    for (const r of runs) {
      expect(r.lost, `run ${r.killed}: acknowledged writes lost`).toEqual([]);
      expect(r.rtoSeconds).toBeLessThanOrEqual(tier.spec.objectives.failover.rto);
      expect(r.rejoinSeconds).toBeLessThanOrEqual(tier.spec.objectives.failover.redundancyRestored);
    }
  }, 600_000);

  it("drill failover on the HA stack injects and observes only: PASS within the objectives, phases beside Patroni's budgets; twins etcd quorum lost (no failover) and a standby past maximum_lag_on_failover in async mode (writes lost): FAIL saying why", async () => {
    const reportsDir = await mkdtemp(path.join(tmpdir(), "ha-drill-"));
    try {
      const report = await RUNNERS.failover(async () => tier.topology, { reports: reportsDir });
      console.log(`[ha] drill failover: ${report.verdict.toUpperCase()}; RTO ${report.rto?.totalSeconds.toFixed(2)}s (${(report.evidence.budgets as string[] | undefined)?.join("; ")}), lost ${report.rpo?.lostWrites}, rejoin ${(report.evidence.rejoinSeconds as number).toFixed(1)}s`);
      expect(report.checks.filter((c) => !c.ok)).toEqual([]);
      expect(report.evidence.mode).toBe("patroni");
      expect(report.rto?.phases.map((p) => p.name)).toEqual(["leader lock", "endpoint"]);
      expect(report.rpo?.lostWrites).toBe(0);
      expect(report.checks.map((c) => c.name)).toEqual(expect.arrayContaining(["RTO (fault -> first write acknowledged through the endpoint) within objective", "no acknowledged write lost", "redundancy restored"]));

      const twin = await runHaFailoverDrill({ topology: tier.topology, reportsDir, twin: "etcd-quorum-lost" });
      const failed = twin.checks.filter((c) => !c.ok);
      console.log(`[ha] drill failover twin etcd quorum lost: ${twin.verdict.toUpperCase()}; ${failed.map((c) => c.detail).join("; ")}`);
      expect(twin.verdict).toBe("fail");
      expect(failed.map((c) => c.name)).toEqual(["failover happened"]);
      expect(failed[0]!.detail).toMatch(/etcd has no quorum \(.+ down, 1 of 3 left\): no member can hold or take Patroni's leader lock/);
      // The drill put etcd and the node back: the cluster is whole again.
      await waitHealthyCluster(tier, 180_000);

      const lag = await runHaFailoverDrill({ topology: tier.topology, reportsDir, twin: "replica-lagging" });
      const lagFailed = lag.checks.filter((c) => !c.ok);
      console.log(`[ha] drill failover twin standby past maximum_lag_on_failover: ${lag.verdict.toUpperCase()}; ${lagFailed.map((c) => c.detail).join("; ")}`);
      // Measured: the standby replays the repository's archive once streaming stops, is then within
      // maximum_lag_on_failover, and Patroni promotes it; the acknowledged writes neither streamed nor
      // archived are lost, and the drill fails on them, saying how.
      expect(lag.verdict).toBe("fail");
      expect(lagFailed.map((c) => c.name)).toEqual(["no acknowledged write lost"]);
      expect(lagFailed[0]!.detail).toMatch(/pg-\d was [\d.]+ MB behind \(maximum_lag_on_failover 1\.0 MB\) when the leader died, replayed \d+ archived WAL segment\(s\) from the repository and was then promoted: asynchronous replication lost what was neither streamed nor archived/);
      expect((lag.evidence.restoredFromArchive as string[]).length).toBeGreaterThan(0);
      // The old leader led again, synchronous_mode is back, the filler table is gone.
      const healthy = await waitHealthyCluster(tier, 180_000);
      expect(healthy.some((m) => m.Role === "Sync Standby")).toBe(true);
      expect((await endpointQuery<{ t: string | null }>(tier, "select to_regclass('ha_lag_filler')::text as t"))[0]?.t).toBeNull();
    } finally {
      await rm(reportsDir, { recursive: true, force: true });
    }
  }, 900_000);

  it("drill switchover: patronictl switchover to the sync standby, the first write on the new primary within the objective, none lost, the old leader a standby again", async () => {
    const reportsDir = await mkdtemp(path.join(tmpdir(), "ha-switchover-"));
    try {
      const before = await leaderNode(tier);
      const report = await RUNNERS.switchover(async () => tier.topology, { reports: reportsDir });
      console.log(`[ha] drill switchover: ${report.verdict.toUpperCase()}; ${report.evidence.from} -> ${report.evidence.to} in ${report.rto?.totalSeconds.toFixed(2)}s (longest write gap ${(report.evidence.longestWriteGapSeconds as number).toFixed(2)}s), lost ${report.rpo?.lostWrites}, redundancy ${report.rto?.redundancyRestoredSeconds?.toFixed(1)}s`);
      expect(report.checks.filter((c) => !c.ok)).toEqual([]);
      expect(await leaderNode(tier)).not.toBe(before);
      expect(report.rpo?.lostWrites).toBe(0);
    } finally {
      await rm(reportsDir, { recursive: true, force: true });
    }
  }, 300_000);

  it("partition of the old primary while writing (async, so it could acknowledge): it demotes, and no write is acknowledged by two primaries", async () => {
    await waitHealthyCluster(tier);
    // Async for this test: in sync mode the partitioned primary could not acknowledge anything anyway (its
    // synchronous standby is gone), so the test would pass without proving the leader lock fences it.
    const old = await leaderNode(tier);
    const oldNode = tier.plan.nodes.find((n) => n.name === old);
    if (!oldNode) throw new Error(`no node ${old}`);
    await docker(["exec", "-u", "postgres", oldNode.hostname, "patronictl", "-c", "/etc/patroni/patroni.yml", "edit-config", "--force", "--set", "synchronous_mode=false"]);
    await waitFor("synchronous_standby_names cleared", 30_000, async () => ((await tier.sql(old, "select current_setting('synchronous_standby_names') = ''"))[0]?.[0] === "t" ? true : undefined), 500);
    await endpointQuery(tier, HA_PROBE_SQL);

    // A writer ON the old primary (local socket, its own process): what a client still connected to it sees.
    const local = spawn("docker", ["exec", "-u", "postgres", oldNode.hostname, "bash", "-c",
      "i=0; while :; do i=$((i+1)); psql -X -Atq -d app -c \"insert into ha_probe (seq, run, node) values (2000000000 + $i, 'part-old', 'old') returning (extract(epoch from at) * 1000)::bigint\" 2>/dev/null; sleep 0.05; done"]);
    const oldAcks: { serverAtMs: number }[] = [];
    local.stdout.on("data", (b: Buffer) => { for (const l of b.toString().split("\n")) if (/^\d+$/.test(l.trim())) oldAcks.push({ serverAtMs: Number(l.trim()) }); });
    const writer = new EndpointWriter({ connection: { host: tier.topology.postgres.endpoints!.primary.host, port: tier.topology.postgres.endpoints!.primary.port, user: tier.spec.postgres.appUser, database: tier.spec.postgres.database, password: tier.secrets.postgresAppPassword }, run: "part" });
    writer.start();
    let demotedAtMs: number | undefined;
    let partitionAtMs = 0;
    try {
      await waitFor("writes on both writers before the partition", 30_000, async () => (writer.acks.length >= 20 && oldAcks.length >= 20 ? true : undefined), 100);
      partitionAtMs = Date.now();
      await docker(["network", "disconnect", tier.plan.network.name, oldNode.hostname]);
      console.log(`[ha] partition: ${old} (the leader) disconnected from ${tier.plan.network.name} at ${new Date(partitionAtMs).toISOString()}`);
      // The old primary cannot renew its leader lock: Patroni demotes it once the DCS has been unreachable
      // for retry_timeout (it stops PostgreSQL, "demote offline", and starts it as a standby once it can
      // reach etcd again). Demoted = no longer a writable primary: stopped or in recovery.
      await waitFor(`${old} demoted`, 90_000, async () => {
        const r = await docker(["exec", "-u", "postgres", oldNode.hostname, "psql", "-X", "-Atqc", "select pg_is_in_recovery()"], { allowFailure: true });
        if (r.code !== 0 || r.stdout.trim() === "t") return (demotedAtMs = Date.now());
        return undefined;
      }, 250);
      await waitFor("a write acknowledged by the new primary", 90_000, async () => ("problem" in failoverFromAcks(writer.acks, partitionAtMs) ? undefined : true), 100);
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      await writer.stop();
      local.kill("SIGKILL");
      await docker(["exec", oldNode.hostname, "pkill", "-f", "part-old"], { allowFailure: true });
      if (partitionAtMs > 0) await docker(["network", "connect", "--ip", oldNode.ipv4Address, tier.plan.network.name, oldNode.hostname]);
    }
    const m = failoverFromAcks(writer.acks, partitionAtMs);
    if ("problem" in m) throw new Error(m.problem);
    const newAcks = writer.acks.filter((a) => a.server === m.newPrimary);
    const e = splitBrainEvidence(oldAcks.filter((a) => a.serverAtMs >= partitionAtMs - 50), newAcks);
    console.log(`[ha] partition: ${old} demoted ${(((demotedAtMs ?? 0) - partitionAtMs) / 1000).toFixed(1)}s after the partition; last write it acknowledged at +${(((e.lastOldMs ?? partitionAtMs) - partitionAtMs) / 1000).toFixed(2)}s, first on the new primary (${m.newPrimary}) at +${(((e.firstNewMs ?? 0) - partitionAtMs) / 1000).toFixed(2)}s; RTO through the endpoint ${m.rtoSeconds.toFixed(2)}s; overlap ${e.overlapMs}ms`);
    expect(demotedAtMs, "the partitioned primary never demoted").toBeDefined();
    expect(e.firstNewMs).toBeDefined();
    expect(e.overlapMs, "two primaries acknowledged writes at the same time").toBe(0);
    if (e.lastOldMs !== undefined) expect(e.lastOldMs).toBeLessThan(e.firstNewMs as number);

    // Healed (network connected again above): the old primary rejoins as a standby of the new one.
    await waitRejoined(tier, old, 180_000);
  }, 600_000);
});
