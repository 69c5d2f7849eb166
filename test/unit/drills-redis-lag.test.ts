// The redis-replication-lag drill's pure parts: the slaveN lines of INFO replication as offsets and lag, the
// lag decision, the tc commands of the throttle and what tc prints back, the replica output buffer limit,
// and the refusals that need no engine. The drill on real Redis nodes, with its twins: test/e2e/drill-redis-lag.test.ts.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseRedisInfo } from "../../drills/lib/redis.ts";
import { DrillLog } from "../../drills/lib/log.ts";
import { assessReplicaBuffer, defaultLagThreshold, lagDecision, lagSample, parseClientList, parseReplicaEntries, parseReplicaOutputBufferLimit, runRedisReplicationLagDrill } from "../../drills/redis-replication-lag.mts";
import { addedRoot, devOfAddress, liftCommand, parseTcQdiscs, refuseUnlessLocalDocker, tcBlockStats, throttleCommands, throttleQueuePackets } from "../../drills/lib/shaping.ts";
import type { Topology } from "../../components/topology.ts";

// INFO replication stats memory of a Redis 7.0 primary with one replica (sections in redis-cli's order).
const PRIMARY_INFO = `# Memory
mem_clients_slaves:38136
# Stats
sync_full:1
sync_partial_ok:0
sync_partial_err:0
# Replication
role:master
connected_slaves:1
slave0:ip=172.41.0.31,port=6379,state=online,offset=9227117,lag=1
master_replid:a2fb463de41774cc1890e08bc101da16195d7088
master_repl_offset:9751405
repl_backlog_size:1048576
`;

describe("INFO replication: the replicas' offsets and lag", () => {
  it("parses slaveN lines into ip, port, state, acknowledged offset and the lag field", () => {
    const info = parseRedisInfo(`${PRIMARY_INFO}slave1:ip=172.41.0.32,port=6380,state=wait_bgsave,offset=0,lag=0\r\n`);
    expect(parseReplicaEntries(info)).toEqual([
      { key: "slave0", ip: "172.41.0.31", port: 6379, state: "online", offset: 9227117, lag: 1 },
      { key: "slave1", ip: "172.41.0.32", port: 6380, state: "wait_bgsave", offset: 0, lag: 0 },
    ]);
    expect(parseReplicaEntries(parseRedisInfo("role:master\nconnected_slaves:0\n"))).toEqual([]);
  });

  it("a sample: bytes behind = master_repl_offset - the replica's acknowledged offset, with the output buffer and resync counters", () => {
    const s = lagSample(parseRedisInfo(PRIMARY_INFO), "172.41.0.31", 1000);
    expect(s).toMatchObject({ atMs: 1000, masterOffset: 9751405, lagBytes: 524288, connectedReplicas: 1, outputBufferBytes: 38136, syncFull: 1, syncPartialOk: 0 });
    expect(s.replica?.lag).toBe(1);
    expect(lagSample(parseRedisInfo(PRIMARY_INFO), "172.41.0.99", 0)).toMatchObject({ replica: undefined, lagBytes: undefined });
  });

  it("the lag decision: behind past the threshold, dropped when the primary no longer lists the replica online", () => {
    const info = parseRedisInfo(PRIMARY_INFO);
    expect(lagDecision(lagSample(info, "172.41.0.31", 0), 524288)).toBe("within"); // exactly at the threshold
    expect(lagDecision(lagSample(info, "172.41.0.31", 0), 524287)).toBe("behind");
    expect(lagDecision(lagSample(info, "172.41.0.99", 0), 1)).toBe("dropped");
    const resyncing = parseRedisInfo(PRIMARY_INFO.replace("state=online", "state=send_bulk"));
    expect(lagDecision(lagSample(resyncing, "172.41.0.31", 0), 1 << 30)).toBe("dropped");
  });

  it("the threshold stays above the second of writes a healthy replica's acknowledged offset trails by", () => {
    expect(defaultLagThreshold(50 * 4296)).toBe(512 * 1024);
    expect(defaultLagThreshold(1024 * 1024)).toBe(2 * 1024 * 1024);
  });
});

