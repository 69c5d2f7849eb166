// The `homelab` CLI as a user runs it: a real process, real exit codes, real files.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "bin/homelab.mjs");

function homelab(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const TUNE = ["tune", "--memory", "16GiB", "--cpus", "4", "--storage", "ssd", "--profile", "web", "--pg", "17"];

describe("homelab tune", () => {
  it("prints PGTune settings plus what a replicated, archived node needs, as JSON", () => {
    const r = homelab(...TUNE, "--format", "json");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({
      shared_buffers: "4GB",
      effective_cache_size: "12GB",
      maintenance_work_mem: "1GB",
      wal_level: "replica",
      archive_mode: "on",
      wal_log_hints: "on",
    });
    expect(s.work_mem).toMatch(/^\d+(kB|MB)$/);
    expect(s.max_slot_wal_keep_size).toMatch(/^\d+(MB|GB)$/);
  });

  it("prints postgresql.conf by default", () => {
    const r = homelab(...TUNE);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^shared_buffers = '?4GB'?$/m);
  });

  it.each([
    [["--memory", "0"], /^homelab: --memory: got "0"; expected a positive size/],
    [["--profile", "nosuch"], /argument 'nosuch' is invalid\. Allowed choices are web, oltp, dw, mixed/],
    [["--cpus", "-2"], /^homelab: --cpus: -2 is not accepted; expected a whole number/],
    [["--memory", "64MiB"], /^homelab: --memory: .*256MiB/],
    [["--cpus", "two"], /^homelab: --cpus: got "two"; expected a whole number/],
  ])("rejects %j with one clear line and a non-zero exit, no stack trace", (override, message) => {
    const args = [...TUNE];
    for (let i = 0; i < override.length; i += 2) {
      const at = args.indexOf(override[i] as string);
      args[at + 1] = override[i + 1] as string;
    }
    const r = homelab(...args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe("homelab validate / render", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "homelab-cli-"));
  writeFileSync(path.join(dir, "Pulumi.three.yaml"), "config:\n  homelab-data:postgres:\n    replicas: -1\n    profile: nosuch\n  homelab-data:redis:\n    maxmemory: lots\n");
  writeFileSync(path.join(dir, "Pulumi.good.yaml"), "config:\n  homelab-data:postgres:\n    replicas: 1\n  homelab-data:redis:\n    replica: true\n");

  it("validate reports all three mistakes of a stack file", () => {
    const r = homelab("validate", "--stack", "three", "--stacks-dir", dir);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines.join("\n")).toMatch(/postgres\.replicas: got -1/);
    expect(lines.join("\n")).toMatch(/postgres\.profile: got "nosuch"/);
    expect(lines.join("\n")).toMatch(/redis\.maxmemory: got "lots"/);
  });

  it("validate accepts a good stack", () => {
    const r = homelab("validate", "--stack", "good", "--stacks-dir", dir);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/stack good: valid/);
  });

  it("render writes every node's files, with secrets redacted", () => {
    const out = mkdtempSync(path.join(os.tmpdir(), "homelab-render-"));
    const r = homelab("render", "--stack", "good", "--stacks-dir", dir, "--out", out);
    expect(r.code).toBe(0);
    const nodes = readdirSync(out).filter((f) => f.startsWith("homelab-good-")).sort();
    expect(nodes).toEqual(["homelab-good-backup", "homelab-good-duckdb", "homelab-good-monitoring", "homelab-good-pg-1", "homelab-good-pg-2", "homelab-good-redis", "homelab-good-redis-replica"]);
    for (const f of ["prometheus.yml", "rules.yml", "postgres-queries.yml", "exporters.jsonl"]) expect(readdirSync(path.join(out, "homelab-good-monitoring/monitoring"))).toContain(f);
    for (const pgNode of ["homelab-good-pg-1", "homelab-good-pg-2"]) {
      for (const f of ["postgresql.conf", "pg_hba.conf", "pgbackrest.conf"]) expect(readdirSync(path.join(out, pgNode))).toContain(f);
    }
    expect(readdirSync(path.join(out, "homelab-good-backup"))).toContain("pgbackrest.conf");
    for (const f of ["redis.conf", "users.acl"]) expect(readdirSync(path.join(out, "homelab-good-redis"))).toContain(f);
    expect(readFileSync(path.join(out, "homelab-good-pg-1/secrets/app.password"), "utf8")).toBe("REDACTED-postgresAppPassword");
    const topology = JSON.parse(readFileSync(path.join(out, "topology.json"), "utf8"));
    expect(topology.nodes.map((n: { role: string }) => n.role)).toContain("backup-repository");
  });

  it("an unknown stack names the ones that exist", () => {
    const r = homelab("render", "--stack", "nosuch", "--stacks-dir", dir, "--out", "/tmp/never");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no stack file .*Pulumi\.nosuch\.yaml; create it, or pick one of: good, three/);
  });
});
