import fc from "fast-check";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadStackSpec, parseBytes, parseDurationSeconds, validateConfig } from "../../components/config/index.ts";

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("stack config schema", () => {
  it("fills every default into a typed spec, with units parsed", () => {
    const spec = validateConfig("local", {});
    expect(spec.platform).toBe("docker");
    expect(spec.postgres.node.memory).toBe(512 * 1024 ** 2);
    expect(spec.postgres.archiveTimeout).toBe(60);
    expect(spec.pgbackrest.maxBackupAge).toBe(26 * 3600);
    expect(spec.objectives.failover).toEqual({ rpoWrites: 0, rto: 10, redundancyRestored: 120 });
    expect(spec.redis.persistence).toEqual({ aof: true, appendfsync: "everysec", save: [[3600, 1], [300, 100], [60, 10000]] });
  });

  it("reports every problem at once, each naming the key, the value and what is accepted", () => {
    const problems = problemsOf(() =>
      validateConfig("local", {
        postgres: { replicas: -1, profile: "nosuch", node: { memory: "12XB" }, bogus: 1 },
        pgbackrest: { schedules: { full: "0 3 * *" } },
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        'homelab-data:postgres.replicas: got -1; expected a whole number from 0 to 5',
        'homelab-data:postgres.profile: got "nosuch"; expected one of "web", "oltp", "dw", "mixed"',
        expect.stringMatching(/^homelab-data:postgres\.node\.memory: got "12XB"; expected a positive size/),
        expect.stringMatching(/^homelab-data:postgres\.bogus: unknown key; accepted keys here: version, profile/),
        expect.stringMatching(/^homelab-data:pgbackrest\.schedules\.full: got "0 3 \* \*"; expected a five-field cron/),
      ]),
    );
    expect(problems).toHaveLength(5);
  });

  it("checks rules across keys once the keys themselves are valid", () => {
    const problems = problemsOf(() =>
      validateConfig("local", {
        postgres: { replicas: 0, replicationMode: "sync", node: { memory: "128MiB" } },
        redis: { maxmemory: "120MiB", node: { memory: "128MiB" } },
        duckdb: { enabled: true },
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringContaining("homelab-data:postgres.replicationMode: got \"sync\"; sync replication needs postgres.replicas >= 1"),
        expect.stringContaining("homelab-data:postgres.node.memory: got \"128MiB\"; PostgreSQL with archiving and replication needs at least 256MiB"),
        expect.stringContaining("homelab-data:redis.maxmemory: got \"120MiB\"; expected at most 75% of redis.node.memory (96MiB)"),
        expect.stringContaining("homelab-data:duckdb.enabled: got true; the DuckDB host reads from a replica"),
      ]),
    );
  });

  it("refuses a password stored in plaintext and an invalid stack name", () => {
    const problems = problemsOf(() => validateConfig("Bad_Name", { postgresAppPassword: "hunter2hunter2" }));
    expect(problems.some((p) => p.startsWith("stack name:"))).toBe(true);
    expect(problems).toContain(
      "homelab-data:postgresAppPassword: is stored in plaintext; set it with `pulumi config set --secret homelab-data:postgresAppPassword` or `homelab init --stack Bad_Name`",
    );
    expect(validateConfig("ok", { postgresAppPassword: { secure: "v1:abc" } }).stack).toBe("ok");
  });

  it("accepts IPv4 and IPv6 CIDRs and rejects malformed ones", () => {
    expect(validateConfig("a", { postgres: { allowedClientCidrs: ["10.0.0.0/8", "fd00::/64", "::1/128"] } }).postgres.allowedClientCidrs).toHaveLength(3);
    const problems = problemsOf(() => validateConfig("a", { postgres: { allowedClientCidrs: ["10.0.0.0/33", "300.1.1.1/8", "fd00::/129", "nope"] } }));
    expect(problems).toHaveLength(4);
    expect(problems.every((p) => /^homelab-data:postgres\.allowedClientCidrs\.\d: got ".*"; .*expected a CIDR/.test(p))).toBe(true);
  });

  it("property: random wrong types anywhere are reported with their key, never thrown as a crash", () => {
    const keys = ["postgres.replicas", "postgres.profile", "redis.maxmemory", "pgbackrest.processMax", "objectives.failover.rto", "docker.basePort", "duckdb.schemas"];
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.oneof(fc.constant(null), fc.boolean(), fc.constant(-7), fc.constant("??"), fc.constant({ x: 1 })), (key, value) => {
        const [section, ...rest] = key.split(".");
        const leaf = rest.reduceRight<unknown>((acc, k) => ({ [k]: acc }), value);
        let problems: string[];
        try {
          validateConfig("p", { [section as string]: leaf });
          return true; // some values are legitimately valid for some keys (e.g. a boolean nowhere here)
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
          problems = e.problems;
        }
        return problems.some((p) => p.startsWith(`homelab-data:${key}`)) && problems.every((p) => /^homelab-data:[a-z]+(\.[A-Za-z0-9]+)*: /.test(p));
      }),
    );
  });

  it("reads a stack file and reports a missing one with the stacks that exist", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "stacks-"));
    writeFileSync(path.join(dir, "Pulumi.home.yaml"), "config:\n  homelab-data:postgres:\n    replicas: 2\n  docker:host: unix:///var/run/docker.sock\n");
    expect(loadStackSpec("home", dir).postgres.replicas).toBe(2);
    expect(problemsOf(() => loadStackSpec("nosuch", dir))[0]).toMatch(/--stack: no stack file .*Pulumi\.nosuch\.yaml; create it, or pick one of: home/);
    writeFileSync(path.join(dir, "Pulumi.broken.yaml"), "config:\n  homelab-data:postgres: [\n");
    expect(problemsOf(() => loadStackSpec("broken", dir))[0]).toMatch(/^YAML: /);
  });
});

describe("units", () => {
  it("parses sizes as PostgreSQL does (1024 multiples) and durations", () => {
    expect(parseBytes("16GiB")).toBe(16 * 1024 ** 3);
    expect(parseBytes("16GB")).toBe(16 * 1024 ** 3);
    expect(parseBytes("512MiB")).toBe(512 * 1024 ** 2);
    expect(parseBytes(1024)).toBe(1024);
    for (const bad of ["0", "-1GiB", "12XB", "", "GiB", 0, -5, 1.5]) expect(parseBytes(bad)).toBeUndefined();
    expect(parseDurationSeconds("500ms")).toBe(0.5);
    expect(parseDurationSeconds("5min")).toBe(300);
    expect(parseDurationSeconds("2h")).toBe(7200);
    expect(parseDurationSeconds(30)).toBe(30);
    expect(parseDurationSeconds("soon")).toBeUndefined();
  });
});
