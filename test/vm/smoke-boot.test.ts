// Real smoke boot of the VM foundation (issue 10 items 2-3): the offline base image
// (scripts/make-vm-image.sh) booted under libvirt from the pure planner's XML
// (components/platform/libvirt/domain.ts), reached over SSH with an injected throwaway key.
//
// Not in the default `npm test`: run `npm run test:vm` (vitest.vm.config.ts). Needs root, libvirt and qemu
// (installed and started by ensureVmHost, cli/setup.ts). One VM, 1 vCPU, 1 GiB, TCG with the translation
// cache capped; everything it makes is named hlvm-smoke* and removed at the end, even after a failure.
//   HLVM_KEEP_DATA=1   keep the data disk (/var/lib/libvirt/images/hlvm-smoke-data.qcow2); the next run
//                      boots a NEW VM on it and finds the marker the previous one wrote
//   HLVM_EMULATION=kvm use KVM (only where the CPU shows vmx/svm and KVM really runs guests)
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cidrsOverlap, macFor, renderDomainXml, renderNetworkXml } from "../../components/platform/libvirt/domain.ts";
import { ensureVmHost } from "../../cli/setup.ts";
import { baseImage, domainNames, hostRoutes, keygen, mustVirsh, networkNames, qemuImg, qemuRssKiB, removeDomain, removeNetwork, ssh, sshClose, type BaseImage, type SshTarget, virsh, xmlValidate } from "./vm-host.ts";

const NAME = "hlvm-smoke";
const NET = "hlvm-smoke-net";
const BRIDGE = "hlvm-smk0";
const IMAGES = process.env.HLVM_IMAGE_DIR ?? "/var/lib/libvirt/images";
const DIR = path.join(IMAGES, NAME); // overlay + console log: removed with the VM
const DATA = path.join(IMAGES, `${NAME}-data.qcow2`); // outlives the VM when HLVM_KEEP_DATA=1
const KEEP_DATA = process.env.HLVM_KEEP_DATA === "1";
const BOOT_TIMEOUT_S = Number(process.env.HLVM_BOOT_TIMEOUT_S ?? 240);
// Candidate NAT subnets, first that nothing on the host routes (Docker: 172.17-172.45; e2e 172.28-172.41).
const SUBNETS = ["192.168.251.0/24", "192.168.252.0/24", "10.251.77.0/24", "10.252.77.0/24"];

const log = (m: string) => console.log(`[vm] ${m}`);
const numbers: Record<string, string> = {};

let image: BaseImage;
let target: SshTarget;
let keyDir: string;
let ip = "";
let cleaned = false;

async function cleanup(): Promise<void> {
  if (target) await sshClose(target);
  await removeDomain(NAME);
  await removeNetwork(NET);
  rmSync(DIR, { recursive: true, force: true });
  if (!KEEP_DATA) rmSync(DATA, { force: true });
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
}

function consoleTail(): string {
  const f = path.join(DIR, "console.log");
  return existsSync(f) ? readFileSync(f, "utf8").split("\n").slice(-25).join("\n") : "(no console log)";
}

