// Redis pieces of the redis drill (docs/drills.md "redis"): the INCR + XADD acknowledged-write writer, a write
// probe, reading persistence settings (redis.conf, INFO) and measuring lost acknowledged writes.
// A write is acknowledged only when EXEC returned both replies; only then does it enter the log RPO is
// measured against (docs/drills.md "Definitions", the same rule as the PostgreSQL writer).
import { Redis } from "ioredis";
import { check, type Check } from "./assert.ts";
import { measureRpo, type AcknowledgedWrite, type RpoMeasurement } from "./measure.ts";
import type { ControlledNode, NodeControl } from "./nodes.ts";

export interface RedisEndpoint {
  host: string;
  port: number;
  username: string;
  password: string;
}

/** The keys one drill run writes, under the app user's ACL prefix (`~app:*`, components/redis/conf.ts). */
export interface RedisDrillKeys {
  counter: string;
  stream: string;
  probe: string;
}

export function redisDrillKeys(runId: string, prefix = "app:"): RedisDrillKeys {
  const base = `${prefix}drill:${runId}`;
  return { counter: `${base}:counter`, stream: `${base}:events`, probe: `${base}:probe` };
}

// ----------------------------------------------------------------------------------------------- parsing

/** `INFO [section]` output as key -> value (section headers and blank lines skipped). */
export function parseRedisInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const i = line.indexOf(":");
    if (i <= 0) continue;
    out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** Splits a redis.conf line into words as Redis' sdssplitargs does for the common cases ("..." and '...'). */
function confWords(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) {
    if (m[1] !== undefined) words.push(m[1].replace(/\\(.)/g, "$1"));
    else if (m[2] !== undefined) words.push(m[2]);
    else words.push(m[3] as string);
  }
  return words;
}

export interface RedisConfPersistence {
  /** `appendonly` (Redis default: no). */
  appendonly: boolean;
  /** `appendfsync` (default everysec). */
  appendfsync: string;
  /** `appenddirname` (default appendonlydir): the AOF directory inside `dir`. */
  appenddirname: string;
  /** `save` as written (default: Redis' built-in save points), "" when RDB snapshots are off. */
  save: string | null;
}

/** Persistence directives of a redis.conf; like Redis, the last occurrence of a directive wins. */
export function parseRedisConfPersistence(text: string): RedisConfPersistence {
  const out: RedisConfPersistence = { appendonly: false, appendfsync: "everysec", appenddirname: "appendonlydir", save: null };
  const saves: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [directive, ...args] = confWords(line);
    switch (directive?.toLowerCase()) {
      case "appendonly":
        out.appendonly = args[0]?.toLowerCase() === "yes";
        break;
      case "appendfsync":
        out.appendfsync = args[0]?.toLowerCase() ?? out.appendfsync;
        break;
      case "appenddirname":
        out.appenddirname = args[0] ?? out.appenddirname;
        break;
      case "save":
        // `save ""` resets; several `save a b` lines add up (redis.conf "SNAPSHOTTING").
        if (args.length === 1 && args[0] === "") saves.length = 0;
        else saves.push(args.join(" "));
        out.save = saves.join(" ");
        break;
    }
  }
  return out;
}

export interface AofEvidence {
  /** Path of the config file read, and what it says (undefined: could not be read). */
  confPath: string;
  conf?: RedisConfPersistence;
  /** `INFO persistence` of the running server (undefined: not asked, or not allowed). */
  info?: Record<string, string>;
  /** Files in the AOF directory; null: the directory does not exist; undefined: not looked at. */
  aofDirFiles?: string[] | null;
  aofDir: string;
}

/**
 * "AOF enabled" (docs/drills.md fault catalog: Redis with AOF off): the config file asks for appendonly yes with
 * everysec or always, the running server has AOF on (a `CONFIG SET appendonly no` at runtime shows only
 * there) and its last AOF write succeeded, and the AOF directory exists. Fails with "AOF off: ..." naming
 * where it saw it.
 */
