// drills/lib/redis.ts: persistence parsing, the AOF check, loss measurement and the writer against a fake
// connection (the e2e redis drill runs it against Redis 7 through ioredis).
import { describe, expect, it } from "vitest";
import {
  RedisAckWriter,
  assessAof,
  measureRedisLoss,
  parseRedisConfPersistence,
  parseRedisInfo,
  redisCliOnNode,
  redisDrillKeys,
  writesInWindow,
  type RedisAck,
  type RedisConnectionFactory,
  type RedisWriteConnection,
} from "../../drills/lib/redis.ts";
import type { NodeControl } from "../../drills/lib/nodes.ts";
import { renderRedisConf } from "../../components/redis/conf.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("parseRedisInfo", () => {
  it("reads key:value lines, skipping section headers, blank lines and CRLF", () => {
    const info = parseRedisInfo("# Persistence\r\nloading:0\r\naof_enabled:1\r\naof_last_write_status:ok\r\n\r\n# Replication\r\nrole:master\r\nmaster_replid:ab:cd\r\n");
    expect(info).toEqual({ loading: "0", aof_enabled: "1", aof_last_write_status: "ok", role: "master", master_replid: "ab:cd" });
  });
});

describe("parseRedisConfPersistence", () => {
  it("reads what renderRedisConf writes, for AOF on and off", () => {
    const on = parseRedisConfPersistence(renderRedisConf({ maxmemoryBytes: 32 * 1024 ** 2, persistence: { aof: true, appendfsync: "everysec", rdbSavePoints: [] } }).text);
    expect(on).toEqual({ appendonly: true, appendfsync: "everysec", appenddirname: "appendonlydir", save: "" });
    const off = parseRedisConfPersistence(renderRedisConf({ maxmemoryBytes: 32 * 1024 ** 2, persistence: { aof: false } }).text);
    expect(off.appendonly).toBe(false);
    expect(off.save).toBe("3600 1 300 100 60 10000");
  });

  it("uses Redis' defaults when a directive is absent, the last occurrence otherwise, case-insensitively", () => {
    expect(parseRedisConfPersistence("# nothing\n")).toEqual({ appendonly: false, appendfsync: "everysec", appenddirname: "appendonlydir", save: null });
    const c = parseRedisConfPersistence('appendonly yes\nAPPENDFSYNC always\nappendonly no\nappenddirname "my aof"\nsave 900 1\nsave 60 100\n');
    expect(c).toEqual({ appendonly: false, appendfsync: "always", appenddirname: "my aof", save: "900 1 60 100" });
  });
});

describe("assessAof", () => {
  const conf = { appendonly: true, appendfsync: "everysec", appenddirname: "appendonlydir", save: "" };
  const base = { confPath: "/etc/redis/redis.conf", aofDir: "/var/lib/redis/appendonlydir" };

  it("passes on appendonly yes + everysec, AOF on at runtime and an AOF directory", () => {
    const c = assessAof({ ...base, conf, info: { aof_enabled: "1", aof_last_write_status: "ok" }, aofDirFiles: ["appendonly.aof.1.base.rdb", "appendonly.aof.1.incr.aof"] });
    expect(c.ok).toBe(true);
    expect(c.detail).toContain("appendonly yes, appendfsync everysec");
  });

  it("fails naming AOF off from the config file, from the runtime, and a missing directory", () => {
    const file = assessAof({ ...base, conf: { ...conf, appendonly: false } });
    expect(file).toMatchObject({ ok: false, measured: "AOF off" });
    expect(file.detail).toMatch(/^AOF off: appendonly no in \/etc\/redis\/redis.conf/);
    const runtime = assessAof({ ...base, conf, info: { aof_enabled: "0" }, aofDirFiles: ["x"] });
    expect(runtime.ok).toBe(false);
    expect(runtime.detail).toMatch(/AOF off at runtime: INFO persistence aof_enabled:0/);
    const dir = assessAof({ ...base, conf, aofDirFiles: null });
    expect(dir.ok).toBe(false);
    expect(dir.detail).toContain("no AOF directory /var/lib/redis/appendonlydir");
  });

  it("fails on appendfsync no, failing AOF writes and an unreadable config", () => {
    expect(assessAof({ ...base, conf: { ...conf, appendfsync: "no" } }).detail).toMatch(/appendfsync no/);
    expect(assessAof({ ...base, conf, info: { aof_enabled: "1", aof_last_write_status: "err" } }).detail).toMatch(/AOF writes failing/);
    expect(assessAof({ ...base }).ok).toBe(false);
  });
});

