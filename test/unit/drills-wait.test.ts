// drills/lib/wait.ts: the one wait helper every drill and node control uses (p-wait-for underneath).
import { describe, expect, it } from "vitest";
import { WaitTimeoutError as ProbeWaitTimeoutError } from "../../drills/lib/probe.ts";
import { MAX_WAIT_INTERVAL_MS, WaitTimeoutError, waitFor } from "../../drills/lib/wait.ts";

describe("waitFor", () => {
  it("returns the elapsed ms once the predicate holds", async () => {
    const t0 = Date.now();
    const elapsed = await waitFor("120 ms passed", () => (Date.now() - t0 > 120 ? Date.now() - t0 : false), { timeoutMs: 2000, intervalMs: 20 });
    expect(elapsed).toBeGreaterThanOrEqual(120);
    expect(elapsed).toBeLessThan(1500);
  });

  it("times out naming the condition and the last error; refuses slow intervals", async () => {
    await expect(
      waitFor(
        "replica streaming",
        () => {
          throw new Error("replica not streaming");
        },
        { timeoutMs: 100, intervalMs: 20 },
      ),
    ).rejects.toThrow(/^replica streaming: not reached within \d+ ms \(last error: replica not streaming\)$/);
    await expect(waitFor("anything", () => true, { timeoutMs: 100, intervalMs: 500 })).rejects.toThrow(/<= 100 ms/);
    await expect(waitFor("anything", () => true, { timeoutMs: 100, intervalMs: 0 })).rejects.toThrow(RangeError);
  });

  it("succeeds after N tries, resolving with what the check answered", async () => {
    let calls = 0;
    const value = await waitFor(
      "third try",
      async () => {
        calls++;
        return calls === 3 ? { seq: 42 } : undefined;
      },
      { timeoutMs: 5000, intervalMs: 5 },
    );
    expect(calls).toBe(3);
    expect(value).toEqual({ seq: 42 });
    // a plain predicate resolves with true
    expect(await waitFor("at once", () => true, { timeoutMs: 100 })).toBe(true);
  });

  it("counts a throwing check as not yet and keeps going", async () => {
    let calls = 0;
    const value = await waitFor(
      "recovers after two errors",
      () => {
        calls++;
        if (calls < 3) throw new Error(`try ${calls} failed`);
        return "ok";
      },
      { timeoutMs: 5000, intervalMs: 5 },
    );
    expect(value).toBe("ok");
    expect(calls).toBe(3);
  });

  it("on timeout names what was awaited, the timeout, the last error and the last state", async () => {
    let calls = 0;
    let seen = "";
    const err = await waitFor(
      "segment 000000010000000000000007 in the repository",
      async () => {
        calls++;
        seen = `000000010000000000000005`;
        if (calls % 2 === 0) throw new Error(`pgbackrest info failed (exit ${calls})`);
        return false;
      },
      { timeoutMs: 150, intervalMs: 10, state: () => `newest archived: ${seen}` },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WaitTimeoutError);
    const e = err as WaitTimeoutError;
    expect(e.message).toMatch(/^segment 000000010000000000000007 in the repository: not reached within 150 ms \(last error: pgbackrest info failed \(exit \d+\); newest archived: 000000010000000000000005\)$/);
    expect(e.label).toBe("segment 000000010000000000000007 in the repository");
    expect(e.elapsedMs).toBe(150);
    expect(e.lastError).toMatch(/^pgbackrest info failed/);
    expect(e.lastState).toBe("newest archived: 000000010000000000000005");
    expect(calls).toBeGreaterThan(2);
  });

  it("without an error or a state the message is just what and how long", async () => {
    await expect(waitFor("never", () => false, { timeoutMs: 30, intervalMs: 10 })).rejects.toThrow(/^never: not reached within 30 ms$/);
  });

  it("does not cut off a check in flight: the wait ends when it answers", async () => {
    const t0 = Date.now();
    const err = await waitFor("slow check", () => new Promise<boolean>((r) => setTimeout(() => r(false), 200)), { timeoutMs: 50, intervalMs: 10 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WaitTimeoutError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
  });

  it("is the timeout error a Probe throws too (one class)", () => {
    expect(ProbeWaitTimeoutError).toBe(WaitTimeoutError);
    expect(MAX_WAIT_INTERVAL_MS).toBe(100);
  });
});
