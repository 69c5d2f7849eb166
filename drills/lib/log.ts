// Live phase display for drills (docs/style.md "Drills": top-level steps with names, each logged with a
// timestamp). No progress library is installed, so this is a small writer over a stream: colour only on a
// TTY without NO_COLOR, plain lines otherwise (CI logs, files). Every phase is also recorded for the report.
import type { ReportPhase } from "./report.ts";
import { formatDuration } from "./measure.ts";

export interface LogStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

export interface PhaseHandle {
  readonly name: string;
  readonly startedAtMs: number;
  /** Prints `✔ name (1.23 s) detail`; returns the duration. */
  done(detail?: string): number;
  /** Prints `✖ name (1.23 s) detail`; returns the duration. */
  fail(detail?: string): number;
}

export interface DrillLogOptions {
  stream?: LogStream;
  /** Default: stream.isTTY and no NO_COLOR in the environment. */
  color?: boolean;
  now?: () => number;
  /** Render local time (default) or UTC in the `[HH:MM:SS.mmm]` prefix. */
  utc?: boolean;
}

const ANSI = { reset: "\x1b[0m", dim: "\x1b[2m", bold: "\x1b[1m", green: "\x1b[32m", red: "\x1b[31m", cyan: "\x1b[36m", yellow: "\x1b[33m" } as const;

export function clockTime(ms: number, utc = false): string {
  const d = new Date(ms);
  const [h, m, s, milli] = utc ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()] : [d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}.${String(milli).padStart(3, "0")}`;
}

export class DrillLog {
  private readonly stream: LogStream;
  private readonly color: boolean;
  private readonly now: () => number;
  private readonly utc: boolean;
  private readonly recorded: ReportPhase[] = [];

  constructor(opts: DrillLogOptions = {}) {
    this.stream = opts.stream ?? process.stdout;
    this.color = opts.color ?? (Boolean(this.stream.isTTY) && !process.env.NO_COLOR);
    this.now = opts.now ?? Date.now;
    this.utc = opts.utc ?? false;
  }

  private paint(code: keyof typeof ANSI, text: string): string {
    return this.color ? `${ANSI[code]}${text}${ANSI.reset}` : text;
  }

  private line(at: number, text: string): void {
    this.stream.write(`${this.paint("dim", `[${clockTime(at, this.utc)}]`)} ${text}\n`);
  }

  /** Starts a phase: prints `[HH:MM:SS.mmm] ▶ name`. Finish it with done() or fail() (the first call counts). */
  phase(name: string): PhaseHandle {
    const startedAtMs = this.now();
    this.line(startedAtMs, `${this.paint("cyan", "▶")} ${this.paint("bold", name)}`);
    let finished: number | undefined;
    const finish = (ok: boolean, detail?: string): number => {
      if (finished !== undefined) return finished;
      const end = this.now();
      finished = end - startedAtMs;
      const symbol = ok ? this.paint("green", "✔") : this.paint("red", "✖");
      this.line(end, `${symbol} ${name} ${this.paint("dim", `(${formatDuration(finished)})`)}${detail ? ` ${detail}` : ""}`);
      this.recorded.push({ name, startedAt: new Date(startedAtMs).toISOString(), durationMs: finished, ok, ...(detail ? { detail } : {}) });
      return finished;
    };
    return { name, startedAtMs, done: (detail) => finish(true, detail), fail: (detail) => finish(false, detail) };
  }

  /** Runs `fn` as a phase: done with `detail(result)` on success; fail with the error's message, then rethrows. */
  async step<T>(name: string, fn: (phase: PhaseHandle) => Promise<T> | T, detail?: (result: T) => string | undefined): Promise<T> {
    const p = this.phase(name);
    try {
      const result = await fn(p);
      p.done(detail?.(result));
      return result;
    } catch (e) {
      p.fail(e instanceof Error ? e.message : String(e));
      throw e;
    }
  }

  info(message: string): void {
    this.line(this.now(), `  ${message}`);
  }

  warn(message: string): void {
    this.line(this.now(), `${this.paint("yellow", "!")} ${message}`);
  }

  /** The phases finished so far, in the order they finished: the report's `phases`. */
  phases(): ReportPhase[] {
    return this.recorded.map((p) => ({ ...p }));
  }
}

let defaultLog: DrillLog | undefined;

/** The process-wide log on stdout. */
export function drillLog(): DrillLog {
  defaultLog ??= new DrillLog();
  return defaultLog;
}

export const phase = (name: string): PhaseHandle => drillLog().phase(name);
export const step = <T>(name: string, fn: (phase: PhaseHandle) => Promise<T> | T, detail?: (result: T) => string | undefined): Promise<T> => drillLog().step(name, fn, detail);
export const info = (message: string): void => drillLog().info(message);
