// AckWriter and Probe logic against scripted fake connections: what counts as acknowledged, what as
// uncertain, retries, repointing, pacing. drills-pg.test.ts runs the same against a real PostgreSQL.
import { describe, expect, it } from "vitest";
import { AckWriter, idempotencyKey, type SqlClient, type WriterEvent } from "../../drills/lib/writer.ts";
import { MAX_PROBE_INTERVAL_MS, Probe, WaitTimeoutError } from "../../drills/lib/probe.ts";
import { measureRpo } from "../../drills/lib/measure.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Step = "BEGIN" | "WRITE" | "COMMIT";
/** Decides what happens to a statement: undefined = succeed; an Error = reject; "hang" = never answer. */
type Script = (ctx: { host: string; step: Step; seq: number; connection: number }) => Error | "hang" | "rollback" | undefined;

/** A fake server: keeps committed seqs per host; each connection buffers its transaction until COMMIT. */
class FakeServer {
  committed = new Map<string, Set<number>>();
  keys = new Map<string, Set<string>>();
  connections = 0;
  connectFailures = new Set<string>();
  constructor(private readonly script: Script = () => undefined) {}

  factory = (config: { host?: string }): SqlClient => {
    const host = config.host ?? "?";
    const id = ++this.connections;
    let pending: { seq: number; key: string } | undefined;
    let seq = 0;
    // Like pg: ending the connection rejects the query in flight.
    const hung: ((e: Error) => void)[] = [];
    const answer = <T>(step: Step, result: () => T): Promise<T> => {
      const r = this.script({ host, step, seq, connection: id });
      if (r === "hang") return new Promise((_, reject) => hung.push(reject));
      if (r instanceof Error) return Promise.reject(r);
      return Promise.resolve(result());
    };
    return {
      connect: () => (this.connectFailures.has(host) ? Promise.reject(new Error(`connect ECONNREFUSED ${host}`)) : Promise.resolve()),
      end: () => {
        for (const reject of hung.splice(0)) reject(new Error("Connection terminated"));
        return Promise.resolve();
      },
      on: () => undefined,
      query: (text: string, values?: unknown[]) => {
        if (text.startsWith("SELECT max(id)")) {
          const seqs = [...this.set(this.committed, host)];
          return Promise.resolve({ rows: [{ max: seqs.length ? String(Math.max(...seqs)) : null }], rowCount: 1, command: "SELECT" });
        }
        if (text === "BEGIN") return answer("BEGIN", () => ({ rows: [], rowCount: null, command: "BEGIN" }));
        if (text === "COMMIT") {
          return answer("COMMIT", () => {
            if (this.script({ host, step: "COMMIT", seq, connection: id }) === "rollback") return { rows: [], rowCount: null, command: "ROLLBACK" };
            if (pending) {
              this.set(this.committed, host).add(pending.seq);
              this.set(this.keys, host).add(pending.key);
            }
            pending = undefined;
            return { rows: [], rowCount: null, command: "COMMIT" };
          });
        }
        seq = Number(values?.[5]);
        const key = String(values?.[3]);
        return answer("WRITE", () => {
          const exists = this.set(this.keys, host).has(key);
          pending = exists ? undefined : { seq, key };
          return { rows: [{ created: exists ? 0 : 1, heartbeat: exists ? 0 : 1 }], rowCount: 1, command: "SELECT" };
        });
      },
    };
  };

  private set<T>(m: Map<string, Set<T>>, host: string): Set<T> {
    if (!m.has(host)) m.set(host, new Set());
    return m.get(host)!;
  }
}

function writer(server: FakeServer, extra: Partial<ConstructorParameters<typeof AckWriter>[0]> = {}) {
  const events: WriterEvent[] = [];
  const w = new AckWriter({ connection: { host: "a" }, runId: "t", writesPerSecond: 500, backoffMs: 5, maxBackoffMs: 20, queryTimeoutMs: 50, clientFactory: server.factory, onEvent: (e) => events.push(e), ...extra });
  return { w, events };
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error("condition not reached");
    await sleep(5);
  }
}

