// The resource graph of a stack on the `libvirt` platform under Pulumi mocks (nothing is booted here; the VM
// tests in test/vm boot it for real): per stack an SSH key, the NAT network and the base image; per node a
// data disk, the domain and its configuration over SSH, with the files only ever in a secret stdin.
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { HomelabSpec } from "../../components/config/index.ts";
import { Recorder, fakeSecrets, findLeaks, localSpec, promiseOf, secretValues, settle, unwrapSecret } from "./mocks.ts";

const recorder = new Recorder();
let mod: { homelab: typeof import("../../components/homelab.ts") };

beforeAll(async () => {
  await pulumi.runtime.setMocks(recorder, "homelab-data", "kvm", false);
  mod = { homelab: await import("../../components/homelab.ts") };
});
beforeEach(() => recorder.clear());

const SUBNET = "192.168.250.0/24";
function vmSpec(overrides: Record<string, unknown> = {}): HomelabSpec {
  return {
    ...localSpec({ platform: "libvirt", libvirt: { subnet: SUBNET }, postgres: { allowedClientCidrs: [SUBNET] }, redis: { enabled: false }, duckdb: { enabled: false }, monitoring: { enabled: false }, ...overrides }),
    stack: "kvm",
  };
}
const CMD = "command:local:Command";
const create = (name: string) => String(recorder.resource(name, CMD).inputs.create);
const optsOf = (name: string) => recorder.options.find((o) => o.name === name && o.type === CMD)?.opts;

async function build(spec = vmSpec()) {
  const secrets = fakeSecrets(spec);
  const lab = new mod.homelab.Homelab("homelab", { spec, secrets: pulumi.secret(secrets) }, { transformations: [recorder.transformation] });
  await settle(recorder);
  return { lab, secrets };
}

