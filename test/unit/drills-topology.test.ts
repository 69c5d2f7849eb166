import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { validateConfig } from "../../components/config/index.ts";
import { planHomelab } from "../../components/plan.ts";
import { redactedSecrets } from "../../components/secrets.ts";
import { topologyOf, type Topology } from "../../components/topology.ts";
import type { ControlledNode, ExecOptions, ExecResult, NodeControl } from "../../drills/lib/nodes.ts";
import { currentPrimary, loadTopology, nodeByName, nodeByRole, parseTopology, pgClientConfig, pgNodeStates, pgNodes } from "../../drills/lib/topology.ts";

const spec = validateConfig("drills", { postgres: { replicas: 2, replicationMode: "sync" } });
const topology: Topology = JSON.parse(JSON.stringify(topologyOf({ ...spec, docker: { ...spec.docker, host: "ssh://me@nuc" } }, planHomelab(spec, redactedSecrets()))));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "drills-topology-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("parseTopology", () => {
  it("accepts what topologyOf() exports, unchanged", () => {
    expect(parseTopology(topology, "t")).toEqual(topology);
  });

  it("unwraps a whole `pulumi stack output --json` object", () => {
    expect(parseTopology({ topology, other: 1 }, "t").stack).toBe("drills");
  });

  it("accepts a topology with fields a newer stack adds (and ignores them)", () => {
    const t = parseTopology({ ...topology, extra: { a: 1 } }, "t") as Topology & { extra?: unknown };
    expect(t.extra).toBeUndefined();
    expect(t.nodes).toEqual(topology.nodes);
  });

  it("refuses another version by name", () => {
    expect(() => parseTopology({ ...topology, version: 1 }, "saved.json")).toThrow("saved.json: topology version 1 is not supported; these drills read version 2");
  });

  it("lists every problem with its path", () => {
    const bad = JSON.parse(JSON.stringify(topology));
    bad.nodes[0].handle = { kind: "docker" };
    bad.nodes[1].role = "mystery";
    delete bad.postgres.database;
    let message = "";
    try {
      parseTopology(bad, "saved.json");
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^saved\.json: not a valid topology \(version 2\):/);
    expect(message).toContain("- nodes.0.handle.container:");
    expect(message).toContain("- nodes.1.role:");
    expect(message).toContain("- postgres.database:");
  });

  it("refuses duplicate node names", () => {
    expect(() => parseTopology({ ...topology, nodes: [topology.nodes[0], topology.nodes[0]] }, "t")).toThrow(/node name pg-1 appears twice/);
  });
});

describe("loadTopology", () => {
  it("reads --topology file.json", async () => {
    const file = path.join(dir, "topology.json");
    await writeFile(file, JSON.stringify(topology));
    expect((await loadTopology({ file })).nodes.map((n) => n.name)).toEqual(topology.nodes.map((n) => n.name));
  });

  it("names an unreadable or non-JSON file", async () => {
    await expect(loadTopology({ file: path.join(dir, "nope.json") })).rejects.toThrow(/cannot read topology file .*nope\.json/);
    const file = path.join(dir, "garbage.json");
    await writeFile(file, "{");
    await expect(loadTopology({ file })).rejects.toThrow(/topology file .*garbage\.json is not JSON/);
  });

  it("names the command when the pulumi CLI is missing", async () => {
    await expect(loadTopology({ stack: "dev", env: { PATH: path.join(dir, "empty-bin") } })).rejects.toThrow(
      "`pulumi stack output topology --json --stack dev` could not run: the pulumi CLI is not installed or not on PATH",
    );
  });

  it("runs `pulumi stack output topology --json --stack <s>` and reports its failure", async () => {
    const bin = path.join(dir, "bin");
    await import("node:fs/promises").then((fs) => fs.mkdir(bin, { recursive: true }));
    const fake = path.join(bin, "pulumi");
    await writeFile(path.join(dir, "out.json"), JSON.stringify(topology));
    await writeFile(
      fake,
      `#!/bin/sh
[ "$*" = "stack output topology --json --stack dev" ] || { echo "error: unexpected args: $*" >&2; exit 2; }
cat "${path.join(dir, "out.json")}"
`,
    );
    await chmod(fake, 0o755);
    const env = { PATH: `${bin}:/usr/bin:/bin` };
    expect((await loadTopology({ stack: "dev", env })).stack).toBe("drills");
    await expect(loadTopology({ stack: "prod", env })).rejects.toThrow("`pulumi stack output topology --json --stack prod` failed (exit 2): error: unexpected args: stack output topology --json --stack prod");
  });

  it("passes each argument as one (a stack name with a space and a quote), echoes nothing, keeps stdin closed", async () => {
    const bin = path.join(dir, "bin-argv");
    await import("node:fs/promises").then((fs) => fs.mkdir(bin, { recursive: true }));
    await writeFile(path.join(bin, "pulumi"), `#!/bin/sh\nread line && echo "stdin was open" >&2\necho "argc=$# stack=$6" >&2\nexit 4\n`);
    await chmod(path.join(bin, "pulumi"), 0o755);
    const written: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => (written.push(String(chunk)), true));
    try {
      await expect(loadTopology({ stack: "my 'odd' stack", env: { PATH: `${bin}:/usr/bin:/bin` } })).rejects.toThrow(/failed \(exit 4\): argc=6 stack=my 'odd' stack$/);
    } finally {
      spy.mockRestore();
    }
    expect(written.join("")).toBe("");
  });

  it("names the directory when pulumi cannot even be started there", async () => {
    await expect(loadTopology({ stack: "dev", cwd: path.join(dir, "no-such-dir") })).rejects.toThrow(/`pulumi stack output topology --json --stack dev` could not run \(in .*no-such-dir\): spawn .*ENOENT/);
  });
});

