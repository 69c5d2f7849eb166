// Sizes and durations written with units ("512MiB", "30s") -> numbers. The ONE parser of each: the stack
// schema, `homelab tune --memory`, the tuner's PostgreSQL-spelled values (postgres/conf.ts parseMemory) and
// the drills' SHOW output all go through parseSize.
// Memory follows PostgreSQL's own convention (server-config "Numeric with Unit"): kB/MB/GB/TB are
// 1024 multiples, and the IEC spellings KiB/MiB/GiB/TiB mean the same thing.
// Written by hand: `bytes` reads "512MiB" as 512 bytes, xbytes reads "2GB" as 2e9 bytes; neither has
// PostgreSQL's 1024-multiple GB and IEC units together.

const KiB = 1024;

/** Bytes per unit, spelled as PostgreSQL writes them (B, kB, MB, GB, TB), plus KB and the IEC names. */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  B: 1,
  kB: KiB, KB: KiB, KiB,
  MB: KiB ** 2, MiB: KiB ** 2,
  GB: KiB ** 3, GiB: KiB ** 3,
  TB: KiB ** 4, TiB: KiB ** 4,
};
/** Config spelling: the same units in any case, and docker's single letters k, m, g, t. */
const CONFIG_SIZE_UNITS: Readonly<Record<string, number>> = {
  ...Object.fromEntries(Object.entries(SIZE_UNITS).map(([unit, bytes]) => [unit.toLowerCase(), bytes])),
  k: KiB, m: KiB ** 2, g: KiB ** 3, t: KiB ** 4,
};

export const MEMORY_FORMAT_HINT = 'a positive size such as "512MiB", "16GiB" or "2GB" (units B, KiB/kB, MiB/MB, GiB/GB, TiB/TB; 1024 multiples)';
export const PG_MEMORY_FORMAT_HINT = 'a positive number and a unit, e.g. "16GiB", "512MiB", "64kB" (units B, kB/KiB, MB/MiB, GB/GiB, TB/TiB; all 1024 multiples, as in PostgreSQL)';

/**
 * How strictly parseSize reads:
 * - "config" (stack config, CLI flags): a plain number is bytes, units in any case, amounts rounded to a byte.
 * - "postgres" (values as PostgreSQL spells them): a unit is required, in PostgreSQL's (or IEC) case, and the
 *   amount must be a whole number of bytes. A bare "16" is ambiguous there: PostgreSQL reads it in the
 *   setting's own unit (8kB blocks for shared_buffers, kB for work_mem).
 */
export type SizeSpelling = "config" | "postgres";

/** Parses a size into bytes, or says what is wrong (the problem ends with what is accepted). */
export function parseSize(value: unknown, spelling: SizeSpelling = "config"): { bytes: number } | { problem: string } {
  const postgres = spelling === "postgres";
  const fail = (why?: string) => ({ problem: `${why ? `${why}; ` : ""}expected ${postgres ? PG_MEMORY_FORMAT_HINT : MEMORY_FORMAT_HINT}` });
  if (typeof value === "number" && !postgres) {
    return Number.isSafeInteger(value) && value > 0 ? { bytes: value } : fail("not a positive whole number of bytes");
  }
  if (typeof value !== "string") return fail();
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(value);
  if (!match) return fail();
  const [, amount = "", unit = ""] = match;
  if (unit === "" && postgres) return fail("a unit is required");
  const factor = unit === "" ? 1 : postgres ? SIZE_UNITS[unit] : CONFIG_SIZE_UNITS[unit.toLowerCase()];
  if (factor === undefined) return fail(`unknown unit "${unit}"`);
  const exact = Number(amount) * factor;
  const bytes = postgres ? exact : Math.round(exact);
  if (!(bytes > 0)) return fail("must be greater than zero");
  if (!Number.isSafeInteger(bytes)) return fail(`${exact} is not a whole number of bytes below 2^53`);
  return { bytes };
}

/** Parses "16GiB" / "512MB" / 1048576 into bytes (config spelling); undefined when it is not a positive size. */
export function parseBytes(value: unknown): number | undefined {
  const parsed = parseSize(value);
  return "bytes" in parsed ? parsed.bytes : undefined;
}

// Durations: written by hand as well. ms reads a bare "30" as 30 milliseconds (here: seconds, as the number
// form), and takes "-5s" and "1y" (365.25 days); parse-duration reads "1h junk" as one hour.
const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, min: 60, h: 3600, d: 86400 };

export const DURATION_FORMAT_HINT = 'a duration such as "500ms", "30s", "5min", "2h" or "1d", or a number of seconds';

/** Parses "30s" / "5min" / 30 into seconds; undefined when not a non-negative duration. */
export function parseDurationSeconds(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value : undefined;
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$/.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * (DURATION_UNITS[m[2] ?? "s"] ?? 1);
}

/** Human form of a byte count for messages and reports: 1536 -> "1.5KiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)}${units[i]}`;
}
