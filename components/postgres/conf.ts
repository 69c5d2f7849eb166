// postgresql.conf rendering and the memory/duration units it is written in.
// Pure: no I/O, no Pulumi. The settings come from tunePostgres (tune.ts).
import type { PostgresSettings } from "./tune.ts";

/** Bytes per unit. PostgreSQL's kB/MB/GB/TB are 1024 multiples (docs: "19.1.1 Parameter Names and Values"), so they equal KiB/MiB/GiB/TiB. */
const MEMORY_UNITS: Readonly<Record<string, number>> = {
  B: 1,
  kB: 1024,
  KB: 1024,
  KiB: 1024,
  MB: 1024 ** 2,
  MiB: 1024 ** 2,
  GB: 1024 ** 3,
  GiB: 1024 ** 3,
  TB: 1024 ** 4,
  TiB: 1024 ** 4,
};

const ACCEPTED_MEMORY = 'a positive number and a unit, e.g. "16GiB", "512MiB", "64kB" (units B, kB/KiB, MB/MiB, GB/GiB, TB/TiB; all 1024 multiples, as in PostgreSQL)';

/**
 * Parses a memory size written with a unit into bytes.
 * "16GB" and "16GiB" are the same amount: PostgreSQL itself reads GB as 1024^3 bytes, and a config file
 * that means something else than the server would is worse than a non-SI name. A unit is required
 * (a bare "16" is ambiguous: PostgreSQL would read it as 8kB blocks for shared_buffers, kB for work_mem).
 * Zero, negatives, and amounts that are not a whole number of bytes are rejected.
 */
export function parseMemory(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$/.exec(text);
  if (!match) {
    throw new RangeError(`invalid memory size ${JSON.stringify(text)}: expected ${ACCEPTED_MEMORY}`);
  }
  const [, amount = "", unit = ""] = match;
  const multiplier = MEMORY_UNITS[unit];
  if (multiplier === undefined) {
    throw new RangeError(`invalid memory size ${JSON.stringify(text)}: unknown unit "${unit}"; expected ${ACCEPTED_MEMORY}`);
  }
  const bytes = Number(amount) * multiplier;
  if (!(bytes > 0)) {
    throw new RangeError(`invalid memory size ${JSON.stringify(text)}: must be greater than zero; expected ${ACCEPTED_MEMORY}`);
  }
  if (!Number.isSafeInteger(bytes)) {
    throw new RangeError(`invalid memory size ${JSON.stringify(text)}: ${bytes} is not a whole number of bytes below 2^53; expected ${ACCEPTED_MEMORY}`);
  }
  return bytes;
}

/**
 * Formats a byte count the way PGTune prints it (configurationView formatValue): the largest of GB, MB, kB
 * that represents the value exactly ("4GB", "1536MB", "20560kB"). Amounts that are not whole kB are
 * written in B, which PostgreSQL also accepts (it rounds them to the setting's own unit).
 */
export function formatPgMemory(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new RangeError(`formatPgMemory: expected a non-negative whole number of bytes, got ${bytes}`);
  }
  if (bytes % 1024 !== 0) return `${bytes}B`;
  const kb = bytes / 1024;
  if (kb !== 0 && kb % 1024 ** 2 === 0) return `${kb / 1024 ** 2}GB`;
  if (kb !== 0 && kb % 1024 === 0) return `${kb / 1024}MB`;
  return `${kb}kB`;
}

/** Formats milliseconds with the largest PostgreSQL time unit that is exact ("1min", "10min", "250ms"). */
export function formatPgDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new RangeError(`formatPgDuration: expected a non-negative whole number of milliseconds, got ${ms}`);
  }
  if (ms === 0) return "0";
  const units: Array<[string, number]> = [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["min", 60_000],
    ["s", 1_000],
  ];
  for (const [unit, size] of units) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** A GUC name: plain (`work_mem`) or an extension's custom one (`pg_stat_statements.track`). */
export const GUC_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/;

/** Numbers, optionally signed, decimal, with a unit letter suffix: PG's INTEGER/REAL tokens (guc-file.l). */
const BARE_NUMBER = /^-?\d+(\.\d+)?([a-zA-Z]+)?$/;
/** Booleans as postgresql.conf spells them (docs 19.1.1: on, off, true, false, yes, no, 1, 0). */
const BARE_BOOLEAN = new Set(["on", "off", "true", "false", "yes", "no"]);

/** True when text holds a control character (newline, NUL, DEL...): such a value cannot sit on one postgresql.conf line. */
export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/**
 * Writes one value as postgresql.conf reads it: numbers (with units) and booleans bare, everything else
 * in single quotes. Inside quotes PostgreSQL's scanner (GUC_scanstr) treats backslash as an escape, so
 * backslashes are doubled as well as quotes. Control characters (newlines) cannot be represented safely
 * in one line and are refused.
 */
export function quotePgValue(value: string): string {
  if (hasControlCharacter(value)) {
    throw new RangeError(`value ${JSON.stringify(value)} contains a control character; postgresql.conf values must be one line`);
  }
  if (BARE_NUMBER.test(value) || BARE_BOOLEAN.has(value)) return value;
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

const DEFAULT_HEADER = "postgresql.conf generated by homelab-data (components/postgres/tune.ts).\nDo not edit on the host: change the stack config and run `pulumi up`.";

/**
 * Renders settings as a postgresql.conf fragment: a `#` comment header, then `name = value` lines in the
 * settings' own (deterministic) order, ending with a newline. Same input, same bytes.
 */
export function renderPostgresConf(settings: PostgresSettings, header: string = DEFAULT_HEADER): string {
  const lines = header.split(/\r?\n/).map((line) => (line.length > 0 ? `# ${line}` : "#"));
  lines.push("");
  for (const [name, value] of Object.entries(settings)) {
    if (!GUC_NAME.test(name)) {
      throw new RangeError(`setting name ${JSON.stringify(name)} is not a PostgreSQL parameter name (letters, digits, underscore; optional one "class." prefix)`);
    }
    lines.push(`${name} = ${quotePgValue(value)}`);
  }
  return `${lines.join("\n")}\n`;
}
