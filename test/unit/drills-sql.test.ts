// The SQL the drills build from values goes through `psql -c` on a node (no bind parameters there):
// every value is quoted by node-postgres' own escapeLiteral / escapeIdentifier, never by a local helper.
// (drills-pg.test.ts runs the same statements on a real PostgreSQL.)
import { escapeIdentifier, escapeLiteral } from "pg";
import { describe, expect, it } from "vitest";
import { amcheckSql } from "../../drills/backup-restore.mts";
import { failoverSql } from "../../drills/failover.mts";

describe("failoverSql", () => {
  it("quotes the standby's application_name as a literal", () => {
    expect(failoverSql.replicationLag("pg_2")).toMatch(/left join pg_stat_replication r on r\.application_name = 'pg_2'$/);
    expect(failoverSql.replicationLag("o'x")).toMatch(/= 'o''x'$/);
    // a backslash makes pg switch to an E'' literal, doubling it
    expect(failoverSql.replicationLag("a\\b").endsWith("=  E'a\\\\b'")).toBe(true);
  });

  it("quotes promotion settings: names as identifiers, values as literals; ends with reload + pg_promote", () => {
    expect(failoverSql.promote([["wal_retrieve_retry_interval", "100ms"], ["synchronous_standby_names", ""]])).toEqual([
      `ALTER SYSTEM SET "wal_retrieve_retry_interval" = '100ms'`,
      `ALTER SYSTEM SET "synchronous_standby_names" = ''`,
      "SELECT pg_reload_conf()",
      "SELECT pg_promote(true, 60)",
    ]);
    expect(failoverSql.promote([["x", "it's"]])[0]).toBe(`ALTER SYSTEM SET "x" = 'it''s'`);
    expect(failoverSql.resetSettings([["wal_retrieve_retry_interval", "100ms"]])).toEqual([`ALTER SYSTEM RESET "wal_retrieve_retry_interval"`, "SELECT pg_reload_conf()"]);
  });

  it("quotes slot names", () => {
    expect(failoverSql.recreateSlot("pg_1")).toEqual([
      "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = 'pg_1' and not active",
      "select pg_create_physical_replication_slot('pg_1', true)",
    ]);
    expect(failoverSql.dropInactiveSlot("x'); drop table t; --")).toContain(`slot_name = 'x''); drop table t; --' and not active`);
  });

  it("names the timeline history file in hex, 8 digits", () => {
    expect(failoverSql.timelineHistory(1)).toBe("select pg_read_file('pg_wal/00000001.history')");
    expect(failoverSql.timelineHistory(26)).toBe("select pg_read_file('pg_wal/0000001A.history')");
  });
});

describe("amcheckSql", () => {
  it("lists the tables as literals", () => {
    expect(amcheckSql(["incidents", "drill_seq"])).toContain("tb.relname IN ('incidents', 'drill_seq')");
    expect(amcheckSql(["we'ird"])).toContain(`IN (${escapeLiteral("we'ird")})`);
  });
});

describe("pg's escaping (what the drills rely on)", () => {
  it("is exported by pg and doubles quotes", () => {
    expect(escapeLiteral("a'b")).toBe("'a''b'");
    expect(escapeIdentifier('a"b')).toBe('"a""b"');
  });
});
