// The `docker-cli` platform (@pulumi/command running the docker CLI) for the `local` stack, under Pulumi
// mocks: the same graph as the docker platform, made of commands; their scripts are also run against a fake
// `docker` on PATH, so quoting, the stdin tar pipe and the health wait are exercised, not just looked at.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import * as pulumi from "@pulumi/pulumi";
import tar from "tar-stream";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { HomelabSpec } from "../../components/config/index.ts";
import { Recorder, ROOT, fakeSecrets, findLeaks, localSpec, secretValues, settle, unwrapSecret } from "./mocks.ts";

const recorder = new Recorder();
let mod: {
  homelab: typeof import("../../components/homelab.ts");
  cmd: typeof import("../../components/platform/docker-cmd.ts");
  cli: typeof import("../../components/platform/docker-node.ts");
  plan: typeof import("../../components/plan.ts");
};

beforeAll(async () => {
  await pulumi.runtime.setMocks(recorder, "homelab-data", "local", false);
  mod = {
    homelab: await import("../../components/homelab.ts"),
    cmd: await import("../../components/platform/docker-cmd.ts"),
    cli: await import("../../components/platform/docker-node.ts"),
    plan: await import("../../components/plan.ts"),
  };
});

beforeEach(() => recorder.clear());

async function build(spec: HomelabSpec) {
  const secrets = fakeSecrets(spec);
  const lab = new mod.homelab.Homelab("homelab", { spec, secrets: pulumi.secret(secrets) }, { transformations: [recorder.transformation] });
  await settle(recorder);
  return { lab, secrets };
}

interface CommandInputs {
  create: string;
  delete?: string;
  dir?: string;
  stdin?: unknown;
  triggers?: unknown[];
  environment?: Record<string, string>;
}
const inputs = (name: string) => recorder.resource(name, "command:local:Command").inputs as unknown as CommandInputs;

async function untar(buf: Buffer): Promise<{ name: string; type: string; mode: number; mtime: number; content: string }[]> {
  const out: { name: string; type: string; mode: number; mtime: number; content: string }[] = [];
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: unknown) => chunks.push(c as Buffer));
      stream.on("end", () => {
        out.push({ name: header.name, type: header.type ?? "file", mode: header.mode ?? 0, mtime: header.mtime?.getTime() ?? -1, content: Buffer.concat(chunks).toString() });
        next();
      });
      stream.resume();
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  Readable.from(buf).pipe(extract);
  await done;
  return out;
}

// A stand-in `docker`: logs each call as `docker|arg|arg...`, keeps what `docker cp -` receives.
let sandbox: string;
const FAKE_DOCKER = `#!/bin/sh
line=docker; for a in "$@"; do line="$line|$a"; done; printf '%s\\n' "$line" >> "$FAKE_LOG"
case "$1" in
  inspect) echo "\${FAKE_STATE:-running/healthy}" ;;
  cp) cat > "$FAKE_CP_OUT" ;;
  logs) echo "fake log line" ;;
  network|volume) if [ "$2" = inspect ]; then exit "\${FAKE_INSPECT_RC:-1}"; fi ;;
esac
exit 0
`;

beforeAll(() => {
  sandbox = mkdtempSync(path.join(os.tmpdir(), "homelab-fake-docker-"));
  writeFileSync(path.join(sandbox, "docker"), FAKE_DOCKER);
  chmodSync(path.join(sandbox, "docker"), 0o755);
});
afterAll(() => rmSync(sandbox, { recursive: true, force: true }));

function runScript(script: string, opts: { stdin?: string; env?: Record<string, string> } = {}) {
  const log = path.join(sandbox, `log-${Math.random().toString(36).slice(2)}`);
  const cpOut = path.join(sandbox, `cp-${Math.random().toString(36).slice(2)}`);
  writeFileSync(log, "");
  const r = spawnSync("/bin/sh", ["-c", script], {
    input: opts.stdin ?? "",
    env: { PATH: `${sandbox}:${process.env.PATH}`, FAKE_LOG: log, FAKE_CP_OUT: cpOut, ...opts.env },
    encoding: "utf8",
    timeout: 20_000,
  });
  const calls = readFileSync(log, "utf8").split("\n").filter(Boolean);
  let copied: Buffer | undefined;
  try {
    copied = readFileSync(cpOut);
  } catch {
    copied = undefined;
  }
  return { status: r.status, stderr: r.stderr, calls, copied };
}

