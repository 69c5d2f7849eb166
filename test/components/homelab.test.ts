// The resource graph of the `local` stack on the `docker` platform, under Pulumi mocks: names, parents,
// tokens, images, env, mounts, ports, health, static addresses, options, and no plaintext secret anywhere.
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { resolvePlacement, type HomelabSpec } from "../../components/config/index.ts";
import type { HomelabSecrets } from "../../components/plan.ts";
import { Recorder, ROOT, fakeSecrets, findLeaks, isSecretOutput, localSpec, promiseOf, secretValues, settle, unwrapSecret, type RecordedResource } from "./mocks.ts";

const recorder = new Recorder();
let mod: {
  homelab: typeof import("../../components/homelab.ts");
  platform: typeof import("../../components/platform/index.ts");
  docker: typeof import("../../components/platform/docker-api.ts");
  plan: typeof import("../../components/plan.ts");
  topology: typeof import("../../components/topology.ts");
  postgres: typeof import("../../components/postgres/cluster.ts");
};

beforeAll(async () => {
  await pulumi.runtime.setMocks(recorder, "homelab-data", "local", false);
  // Modules that make resources come after setMocks.
  mod = {
    homelab: await import("../../components/homelab.ts"),
    platform: await import("../../components/platform/index.ts"),
    docker: await import("../../components/platform/docker-api.ts"),
    plan: await import("../../components/plan.ts"),
    topology: await import("../../components/topology.ts"),
    postgres: await import("../../components/postgres/cluster.ts"),
  };
});

beforeEach(() => recorder.clear());

// This file builds the `docker-api` platform (@pulumi/docker); docker-cli.test.ts covers the default one.
const api = (spec: HomelabSpec): HomelabSpec => ({ ...spec, platform: "docker-api", placement: resolvePlacement({ ...spec, platform: "docker-api" }).placement });

async function build(plainSpec: HomelabSpec, opts: { secrets?: pulumi.Output<HomelabSecrets> } = {}) {
  const spec = api(plainSpec);
  const secrets = fakeSecrets(spec);
  const lab = new mod.homelab.Homelab("homelab", { spec, secrets: opts.secrets ?? pulumi.secret(secrets) }, { transformations: [recorder.transformation] });
  await settle(recorder);
  return { lab, secrets };
}

const CONTAINER = "docker:index/container:Container";
interface ContainerInputs {
  name: string;
  networksAdvanced: { name: string; ipv4Address: string }[];
  ports: { ip: string; external: number; internal: number }[];
  memory: number;
  memorySwap: number;
  cpus: string;
  healthcheck: { startPeriod: string };
}
const VOLUME = "docker:index/volume:Volume";
const byType = (type: string) => recorder.resources.filter((r) => r.type === type);
const container = (name: string) => recorder.resource(name, CONTAINER);