export function assessAof(e: AofEvidence): Check {
  const name = "AOF enabled";
  const problems: string[] = [];
  if (!e.conf) problems.push(`${e.confPath} could not be read`);
  else {
    if (!e.conf.appendonly) problems.push(`AOF off: appendonly no in ${e.confPath}`);
    else if (!["everysec", "always"].includes(e.conf.appendfsync)) problems.push(`appendfsync ${e.conf.appendfsync} in ${e.confPath}: losing the machine loses up to ~30 s of writes (objective needs everysec or always)`);
  }
  if (e.info) {
    if (e.info.aof_enabled !== undefined && e.info.aof_enabled !== "1") problems.push(`AOF off at runtime: INFO persistence aof_enabled:${e.info.aof_enabled} (CONFIG SET appendonly no?)`);
    else if (e.info.aof_last_write_status !== undefined && e.info.aof_last_write_status !== "ok") problems.push(`AOF writes failing: aof_last_write_status:${e.info.aof_last_write_status}`);
  }
  if (e.aofDirFiles === null && e.conf?.appendonly) problems.push(`no AOF directory ${e.aofDir} although appendonly yes`);
  if (problems.length > 0) return check(name, false, problems.join("; "), { objective: "appendonly yes, appendfsync everysec", measured: problems[0]!.startsWith("AOF off") ? "AOF off" : "AOF not usable" });
  const fsync = e.conf?.appendfsync ?? "?";
  const files = e.aofDirFiles ? `; ${e.aofDir}: ${e.aofDirFiles.join(", ") || "empty"}` : "";
  const runtime = e.info ? `, aof_enabled:${e.info.aof_enabled ?? "?"} aof_last_write_status:${e.info.aof_last_write_status ?? "?"}` : "";
  return check(name, true, `appendonly yes, appendfsync ${fsync} (${e.confPath})${runtime}${files}`, { objective: "appendonly yes, appendfsync everysec", measured: `appendonly yes, appendfsync ${fsync}` });
}

// ----------------------------------------------------------------------------------------------- on the node

export interface RedisNodeAuth {
  user: string;
  /** File on the node holding the user's password (read there by root; never leaves the node). */
  passwordFile: string;
}

/**
 * Runs `redis-cli -e <args>` inside the node against 127.0.0.1, as `auth.user` with the password read from
 * its file on the node (through REDISCLI_AUTH, never argv or the host). Raw output (no tty). Rejects with
 * redis-cli's error (an error reply exits non-zero thanks to -e) unless allowFailure.
 */
export async function redisCliOnNode(ctl: NodeControl, node: ControlledNode & { internal?: { port?: number } }, auth: RedisNodeAuth, args: readonly string[], opts: { timeoutMs?: number; port?: number } = {}): Promise<string> {
  const port = opts.port ?? node.internal?.port ?? 6379;
  const script = 'pw="$(cat -- "$1")" || exit 3; port="$2"; user="$3"; shift 3; REDISCLI_AUTH="$pw" exec redis-cli -e --no-auth-warning --user "$user" -h 127.0.0.1 -p "$port" "$@"';
  const r = await ctl.exec(node, ["sh", "-c", script, "redis-cli-on-node", auth.passwordFile, String(port), auth.user, ...args], { allowFailure: true, timeoutMs: opts.timeoutMs ?? 10_000 });
  if (r.code !== 0) {
    const why = r.code === 3 ? `cannot read ${auth.passwordFile}` : `${(r.stdout + r.stderr).trim().split("\n").slice(-3).join(" | ")}`;
    throw new Error(`${node.name}: redis-cli ${args[0] ?? ""} as ${auth.user} failed (exit ${r.code}): ${why}`);
  }
  return r.stdout.trim();
}

export async function redisInfoOnNode(ctl: NodeControl, node: ControlledNode & { internal?: { port?: number } }, auth: RedisNodeAuth, section: string): Promise<Record<string, string>> {
  return parseRedisInfo(await redisCliOnNode(ctl, node, auth, ["INFO", section]));
}

// ----------------------------------------------------------------------------------------------- writer

/** One acknowledged write: EXEC of MULTI; INCR counter; XADD stream * seq <seq> returned both replies. */
export interface RedisAck extends AcknowledgedWrite {
  startedAtMs: number;
  /** INCR's reply: the counter value this write made. */
  counter: number;
  /** XADD's reply: the stream entry id. */
  streamId: string;
}