async function inVm(command: string): Promise<string> {
  const r = await ssh(target, command);
  if (r.exitCode !== 0) throw new Error(`in the VM, \`${command}\` failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
  return r.stdout.trim();
}

describe.sequential("VM smoke boot (libvirt, TCG, offline trixie image)", () => {
  beforeAll(async () => {
    log(await ensureVmHost({ yes: true }));
    // Leftovers of a run that was killed: only our own names.
    await cleanup();
    keyDir = mkdtempSync(path.join(tmpdir(), "hlvm-smoke-key-"));
  }, 120_000);

  afterAll(async () => {
    if (!cleaned) await cleanup();
    console.log(`[vm] numbers: ${JSON.stringify(numbers)}`);
  }, 120_000);

  it("builds or reuses the base image", async () => {
    // The build's chroot must not re-own host devices (it once bound the host's /dev, and a package script
    // there gave /dev/kvm the chroot's kvm gid: libvirt-qemu lost it and every virsh define re-probed qemu).
    const kvmBefore = existsSync("/dev/kvm") ? statSync("/dev/kvm") : undefined;
    const r = await baseImage(log);
    if (kvmBefore) expect({ ...statSync("/dev/kvm") }, "/dev/kvm owner and mode after the image build").toMatchObject({ uid: kvmBefore.uid, gid: kvmBefore.gid, mode: kvmBefore.mode });
    image = r.image;
    numbers.imageSeconds = r.seconds.toFixed(1);
    numbers.image = r.stderr.includes("cached:") ? "cached" : "built";
    for (const f of [image.base, image.kernel, image.initrd]) expect(existsSync(f), f).toBe(true);
    const info = JSON.parse(await qemuImg(["info", "--output=json", image.base])) as { "actual-size": number; "virtual-size": number };
    numbers.baseActualMiB = (info["actual-size"] / 2 ** 20).toFixed(0);
    numbers.baseVirtualMiB = (info["virtual-size"] / 2 ** 20).toFixed(0);
  }, 16 * 60_000);

  it("defines the network and the domain from the planner's XML, and boots it", async () => {
    const routes = await hostRoutes();
    const subnet = SUBNETS.find((s) => !routes.some((r) => cidrsOverlap(s, r)));
    if (!subnet) throw new Error(`every candidate subnet (${SUBNETS.join(", ")}) collides with a host route: ${routes.join(", ")}`);
    ip = subnet.replace(/\.0\/24$/, ".10");
    const mac = macFor(NAME);
    const pub = await keygen(path.join(keyDir, "id_ed25519"));
    target = { ip, keyFile: path.join(keyDir, "id_ed25519"), knownHosts: path.join(keyDir, "known_hosts"), controlDir: keyDir };

    mkdirSync(DIR, { recursive: true, mode: 0o755 });
    const overlay = path.join(DIR, "root.qcow2");
    await qemuImg(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image.base, overlay]);
    if (!existsSync(DATA)) await qemuImg(["create", "-q", "-f", "qcow2", DATA, "1G"]);

    const netXml = renderNetworkXml({ name: NET, bridge: BRIDGE, subnet, hosts: [{ mac, name: NAME, ip }] });
    const emulation = process.env.HLVM_EMULATION === "kvm" ? { type: "kvm" as const } : { type: "qemu" as const, tbCacheMiB: 256 };
    const domXml = renderDomainXml({
      name: NAME,
      hostname: NAME,
      memoryMiB: 1024,
      vcpus: 1,
      emulation,
      rootDisk: { path: overlay },
      dataDisk: { path: DATA },
      network: { name: NET, mac },
      // quiet: the emulated UART is slow; errors still reach the console log
      boot: { kernel: image.kernel, initrd: image.initrd, root: image.root, extraArgs: (process.env.HLVM_CMDLINE_EXTRA ?? "quiet").split(" ").filter(Boolean) },
      sshAuthorizedKeys: [pub],
      consoleLog: path.join(DIR, "console.log"),
    });
    writeFileSync(path.join(keyDir, "net.xml"), netXml);
    writeFileSync(path.join(keyDir, "domain.xml"), domXml);
    for (const [f, kind] of [["domain.xml", "domain"], ["net.xml", "network"]] as const) {
      const v = await xmlValidate(path.join(keyDir, f), kind);
      if (v) expect(v.exitCode, `virt-xml-validate ${f}: ${v.stderr}${v.stdout}`).toBe(0);
    }

    const tDefine = Date.now();
    await mustVirsh(["net-define", path.join(keyDir, "net.xml")]);
    await mustVirsh(["net-start", NET]);
    await mustVirsh(["define", path.join(keyDir, "domain.xml")]);
    numbers.defineSeconds = ((Date.now() - tDefine) / 1000).toFixed(1);
    const t0 = Date.now();
    await mustVirsh(["start", NAME]);

    const deadline = t0 + BOOT_TIMEOUT_S * 1000;
    let last: string;
    for (;;) {
      const r = await ssh(target, "true", 15_000);
      if (r.exitCode === 0) break;
      last = r.stderr.trim();
      if (Date.now() > deadline) throw new Error(`no SSH to root@${ip} within ${BOOT_TIMEOUT_S} s (last: ${last})\nconsole:\n${consoleTail()}`);
      await new Promise((res) => setTimeout(res, 1000));
    }
    numbers.bootToSshSeconds = ((Date.now() - t0) / 1000).toFixed(1);
    log(`SSH after ${numbers.bootToSshSeconds} s at root@${ip} (${emulation.type})`);
  }, (BOOT_TIMEOUT_S + 90) * 1000);

  it("is the VM the planner asked for: hostname, fresh identity, the tier's binaries, no cluster", async () => {
    expect(await inVm("hostname")).toBe(NAME);
    expect(await inVm("cat /etc/machine-id")).toMatch(/^[0-9a-f]{32}$/);
    expect(await inVm("ls /etc/ssh/ssh_host_ed25519_key.pub")).toContain("ssh_host_ed25519_key.pub");
    expect(await inVm("/usr/lib/postgresql/17/bin/postgres --version")).toMatch(/PostgreSQL\) 17\./);
    expect(await inVm("pgbackrest version")).toMatch(/^pgBackRest 2\.55/);
    expect(await inVm("redis-server --version")).toMatch(/^Redis server v=\d/);
    // No cluster baked in: every clone would share one system identifier.
    expect(await inVm("pg_lsclusters --no-header")).toBe("");
    expect(await inVm("ls -A /etc/postgresql; ls -A /var/lib/postgresql")).toBe("");
    expect(await inVm("systemctl is-enabled redis-server postgresql prometheus-node-exporter || true")).toMatch(/^disabled\ndisabled\ndisabled$/);
    numbers.guestKernel = await inVm("uname -r");
    numbers.guestBoot = await inVm("systemd-analyze time 2>/dev/null | head -n1 || true");
    log(`slowest units at boot:\n${await inVm("systemd-analyze blame 2>/dev/null | head -n 8 || true")}`);
    numbers.systemdVersion = (await inVm("systemctl --version | head -n1")).replace(/^systemd /, "");
    const rss = qemuRssKiB(NAME);
    if (rss) numbers.qemuRssMiB = (rss / 1024).toFixed(0);
  }, 120_000);

  it("has the data disk attached (vdb, serial hlvm-data) and can keep a marker on it", async () => {
    expect(await inVm("readlink -f /dev/disk/by-id/virtio-hlvm-data")).toBe("/dev/vdb");
    expect(await inVm("lsblk -bdno SIZE /dev/vdb")).toBe(String(2 ** 30));
    const before = await inVm(
      "set -e; blkid /dev/vdb >/dev/null || mkfs.ext4 -q -L hlvm-data /dev/vdb; mkdir -p /mnt/data; mount /dev/vdb /mnt/data; " +
        "cat /mnt/data/marker 2>/dev/null || true; echo \"written by $(cat /etc/machine-id)\" > /mnt/data/marker; sync; umount /mnt/data",
    );
    numbers.dataDiskMarkerFromPreviousVm = before ? "yes" : "no";
    if (before) log(`data disk kept from a previous VM: ${before}`);
  }, 120_000);

  it("tears down: no domain, network, bridge or overlay left (data disk only if asked)", async () => {
    await cleanup();
    cleaned = true;
    expect((await domainNames()).filter((n) => n.startsWith(NAME))).toEqual([]);
    expect((await networkNames()).filter((n) => n.startsWith(NAME))).toEqual([]);
    expect(existsSync(`/sys/class/net/${BRIDGE}`)).toBe(false);
    expect(existsSync(DIR)).toBe(false);
    expect(existsSync(DATA)).toBe(KEEP_DATA);
    expect(readdirSync(IMAGES).filter((f) => f.startsWith(NAME) && !(KEEP_DATA && path.join(IMAGES, f) === DATA))).toEqual([]);
    expect((await virsh(["dominfo", NAME])).exitCode).not.toBe(0);
  }, 120_000);
});