describe("AckWriter", () => {
  it("acknowledges a write only after its COMMIT returned, in seq order, with times", async () => {
    const server = new FakeServer();
    const { w } = writer(server);
    w.start();
    await until(() => w.acknowledged().length >= 20);
    const stats = await w.stop();
    const log = w.acknowledged();
    expect(log.map((r) => r.seq)).toEqual(Array.from({ length: log.length }, (_, i) => i + 1));
    for (const r of log) expect(r.clientTimeMs).toBeGreaterThanOrEqual(r.startedAtMs);
    expect(w.lastAcknowledged()).toEqual(log[log.length - 1]);
    expect([...server.committed.get("a")!]).toEqual(log.map((r) => r.seq));
    expect(stats).toMatchObject({ acknowledged: log.length, uncertain: 0, errors: 0, connects: 1 });
    expect(w.uncertain()).toEqual([]);
  });

  it("a COMMIT that errors is uncertain, not acknowledged; the retry with the same key does not double-create", async () => {
    // seq 5's COMMIT reaches the server (commits) but the answer is lost: the classic uncertain write.
    let failed = false;
    const server = new FakeServer(({ step, seq }) => {
      if (step === "COMMIT" && seq === 5 && !failed) {
        failed = true;
        return undefined; // committed server-side; the error is injected after, below
      }
      return undefined;
    });
    const origFactory = server.factory;
    let lostAnswer = false;
    server.factory = (config) => {
      const c = origFactory(config);
      const q = c.query.bind(c);
      c.query = async (text, values) => {
        const r = await q(text, values);
        if (text === "COMMIT" && failed && !lostAnswer) {
          lostAnswer = true;
          throw new Error("Connection terminated unexpectedly");
        }
        return r;
      };
      return c;
    };
    const { w, events } = writer(server);
    w.start();
    await until(() => w.acknowledged().length >= 10);
    await w.stop();
    const seqs = w.acknowledged().map((r) => r.seq);
    // 5 is acknowledged once, by its retry, which found the incident already there.
    expect(seqs.slice(0, 10)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(w.getStats()).toMatchObject({ deduplicatedRetries: 1, errors: 1, connects: 2 });
    expect(events.some((e) => e.type === "deduplicated" && e.seq === 5)).toBe(true);
    expect(events.find((e) => e.type === "error")).toMatchObject({ seq: 5, phase: "commit" });
    expect(w.uncertain()).toEqual([]);
  });

  it("keeps a seq uncertain while its COMMIT never answers, and moves to the new primary on repoint", async () => {
    let primaryDead = false;
    const server = new FakeServer(({ host, step }) => (host === "a" && primaryDead && step === "COMMIT" ? "hang" : undefined));
    const { w, events } = writer(server, { queryTimeoutMs: 10_000 });
    w.start();
    await until(() => w.acknowledged().length >= 5);
    primaryDead = true;
    await until(() => events.some((e) => e.type === "connected") && w.highestAttemptedSeq() > w.lastAcknowledged()!.seq);
    await sleep(30);
    const stuck = w.highestAttemptedSeq();
    expect(w.lastAcknowledged()!.seq).toBe(stuck - 1);
    server.connectFailures.add("a");
    w.repoint({ host: "b" });
    await until(() => w.acknowledged().some((r) => r.seq > stuck));
    await w.stop();
    // The hung seq: its COMMIT was sent to the old primary, then retried (same key) on the new one.
    expect(w.acknowledged().map((r) => r.seq)).toContain(stuck);
    expect(server.committed.get("b")!.has(stuck)).toBe(true);
    expect(events.filter((e) => e.type === "repointed")).toEqual([expect.objectContaining({ target: "b:5432/" })]);
    expect(events.filter((e) => e.type === "connected").map((e) => (e as { target: string }).target)).toEqual(["a:5432/", "b:5432/"]);
  });

  it("an uncertain seq stays uncertain when the writer stops before a retry succeeds", async () => {
    const server = new FakeServer(({ step, seq }) => (step === "COMMIT" && seq === 3 ? new Error("canceling statement due to user request") : undefined));
    const { w } = writer(server);
    w.start();
    await until(() => w.getStats().errors >= 3);
    await w.stop();
    expect(w.acknowledged().map((r) => r.seq)).toEqual([1, 2]);
    expect(w.uncertain()).toEqual([3]);
    const rpo = measureRpo({ acknowledged: w.acknowledged(), presentSeqs: [1, 2, 3], uncertain: w.uncertain() });
    expect(rpo).toMatchObject({ lostWrites: 0, ghostWrites: 0, uncertainPresent: 1 });
  });

  it("a failure before COMMIT is retried but never uncertain", async () => {
    let n = 0;
    const server = new FakeServer(({ step, seq }) => (step === "WRITE" && seq === 2 && n++ < 2 ? new Error("server closed the connection") : undefined));
    const { w } = writer(server);
    w.start();
    await until(() => w.acknowledged().length >= 4);
    await w.stop();
    expect(w.acknowledged().slice(0, 4).map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(w.uncertain()).toEqual([]);
    expect(w.getStats().errors).toBe(2);
  });

  it("a COMMIT answered with ROLLBACK is not acknowledged", async () => {
    const server = new FakeServer(({ step, seq }) => (step === "COMMIT" && seq === 1 ? "rollback" : undefined));
    const { w, events } = writer(server);
    w.start();
    await until(() => w.getStats().errors >= 2);
    await w.stop();
    expect(w.acknowledged()).toEqual([]);
    expect(w.uncertain()).toEqual([1]);
    expect(events.find((e) => e.type === "error")).toMatchObject({ message: "COMMIT answered ROLLBACK" });
  });

  it("backs off on connect failures and reconnects once the server is back", async () => {
    const server = new FakeServer();
    server.connectFailures.add("a");
    const { w, events } = writer(server);
    w.start();
    await until(() => w.getStats().errors >= 3);
    expect(w.acknowledged()).toEqual([]);
    expect(events.find((e) => e.type === "error")).toMatchObject({ phase: "connect", seq: null });
    expect(w.firstSeq()).toBeUndefined();
    server.connectFailures.delete("a");
    await until(() => w.acknowledged().length > 0);
    await w.stop();
    expect(w.acknowledged()[0]!.seq).toBe(1);
  });

  it("holds its rate and never bursts to catch up", async () => {
    const server = new FakeServer();
    const w = new AckWriter({ connection: { host: "a" }, runId: "t", writesPerSecond: 100, clientFactory: server.factory });
    w.start();
    await sleep(500);
    await w.stop();
    const n = w.acknowledged().length;
    expect(n).toBeGreaterThanOrEqual(20); // a loaded CI box may run slower; it must never run faster
    expect(n).toBeLessThanOrEqual(52);
  });

  it("pauses (after the write in flight) and resumes", async () => {
    const server = new FakeServer();
    const { w } = writer(server);
    w.start();
    await until(() => w.acknowledged().length >= 3);
    await w.pause();
    const at = w.acknowledged().length;
    expect(w.highestAttemptedSeq()).toBe(w.lastAcknowledged()!.seq);
    await sleep(50);
    expect(w.acknowledged().length).toBe(at);
    await w.pause(); // already paused: resolves at once
    w.resume();
    await until(() => w.acknowledged().length > at);
    await w.stop();
  });

  it("firstAcknowledgedAfter counts only writes begun after the instant", async () => {
    const server = new FakeServer();
    const { w } = writer(server);
    w.start();
    await until(() => w.acknowledged().length >= 3);
    const instant = Date.now();
    await until(() => w.acknowledged().some((r) => r.startedAtMs >= instant));
    await w.stop();
    const first = w.firstAcknowledgedAfter(instant)!;
    expect(first.startedAtMs).toBeGreaterThanOrEqual(instant);
    expect(w.acknowledged().filter((r) => r.seq < first.seq).every((r) => r.startedAtMs < instant)).toBe(true);
  });

  it("validates its options and names keys by run", () => {
    expect(() => new AckWriter({ connection: {}, runId: "" })).toThrow(/runId is required/);
    expect(() => new AckWriter({ connection: {}, runId: "x", writesPerSecond: 0 })).toThrow(/writesPerSecond must be > 0/);
    expect(idempotencyKey("r1", 7)).toBe("drill-r1-7");
  });
});

describe("Probe", () => {
  it("refuses intervals above 100 ms", () => {
    expect(() => new Probe(async () => true, { intervalMs: 250 })).toThrow(/<= 100 ms/);
    expect(MAX_PROBE_INTERVAL_MS).toBe(100);
  });

  it("records the first success among attempts started after an instant", async () => {
    let up = false;
    const probe = new Probe(async () => up, { intervalMs: 10 }).start();
    await sleep(50);
    const fault = Date.now();
    expect(probe.firstSuccessAfter(fault)).toBeUndefined();
    setTimeout(() => (up = true), 100);
    const at = await probe.waitForSuccessAfter(fault, 2000);
    await probe.stop();
    expect(at - fault).toBeGreaterThanOrEqual(95);
    expect(at - fault).toBeLessThan(1000);
    expect(probe.firstSuccessAfter(fault)).toBe(at);
    expect(probe.firstFailureAfter(fault)).toBeLessThan(at);
  });

  it("keeps probing while an attempt hangs (overlapping attempts), so resolution stays at the interval", async () => {
    let calls = 0;
    const probe = new Probe(
      () => {
        calls++;
        return calls <= 3 ? new Promise<boolean>(() => {}) : Promise.resolve(true);
      },
      { intervalMs: 10, attemptTimeoutMs: 1000 },
    ).start();
    const t0 = Date.now();
    const at = await probe.waitForSuccessAfter(t0 - 1, 2000);
    expect(at - t0).toBeLessThan(900); // well under the 1 s the hung attempts take
    await probe.stop(); // waits for the hung attempts to time out
    expect(probe.history().filter((a) => a.error?.includes("timed out"))).toHaveLength(3);
  });

  it("counts a throwing attempt as a failure and times out with the last error", async () => {
    const probe = new Probe(
      async () => {
        throw new Error("connection refused");
      },
      { intervalMs: 20 },
    ).start();
    const err = await probe.waitForSuccessAfter(Date.now(), 150).catch((e: unknown) => e);
    await probe.stop();
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect((err as Error).message).toMatch(/probe success: not reached within \d+ ms \(last error: connection refused\)/);
  });
});
