import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { formatPgDuration, formatPgMemory, hasControlCharacter, parseMemory, quotePgValue, renderPostgresConf } from "../../components/postgres/index.ts";

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

describe("parseMemory", () => {
  it.each([
    ["16GiB", 16 * GiB],
    ["16GB", 16 * GiB],
    ["512MiB", 512 * MiB],
    ["512MB", 512 * MiB],
    ["64kB", 64 * KiB],
    ["64KiB", 64 * KiB],
    ["64KB", 64 * KiB],
    ["1TB", TiB],
    ["2TiB", 2 * TiB],
    ["1.5GiB", 1.5 * GiB],
    [" 16 GiB ", 16 * GiB],
    ["4096B", 4096],
  ])("%j is %d bytes", (text, bytes) => {
    expect(parseMemory(text)).toBe(bytes);
  });

  it.each([
    ["0", /must be greater than zero|expected a positive number/],
    ["0GiB", /must be greater than zero/],
    ["-1GiB", /expected a positive number/],
    ["16", /expected a positive number and a unit/],
    ["abc", /expected a positive number/],
    ["", /expected a positive number/],
    ["16gb", /unknown unit "gb"/],
    ["16 parsecs", /unknown unit "parsecs"/],
    ["1.5B", /whole number of bytes/],
    ["1e3MB", /expected a positive number/],
    ["16GiB extra", /expected a positive number/],
  ])("rejects %j", (text, message) => {
    expect(() => parseMemory(text)).toThrow(RangeError);
    expect(() => parseMemory(text)).toThrow(message);
    expect(() => parseMemory(text)).toThrow(JSON.stringify(text));
  });
});

describe("formatPgMemory", () => {
  it.each([
    [4 * GiB, "4GB"],
    [1536 * MiB, "1536MB"],
    [20560 * KiB, "20560kB"],
    [16 * MiB, "16MB"],
    [TiB, "1024GB"],
    [1000, "1000B"],
    [0, "0kB"],
  ])("%d bytes -> %s", (bytes, text) => {
    expect(formatPgMemory(bytes)).toBe(text);
  });

  it("refuses negative and fractional byte counts", () => {
    expect(() => formatPgMemory(-1024)).toThrow(RangeError);
    expect(() => formatPgMemory(1.5)).toThrow(RangeError);
  });

  it("round-trips through parseMemory", () => {
    fc.assert(
      fc.property(fc.oneof(fc.integer({ min: 1, max: 2 ** 31 - 1 }).map((kb) => kb * KiB), fc.integer({ min: 1, max: 2 ** 31 - 1 })), (bytes) => {
        expect(parseMemory(formatPgMemory(bytes))).toBe(bytes);
      }),
    );
  });
});

describe("formatPgDuration", () => {
  it.each([
    [0, "0"],
    [250, "250ms"],
    [1000, "1s"],
    [30_000, "30s"],
    [60_000, "1min"],
    [90_000, "90s"],
    [600_000, "10min"],
    [3_600_000, "1h"],
    [86_400_000, "1d"],
  ])("%d ms -> %s", (ms, text) => {
    expect(formatPgDuration(ms)).toBe(text);
  });

  it("refuses negative and fractional values", () => {
    expect(() => formatPgDuration(-1)).toThrow(RangeError);
    expect(() => formatPgDuration(0.5)).toThrow(RangeError);
  });
});

/** Reads one quoted postgresql.conf value back the way GUC_scanstr does for the escapes we write. */
function unquote(text: string): string {
  if (!text.startsWith("'")) return text;
  return text.slice(1, -1).replace(/''|\\\\/g, (m) => (m === "''" ? "'" : "\\"));
}

describe("quotePgValue / renderPostgresConf", () => {
  it.each([
    ["4GB", "4GB"],
    ["20560kB", "20560kB"],
    ["0.9", "0.9"],
    ["1.1", "1.1"],
    ["-1", "-1"],
    ["200", "200"],
    ["10min", "10min"],
    ["on", "on"],
    ["off", "off"],
    ["true", "true"],
    ["replica", "'replica'"],
    ["*", "'*'"],
    ["scram-sha-256", "'scram-sha-256'"],
    ["pg_stat_statements", "'pg_stat_statements'"],
    ["pgbackrest --stanza=main archive-push %p", "'pgbackrest --stanza=main archive-push %p'"],
    ["it's", "'it''s'"],
    ["C:\\pg", "'C:\\\\pg'"],
    ["", "''"],
  ])("%j is written as %s", (value, written) => {
    expect(quotePgValue(value)).toBe(written);
  });

  it("refuses values that cannot be one line", () => {
    expect(() => quotePgValue("a\nb")).toThrow(/control character/);
    expect(() => quotePgValue("a\u0000b")).toThrow(/control character/);
  });

  it("round-trips any one-line string", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }).filter((s) => !hasControlCharacter(s)), (value) => {
        expect(unquote(quotePgValue(value))).toBe(value);
      }),
    );
  });

  it("renders a commented header and settings in order", () => {
    const conf = renderPostgresConf({ shared_buffers: "4GB", wal_level: "replica", archive_command: "pgbackrest --stanza=it's archive-push %p", "pg_stat_statements.track": "all" }, "line one\n\nline three");
    expect(conf).toBe(
      [
        "# line one",
        "#",
        "# line three",
        "",
        "shared_buffers = 4GB",
        "wal_level = 'replica'",
        "archive_command = 'pgbackrest --stanza=it''s archive-push %p'",
        "pg_stat_statements.track = 'all'",
        "",
      ].join("\n"),
    );
  });

  it("has a default header and is deterministic", () => {
    const settings = { max_connections: "100", listen_addresses: "*" };
    const conf = renderPostgresConf(settings);
    expect(conf.startsWith("# postgresql.conf generated by homelab-data")).toBe(true);
    expect(conf).toBe(renderPostgresConf({ ...settings }));
    expect(conf.endsWith("listen_addresses = '*'\n")).toBe(true);
  });

  it("refuses a setting name PostgreSQL would not parse", () => {
    expect(() => renderPostgresConf({ "work mem": "4MB" })).toThrow(/not a PostgreSQL parameter name/);
    expect(() => renderPostgresConf({ "a=b": "1" })).toThrow(/not a PostgreSQL parameter name/);
  });
});