/** What the writer needs of a connection; the default wraps ioredis, tests pass a fake. */
export interface RedisWriteConnection {
  /** MULTI; INCR counterKey; XADD streamKey * seq <seq>; EXEC. */
  incrAndAppend(keys: RedisDrillKeys, seq: number): Promise<{ counter: number; streamId: string }>;
  close(): void;
}

export type RedisConnectionFactory = (endpoint: RedisEndpoint, timeoutMs: number) => Promise<RedisWriteConnection>;

/**
 * A connection that never reconnects or retries on its own (retryStrategy null, no offline queue, no resend
 * of unfulfilled commands): a command either gets its reply on this connection or fails, so the writer
 * alone decides what is acknowledged. ioredis' INFO ready check is off (the app user may not run INFO).
 */
export function ioredisOptions(endpoint: RedisEndpoint, timeoutMs: number) {
  return {
    host: endpoint.host,
    port: endpoint.port,
    username: endpoint.username,
    password: endpoint.password,
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
  };
}

export async function connectRedis(endpoint: RedisEndpoint, timeoutMs: number): Promise<Redis> {
  const client = new Redis(ioredisOptions(endpoint, timeoutMs));
  // A dying server emits 'error' on an idle connection; without a listener Node would crash.
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (e) {
    client.disconnect();
    throw e;
  }
  return client;
}

export const ioredisConnection: RedisConnectionFactory = async (endpoint, timeoutMs) => {
  const client = await connectRedis(endpoint, timeoutMs);
  return {
    async incrAndAppend(keys, seq) {
      const replies = await client.multi().incr(keys.counter).xadd(keys.stream, "*", "seq", String(seq)).exec();
      if (!replies) throw new Error("EXEC answered nil (transaction aborted)");
      const [incr, xadd] = replies;
      if (!incr || !xadd) throw new Error(`EXEC answered ${replies.length} replies, expected 2`);
      if (incr[0]) throw incr[0];
      if (xadd[0]) throw xadd[0];
      return { counter: Number(incr[1]), streamId: String(xadd[1]) };
    },
    close: () => client.disconnect(),
  };
};

export type RedisWriterEvent =
  | { type: "connected"; atMs: number; target: string }
  | { type: "error"; atMs: number; seq: number | null; phase: "connect" | "exec"; message: string }
  | { type: "repointed"; atMs: number; target: string };

export interface RedisAckWriterOptions {
  endpoint: RedisEndpoint;
  keys: RedisDrillKeys;
  /** Target rate (a ceiling; the writer never bursts to catch up). Default 100. */
  writesPerSecond?: number;
  /** Connect and per-command timeout. Default 1000. */
  timeoutMs?: number;
  /** Backoff after a failure, doubling from backoffMs to maxBackoffMs (defaults 20 and 200). */
  backoffMs?: number;
  maxBackoffMs?: number;
  onEvent?: (event: RedisWriterEvent) => void;
  connectionFactory?: RedisConnectionFactory;
  now?: () => number;
}

export interface RedisWriterStats {
  attempts: number;
  acknowledged: number;
  uncertain: number;
  errors: number;
  connects: number;
  lastError?: string;
}

const describeEndpoint = (e: RedisEndpoint) => `${e.host}:${e.port} as ${e.username}`;

/**
 * Sequential INCR + XADD transactions at a steady rate; `(seq, counter, streamId, clientTime)` is logged
 * only after EXEC returned. A failed EXEC is "uncertain" (it may have been applied) and is never retried:
 * the next write takes the next seq, so counter values of acknowledged writes stay increasing.
 */
export class RedisAckWriter {
  private endpoint: RedisEndpoint;
  private readonly keys: RedisDrillKeys;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly factory: RedisConnectionFactory;
  private readonly now: () => number;
  private readonly onEvent?: (event: RedisWriterEvent) => void;
  private connection: RedisWriteConnection | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private nextSeq = 1;
  private readonly log: RedisAck[] = [];
  private readonly uncertainSeqs: number[] = [];
  private readonly stats: RedisWriterStats = { attempts: 0, acknowledged: 0, uncertain: 0, errors: 0, connects: 0 };