describe("helpers", () => {
  it("nodeByRole / nodeByName / pgNodes", () => {
    expect(nodeByRole(topology, "postgres-primary").name).toBe("pg-1");
    expect(nodeByName(topology, "backup").role).toBe("backup-repository");
    expect(pgNodes(topology).map((n) => n.name)).toEqual(["pg-1", "pg-2", "pg-3"]);
    expect(() => nodeByRole({ ...topology, nodes: topology.nodes.filter((n) => n.role !== "redis") }, "redis")).toThrow(/topology of stack drills has no redis node \(roles: /);
    expect(() => nodeByName(topology, "pg-9")).toThrow(/no node pg-9 \(nodes: pg-1, pg-2/);
  });

  it("pgClientConfig uses the published address and the stack's database", () => {
    const pg1 = nodeByName(topology, "pg-1");
    expect(pgClientConfig(topology, pg1, { user: "app", password: "pw" })).toEqual({ host: pg1.published!.host, port: pg1.published!.port, user: "app", password: "pw", database: topology.postgres.database });
    expect(() => pgClientConfig(topology, { ...pg1, published: undefined }, { user: "a", password: "b" })).toThrow(/publishes no port/);
  });
});

/** A NodeControl whose psql answers come from a table: node name -> "t" | "f" | Error. */
function fakeControl(answers: Record<string, string | Error>): NodeControl & { calls: { node: string; argv: readonly string[]; opts?: ExecOptions }[] } {
  const calls: { node: string; argv: readonly string[]; opts?: ExecOptions }[] = [];
  const unused = () => Promise.reject(new Error("not used"));
  return {
    platform: "fake",
    calls,
    kill: unused,
    stop: unused,
    start: unused,
    isRunning: () => Promise.resolve(true),
    removeDataVolumes: unused,
    waitHealthy: unused,
    recreate: unused,
    exec: async (node: ControlledNode, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> => {
      calls.push({ node: node.name, argv, opts });
      const a = answers[node.name];
      if (a instanceof Error) return { code: 2, stdout: "", stderr: a.message };
      return { code: 0, stdout: `${a}\n`, stderr: "" };
    },
  };
}

describe("currentPrimary", () => {
  it("asks every PG node pg_is_in_recovery() as postgres over the local socket", async () => {
    const ctl = fakeControl({ "pg-1": "f", "pg-2": "t", "pg-3": "t" });
    expect((await currentPrimary(topology, ctl)).name).toBe("pg-1");
    expect(ctl.calls.map((c) => c.node).sort()).toEqual(["pg-1", "pg-2", "pg-3"]);
    expect(ctl.calls[0]!.argv).toEqual(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", "select pg_is_in_recovery()"]);
    expect(ctl.calls[0]!.opts?.user).toBe("postgres");
  });

  it("follows a failover (roles as built no longer say who is primary)", async () => {
    const ctl = fakeControl({ "pg-1": new Error("Error response from daemon: container is not running"), "pg-2": "f", "pg-3": "t" });
    expect((await currentPrimary(topology, ctl)).name).toBe("pg-2");
    const states = await pgNodeStates(topology, ctl);
    expect(states.map((s) => `${s.node.name}:${s.state}`)).toEqual(["pg-1:unreachable", "pg-2:primary", "pg-3:replica"]);
  });

  it("throws with every node's state when none is primary", async () => {
    const ctl = fakeControl({ "pg-1": new Error("container is not running"), "pg-2": "t", "pg-3": "t" });
    await expect(currentPrimary(topology, ctl)).rejects.toThrow(/no PostgreSQL node of stack drills answers as primary \(pg-1: unreachable \(pg-1: psql failed \(exit 2\): container is not running\); pg-2: replica; pg-3: replica\)/);
  });

  it("refuses to pick one when two answer as primary: split brain", async () => {
    const ctl = fakeControl({ "pg-1": "f", "pg-2": "f", "pg-3": "t" });
    await expect(currentPrimary(topology, ctl)).rejects.toThrow(/^split brain: pg-1 and pg-2 each answer pg_is_in_recovery\(\) = false/);
  });
});
