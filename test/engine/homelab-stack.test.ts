// The project's own program (stacks/index.ts) through a real `pulumi` engine: preview, up, an idempotent
// second up, refresh and destroy of the WHOLE tier on the `docker-cli` platform (the old name of the default
// `docker` platform, so the alias is proven too; every resource is a
// command-provider resource, which the offline toolchain provides; the docker plugin cannot be had here).
// Secrets go in with `config set --secret` and must not appear in plaintext anywhere in the state.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { LocalWorkspace, PulumiCommand, type Stack } from "@pulumi/pulumi/automation/index.js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { SECRET_KEYS, validateConfig, type SecretKey } from "../../components/config/index.ts";
import { LABEL_STACK, docker, removeByLabel } from "../../components/platform/docker-node.ts";
import { generateSecrets } from "../../cli/stack-commands.ts";
import { REPO_ROOT, pulumiEnv, toolchainStatus } from "../../tools/pulumi-env.ts";
import { ensureImages, leftovers } from "../e2e/harness.ts";

const STACK = "enginetier";
const status = toolchainStatus();

// Small nodes on their own subnet/ports so this never meets the e2e stacks.
const CONFIG = {
  platform: "docker-cli",
  docker: { subnet: "172.36.0.0/24", basePort: 26132 },
  postgres: { replicas: 1, allowedClientCidrs: ["172.36.0.0/24"], archiveTimeout: "30s", node: { memory: "320MiB" } },
  pgbackrest: { node: { memory: "192MiB" } },
  redis: { maxmemory: "48MiB", node: { memory: "96MiB" } },
  duckdb: { syncInterval: "1h", node: { memory: "256MiB" } },
};

function allFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? allFiles(p) : [p];
  });
}