  constructor(opts: RedisAckWriterOptions) {
    const rate = opts.writesPerSecond ?? 100;
    if (!(rate > 0)) throw new RangeError(`RedisAckWriter: writesPerSecond must be > 0 (got ${rate})`);
    this.endpoint = opts.endpoint;
    this.keys = opts.keys;
    this.intervalMs = 1000 / rate;
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.backoffMs = opts.backoffMs ?? 20;
    this.maxBackoffMs = opts.maxBackoffMs ?? 200;
    this.factory = opts.connectionFactory ?? ioredisConnection;
    this.now = opts.now ?? Date.now;
    this.onEvent = opts.onEvent;
  }

  start(): this {
    if (this.running) return this;
    this.running = true;
    this.loop = this.run();
    return this;
  }

  /** Stops after the write in flight and closes the connection. */
  async stop(): Promise<RedisWriterStats> {
    this.running = false;
    this.wake?.();
    await this.loop;
    this.loop = undefined;
    this.drop();
    return this.getStats();
  }

  /** Writes go to another server from the next write on (after a promotion). */
  repoint(endpoint: RedisEndpoint): void {
    this.endpoint = endpoint;
    this.drop();
    this.onEvent?.({ type: "repointed", atMs: this.now(), target: describeEndpoint(endpoint) });
  }

  acknowledged(): RedisAck[] {
    return this.log.map((a) => ({ ...a }));
  }

  lastAcknowledged(): RedisAck | undefined {
    const last = this.log[this.log.length - 1];
    return last ? { ...last } : undefined;
  }

  /** The first write acknowledged whose EXEC was also sent at or after `instantMs`. */
  firstAcknowledgedAfter(instantMs: number): RedisAck | undefined {
    const found = this.log.find((a) => a.startedAtMs >= instantMs);
    return found ? { ...found } : undefined;
  }

  uncertain(): number[] {
    return [...this.uncertainSeqs];
  }

  /** Highest seq sent so far. */
  highestAttemptedSeq(): number {
    return this.nextSeq - 1;
  }

  getStats(): RedisWriterStats {
    return { ...this.stats, acknowledged: this.log.length, uncertain: this.uncertainSeqs.length };
  }

  private drop(): void {
    const c = this.connection;
    this.connection = undefined;
    try {
      c?.close();
    } catch {
      // already gone
    }
  }

  private idle(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    let nextAt = this.now();
    let failures = 0;
    while (this.running) {
      const wait = nextAt - this.now();
      if (wait > 0) {
        await this.idle(wait);
        continue;
      }
      nextAt = Math.max(nextAt + this.intervalMs, this.now() - this.intervalMs);
      if (await this.writeOne()) failures = 0;
      else if (this.running) {
        failures++;
        await this.idle(Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (failures - 1)));
        nextAt = this.now();
      }
    }
  }

  private async writeOne(): Promise<boolean> {
    let phase: "connect" | "exec" = "connect";
    let seq: number | null = null;
    try {
      if (!this.connection) {
        const endpoint = this.endpoint;
        this.connection = await this.factory(endpoint, this.timeoutMs);
        this.stats.connects++;
        this.onEvent?.({ type: "connected", atMs: this.now(), target: describeEndpoint(endpoint) });
      }
      seq = this.nextSeq++;
      phase = "exec";
      this.stats.attempts++;
      const startedAtMs = this.now();
      const reply = await this.connection.incrAndAppend(this.keys, seq);
      this.log.push({ seq, counter: reply.counter, streamId: reply.streamId, startedAtMs, clientTimeMs: this.now() });
      return true;
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      // EXEC sent, no reply: it may have been applied. Not acknowledged, never retried under this seq.
      if (phase === "exec" && seq !== null) this.uncertainSeqs.push(seq);
      this.stats.errors++;
      this.stats.lastError = message;
      this.drop();
      this.onEvent?.({ type: "error", atMs: this.now(), seq, phase, message });
      return false;
    }
  }
}

// ----------------------------------------------------------------------------------------------- probe

/**
 * An acknowledged write on `endpoint`: INCR of the run's probe key over a fresh connection (attempts
 * overlap, see Probe). READONLY (a replica not promoted yet), refused connections and timeouts are false.
 */
export function redisWriteProbe(endpoint: RedisEndpoint | (() => RedisEndpoint), key: string, opts: { timeoutMs?: number } = {}): () => Promise<boolean> {
  const timeoutMs = opts.timeoutMs ?? 1000;
  return async () => {
    const client = await connectRedis(typeof endpoint === "function" ? endpoint() : endpoint, timeoutMs);
    try {
      const n = await client.incr(key);
      return Number.isSafeInteger(n) && n > 0;
    } finally {
      client.disconnect();
    }
  };
}