describe("Homelab on the libvirt platform (every node a VM)", () => {
  it("makes the stack's key, network and base image, then per node a data disk, a domain and its configuration", async () => {
    await build();
    const names = recorder.resources.filter((r) => r.type === CMD).map((r) => r.name).sort();
    for (const n of ["homelab-network", "homelab-network-ssh-key", "homelab-image-vm-base"]) expect(names).toContain(n);
    for (const node of ["homelab-postgres-primary", "homelab-postgres-replica-1", "homelab-backup"]) {
      expect(names).toEqual(expect.arrayContaining([node, `${node}-disk`, `${node}-vm`]));
    }
    // No Docker at all.
    expect(recorder.resources.filter((r) => r.type.startsWith("docker:") || /docker (create|network|volume|build)/.test(String(r.inputs.create ?? "")))).toEqual([]);
    expect(create("homelab-network")).toContain("<ip address=\"192.168.250.1\" netmask=\"255.255.255.0\">");
    expect(create("homelab-network")).toMatch(/<host mac="52:54:00:[0-9a-f:]+" name="homelab-kvm-pg-1" ip="192\.168\.250\.10"\/>/);
  });

  it("boots each VM from an overlay on the base image with the node's memory plus the guest's, and waits for SSH", async () => {
    await build();
    const vm = create("homelab-postgres-primary-vm");
    expect(vm).toContain("qemu-img create -q -f qcow2 -F qcow2 -b /var/lib/libvirt/images/hlvm-base-0123456789abcdef/base.qcow2 /var/lib/libvirt/images/homelab-kvm/pg-1/root.qcow2");
    expect(vm).toContain(`<memory unit="MiB">${320 + 256}</memory>`);
    expect(vm).toContain("<domain type=\"qemu\">");
    expect(vm).toContain("virsh -q -c qemu:///system define /var/lib/libvirt/images/homelab-kvm/pg-1/domain.xml");
    expect(vm).toMatch(/until ssh .*root@192\.168\.250\.10 true/);
    expect(vm).toContain("deadline=$(( t0 + 600 ))");
    // The public key only (an SMBIOS systemd credential, base64): the private one never leaves ~/.local/share/homelab-data/ssh/kvm.
    const pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockMockMockMockMockMockMockMockMockMockMock homelab-data test";
    expect(vm).toContain(`io.systemd.credential.binary:ssh.authorized_keys.root=${Buffer.from(`${pub}\n`).toString("base64")}`);
    expect(String(recorder.resource("homelab-postgres-primary-vm", CMD).inputs.delete)).toMatch(/virsh -q -c qemu:\/\/\/system destroy homelab-kvm-pg-1[\s\S]*undefine homelab-kvm-pg-1[\s\S]*rm -rf \/var\/lib\/libvirt\/images\/homelab-kvm\/pg-1/);
  });

  it("keeps the repository's data disk on destroy and removes the others", async () => {
    await build();
    expect(optsOf("homelab-backup-disk")?.retainOnDelete).toBe(true);
    expect(recorder.resource("homelab-backup-disk", CMD).inputs.delete).toBeUndefined();
    expect(optsOf("homelab-postgres-primary-disk")?.retainOnDelete).toBeFalsy();
    expect(String(recorder.resource("homelab-postgres-primary-disk", CMD).inputs.delete)).toBe("rm -f /var/lib/libvirt/images/homelab-kvm/pg-1-data.qcow2");
  });

  it("boots the VMs one after the other; a configuration waits only for its VM and the nodes it depends on", async () => {
    await build();
    const deps = (name: string) => ((optsOf(name)?.dependsOn as pulumi.Resource[] | undefined) ?? []).map((r) => recorder.nameOf(r));
    expect(deps("homelab-postgres-primary-vm")).toContain("homelab-backup-vm");
    expect(deps("homelab-postgres-replica-1-vm")).toContain("homelab-postgres-primary-vm");
    expect(deps("homelab-postgres-replica-1-vm")).not.toContain("homelab-postgres-primary");
    expect(deps("homelab-backup")).not.toContain("homelab-postgres-primary-vm");
    expect(deps("homelab-postgres-replica-1")).toEqual(expect.arrayContaining(["homelab-postgres-replica-1-vm", "homelab-postgres-primary"]));
    expect(deps("homelab-postgres-primary")).toContain("homelab-backup");
  });

  it("delivers files only in the secret stdin, over ssh to the VM's pinned host key", async () => {
    const { secrets } = await build();
    const cfg = recorder.resource("homelab-postgres-primary", CMD);
    expect(optsOf("homelab-postgres-primary")?.additionalSecretOutputs).toEqual(["stdin"]);
    const tar = Buffer.from(String(unwrapSecret(cfg.inputs.stdin)), "base64").toString("latin1");
    expect(tar).toContain("etc/homelab/secrets/postgres.password");
    expect(tar).toContain("usr/local/src/homelab/image/install.sh");
    expect(tar).toContain("etc/systemd/system/homelab-pg-1.service");
    expect(String(cfg.inputs.create)).toMatch(/^ssh -i \/\S+\/\.local\/share\/homelab-data\/ssh\/kvm\/id_ed25519 .*StrictHostKeyChecking=accept-new .*UserKnownHostsFile=\S+\/ssh\/kvm\/known_hosts .* root@192\.168\.250\.10 /);
    expect(findLeaks(recorder.resources, secretValues(secrets))).toEqual([]);
  });

  it("hands drills libvirt handles and the VMs' own addresses", async () => {
    const { lab } = await build();
    const topology = await promiseOf(lab.topology);
    const pg1 = topology.nodes.find((n) => n.name === "pg-1")!;
    expect(topology.platform).toBe("libvirt");
    expect(pg1.handle).toMatchObject({ kind: "libvirt", domain: "homelab-kvm-pg-1", uri: "qemu:///system", ssh: "root@192.168.250.10" });
    expect(pg1.published).toEqual({ host: "192.168.250.10", port: 5432 });
  });
});