describe("Homelab on the docker-cli platform (stack local)", () => {
  it("makes the same tree, every engine object a local command", async () => {
    const { lab } = await build(localSpec());
    expect(lab.platform).toBe("docker");
    const tree = recorder.options.filter((o) => !o.type.startsWith("homelab:")).map((o) => `${o.type} ${o.name} <- ${o.parent}`).sort();
    expect(tree).toEqual(
      [
        "homelab-network <- homelab",
        "homelab-image-postgres <- homelab",
        "homelab-image-redis <- homelab",
        "homelab-image-duckdb <- homelab",
        "homelab-postgres-primary-data <- homelab-postgres",
        "homelab-postgres-primary <- homelab-postgres",
        "homelab-postgres-replica-1-data <- homelab-postgres",
        "homelab-postgres-replica-1 <- homelab-postgres",
        "homelab-backup-repo <- homelab-backup",
        "homelab-backup <- homelab-backup",
        "homelab-backup-stanza-create <- homelab-backup",
        "homelab-backup-check <- homelab-backup",
        "homelab-backup-full-backup <- homelab-backup",
        "homelab-redis-primary-data <- homelab-redis",
        "homelab-redis-primary <- homelab-redis",
        "homelab-duckdb-data <- homelab-duckdb",
        "homelab-duckdb <- homelab-duckdb",
        "homelab-image-monitoring <- homelab",
        "homelab-monitoring-data <- homelab-monitoring",
        "homelab-monitoring <- homelab-monitoring",
      ]
        .map((l) => `command:local:Command ${l}`)
        .sort(),
    );
    expect(recorder.resources.filter((r) => r.type.startsWith("docker:"))).toEqual([]);
  });

  it("creates the network idempotently from networkCreateArgs and removes it on delete", async () => {
    const spec = localSpec();
    await build(spec);
    const net = inputs("homelab-network");
    expect(net.create).toBe(
      "docker network inspect homelab-local-net >/dev/null 2>&1 || docker network create --driver bridge --subnet 172.28.0.0/24 --gateway 172.28.0.1 --label dev.homelab-data.stack=local --label dev.homelab-data.project=homelab-data homelab-local-net >/dev/null",
    );
    expect(runScript(net.create).calls).toEqual([
      "docker|network|inspect|homelab-local-net",
      "docker|network|create|--driver|bridge|--subnet|172.28.0.0/24|--gateway|172.28.0.1|--label|dev.homelab-data.stack=local|--label|dev.homelab-data.project=homelab-data|homelab-local-net",
    ]);
    expect(runScript(net.create, { env: { FAKE_INSPECT_RC: "0" } }).calls).toEqual(["docker|network|inspect|homelab-local-net"]);
    expect(runScript(net.delete ?? "exit 9", { env: { FAKE_INSPECT_RC: "0" } }).calls).toEqual(["docker|network|inspect|homelab-local-net", "docker|network|rm|homelab-local-net"]);
  });

  it("builds each image once through scripts/build-images.sh (stdout: the image ID), rebuilt when its folder changes", async () => {
    await build(localSpec());
    const pg = inputs("homelab-image-postgres");
    expect(pg.create).toBe("bash scripts/build-images.sh postgres >&2 && docker image inspect --format '{{.Id}}' homelab/postgres:17");
    expect(inputs("homelab-image-duckdb").create).toBe("bash scripts/build-images.sh duckdb >&2 && docker image inspect --format '{{.Id}}' homelab/duckdb:1");
    expect(pg.dir).toBe(ROOT);
    expect(pg.triggers).toEqual(["homelab/postgres:17", "debian:trixie-slim", mod.cmd.contextDigest(path.join(ROOT, "components/postgres/image"))]);
    expect(pg.delete).toBeUndefined();
    const dir = mkdtempSync(path.join(os.tmpdir(), "homelab-ctx-"));
    writeFileSync(path.join(dir, "Dockerfile"), "FROM scratch\n");
    const before = mod.cmd.contextDigest(dir);
    writeFileSync(path.join(dir, "Dockerfile"), "FROM scratch\nLABEL x=1\n");
    expect(mod.cmd.contextDigest(dir)).not.toBe(before);
    rmSync(dir, { recursive: true });
    expect(mod.cmd.contextDigest(path.join(dir, "missing"))).toBe("absent");
  });

  it("keeps the repository volume on destroy: no delete command, retainOnDelete; other volumes are removed", async () => {
    await build(localSpec());
    const repo = inputs("homelab-backup-repo");
    expect(repo.create).toContain("docker volume create --label dev.homelab-data.stack=local --label dev.homelab-data.project=homelab-data --label dev.homelab-data.retain-on-destroy=true homelab-local-backup-repo");
    expect(repo.delete).toBeUndefined();
    expect(recorder.optionsOf("homelab-backup-repo").opts.retainOnDelete).toBe(true);
    const data = inputs("homelab-postgres-primary-data");
    expect(data.delete).toBe("if docker volume inspect homelab-local-pg-1-data >/dev/null 2>&1; then docker volume rm homelab-local-pg-1-data >/dev/null; fi");
    expect(recorder.optionsOf("homelab-postgres-primary-data").opts.retainOnDelete).toBe(false);
    // A retained volume found on the engine (destroy + up) is re-attached, not re-created.
    expect(runScript(repo.create, { env: { FAKE_INSPECT_RC: "0" } }).calls).toEqual(["docker|volume|inspect|homelab-local-backup-repo"]);
  });

  it("deletes the repository volume too with purgeBackupsOnDestroy: true", async () => {
    await build(localSpec({ pgbackrest: { purgeBackupsOnDestroy: true } }));
    expect(inputs("homelab-backup-repo").delete).toContain("docker volume rm homelab-local-backup-repo");
    expect(recorder.optionsOf("homelab-backup-repo").opts.retainOnDelete).toBe(false);
  });

  it("creates each container with containerCreateArgs, replaced (old one first) when its image is rebuilt", async () => {
    const spec = localSpec();
    const { lab } = await build(spec);
    const c = inputs("homelab-postgres-primary");
    const pg1 = lab.plan.nodes.find((n) => n.name === "pg-1")!;
    expect(c.create).toContain(mod.cli.containerCreateArgs(mod.cli.containerSpecOf(lab.plan, pg1)).map(mod.cli.shellQuote).join(" "));
    expect(c.create).toContain("base64 -d | docker cp - homelab-local-pg-1:/");
    expect(c.delete).toBe("docker stop --time 60 homelab-local-pg-1 >/dev/null 2>&1 </dev/null || true\ndocker rm -f -v homelab-local-pg-1 >/dev/null 2>&1 </dev/null || true");
    expect(c.triggers).toEqual(["sha256:homelab-image-postgres"]);
    const opts = recorder.optionsOf("homelab-postgres-primary", "command:local:Command").opts;
    expect(opts.deleteBeforeReplace).toBe(true);
    expect(opts.additionalSecretOutputs).toEqual(["stdin"]);
    const deps = (name: string) => ((recorder.optionsOf(name, "command:local:Command").opts.dependsOn ?? []) as pulumi.Resource[]).map((r) => recorder.nameOf(r)).sort();
    expect(deps("homelab-postgres-primary")).toEqual(["homelab-backup", "homelab-image-postgres", "homelab-network", "homelab-postgres-primary-data"]);
    expect(deps("homelab-postgres-replica-1")).toEqual(["homelab-image-postgres", "homelab-network", "homelab-postgres-primary", "homelab-postgres-replica-1-data"]);
    expect(deps("homelab-backup-stanza-create")).toEqual(["homelab-backup", "homelab-postgres-primary", "homelab-postgres-replica-1"]);
  });

  it("delivers the node files as a secret tar on stdin: every file with its mode, the real contents, byte-stable", async () => {
    const spec = localSpec();
    const { secrets } = await build(spec);
    const plan = mod.plan.planHomelab(spec, secrets);
    for (const node of plan.nodes) {
      const name = recorder.resources.find((r) => r.type === "command:local:Command" && typeof r.inputs.create === "string" && r.inputs.create.includes(`docker create --name ${node.hostname} `))!.name;
      const stdin = unwrapSecret(inputs(name).stdin) as string;
      const entries = await untar(Buffer.from(stdin, "base64"));
      const files = entries.filter((e) => e.type === "file");
      expect(files.map((e) => `/${e.name} ${e.mode.toString(8)}`)).toEqual(node.files.map((f) => `${f.path} ${f.mode.toString(8)}`));
      expect(files.map((e) => e.content)).toEqual(node.files.map((f) => f.content));
      expect(new Set(entries.map((e) => e.mtime))).toEqual(new Set([0]));
      // Same files, same bytes: an unchanged node is not re-created by the next `pulumi up`.
      expect(await mod.cli.filesTarBase64(node.files)).toBe(stdin);
    }
  });

  it("has no plaintext password or key in any command input", async () => {
    const { secrets } = await build(localSpec());
    expect(findLeaks(recorder.resources, secretValues(secrets))).toEqual([]);
  });

  it("runs the container script: create, copy the files in, start, wait until healthy", async () => {
    const spec = localSpec();
    const { lab, secrets } = await build(spec);
    const c = inputs("homelab-postgres-primary");
    const stdin = unwrapSecret(c.stdin) as string;
    const run = runScript(c.create, { stdin });
    expect(run.status, run.stderr).toBe(0);
    const pg1 = lab.plan.nodes.find((n) => n.name === "pg-1")!;
    expect(run.calls).toEqual([
      "docker|stop|--time|60|homelab-local-pg-1",
      "docker|rm|-f|-v|homelab-local-pg-1",
      "docker|volume|inspect|homelab-local-pg-1-data",
      // the fake engine has no such volume: the applier makes it (on `pulumi up` the volume resource did)
      ["docker", ...mod.cli.volumeCreateArgs(mod.cli.containerSpecOf(lab.plan, pg1).volumes[0]!)].join("|"),
      ["docker", ...mod.cli.containerCreateArgs(mod.cli.containerSpecOf(lab.plan, pg1))].join("|"),
      "docker|cp|-|homelab-local-pg-1:/",
      "docker|start|homelab-local-pg-1",
      "docker|inspect|--format|{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}|homelab-local-pg-1",
    ]);
    const copied = await untar(run.copied!);
    expect(copied.find((e) => e.name === "etc/homelab/secrets/app.password")?.content).toBe(secrets.postgresAppPassword);
    // Nothing the script prints holds a secret.
    for (const v of secretValues(secrets)) expect(run.stderr).not.toContain(v);
  });

  it("fails the create with the container's last log lines when it stops while starting", async () => {
    await build(localSpec());
    const c = inputs("homelab-redis-primary");
    const run = runScript(c.create, { stdin: unwrapSecret(c.stdin) as string, env: { FAKE_STATE: "exited/none" } });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("homelab-local-redis stopped while starting (state exited/none)");
    expect(run.stderr).toContain("fake log line");
  });

  it("runs post-up steps with docker exec as postgres, the command quoted as one sh -c argument", async () => {
    await build(localSpec());
    expect(runScript(inputs("homelab-backup-full-backup").create).calls).toEqual(["docker|exec|--user|postgres|homelab-local-backup|sh|-c|pgbackrest --stanza=main --type=full backup"]);
  });

  it("points every command at a remote engine with DOCKER_HOST", async () => {
    await build(localSpec({ docker: { host: "ssh://admin@nuc.lan" } }));
    const commands = recorder.resources.filter((r) => r.type === "command:local:Command");
    expect(commands).toHaveLength(20);
    for (const r of commands) expect(r.inputs.environment, r.name).toEqual({ DOCKER_HOST: "ssh://admin@nuc.lan" });
    expect(recorder.resources.some((r) => r.type === "pulumi:providers:docker")).toBe(false);
  });
});