describe("Homelab on the docker-api platform (stack local)", () => {
  it("builds the component tree: tokens, child names from the component name, parents", async () => {
    await build(localSpec());
    const tree = recorder.options.map((o) => `${o.type} ${o.name} <- ${o.parent ?? "(stack)"}`).sort();
    expect(tree).toEqual(
      [
        "homelab:index:Homelab homelab <- (stack)",
        "docker:index/network:Network homelab-network <- homelab",
        "docker:index/image:Image homelab-image-postgres <- homelab",
        "docker:index/image:Image homelab-image-redis <- homelab",
        "docker:index/image:Image homelab-image-duckdb <- homelab",
        "homelab:postgres:PostgresCluster homelab-postgres <- homelab",
        "docker:index/volume:Volume homelab-postgres-primary-data <- homelab-postgres",
        "docker:index/container:Container homelab-postgres-primary <- homelab-postgres",
        "docker:index/volume:Volume homelab-postgres-replica-1-data <- homelab-postgres",
        "docker:index/container:Container homelab-postgres-replica-1 <- homelab-postgres",
        "homelab:pgbackrest:BackupRepository homelab-backup <- homelab",
        "docker:index/volume:Volume homelab-backup-repo <- homelab-backup",
        "docker:index/container:Container homelab-backup <- homelab-backup",
        "command:local:Command homelab-backup-stanza-create <- homelab-backup",
        "command:local:Command homelab-backup-check <- homelab-backup",
        "command:local:Command homelab-backup-full-backup <- homelab-backup",
        "homelab:redis:RedisServer homelab-redis <- homelab",
        "docker:index/volume:Volume homelab-redis-primary-data <- homelab-redis",
        "docker:index/container:Container homelab-redis-primary <- homelab-redis",
        "homelab:duckdb:DuckDbHost homelab-duckdb <- homelab",
        "docker:index/volume:Volume homelab-duckdb-data <- homelab-duckdb",
        "docker:index/container:Container homelab-duckdb <- homelab-duckdb",
        "docker:index/image:Image homelab-image-monitoring <- homelab",
        "homelab:monitoring:MonitoringServer homelab-monitoring <- homelab",
        "docker:index/volume:Volume homelab-monitoring-data <- homelab-monitoring",
        "docker:index/container:Container homelab-monitoring <- homelab-monitoring",
      ].sort(),
    );
    // What the engine receives matches: every custom resource registered once, no provider for the local engine.
    expect(recorder.resources.filter((r) => r.custom).map((r) => r.name).sort()).toEqual(recorder.options.filter((o) => !o.type.startsWith("homelab:")).map((o) => o.name).sort());
    expect(recorder.resources.some((r) => r.type === "pulumi:providers:docker")).toBe(false);
  });

  it("makes the stack network with the static subnet, gateway and stack labels", async () => {
    await build(localSpec());
    expect(recorder.resource("homelab-network").inputs).toMatchObject({
      name: "homelab-local-net",
      driver: "bridge",
      ipamConfigs: [{ subnet: "172.28.0.0/24", gateway: "172.28.0.1" }],
      labels: expect.arrayContaining([{ label: "dev.homelab-data.stack", value: "local" }, { label: "dev.homelab-data.project", value: "homelab-data" }]),
    });
  });

  it("builds one local image per distinct ImageRef from its folder with the BASE_IMAGE arg, never pushed", async () => {
    await build(localSpec());
    const images = byType("docker:index/image:Image").map((r) => r.inputs);
    expect(images).toHaveLength(4);
    // homelab/sftp:1 serves only repo2's stand-in (see the repo2 case below), homelab/postgres-ha:17 only
    // postgres.ha: patroni stacks (ADR 0017); the local stack has neither.
    for (const ref of Object.values(mod.plan.IMAGES).filter((r) => r !== mod.plan.IMAGES.sftp && r !== mod.plan.IMAGES.postgresHa)) {
      expect(images.find((i) => i.imageName === ref.name)).toMatchObject({
        imageName: ref.name,
        skipPush: true,
        build: { context: path.join(ROOT, ref.context), args: { BASE_IMAGE: ref.baseImage } },
      });
    }
  });

  it("gives every node its static address, published port, memory, health check and restart policy", async () => {
    await build(localSpec());
    const rows = byType(CONTAINER).map((r) => {
      const i = r.inputs as unknown as ContainerInputs;
      return [i.name, i.networksAdvanced[0]?.ipv4Address, i.ports.map((p) => `${p.ip}:${p.external}->${p.internal}`).join(","), i.memory, i.memorySwap, i.cpus, i.healthcheck.startPeriod].join(" ");
    });
    expect(rows.sort()).toEqual(
      [
        "homelab-local-pg-1 172.28.0.10 127.0.0.1:15432->5432 320 320 1 120s",
        "homelab-local-pg-2 172.28.0.11 127.0.0.1:15433->5432 320 320 1 120s",
        "homelab-local-backup 172.28.0.20  192 192 1 30s",
        "homelab-local-redis 172.28.0.30 127.0.0.1:15452->6379 96 96 1 20s",
        "homelab-local-duckdb 172.28.0.40 127.0.0.1:15462->8080 256 256 1 60s",
        "homelab-local-monitoring 172.28.0.41 127.0.0.1:15472->9090 192 192 1 30s",
      ].sort(),
    );
    expect(container("homelab-postgres-primary").inputs).toMatchObject({
      name: "homelab-local-pg-1",
      hostname: "homelab-local-pg-1",
      image: `homelab/postgres:17@sha256:${"0".repeat(64)}`,
      networksAdvanced: [{ name: "homelab-local-net", ipv4Address: "172.28.0.10" }],
      volumes: [{ volumeName: "homelab-local-pg-1-data", containerPath: "/var/lib/postgresql/data" }],
      healthcheck: { tests: ["CMD", "/usr/local/bin/homelab-health"], interval: "1s", timeout: "5s", retries: 5, startPeriod: "120s" },
      restart: "unless-stopped",
      stopTimeout: 60,
      destroyGraceSeconds: 60,
      wait: true,
      waitTimeout: 120 + 5 * (1 + 5) + 60,
      labels: expect.arrayContaining([{ label: "dev.homelab-data.node", value: "pg-1" }, { label: "dev.homelab-data.stack", value: "local" }]),
    });
    expect(container("homelab-redis-primary").inputs.image).toBe(`homelab/redis:7@sha256:${"0".repeat(64)}`);
    expect(container("homelab-duckdb").inputs.image).toBe(`homelab/duckdb:1@sha256:${"0".repeat(64)}`);
    expect(container("homelab-backup").inputs).toMatchObject({ volumes: [{ volumeName: "homelab-local-backup-repo", containerPath: "/var/lib/pgbackrest" }] });
  });

  it("passes only the plan's non-secret env, as KEY=VALUE", async () => {
    await build(localSpec());
    expect(container("homelab-postgres-primary").inputs.envs).toEqual([
      "HOMELAB_ROLE=database",
      "HOMELAB_BOOTSTRAP_FROM=auto",
      "HOMELAB_PRIMARY_HOST=homelab-local-pg-1",
      "HOMELAB_PRIMARY_PORT=5432",
      "HOMELAB_REPLICATION_SLOT=pg_1",
      "HOMELAB_APPLICATION_NAME=pg_1",
      "HOMELAB_STANZA=main",
      "HOMELAB_REPO_HOST=homelab-local-backup",
      "HOMELAB_NODE_EXPORTER_PORT=9100",
      "HOMELAB_METRICS_DIR=/var/lib/homelab/metrics",
    ]);
    expect(container("homelab-postgres-replica-1").inputs.envs).toEqual(expect.arrayContaining(["HOMELAB_ROLE=database", "HOMELAB_BOOTSTRAP_FROM=clone"]));
    expect(container("homelab-backup").inputs.envs).toContain("HOMELAB_ROLE=repository");
    expect(container("homelab-duckdb").inputs.envs).toContain("HOMELAB_SOURCE_HOST=homelab-local-pg-2");
    expect(container("homelab-redis-primary").inputs.envs).toEqual([]);
  });

  it("uploads every node file with its mode, as one secret, contents from the real secrets", async () => {
    const spec = localSpec();
    const { secrets } = await build(spec);
    const plan = mod.plan.planHomelab(spec, secrets);
    for (const node of plan.nodes) {
      const name = recorder.resources.find((r) => r.type === CONTAINER && r.inputs.name === node.hostname)?.name as string;
      const uploads = unwrapSecret(container(name).inputs.uploads) as { file: string; content: string; permissions: string }[];
      expect(uploads.map((u) => `${u.file} ${u.permissions}`)).toEqual(node.files.map((f) => `${f.path} 0${f.mode.toString(8)}`));
      expect(uploads.map((u) => u.content)).toEqual(node.files.map((f) => f.content));
    }
    const pg1 = unwrapSecret(container("homelab-postgres-primary").inputs.uploads) as { file: string; content: string; permissions: string }[];
    expect(pg1.find((u) => u.file === "/etc/homelab/secrets/app.password")).toEqual({ file: "/etc/homelab/secrets/app.password", content: secrets.postgresAppPassword, permissions: "0600" });
    expect(pg1.find((u) => u.file === "/etc/homelab/tls/node.key")?.content).toBe(secrets.tls.nodes["homelab-local-pg-1"]?.key);
  });

  it("has no plaintext password or key in any resource input", async () => {
    const spec = localSpec();
    const { secrets } = await build(spec);
    const values = secretValues(secrets);
    expect(findLeaks(recorder.resources, values)).toEqual([]);
    // The check is not vacuous: every secret the nodes' files hold in plaintext does reach the resources,
    // inside secrets (the Redis replica password only travels as its ACL hash, the CA key stays with `init`).
    const files = JSON.stringify(mod.plan.planHomelab(spec, secrets).nodes.map((n) => n.files));
    const carried = values.filter((v) => files.includes(v));
    // 4 PostgreSQL passwords, the Redis health, app and admin passwords (the redis drill reads the last two
    // on the node), the TLS keys of pg-1, pg-2 and backup, the two monitor passwords (the exporters' files).
    expect(carried).toHaveLength(4 + 3 + 3 + 2);
    const everything = JSON.stringify(recorder.resources.map((r) => r.inputs));
    for (const v of carried) expect(everything.includes(v), v).toBe(true);
  });

  it("keeps secrets secret even when the caller hands them over as a plain Output", async () => {
    const spec = localSpec();
    const { secrets } = await build(spec, { secrets: pulumi.output(fakeSecrets(spec)) });
    expect(findLeaks(recorder.resources, secretValues(secrets))).toEqual([]);
  });

  it("retains the backup repository volume on destroy by default, and only that one", async () => {
    await build(localSpec());
    for (const v of byType(VOLUME)) {
      const opts = recorder.optionsOf(v.name, VOLUME).opts;
      expect(opts.retainOnDelete, v.name).toBe(v.name === "homelab-backup-repo");
      expect(opts.deleteBeforeReplace, v.name).toBe(true);
    }
    expect(recorder.resource("homelab-backup-repo").inputs).toMatchObject({
      name: "homelab-local-backup-repo",
      labels: expect.arrayContaining([{ label: "dev.homelab-data.retain-on-destroy", value: "true" }]),
    });
  });

  it("lets the repository volume go with purgeBackupsOnDestroy: true", async () => {
    const { lab } = await build(localSpec({ pgbackrest: { purgeBackupsOnDestroy: true } }));
    expect(recorder.optionsOf("homelab-backup-repo", VOLUME).opts.retainOnDelete).toBe(false);
    expect(await promiseOf(lab.backups.retainedOnDestroy)).toBe(false);
  });

  it("orders nodes and post-up steps: primary after the repository, replica after primary, duckdb after the replica, steps after the cluster", async () => {
    await build(localSpec());
    const deps = (name: string, type?: string) => ((recorder.optionsOf(name, type).opts.dependsOn ?? []) as pulumi.Resource[]).map((r) => recorder.nameOf(r)).sort();
    expect(deps("homelab-postgres-primary", CONTAINER)).toEqual(["homelab-backup", "homelab-postgres-primary-data"]);
    expect(deps("homelab-postgres-replica-1", CONTAINER)).toEqual(["homelab-postgres-primary", "homelab-postgres-replica-1-data"]);
    expect(deps("homelab-duckdb", CONTAINER)).toEqual(["homelab-duckdb-data", "homelab-postgres-replica-1"]);
    expect(deps("homelab-backup-stanza-create")).toEqual(["homelab-backup", "homelab-postgres-primary", "homelab-postgres-replica-1"]);
    expect(deps("homelab-backup-check")).toEqual(["homelab-backup-stanza-create"]);
    expect(deps("homelab-backup-full-backup")).toEqual(["homelab-backup-check"]);
    for (const c of byType(CONTAINER)) expect(recorder.optionsOf(c.name, CONTAINER).opts.deleteBeforeReplace, c.name).toBe(true);
  });

  it("runs stanza-create, check and a first full backup inside the repository node as postgres; on delete only the check runs (archives the last WAL), never failing", async () => {
    await build(localSpec());
    const steps = ["stanza-create", "check", "full-backup"].map((s) => recorder.resource(`homelab-backup-${s}`).inputs);
    // stanza-create is retried while an archive-push holds the stanza's lock ([050] LockAcquireError; postUpSteps)
    expect(steps[0]?.create).toMatch(/^docker exec --user postgres homelab-local-backup sh -c .*until pgbackrest --stanza=main stanza-create; do rc=\$\?;.*"\$rc" = 50 .*done/);
    expect(steps.slice(1).map((s) => s.create)).toEqual([
      "docker exec --user postgres homelab-local-backup sh -c 'pgbackrest --stanza=main check'",
      "docker exec --user postgres homelab-local-backup sh -c 'pgbackrest --stanza=main --type=full backup'",
    ]);
    expect(steps.map((s) => s.delete)).toEqual([
      undefined,
      `docker exec --user postgres homelab-local-backup sh -c 'timeout 120 pgbackrest --stanza=main check >/dev/null 2>&1 || echo "homelab: could not archive the last WAL before removal (pgbackrest check failed)" >&2'`,
      undefined,
    ]);
    for (const s of steps) {
      expect(s.environment).toBeUndefined();
      expect(s.triggers).toEqual(["main", "homelab-local-backup-repo"]);
    }
  });

  it("exports the topology (no secrets) and the components' endpoints", async () => {
    const spec = localSpec();
    const { lab, secrets } = await build(spec);
    const topology = await promiseOf(lab.topology);
    // Derived from the plan and the handles of what the platform made (the containers' real names).
    expect(topology).toEqual(mod.topology.topologyOf(api(spec), lab.plan));
    expect(topology.nodes.map((n) => `${n.name}:${n.role}:${n.handle.kind === "docker" ? n.handle.container : ""}`)).toEqual([
      "pg-1:postgres-primary:homelab-local-pg-1",
      "pg-2:postgres-replica:homelab-local-pg-2",
      "backup:backup-repository:homelab-local-backup",
      "redis:redis:homelab-local-redis",
      "duckdb:duckdb:homelab-local-duckdb",
      "monitoring:monitoring:homelab-local-monitoring",
    ]);
    expect(topology.monitoring).toMatchObject({ node: "monitoring", prometheus: "http://127.0.0.1:15472" });
    expect(await promiseOf(lab.monitoring!.endpoint)).toMatchObject({ host: "172.28.0.41", port: 9090, published: { host: "127.0.0.1", port: 15472 } });
    expect(await isSecretOutput(lab.topology)).toBe(false);
    for (const v of secretValues(secrets)) expect(JSON.stringify(topology)).not.toContain(v);
    expect(await promiseOf(lab.postgres.primary)).toEqual({ node: "pg-1", hostname: "homelab-local-pg-1", host: "172.28.0.10", port: 5432, published: { host: "127.0.0.1", port: 15432 } });
    expect((await promiseOf(lab.postgres.replicas)).map((e) => e.host)).toEqual(["172.28.0.11"]);
    expect(await promiseOf(lab.postgres.containers)).toEqual(["homelab-local-pg-1", "homelab-local-pg-2"]);
    expect(await promiseOf(lab.backups.container)).toBe("homelab-local-backup");
    expect(await promiseOf(lab.backups.repositoryVolume)).toBe("homelab-local-backup-repo");
    expect(await promiseOf(lab.backups.retainedOnDestroy)).toBe(true);
    expect(await promiseOf(lab.redis!.primary)).toMatchObject({ host: "172.28.0.30", port: 6379, published: { port: 15452 } });
    expect(await promiseOf(lab.redis!.replica)).toBeUndefined();
    expect(await promiseOf(lab.duckdb!.endpoint)).toMatchObject({ host: "172.28.0.40", port: 8080 });
    expect(lab.platform).toBe("docker-api");
  });

  it("repo2 on the stack's own SFTP stand-in: its node, image and retained volume, made before the repository host; a repo2 backup after the first one; its keys and passphrase only inside secrets", async () => {
    const spec = localSpec({ pgbackrest: { repo2: { type: "sftp" } } });
    const { secrets } = await build(spec);
    expect(findLeaks(recorder.resources, secretValues(secrets))).toEqual([]);
    expect(secretValues(secrets)).toEqual(expect.arrayContaining([secrets.repo2CipherPass, expect.stringContaining("SftpClientKey"), expect.stringContaining("SftpHostKey")]));
    expect(byType("docker:index/image:Image").map((r) => r.inputs.imageName)).toContain("homelab/sftp:1");
    expect(container("homelab-backup-repo2").inputs).toMatchObject({ name: "homelab-local-sftp", image: expect.stringMatching(/^homelab\/sftp:1@sha256:/) });
    expect(recorder.optionsOf("homelab-backup-repo2-repo2", VOLUME).opts.retainOnDelete).toBe(true);
    const deps = ((recorder.optionsOf("homelab-backup", CONTAINER).opts.dependsOn ?? []) as pulumi.Resource[]).map((r) => recorder.nameOf(r));
    expect(deps).toContain("homelab-backup-repo2");
    const uploads = unwrapSecret(container("homelab-backup").inputs.uploads) as { file: string; content: string; permissions: string }[];
    expect(uploads.find((u) => u.file === "/etc/homelab/repo2/cipher.conf")).toEqual({ file: "/etc/homelab/repo2/cipher.conf", content: `[global]\nrepo2-cipher-pass=${secrets.repo2CipherPass}\n`, permissions: "0600" });
    expect(recorder.resource("homelab-backup-repo2-full-backup").inputs.create).toBe("docker exec --user postgres homelab-local-backup sh -c 'pgbackrest --stanza=main --repo=2 --type=full backup'");
  });

  it("makes a Redis replica and more PostgreSQL replicas when the stack asks", async () => {
    const { secrets } = await build(localSpec({ postgres: { replicas: 2, replicationMode: "sync" }, redis: { replica: true, node: { memory: "96MiB" } } }));
    // The replica's redis.conf carries masterauth: still only inside a secret.
    expect(findLeaks(recorder.resources, secretValues(secrets))).toEqual([]);
    expect(byType(CONTAINER).map((r) => r.name).sort()).toEqual(
      ["homelab-backup", "homelab-duckdb", "homelab-monitoring", "homelab-postgres-primary", "homelab-postgres-replica-1", "homelab-postgres-replica-2", "homelab-redis-primary", "homelab-redis-replica"].sort(),
    );
    const deps = ((recorder.optionsOf("homelab-redis-replica", CONTAINER).opts.dependsOn ?? []) as pulumi.Resource[]).map((r) => recorder.nameOf(r));
    expect(deps).toContain("homelab-redis-primary");
  });

  it("leaves Redis, DuckDB and monitoring out when disabled", async () => {
    const { lab } = await build(localSpec({ redis: { enabled: false }, duckdb: { enabled: false }, monitoring: { enabled: false } }));
    expect(lab.redis).toBeUndefined();
    expect(lab.duckdb).toBeUndefined();
    expect(lab.monitoring).toBeUndefined();
    expect(byType(CONTAINER).map((r) => r.name).sort()).toEqual(["homelab-backup", "homelab-postgres-primary", "homelab-postgres-replica-1"]);
    expect(byType("docker:index/image:Image").map((r) => r.inputs.imageName)).toEqual(["homelab/postgres:17"]);
  });

  it("talks to a remote engine through one explicit provider (DOCKER_HOST form)", async () => {
    await build(localSpec({ docker: { host: "ssh://admin@nuc.lan" } }));
    const provider = recorder.resource("homelab-docker", "pulumi:providers:docker");
    expect(provider.inputs).toMatchObject({ host: "ssh://admin@nuc.lan" });
    expect(recorder.optionsOf("homelab-docker").parent).toBe("homelab");
    const dockerResources = recorder.resources.filter((r) => r.type.startsWith("docker:"));
    expect(dockerResources.length).toBeGreaterThan(10);
    for (const r of dockerResources) expect(r.provider, r.name).toMatch(/pulumi:providers:docker::homelab-docker::/);
    expect(recorder.resource("homelab-backup-check").inputs.environment).toEqual({ DOCKER_HOST: "ssh://admin@nuc.lan" });
  });

  it("refuses a plan it cannot build with a ResourceError naming the key", async () => {
    const spec = localSpec({ docker: { subnet: "10.9.0.0/28" }, postgres: { allowedClientCidrs: ["10.9.0.0/28"] } });
    expect(() => new mod.homelab.Homelab("homelab", { spec, secrets: pulumi.secret(fakeSecrets(localSpec())) })).toThrow(/homelab-data:docker\.subnet.*\/26 or shorter/);
    try {
      new mod.homelab.Homelab("homelab-x", { spec, secrets: pulumi.secret(fakeSecrets(localSpec())) });
    } catch (e) {
      expect(pulumi.ResourceError.isInstance(e)).toBe(true);
    }
  });

  it("refuses a PostgresCluster whose plan has no primary", async () => {
    const spec = localSpec();
    const plan = mod.plan.planHomelab(spec, fakeSecrets(spec));
    const noPrimary = { ...plan, nodes: plan.nodes.filter((n) => n.role !== "postgres-primary") };
    const platform = mod.platform.platformFor(api(spec), { name: "t" });
    expect(() => new mod.postgres.PostgresCluster("pg", { plan: noPrimary, securePlan: pulumi.secret(noPrimary), platform })).toThrow(/0 postgres-primary nodes.*expected exactly one/);
  });

  it("builds libvirt through its own platform (test/components/libvirt.test.ts), never a docker resource", async () => {
    const spec = localSpec({ platform: "libvirt", libvirt: { subnet: "192.168.250.0/24" }, postgres: { allowedClientCidrs: ["192.168.250.0/24"] }, redis: { enabled: false }, duckdb: { enabled: false }, monitoring: { enabled: false } });
    const lab = new mod.homelab.Homelab("homelab", { spec, secrets: pulumi.secret(fakeSecrets(spec)) }, { transformations: [recorder.transformation] });
    await settle(recorder);
    expect(lab.platform).toBe("libvirt");
    expect(recorder.resources.filter((r) => r.type.startsWith("docker:"))).toEqual([]);
  });
});

