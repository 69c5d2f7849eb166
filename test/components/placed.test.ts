// The resource graph of a stack placed on two kinds of host (hosts:, ADR 0021) under Pulumi mocks: the
// PostgreSQL nodes as VMs (key, NAT network, base image, disk, domain, configuration), the repository and
// Redis as containers (the docker network, the images, the containers with the VMs' names), the link that
// routes the two networks to each other, and every node made only once it exists. The VM test
// (test/vm/mixed-stack.test.ts) builds it for real.
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { resolvePlacement, type HomelabSpec } from "../../components/config/index.ts";
import { Recorder, fakeSecrets, localSpec, promiseOf, settle } from "./mocks.ts";

const recorder = new Recorder();
let mod: { homelab: typeof import("../../components/homelab.ts") };

beforeAll(async () => {
  await pulumi.runtime.setMocks(recorder, "homelab-data", "mix", false);
  mod = { homelab: await import("../../components/homelab.ts") };
});
beforeEach(() => recorder.clear());

const VM_SUBNET = "192.168.248.0/24";
function mixedSpec(): HomelabSpec {
  const spec = {
    ...localSpec({
      hosts: { hv: { kind: "libvirt" }, nas: { kind: "docker" } },
      libvirt: { subnet: VM_SUBNET },
      postgres: { host: "hv", allowedClientCidrs: [VM_SUBNET] },
      pgbackrest: { host: "nas" },
      redis: { host: "nas" },
      duckdb: { enabled: false },
      monitoring: { enabled: false },
    }),
    stack: "mix",
  };
  return { ...spec, placement: resolvePlacement(spec).placement };
}
const CMD = "command:local:Command";
const create = (name: string) => String(recorder.resource(name, CMD).inputs.create);
const deps = (name: string) => ((recorder.options.find((o) => o.name === name && o.type === CMD)?.opts.dependsOn as pulumi.Resource[] | undefined) ?? []).map((r) => recorder.nameOf(r));

describe("Homelab placed on a hypervisor and a Docker engine", () => {
  it("makes both networks and the link, VMs for PostgreSQL, containers for the repository and Redis", async () => {
    const spec = mixedSpec();
    const lab = new mod.homelab.Homelab("homelab", { spec, secrets: pulumi.secret(fakeSecrets(spec)) }, { transformations: [recorder.transformation] });
    await settle(recorder);
    expect(lab.platform).toBe("mixed");
    const names = recorder.resources.filter((r) => r.type === CMD).map((r) => r.name);
    expect(names).toEqual(expect.arrayContaining(["homelab-network-docker", "homelab-network-libvirt", "homelab-network-libvirt-ssh-key", "homelab-network-link", "homelab-image-vm-base"]));
    // The VMs: PostgreSQL only; the NAT network's DHCP knows only them.
    for (const node of ["homelab-postgres-primary", "homelab-postgres-replica-1"]) expect(names).toEqual(expect.arrayContaining([`${node}-disk`, `${node}-vm`]));
    expect(names).not.toContain("homelab-backup-vm");
    expect(create("homelab-network-libvirt")).toMatch(/name="homelab-mix-pg-1" ip="192\.168\.248\.10"/);
    expect(create("homelab-network-libvirt")).not.toContain("homelab-mix-backup");
    // The containers: the repository and Redis, each told the VMs' names.
    expect(create("homelab-network-docker")).toContain("--subnet 172.28.0.0/24");
    expect(create("homelab-backup")).toContain("--add-host homelab-mix-pg-1:192.168.248.10 --add-host homelab-mix-pg-2:192.168.248.11");
    expect(create("homelab-redis-primary")).toContain("--add-host homelab-mix-pg-1:192.168.248.10");
    // Only the images the containers use are built; VMs get the role scripts over SSH.
    expect(names.filter((n) => n.startsWith("homelab-image-")).sort()).toEqual(["homelab-image-postgres", "homelab-image-redis", "homelab-image-vm-base"]);
    // The link: both ways, after both networks; every node waits for it.
    expect(create("homelab-network-link")).toContain("-s 172.28.0.0/24 -d 192.168.248.0/24");
    expect(deps("homelab-network-link").sort()).toEqual(["homelab-network-docker", "homelab-network-libvirt"]);
    for (const node of ["homelab-backup", "homelab-postgres-primary", "homelab-postgres-replica-1", "homelab-redis-primary"]) expect(deps(node)).toContain("homelab-network-link");
    // The topology: what made each node, the VMs at their own addresses.
    const t = await promiseOf(lab.topology);
    expect(t.platform).toBe("mixed");
    expect(t.nodes.map((n) => `${n.name}:${n.handle.kind}:${n.internal.host}`)).toEqual(["pg-1:libvirt:192.168.248.10", "pg-2:libvirt:192.168.248.11", "backup:docker:172.28.0.20", "redis:docker:172.28.0.30"]);
  });
});