// ----------------------------------------------------------------------------------------------- state

export interface RedisDrillState {
  /** The counter after recovery; null when the key is gone. */
  counter: number | null;
  /** `seq` fields of the stream's entries, in stream order. */
  streamSeqs: number[];
  streamIds: string[];
}

/** Reads the run's counter and stream (as the app user: GET and XRANGE are within its ACL). */
export async function readRedisDrillState(endpoint: RedisEndpoint, keys: RedisDrillKeys, timeoutMs = 5000): Promise<RedisDrillState> {
  const client = await connectRedis(endpoint, timeoutMs);
  try {
    const counter = await client.get(keys.counter);
    const entries = await client.xrange(keys.stream, "-", "+");
    const streamSeqs: number[] = [];
    const streamIds: string[] = [];
    for (const [id, fields] of entries) {
      streamIds.push(id);
      const i = fields.indexOf("seq");
      const v = i >= 0 ? fields[i + 1] : undefined;
      if (v !== undefined) streamSeqs.push(Number(v));
    }
    return { counter: counter === null ? null : Number(counter), streamSeqs, streamIds };
  } finally {
    client.disconnect();
  }
}

/** Removes the run's keys (the drill leaves no data behind on a long-lived stack). */
export async function deleteRedisDrillKeys(endpoint: RedisEndpoint, keys: RedisDrillKeys, timeoutMs = 5000): Promise<void> {
  const client = await connectRedis(endpoint, timeoutMs);
  try {
    await client.del(keys.counter, keys.stream, keys.probe);
  } finally {
    client.disconnect();
  }
}

// ----------------------------------------------------------------------------------------------- measure

export interface RedisLossInput {
  acknowledged: readonly RedisAck[];
  state: Pick<RedisDrillState, "counter" | "streamSeqs">;
  uncertain?: readonly number[];
}

export interface RedisLoss extends RpoMeasurement {
  /** Acknowledged INCRs whose value is above the counter after recovery. */
  counterLost: number;
  /** Acknowledged XADDs whose entry is missing. */
  streamLost: number;
  counterAfterRecovery: number | null;
  lastAcknowledgedCounter: number | null;
}

/**
 * RPO of a Redis recovery (docs/drills.md "Definitions"). A write is present when both its effects are: the
 * counter is at least the value its INCR returned (INCRs on one key apply in order, so a counter of V holds
 * every increment up to V) and its XADD entry is in the stream. Stream entries of writes never acknowledged
 * are ghosts, or uncertain writes that did apply.
 */
export function measureRedisLoss(input: RedisLossInput): RedisLoss {
  const counter = input.state.counter ?? 0;
  const inStream = new Set(input.state.streamSeqs);
  const present = new Set<number>();
  let counterLost = 0;
  let streamLost = 0;
  let lastAcknowledgedCounter: number | null = null;
  const acked = new Set<number>();
  for (const a of input.acknowledged) {
    acked.add(a.seq);
    if (lastAcknowledgedCounter === null || a.counter > lastAcknowledgedCounter) lastAcknowledgedCounter = a.counter;
    const counted = a.counter <= counter;
    const streamed = inStream.has(a.seq);
    if (!counted) counterLost++;
    if (!streamed) streamLost++;
    if (counted && streamed) present.add(a.seq);
  }
  for (const seq of inStream) if (!acked.has(seq)) present.add(seq);
  const rpo = measureRpo({ acknowledged: input.acknowledged, presentSeqs: present, uncertain: input.uncertain });
  return { ...rpo, counterLost, streamLost, counterAfterRecovery: input.state.counter, lastAcknowledgedCounter };
}

/**
 * "At most `seconds` of writes": how many writes were acknowledged in the `seconds` before `instantMs`
 * (the fault). That is the loss an RPO objective of `seconds` allows at the rate the writer really ran.
 */
export function writesInWindow(acknowledged: readonly AcknowledgedWrite[], instantMs: number, seconds: number): number {
  const from = instantMs - seconds * 1000;
  return acknowledged.filter((a) => a.clientTimeMs > from && a.clientTimeMs <= instantMs).length;
}
