// DockerNodeControl against a throwaway debian:bookworm-slim container this file starts and removes.
// Needs a Docker engine (like the e2e layer, it fails loudly without one rather than skipping).
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../../components/platform/docker-node.ts";
import type { Topology, TopologyNode } from "../../components/topology.ts";
import { DockerNodeControl, PlacedNodeControl, UnsupportedPlatformError, controlFor, readSecret, type ControlledNode, type NodeControl } from "../../drills/lib/nodes.ts";

const LABEL = "dev.homelab-data.stack=drills-lib-test";
const suffix = randomBytes(4).toString("hex");
const container = `drills-lib-test-${suffix}`;
const volume = `drills-lib-test-${suffix}-data`;
const node: ControlledNode = { name: "t1", handle: { kind: "docker", container }, dataVolumes: [volume] };
const ctl = new DockerNodeControl();

async function run(): Promise<void> {
  await docker(["volume", "create", "--label", LABEL, volume]);
  // PID 1 that exits on SIGTERM at once (sleep as PID 1 would ignore it until the stop timeout).
  await docker([
    "run", "-d", "--name", container, "--label", LABEL, "--network", "none", "--restart", "unless-stopped",
    "--volume", `${volume}:/data`,
    "--health-cmd", "test -f /tmp/ready", "--health-interval", "1s", "--health-retries", "30", "--health-start-period", "0s",
    "debian:bookworm-slim", "sh", "-c", "trap 'exit 0' TERM; touch /tmp/ready; while :; do sleep 0.2; done",
  ]);
}

beforeAll(async () => {
  const info = await docker(["info", "--format", "{{.ServerVersion}}"], { allowFailure: true });
  if (info.code !== 0) throw new Error(`no Docker engine reachable (docker info: ${info.stderr.trim()})`);
  const image = await docker(["image", "inspect", "debian:bookworm-slim"], { allowFailure: true });
  if (image.code !== 0) throw new Error("image debian:bookworm-slim is missing (scripts/ builds the base images with debootstrap)");
  await run();
}, 60_000);

afterAll(async () => {
  await docker(["rm", "-f", container], { allowFailure: true });
  await docker(["volume", "rm", "-f", volume], { allowFailure: true });
});