function ack(seq: number, counter: number, t: number): RedisAck {
  return { seq, counter, streamId: `${t}-0`, startedAtMs: t - 1, clientTimeMs: t };
}

describe("measureRedisLoss", () => {
  const acked = [ack(1, 1, 1000), ack(2, 2, 1010), ack(3, 3, 1020), ack(4, 4, 1030)];

  it("loses nothing when the counter and the stream hold every acknowledged write", () => {
    const r = measureRedisLoss({ acknowledged: acked, state: { counter: 4, streamSeqs: [1, 2, 3, 4] } });
    expect(r).toMatchObject({ acknowledgedWrites: 4, lostWrites: 0, counterLost: 0, streamLost: 0, rpoSeconds: 0, counterAfterRecovery: 4, lastAcknowledgedCounter: 4 });
  });

  it("counts writes whose INCR is above the recovered counter or whose entry is gone", () => {
    const r = measureRedisLoss({ acknowledged: acked, state: { counter: 2, streamSeqs: [1, 2, 3] } });
    expect(r).toMatchObject({ lostWrites: 2, lostSeqs: [3, 4], counterLost: 2, streamLost: 1, lastPresentAcknowledgedSeq: 2 });
    expect(r.rpoSeconds).toBeCloseTo(0.02);
  });

  it("treats a counter above the last acknowledged value (an uncertain INCR that applied) as present", () => {
    const r = measureRedisLoss({ acknowledged: acked, state: { counter: 5, streamSeqs: [1, 2, 3, 4, 5] }, uncertain: [5] });
    expect(r).toMatchObject({ lostWrites: 0, ghostWrites: 0, uncertainWrites: 1, uncertainPresent: 1 });
  });

  it("everything lost (AOF off): the key is gone, RPO spans the whole log", () => {
    const r = measureRedisLoss({ acknowledged: acked, state: { counter: null, streamSeqs: [] } });
    expect(r).toMatchObject({ lostWrites: 4, counterLost: 4, streamLost: 4, counterAfterRecovery: null, lastPresentAcknowledgedSeq: null });
    expect(r.rpoSeconds).toBeCloseTo(0.03);
  });
});

describe("writesInWindow", () => {
  it("counts writes acknowledged in the window before the instant, bounds (from, to]", () => {
    const w = [900, 1000, 1500, 2000, 2100].map((t, i) => ({ seq: i + 1, clientTimeMs: t }));
    expect(writesInWindow(w, 2000, 1)).toBe(2);
    expect(writesInWindow(w, 2000, 0.5)).toBe(1);
    expect(writesInWindow(w, 2000, 10)).toBe(4);
  });
});

describe("redisCliOnNode", () => {
  function fakeCtl(result: { code: number; stdout: string; stderr: string }, seen: string[][]): NodeControl {
    return {
      platform: "fake",
      exec: async (_n: unknown, argv: readonly string[]) => {
        seen.push([...argv]);
        return result;
      },
    } as unknown as NodeControl;
  }
  const node = { name: "redis", handle: { kind: "docker" as const, container: "c" }, dataVolumes: [], internal: { port: 6380 } };

  it("reads the password file on the node and passes it through REDISCLI_AUTH, never argv", async () => {
    const seen: string[][] = [];
    const out = await redisCliOnNode(fakeCtl({ code: 0, stdout: "appendonly\nyes\n", stderr: "" }, seen), node, { user: "admin", passwordFile: "/etc/homelab/secrets/admin.password" }, ["CONFIG", "GET", "appendonly"]);
    expect(out).toBe("appendonly\nyes");
    const argv = seen[0]!;
    expect(argv.slice(0, 2)).toEqual(["sh", "-c"]);
    expect(argv[2]).toContain('REDISCLI_AUTH="$pw" exec redis-cli -e');
    expect(argv.slice(3)).toEqual(["redis-cli-on-node", "/etc/homelab/secrets/admin.password", "6380", "admin", "CONFIG", "GET", "appendonly"]);
  });

  it("rejects with redis-cli's error, or names the unreadable password file", async () => {
    await expect(redisCliOnNode(fakeCtl({ code: 1, stdout: "NOPERM this user has no permissions to run the 'config|get' command\n", stderr: "" }, []), node, { user: "app", passwordFile: "/p" }, ["CONFIG", "GET", "x"])).rejects.toThrow(/redis: redis-cli CONFIG as app failed \(exit 1\): NOPERM/);
    await expect(redisCliOnNode(fakeCtl({ code: 3, stdout: "", stderr: "cat: /p: No such file" }, []), node, { user: "app", passwordFile: "/p" }, ["PING"])).rejects.toThrow(/cannot read \/p/);
  });
});