describe("the leak check itself", () => {
  // A planner bug that puts a password into env must be caught by the same check that passes above.
  async function leakyNode(engine: "api" | "cli"): Promise<{ resources: RecordedResource[]; password: string }> {
    const spec = localSpec();
    const secrets = fakeSecrets(spec);
    const plan = mod.plan.planHomelab(spec, secrets);
    const pg = plan.nodes[0]!;
    const leaky = { ...pg, env: { ...pg.env, PGPASSWORD: secrets.postgresSuperuserPassword } };
    const parent = new pulumi.ComponentResource("test:index:Leak", `leak-${engine}`, {}, { transformations: [recorder.transformation] });
    const platform = mod.platform.platformFor({ ...spec, platform: engine === "api" ? "docker-api" : "docker" }, { name: `leak-${engine}`, parent });
    platform.createNetwork(plan, { name: `leak-${engine}-network`, parent });
    platform.createImages(plan, { name: `leak-${engine}-image`, parent });
    platform.createNode(plan, leaky, pulumi.secret(pg.files), { name: `leak-${engine}-pg`, parent, dependsOn: [] });
    await settle(recorder);
    return { resources: recorder.resources, password: secrets.postgresSuperuserPassword };
  }

  it("flags a password in a docker container's env", async () => {
    const { resources, password } = await leakyNode("api");
    expect(findLeaks(resources, [password])).toEqual([{ resource: "leak-api-pg", type: CONTAINER, path: expect.stringMatching(/^envs\[\d+\]$/), secret: password }]);
  });

  it("flags a password in a docker-cli create command", async () => {
    const { resources, password } = await leakyNode("cli");
    expect(findLeaks(resources, [password])).toEqual([{ resource: "leak-cli-pg", type: "command:local:Command", path: "create", secret: password }]);
  });

  it("flags a secret hidden in a base64 blob outside a secret", () => {
    const blob = Buffer.from("header\0Pw-postgresAppPassword-9fQ2xLk7Zr\0trailer").toString("base64");
    const leaks = findLeaks([{ type: "command:local:Command", name: "x", inputs: { stdin: blob }, custom: true }], ["Pw-postgresAppPassword-9fQ2xLk7Zr"]);
    expect(leaks.map((l) => l.path)).toEqual(["stdin (base64-decoded)"]);
  });
});