describe("the throttle: tc commands for the primary's namespace", () => {
  it("htb root (unclassified traffic unshaped), one slow class with a shallow pfifo, a u32 filter on the replica's address", () => {
    expect(throttleCommands({ dev: "eth0", dstIp: "172.41.0.31", rateKbit: 64 })).toEqual([
      ["qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "0"],
      ["class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb", "rate", "64kbit", "ceil", "64kbit", "quantum", "1514"],
      ["qdisc", "add", "dev", "eth0", "parent", "1:10", "handle", "10:", "pfifo", "limit", "2"],
      ["filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "dst", "172.41.0.31/32", "flowid", "1:10"],
    ]);
    expect(throttleCommands({ dev: "eth1", dstIp: "10.0.0.2", rateKbit: 256, queuePackets: 10 })[2]).toEqual(["qdisc", "add", "dev", "eth1", "parent", "1:10", "handle", "10:", "pfifo", "limit", "10"]);
    expect(liftCommand("eth0")).toEqual(["qdisc", "del", "dev", "eth0", "root"]);
  });

  it("the queue holds about 250 ms at the rate, at least 2 packets", () => {
    expect(throttleQueuePackets(64)).toBe(2);
    expect(throttleQueuePackets(256)).toBe(5);
    expect(throttleQueuePackets(10_000)).toBe(206);
  });

  it("refuses what tc would misread: a bad interface, an address that is not IPv4, a rate below 8 kbit", () => {
    expect(() => throttleCommands({ dev: "eth0; rm", dstIp: "172.41.0.31", rateKbit: 64 })).toThrow(/not an interface name/);
    expect(() => throttleCommands({ dev: "eth0", dstIp: "redis-replica", rateKbit: 64 })).toThrow(/not an IPv4 address/);
    expect(() => throttleCommands({ dev: "eth0", dstIp: "172.41.0.300", rateKbit: 64 })).toThrow(/not an IPv4 address/);
    expect(() => throttleCommands({ dev: "eth0", dstIp: "172.41.0.31", rateKbit: 4 })).toThrow(/whole number >= 8/);
  });

  it("reads tc's qdiscs: the kernel's defaults (handle 0:) are no shaping, anything added is", () => {
    const clean = parseTcQdiscs("qdisc noqueue 0: root refcnt 2 \n");
    expect(clean).toEqual([{ kind: "noqueue", handle: "0:", parent: "root" }]);
    expect(addedRoot(clean)).toBeUndefined();
    const shaped = parseTcQdiscs("qdisc htb 1: root refcnt 3 r2q 10 default 0 direct_packets_stat 12 direct_qlen 1000\nqdisc pfifo 10: parent 1:10 limit 2p\n");
    expect(shaped).toEqual([{ kind: "htb", handle: "1:", parent: "root" }, { kind: "pfifo", handle: "10:", parent: "1:10" }]);
    expect(addedRoot(shaped)?.kind).toBe("htb");
    expect(parseTcQdiscs("qdisc noqueue 0: dev lo root refcnt 2 \nqdisc fq_codel 0: dev eth0 root refcnt 2 limit 10240p")).toEqual([
      { kind: "noqueue", handle: "0:", parent: "root", dev: "lo" },
      { kind: "fq_codel", handle: "0:", parent: "root", dev: "eth0" },
    ]);
  });

  it("reads a class's and a qdisc's counters from tc -s", () => {
    const classes = `class htb 1:10 root leaf 10: prio 0 rate 64Kbit ceil 64Kbit burst 1600b cburst 1600b \n Sent 196930 bytes 137 pkt (dropped 0, overlimits 0 requeues 0) \n backlog 0b 0p requeues 0\n`;
    expect(tcBlockStats(classes, /^class htb 1:10 /)).toEqual({ sentBytes: 196930, sentPackets: 137, dropped: 0, rate: "64Kbit" });
    const qdiscs = `qdisc htb 1: root refcnt 3 r2q 10 default 0 direct_packets_stat 40 direct_qlen 1000\n Sent 300000 bytes 400 pkt (dropped 4001, overlimits 0 requeues 0) \nqdisc pfifo 10: parent 1:10 limit 2p\n Sent 196930 bytes 137 pkt (dropped 4001, overlimits 0 requeues 0) \n`;
    expect(tcBlockStats(qdiscs, /^qdisc pfifo 10: /)?.dropped).toBe(4001);
    expect(tcBlockStats(qdiscs, /^class htb 1:20 /)).toBeUndefined();
  });

  it("finds the interface holding an address in `ip -o -4 addr show`", () => {
    const text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n1733: eth0    inet 172.41.0.30/24 brd 172.41.0.255 scope global eth0\\       valid_lft forever\n";
    expect(devOfAddress(text, "172.41.0.30")).toBe("eth0");
    expect(devOfAddress(text, "172.41.0.3")).toBeUndefined();
  });
});

describe("the replica output buffer limit", () => {
  const limit = parseReplicaOutputBufferLimit("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60")!;

  it("parses the replica class of CONFIG GET client-output-buffer-limit", () => {
    expect(limit).toEqual({ hardBytes: 268435456, softBytes: 67108864, softSeconds: 60 });
    expect(parseReplicaOutputBufferLimit("normal 0 0 0 replica 1 2 3 pubsub 0 0 0")).toEqual({ hardBytes: 1, softBytes: 2, softSeconds: 3 });
    expect(parseReplicaOutputBufferLimit("normal 0 0 0")).toBeUndefined();
  });

  it("the drill's load stays well inside Redis' defaults; past the hard limit, or the soft one for its seconds, the replica would be dropped", () => {
    expect(assessReplicaBuffer({ bytesPerSecond: 214_800, faultSeconds: 53, limit })).toMatchObject({ ok: true, projectedBytes: 11_384_400 });
    expect(assessReplicaBuffer({ bytesPerSecond: 214_800, faultSeconds: 53, limit: { hardBytes: 8 << 20, softBytes: 0, softSeconds: 0 } }).detail).toMatch(/reaches the hard limit \(client-output-buffer-limit replica 8\.0 MiB 0 0\): the primary would drop the replica \(full resync\)/);
    // Above a 4 MiB soft limit after ~19.5 s, for ~33.5 s more: past 10 s.
    expect(assessReplicaBuffer({ bytesPerSecond: 214_800, faultSeconds: 53, limit: { hardBytes: 0, softBytes: 4 << 20, softSeconds: 10 } }).detail).toMatch(/stays above the soft limit for 33\.5 s/);
    // Above the soft limit for less than its seconds: kept.
    expect(assessReplicaBuffer({ bytesPerSecond: 214_800, faultSeconds: 53, limit: { hardBytes: 0, softBytes: 4 << 20, softSeconds: 60 } }).ok).toBe(true);
  });

  it("finds the replica's connection in CLIENT LIST", () => {
    const list = parseClientList("id=5 addr=172.41.0.31:42466 laddr=172.41.0.30:6379 fd=8 name= age=217 flags=S omem=20504 cmd=replconf user=replica\n");
    expect(list).toEqual([expect.objectContaining({ id: "5", addr: "172.41.0.31:42466", flags: "S", name: "", omem: "20504" })]);
  });
});

describe("refusals that need no engine", () => {
  const dirs: string[] = [];
  afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));
  const quiet = () => new DrillLog({ stream: { write: () => {} }, color: false });

  const node = (name: string, role: string, handle: Record<string, string>) => ({
    name,
    role,
    hostname: `homelab-t-${name}`,
    internal: { host: "172.40.0.30", port: 6379 },
    published: { host: "127.0.0.1", port: 26652 },
    handle,
    dataVolumes: [],
    container: {} as never,
  });
  const topology = (o: { replica?: boolean; dockerHost?: string; objective?: boolean } = {}): Topology => ({
    stack: "t",
    redis: { appUser: "app", adminUser: "admin", healthUser: "health", passwordFiles: { app: "/a", admin: "/b" } },
    objectives: o.objective === false ? {} : { redisReplicationLag: { detect: 10, rto: 30 } },
    nodes: [
      node("redis", "redis", { kind: "docker", container: "homelab-t-redis", ...(o.dockerHost ? { dockerHost: o.dockerHost } : {}) }),
      ...(o.replica === false ? [] : [node("redis-replica", "redis-replica", { kind: "docker", container: "homelab-t-redis-replica", ...(o.dockerHost ? { dockerHost: o.dockerHost } : {}) })]),
    ],
  }) as unknown as Topology;
  const run = async (t: Topology) => {
    const reportsDir = await mkdtemp(path.join(tmpdir(), "drill-redis-lag-unit-"));
    dirs.push(reportsDir);
    const r = await runRedisReplicationLagDrill({ topology: t, reportsDir, log: quiet() });
    expect(r.verdict).toBe("fail");
    return r.checks.find((c) => c.name === "drill ran to completion")?.detail;
  };

  it("a stack without a Redis replica: names redis.replica: true", async () => {
    expect(await run(topology({ replica: false }))).toMatch(/stack t has no Redis replica: .*set redis\.replica: true/);
  });

  it("a topology from before the drill: names the missing objective", async () => {
    expect(await run(topology({ objective: false }))).toMatch(/no objectives\.redisReplicationLag: re-run `homelab up --stack t`/);
  });

  it("a remote docker engine: names the node and why (tc runs in its namespace from the engine's host)", async () => {
    expect(await run(topology({ dockerHost: "ssh://nuc" }))).toMatch(/^node redis runs on the docker engine at ssh:\/\/nuc: the throttle runs tc in its network namespace from the engine's own host \(nsenter\)/);
    expect(() => refuseUnlessLocalDocker({ name: "redis", handle: { kind: "docker", container: "c" } }, { DOCKER_HOST: "tcp://10.0.0.5:2375" })).toThrow(/node redis: DOCKER_HOST=tcp:\/\/10\.0\.0\.5:2375 is a remote engine/);
    expect(refuseUnlessLocalDocker({ name: "redis", handle: { kind: "docker", container: "c" } }, { DOCKER_HOST: "unix:///var/run/docker.sock" })).toEqual({ container: "c" });
    expect(() => refuseUnlessLocalDocker({ name: "redis", handle: { kind: "libvirt", domain: "d", uri: "u", ssh: "s", identityFile: "i", knownHosts: "k" } })).toThrow(/node redis: .*its handle is libvirt/);
  });
});

describe("why the primary dropped the replica, from its log", () => {
  it("the output buffer limit first, shortened; then a timeout; then a lost connection", async () => {
    const { droppedLogLine } = await import("../../drills/redis-replication-lag.mts");
    const log = [
      "1:M 04 Dec 2026 03:41:58.120 * Replica 172.41.0.31:6379 asks for synchronization",
      "1:M 04 Dec 2026 03:41:58.123 # Client id=5 addr=172.41.0.31:42466 laddr=172.41.0.30:6379 fd=8 name= age=30 idle=0 flags=S db=0 omem=20504 cmd=replconf user=replica redir=-1 resp=2 scheduled to be closed ASAP for overcoming of output buffer limits.",
      "1:M 04 Dec 2026 03:41:58.124 # Connection with replica 172.41.0.31:6379 lost.",
    ].join("\n");
    expect(droppedLogLine(log)).toBe("Client id=5 addr=172.41.0.31:42466 … scheduled to be closed ASAP for overcoming of output buffer limits.");
    expect(droppedLogLine("1:M 04 Dec 2026 03:47:30.100 # Client id=5 addr=172.41.0.31:40642 laddr=172.41.0.30:6379 fd=8 name= age=61 omem=20504 cmd=replconf user=replica redir=-1 resp=2 closed for overcoming of output buffer limits.")).toBe("Client id=5 addr=172.41.0.31:40642 … closed for overcoming of output buffer limits.");
    expect(droppedLogLine("1:M 04 Dec 2026 03:41:58.124 # Disconnecting timedout replica (streaming sync): 172.41.0.31:6379\n1:M 04 Dec 2026 03:41:58.124 # Connection with replica 172.41.0.31:6379 lost.")).toBe("Disconnecting timedout replica (streaming sync): 172.41.0.31:6379");
    expect(droppedLogLine("1:M 04 Dec 2026 03:41:58.124 # Connection with replica 172.41.0.31:6379 lost.")).toBe("Connection with replica 172.41.0.31:6379 lost.");
    expect(droppedLogLine("1:M 04 Dec 2026 03:41:58.124 * Background saving terminated with success")).toBeUndefined();
  });
});
