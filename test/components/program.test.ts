// The Pulumi program (stacks/index.ts) under mocks, fed the engine's view of stacks/Pulumi.local.yaml:
// config in, topology out; user mistakes stop it with a RunError and nothing registered.
// localSpec({ redis: { replica: true } }): the stack file exactly as it is (localSpec() leaves its Redis replica out).
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { PROJECT, SECRET_KEYS, readStackFile, type SecretKey } from "../../components/config/index.ts";
import type { HomelabSecrets } from "../../components/plan.ts";
import { Recorder, STACKS_DIR, deepMerge, fakeSecrets, findLeaks, isSecretOutput, localSpec, promiseOf, secretValues, settle } from "./mocks.ts";

const recorder = new Recorder();

beforeAll(async () => {
  await pulumi.runtime.setMocks(recorder, PROJECT, "local", false);
});

beforeEach(() => {
  recorder.clear();
  recorder.deployedOutputs = {};
  vi.resetModules();
});

/** The config map as the engine hands it to the program: `project:key` -> string (objects as JSON). */
function setStackConfig(overrides: Record<string, unknown> = {}, secrets?: HomelabSecrets, omit: SecretKey[] = []) {
  const config: Record<string, string> = {};
  const plain = deepMerge(readStackFile("local", STACKS_DIR).config, overrides);
  for (const [k, v] of Object.entries(plain)) config[`${PROJECT}:${k}`] = typeof v === "object" ? JSON.stringify(v) : String(v);
  const secretKeys: string[] = [];
  if (secrets) {
    for (const key of Object.keys(SECRET_KEYS) as SecretKey[]) {
      if (omit.includes(key)) continue;
      const value = secrets[key];
      config[`${PROJECT}:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
      secretKeys.push(`${PROJECT}:${key}`);
    }
  }
  pulumi.runtime.setAllConfig(config, secretKeys);
}

async function runProgram(): Promise<{ topology?: pulumi.Output<unknown>; error?: unknown }> {
  try {
    const program = (await import("../../stacks/index.ts")) as { topology: pulumi.Output<unknown> };
    await settle();
    return { topology: program.topology };
  } catch (error) {
    await settle();
    return { error };
  }
}

describe("stacks/index.ts", () => {
  it("builds the local stack from its config and secrets and exports the topology", async () => {
    const spec = localSpec({ redis: { replica: true } });
    const secrets = fakeSecrets(spec);
    setStackConfig({}, secrets);
    const { topology, error } = await runProgram();
    expect(error).toBeUndefined();
    const { planHomelab } = await import("../../components/plan.ts");
    const { topologyOf } = await import("../../components/topology.ts");
    expect(await promiseOf(topology!)).toEqual(topologyOf(spec, planHomelab(spec, secrets)));
    // The default platform: the one node applier's script in command-provider commands, no docker plugin.
    expect(recorder.resources.filter((r) => r.custom).every((r) => r.type === "command:local:Command")).toBe(true);
    expect(recorder.resources.filter((r) => r.custom)).toHaveLength(22);
    expect(findLeaks(recorder.resources, secretValues(secrets))).toEqual([]);
  });

  it("builds the same nodes with @pulumi/docker when the stack says platform: docker-api", async () => {
    const secrets = fakeSecrets(localSpec({ redis: { replica: true } }));
    setStackConfig({ platform: "docker-api" }, secrets);
    const { error } = await runProgram();
    expect(error).toBeUndefined();
    expect(recorder.resources.filter((r) => r.type === "docker:index/container:Container").map((r) => r.inputs.name).sort()).toEqual(
      ["homelab-local-backup", "homelab-local-duckdb", "homelab-local-monitoring", "homelab-local-pg-1", "homelab-local-pg-2", "homelab-local-redis", "homelab-local-redis-replica"],
    );
    expect(findLeaks(recorder.resources, secretValues(secrets))).toEqual([]);
  });

  it("takes platform: docker-cli (the old name) as the default docker platform", async () => {
    setStackConfig({ platform: "docker-cli" }, fakeSecrets(localSpec({ redis: { replica: true } })));
    const { topology, error } = await runProgram();
    expect(error).toBeUndefined();
    expect(((await promiseOf(topology!)) as { platform: string }).platform).toBe("docker");
    expect(recorder.resources.filter((r) => r.custom).every((r) => r.type === "command:local:Command")).toBe(true);
  });

  it("refuses to switch the platform of a deployed stack before registering anything, naming both and the ways out", async () => {
    recorder.deployedOutputs = { topology: { platform: "docker-api" } };
    setStackConfig({}, fakeSecrets(localSpec({ redis: { replica: true } })));
    const { error } = await runProgram();
    expect(pulumi.RunError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/^homelab-data:platform: stack local was built with platform docker-api and stacks\/Pulumi\.local\.yaml now says docker; switching would replace every node that moves\. Set it back to docker-api, or run `npx homelab down --stack local` first/);
    expect(recorder.resources).toEqual([]);
  });

  it("updates a stack deployed with the same platform", async () => {
    recorder.deployedOutputs = { topology: { platform: "docker" } };
    setStackConfig({}, fakeSecrets(localSpec({ redis: { replica: true } })));
    const { error } = await runProgram();
    expect(error).toBeUndefined();
    expect(recorder.resources.filter((r) => r.custom)).toHaveLength(22);
  });

  it("stops on invalid config with every problem named, as a RunError, registering nothing", async () => {
    setStackConfig({ postgres: { replicas: -1 }, redis: { maxmemory: "1TB" } }, fakeSecrets(localSpec({ redis: { replica: true } })));
    const { error } = await runProgram();
    expect(pulumi.RunError.isInstance(error)).toBe(true);
    const message = (error as Error).message;
    // replicas -1 also breaks the DuckDB host's rule (it reads from a replica): all reported at once.
    expect(message).toMatch(/^stack local \(stacks\/Pulumi\.local\.yaml\): 3 problems\n/);
    expect(message).toContain("homelab-data:postgres.replicas: got -1");
    expect(message).toContain("homelab-data:redis.maxmemory");
    expect(recorder.resources).toEqual([]);
  });

  it("names every missing secret and the command that sets them, registering nothing", async () => {
    setStackConfig({}, fakeSecrets(localSpec({ redis: { replica: true } })), ["tls", "redisAppPassword"]);
    const { error } = await runProgram();
    expect(pulumi.RunError.isInstance(error), String(error)).toBe(true);
    expect((error as Error).message).toBe(
      "stack local: 2 secrets are not set: homelab-data:redisAppPassword, homelab-data:tls; run `homelab init --stack local` to generate and store them",
    );
    expect(recorder.resources).toEqual([]);
  });

  it("refuses what platform libvirt cannot build yet (Redis on a VM), naming the key, registering nothing", async () => {
    setStackConfig({ platform: "libvirt", libvirt: { uri: "qemu:///system" } }, fakeSecrets(localSpec({ redis: { replica: true } })));
    const { error } = await runProgram();
    expect(pulumi.RunError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain("homelab-data:redis.enabled: got true; VMs (libvirt) hold PostgreSQL and the backup repository; Redis is not built on VMs yet");
    expect(recorder.resources).toEqual([]);
  });
});

describe("readSecrets", () => {
  it("returns every secret as one secret Output, tls parsed", async () => {
    const secrets = fakeSecrets(localSpec({ redis: { replica: true } }));
    setStackConfig({}, secrets);
    const { readSecrets } = await import("../../components/secrets.ts");
    const out = readSecrets(new pulumi.Config(PROJECT), "local");
    expect(await isSecretOutput(out)).toBe(true);
    expect(await promiseOf(out)).toEqual(secrets);
  });

  it("rejects a tls secret that is not a bundle without echoing it", async () => {
    const { parseTlsBundle } = await import("../../components/secrets.ts");
    expect(() => parseTlsBundle("not json NodeKey-x", "local")).toThrow(/^homelab-data:tls: is not JSON; run `homelab init --stack local --rotate`/);
    expect(() => parseTlsBundle('{"caCert":1}', "local")).toThrow(/expected \{ caCert, caKey, nodes/);
    try {
      parseTlsBundle("not json NodeKey-x", "local");
    } catch (e) {
      expect((e as Error).message).not.toContain("NodeKey-x");
    }
  });

  it("makes placeholders for every key, and a TLS entry for any host", async () => {
    const { redactedSecrets } = await import("../../components/secrets.ts");
    const r = redactedSecrets();
    expect(r.postgresAppPassword).toBe("REDACTED-postgresAppPassword");
    expect(r.tls.nodes["any-host"]?.key).toContain("redacted");
    expect(Object.keys(r).sort()).toEqual(Object.keys(SECRET_KEYS).sort());
  });
});