describe("RedisAckWriter", () => {
  const keys = redisDrillKeys("run1");
  const endpoint = { host: "h", port: 1, username: "app", password: "pw" };

  /** A fake server: a counter and a stream; `down` refuses connections and fails commands in flight. */
  function fakeServer() {
    const state = { counter: 0, stream: [] as number[], down: false, connects: 0, dropReplyOnce: false };
    const factory: RedisConnectionFactory = async () => {
      if (state.down) throw new Error("connect ECONNREFUSED");
      state.connects++;
      const conn: RedisWriteConnection = {
        async incrAndAppend(k, seq) {
          expect(k).toEqual(keys);
          await sleep(1);
          if (state.down) throw new Error("Connection is closed.");
          state.counter++;
          state.stream.push(seq);
          if (state.dropReplyOnce) {
            state.dropReplyOnce = false;
            throw new Error("Command timed out");
          }
          return { counter: state.counter, streamId: `${Date.now()}-${seq}` };
        },
        close() {},
      };
      return conn;
    };
    return { state, factory };
  }

  it("logs only writes whose EXEC returned, keeps going through an outage and never retries a seq", async () => {
    const { state, factory } = fakeServer();
    const events: string[] = [];
    const w = new RedisAckWriter({ endpoint, keys, writesPerSecond: 500, connectionFactory: factory, onEvent: (e) => events.push(e.type) }).start();
    await sleep(60);
    state.dropReplyOnce = true;
    await sleep(30);
    state.down = true;
    const downAt = Date.now();
    await sleep(80);
    state.down = false;
    await sleep(80);
    const stats = await w.stop();
    const acked = w.acknowledged();
    expect(stats.acknowledged).toBe(acked.length);
    expect(stats.uncertain).toBeGreaterThanOrEqual(1);
    expect(state.connects).toBeGreaterThanOrEqual(2);
    // Counter values of acknowledged writes strictly increase; seqs are unique and never re-sent.
    for (let i = 1; i < acked.length; i++) {
      expect(acked[i]!.counter).toBeGreaterThan(acked[i - 1]!.counter);
      expect(acked[i]!.seq).toBeGreaterThan(acked[i - 1]!.seq);
    }
    expect(new Set(state.stream).size).toBe(state.stream.length);
    // The uncertain write applied: measured as present, not as a ghost.
    const loss = measureRedisLoss({ acknowledged: acked, state: { counter: state.counter, streamSeqs: state.stream }, uncertain: w.uncertain() });
    expect(loss).toMatchObject({ lostWrites: 0, ghostWrites: 0 });
    expect(loss.uncertainPresent).toBeGreaterThanOrEqual(1);
    const first = w.firstAcknowledgedAfter(downAt);
    expect(first?.startedAtMs).toBeGreaterThanOrEqual(downAt);
    expect(events).toContain("error");
    expect(w.highestAttemptedSeq()).toBeGreaterThanOrEqual(acked.length);
  });

  it("repoints to another endpoint and refuses a non-positive rate", async () => {
    const { factory } = fakeServer();
    const targets: string[] = [];
    const w = new RedisAckWriter({ endpoint, keys, writesPerSecond: 200, connectionFactory: async (e, t) => (targets.push(e.host), factory(e, t)) }).start();
    await sleep(30);
    w.repoint({ ...endpoint, host: "h2" });
    await sleep(30);
    await w.stop();
    expect(targets[0]).toBe("h");
    expect(targets.at(-1)).toBe("h2");
    expect(() => new RedisAckWriter({ endpoint, keys, writesPerSecond: 0 })).toThrow(RangeError);
  });
});