describe("DockerNodeControl", () => {
  it("waits for health, then runs commands with a user, stdin and exit codes", async () => {
    await ctl.waitHealthy(node, 30_000);
    expect(await ctl.isRunning(node)).toBe(true);
    const r = await ctl.exec(node, ["sh", "-c", "echo out; echo err >&2; exit 3"], { allowFailure: true });
    expect(r).toEqual({ code: 3, stdout: "out\n", stderr: "err\n" });
    expect((await ctl.exec(node, ["id", "-un"], { user: "nobody" })).stdout.trim()).toBe("nobody");
    expect((await ctl.exec(node, ["cat"], { input: "through stdin" })).stdout).toBe("through stdin");
    expect((await ctl.exec(node, ["sh", "-c", "echo $X"], { env: { X: "from env" } })).stdout.trim()).toBe("from env");
    await expect(ctl.exec(node, ["false"])).rejects.toThrow(/^t1: false failed: docker exec .* \(exit 1\)/);
  });

  it("reads a secret file without a trailing newline, and names the path when it cannot", async () => {
    await ctl.exec(node, ["sh", "-c", "umask 077; printf 's3cret-value\\n' > /data/pw"]);
    expect(await readSecret(ctl, node, "/data/pw")).toBe("s3cret-value");
    await expect(readSecret(ctl, node, "/data/missing")).rejects.toThrow(/^t1: cannot read secret file \/data\/missing \(exit 1\)/);
    await ctl.exec(node, ["sh", "-c", ": > /data/empty"]);
    await expect(readSecret(ctl, node, "/data/empty")).rejects.toThrow(/is empty/);
  });

  it("stops and starts (orderly), and the data volume survives", async () => {
    await ctl.stop(node, 5);
    expect(await ctl.isRunning(node)).toBe(false);
    await ctl.start(node);
    await ctl.waitHealthy(node, 30_000);
    expect((await ctl.exec(node, ["cat", "/data/pw"])).stdout).toBe("s3cret-value\n");
  });

  it("kills hard: the node is down on return and the restart policy does not bring it back", async () => {
    const t0 = Date.now();
    await ctl.kill(node);
    expect(await ctl.isRunning(node)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(10_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await ctl.isRunning(node)).toBe(false);
    await expect(ctl.waitHealthy(node, 2000)).rejects.toThrow(/t1 did not become healthy within 2 s \(state exited\//);
  });

  it("removes data volumes only when the node is down, taking the stopped container with it", async () => {
    await ctl.start(node);
    await ctl.waitHealthy(node, 30_000);
    await expect(ctl.removeDataVolumes(node)).rejects.toThrow(/t1 is running: kill or stop it before removing its data volumes/);
    await ctl.kill(node);
    expect(await ctl.removeDataVolumes(node)).toEqual([volume]);
    expect((await docker(["volume", "inspect", volume], { allowFailure: true })).code).not.toBe(0);
    expect((await docker(["inspect", container], { allowFailure: true })).code).not.toBe(0);
    expect(await ctl.isRunning(node)).toBe(false);
    // idempotent: nothing left to remove
    expect(await ctl.removeDataVolumes(node)).toEqual([]);
  });

  it("addresses a remote engine through DOCKER_HOST from the handle", async () => {
    const remote: ControlledNode = { name: "far", handle: { kind: "docker", container: "x", dockerHost: "tcp://127.0.0.1:1" }, dataVolumes: [] };
    // An unreachable engine: inspect fails, so the node reads as not running rather than the local one's state.
    expect(await ctl.isRunning(remote)).toBe(false);
    await expect(ctl.start(remote)).rejects.toThrow(/docker start x failed/);
  });
});

describe("controlFor", () => {
  const base = (nodes: Pick<TopologyNode, "name" | "handle">[], platform: Topology["platform"] = "docker") => ({ platform, nodes: nodes as TopologyNode[] });
  it("gives docker control for a docker topology", () => {
    expect(controlFor(base([{ name: "pg-1", handle: { kind: "docker", container: "hl-pg-1" } }])).platform).toBe("docker");
  });
  const vm = { kind: "libvirt" as const, domain: "hl-pg-1", uri: "qemu:///system", ssh: "root@10.0.0.2", identityFile: "/k/id", knownHosts: "/k/known_hosts" };
  it("gives machine control for an all-libvirt topology", () => {
    expect(controlFor(base([{ name: "pg-1", handle: vm }], "libvirt")).platform).toBe("libvirt");
  });
  it("drives a placed topology node by node: the VM by the libvirt control, the container by the docker one", async () => {
    expect(controlFor(base([{ name: "pg-1", handle: vm }, { name: "backup", handle: { kind: "docker", container: "b" } }], "mixed"))).toBeInstanceOf(PlacedNodeControl);
    const calls: string[] = [];
    const fake = (kind: string) =>
      new Proxy({} as NodeControl, { get: (_t, method) => (node: ControlledNode) => { calls.push(`${kind}.${String(method)}(${node.name})`); return Promise.resolve(true); } });
    const ctl = new PlacedNodeControl({ docker: fake("docker"), libvirt: fake("libvirt") });
    const pg1 = { name: "pg-1", handle: vm, dataVolumes: [] };
    const backup = { name: "backup", handle: { kind: "docker" as const, container: "b" }, dataVolumes: [] };
    await ctl.kill(pg1);
    await ctl.exec(backup, ["true"]);
    await ctl.isRunning(pg1);
    await ctl.stop(backup, 5);
    expect(calls).toEqual(["libvirt.kill(pg-1)", "docker.exec(backup)", "libvirt.isRunning(pg-1)", "docker.stop(backup)"]);
    expect(ctl.platform).toBe("mixed");
    await expect(new PlacedNodeControl({ docker: fake("docker") }).kill(pg1)).rejects.toThrow(new UnsupportedPlatformError("node pg-1: no drill control for its libvirt handle"));
  });
  it("refuses ssh-host topologies clearly", () => {
    expect(() => controlFor(base([{ name: "nuc", handle: { kind: "ssh", target: "root@nuc" } }]))).toThrow(
      new UnsupportedPlatformError("drills drive containers and VMs; node nuc of the docker platform has an ssh handle (plain SSH hosts are not built yet)"),
    );
  });
  it("refuses to drive a non-docker handle through docker", async () => {
    await expect(ctl.isRunning({ name: "vm", handle: { kind: "ssh", target: "root@nuc" }, dataVolumes: [] })).rejects.toThrow(/not a docker handle/);
  });
});
