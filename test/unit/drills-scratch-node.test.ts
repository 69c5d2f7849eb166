import { describe, expect, it } from "vitest";
import { dockerCreateArgsFromInspect, type ContainerInspect } from "../../drills/lib/docker-replace.ts";
import { LABEL_NODE, LABEL_RETAIN } from "../../components/platform/docker-cli.ts";
import { copyInspect, copyVolumeLabels, LABEL_DRILL_SCRATCH } from "../../drills/lib/scratch-node.ts";

// Trimmed from `docker inspect homelab-e2e-restore-dev-pg-1` (e2e stack, slot 2).
const primary: ContainerInspect = {
  Name: "/homelab-e2e-restore-dev-pg-1",
  Config: {
    Hostname: "homelab-e2e-restore-dev-pg-1",
    Labels: { "dev.homelab-data.node": "pg-1", "dev.homelab-data.project": "homelab-data", "dev.homelab-data.stack": "e2e-restore-dev" },
    StopTimeout: 60,
    Healthcheck: { Test: ["CMD-SHELL", "/usr/local/bin/homelab-health"], Interval: 1e9, Timeout: 5e9, StartPeriod: 120e9, Retries: 5 },
  },
  HostConfig: {
    Memory: 335544320,
    MemorySwap: 335544320,
    NanoCpus: 1e9,
    RestartPolicy: { Name: "unless-stopped", MaximumRetryCount: 0 },
    PortBindings: { "5432/tcp": [{ HostIp: "127.0.0.1", HostPort: "25632" }] },
  },
  Mounts: [{ Type: "volume", Name: "homelab-e2e-restore-dev-pg-1-data", Destination: "/var/lib/postgresql/data", RW: true }],
  NetworkSettings: { Networks: { "homelab-e2e-restore-dev-net": { IPAMConfig: { IPv4Address: "172.31.0.10" }, IPAddress: "172.31.0.10" } } },
};

describe("copyInspect: a disposable copy with the node's identity", () => {
  const copy = copyInspect(primary, { name: "homelab-e2e-restore-dev-pg-1-restore-pitr", volumes: { "/var/lib/postgresql/data": "homelab-e2e-restore-dev-pg-1-restore-pitr-data" }, nodeLabel: "pg-1-restore-pitr" });
  const args = dockerCreateArgsFromInspect(copy, { image: "homelab/postgres:17", env: { HOMELAB_ROLE: "restore", HOMELAB_STANZA: "main" } });
  const value = (flag: string) => args.filter((_, i) => args[i - 1] === flag);

  it("keeps hostname, network, limits and health check; takes another name, volume and node label", () => {
    expect(value("--name")).toEqual(["homelab-e2e-restore-dev-pg-1-restore-pitr"]);
    expect(value("--hostname")).toEqual(["homelab-e2e-restore-dev-pg-1"]);
    expect(value("--network")).toEqual(["homelab-e2e-restore-dev-net"]);
    expect(value("--memory")).toEqual(["335544320"]);
    expect(value("--health-cmd")).toEqual(["/usr/local/bin/homelab-health"]);
    expect(value("--volume")).toEqual(["homelab-e2e-restore-dev-pg-1-restore-pitr-data:/var/lib/postgresql/data"]);
    expect(value("--label")).toContain(`${LABEL_NODE}=pg-1-restore-pitr`);
    expect(value("--label")).toContain(`${LABEL_DRILL_SCRATCH}=true`);
    expect(value("--label")).toContain("dev.homelab-data.stack=e2e-restore-dev");
    expect(value("--env")).toEqual(["HOMELAB_ROLE=restore", "HOMELAB_STANZA=main"]);
    expect(args[args.length - 1]).toBe("homelab/postgres:17");
  });

  it("leaves the static address and the host port to the engine, and never restarts", () => {
    expect(args).not.toContain("--ip");
    expect(value("--publish")).toEqual(["127.0.0.1::5432/tcp"]);
    expect(args).not.toContain("--restart");
    // the original is untouched (a rebuild uses it as it was)
    expect(dockerCreateArgsFromInspect(primary, { image: "homelab/postgres:17", env: {} })).toEqual(expect.arrayContaining(["--ip", "172.31.0.10", "--restart", "unless-stopped", "--publish", "127.0.0.1:25632:5432/tcp"]));
  });

  it("refuses a volume for a path the node does not mount", () => {
    expect(() => copyInspect(primary, { name: "x", volumes: { "/elsewhere": "v" }, nodeLabel: "x" })).toThrow(/mounts nothing at \/elsewhere/);
  });
});

describe("labels", () => {
  it("a copy's volume keeps the stack labels, is never retained, and is marked scratch", () => {
    expect(copyVolumeLabels({ "dev.homelab-data.stack": "s", [LABEL_RETAIN]: "true" }, "pg-1-restore-latest")).toEqual({
      "dev.homelab-data.stack": "s",
      [LABEL_RETAIN]: "false",
      [LABEL_NODE]: "pg-1-restore-latest",
      [LABEL_DRILL_SCRATCH]: "true",
    });
  });
});