describe.runIf(status.ok)("pulumi up/destroy of the project's stack on the docker-cli platform (real engine, real Docker)", () => {
  let tmp: string;
  let stateDir: string;
  let stack: Stack;
  let secrets: Partial<Record<SecretKey, string>>;

  beforeAll(async () => {
    ensureImages();
    await removeByLabel(`${LABEL_STACK}=${STACK}`, { purgeRetained: true });
    tmp = mkdtempSync(join(tmpdir(), "homelab-enginetier-"));
    stateDir = join(tmp, "state");
    const workDir = join(tmp, "project");
    // The project as a user has it: Pulumi.yaml + stacks/ (own folder: the stack file is written there)
    // + the real components/ and node_modules (linked, not copied).
    mkdirSync(join(workDir, "stacks"), { recursive: true });
    for (const f of ["Pulumi.yaml", "package.json", "tsconfig.json"]) symlinkSync(join(REPO_ROOT, f), join(workDir, f));
    symlinkSync(join(REPO_ROOT, "stacks/index.ts"), join(workDir, "stacks/index.ts"));
    for (const d of ["components", "node_modules", "cli"]) symlinkSync(join(REPO_ROOT, d), join(workDir, d), "dir");
    writeFileSync(join(workDir, "stacks", `Pulumi.${STACK}.yaml`), stringify({ config: Object.fromEntries(Object.entries(CONFIG).map(([k, v]) => [`homelab-data:${k}`, v])) }));

    const envVars = pulumiEnv({ backendDir: stateDir, passphrase: "enginetier-passphrase", pulumiHome: join(tmp, "pulumi-home") });
    const pulumiCommand = await PulumiCommand.get({ root: dirname(dirname(status.found.pulumi!)) });
    stack = await LocalWorkspace.createStack({ stackName: STACK, workDir }, { pulumiCommand, envVars });
    secrets = generateSecrets(validateConfig(STACK, CONFIG), Object.keys(SECRET_KEYS) as SecretKey[]);
    for (const [key, value] of Object.entries(secrets)) await stack.setConfig(`homelab-data:${key}`, { value: value as string, secret: true });
  }, 300_000);

  afterAll(async () => {
    try {
      await stack?.destroy();
    } catch {
      // best effort; the label sweep below removes whatever is left
    }
    await removeByLabel(`${LABEL_STACK}=${STACK}`, { purgeRetained: true });
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    expect(await leftovers(STACK)).toEqual([]);
  }, 300_000);

  it("preview plans the tier without creating anything", async () => {
    const result = await stack.preview();
    expect(result.changeSummary.create).toBeGreaterThan(10);
    expect((await docker(["ps", "-aq", "--filter", `label=${LABEL_STACK}=${STACK}`])).stdout.trim()).toBe("");
  }, 300_000);

  it("up builds a working tier and exports its topology", async () => {
    const t0 = Date.now();
    const result = await stack.up();
    console.log(`[engine] pulumi up of the whole tier (docker-cli platform): ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    expect(result.summary.result).toBe("succeeded");
    const topology = result.outputs.topology?.value as { nodes: Array<{ name: string; role: string; published?: { port: number } }> };
    expect(topology.nodes.map((n) => n.role).sort()).toEqual(["backup-repository", "duckdb", "monitoring", "postgres-primary", "postgres-replica", "redis"]);
    const health = await docker(["ps", "--filter", `label=${LABEL_STACK}=${STACK}`, "--format", "{{.Names}} {{.Status}}"]);
    expect(health.stdout.trim().split("\n")).toHaveLength(6);
    expect(health.stdout).not.toMatch(/unhealthy|starting/);
    // Real: the app role logs in with the secret that went through Pulumi config, and writes.
    const primary = topology.nodes.find((n) => n.role === "postgres-primary")!;
    const client = new pg.Client({ host: "127.0.0.1", port: primary.published!.port, user: "app", password: secrets.postgresAppPassword, database: "app" });
    await client.connect();
    try {
      expect((await client.query("SELECT 40 + 2 AS answer")).rows[0].answer).toBe(42);
    } finally {
      await client.end();
    }
  }, 600_000);

  it("a second up changes nothing", async () => {
    const result = await stack.up();
    expect(result.summary.result).toBe("succeeded");
    // Nothing created, updated, replaced or deleted; the one "read" is the program's StackReference to its
    // own last outputs (the platform-switch guard, ADR 0010), which is a read, not a change.
    const { same, read, ...changes } = result.summary.resourceChanges ?? {};
    expect(changes).toEqual({});
    expect(same).toBeGreaterThan(0);
    expect(read ?? 0).toBeLessThanOrEqual(1);
  }, 600_000);

  it("no password or private key is in the state or the stack file in plaintext", () => {
    const needles: string[] = [];
    for (const [key, value] of Object.entries(secrets)) {
      if (key !== "tls") needles.push(value as string);
    }
    const tls = JSON.parse(secrets.tls as string) as { caKey: string; nodes: Record<string, { key: string }> };
    const keyBody = (pem: string) => pem.split("\n").filter((l) => l && !l.startsWith("-----")).join("").slice(0, 40);
    needles.push(keyBody(tls.caKey), ...Object.values(tls.nodes).map((n) => keyBody(n.key)));
    const files = [...allFiles(stateDir), join(tmp, "project", "stacks", `Pulumi.${STACK}.yaml`)];
    expect(files.length).toBeGreaterThan(1);
    for (const f of files) {
      const text = readFileSync(f, "utf8").replace(/\\n|\n/g, "");
      for (const needle of needles) expect(text.includes(needle), `secret found in ${f}`).toBe(false);
    }
  });

  it("refresh succeeds and destroy removes the tier but keeps the backup repository's volume", async () => {
    const refreshed = await stack.refresh();
    expect(refreshed.summary.result).toBe("succeeded");
    const destroyed = await stack.destroy();
    expect(destroyed.summary.result).toBe("succeeded");
    const left = await leftovers(STACK);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^volume /);
    const names = (await docker(["volume", "ls", "--filter", `label=${LABEL_STACK}=${STACK}`, "--format", "{{.Name}}"])).stdout.trim();
    expect(names).toBe(`homelab-${STACK}-backup-repo`);
  }, 600_000);
});
