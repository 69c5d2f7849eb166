// Sizes and durations written with units in stack config ("512MiB", "30s") -> numbers.
// Memory follows PostgreSQL's own convention (server-config "Numeric with Unit"): kB/MB/GB/TB are
// 1024 multiples, and the IEC spellings KiB/MiB/GiB/TiB mean the same thing. Plain numbers are bytes.

const MEMORY_UNITS: Record<string, number> = {
  b: 1,
  kb: 1024, kib: 1024, k: 1024,
  mb: 1024 ** 2, mib: 1024 ** 2, m: 1024 ** 2,
  gb: 1024 ** 3, gib: 1024 ** 3, g: 1024 ** 3,
  tb: 1024 ** 4, tib: 1024 ** 4, t: 1024 ** 4,
};

export const MEMORY_FORMAT_HINT = 'a positive size such as "512MiB", "16GiB" or "2GB" (units B, KiB/kB, MiB/MB, GiB/GB, TiB/TB; 1024 multiples)';

/** Parses "16GiB" / "512MB" / 1048576 into bytes; returns undefined when it is not a positive size. */
export function parseBytes(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) return undefined;
  const unit = (m[2] ?? "").toLowerCase() || "b";
  const factor = MEMORY_UNITS[unit];
  if (factor === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * factor);
  return bytes > 0 && Number.isSafeInteger(bytes) ? bytes : undefined;
}

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
