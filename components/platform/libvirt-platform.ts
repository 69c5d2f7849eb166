// The `libvirt` platform (ADR 0015, ADR 0018): every node of the stack is a VM on the local hypervisor
// (`qemu:///system`), made with virsh and qemu-img through @pulumi/command `local.Command` (no libvirt
// provider: deprecated, unpublished, and not installable offline), then configured as a machine node over
// SSH by the one machine applier (components/platform/machine-node.ts).
//
// Per stack: an SSH key (kept on the machine running Pulumi, never in state), a NAT network on the stack's
// subnet with a fixed address per node (DHCP by MAC), and the offline base image (scripts/make-vm-image.sh,
// cached). Per node: a data disk (survives replacing the VM; removed on destroy unless it holds the backup
// repository), the domain (a qcow2 overlay on the base image, booted and reachable over SSH), and the
// configuration (the image context, files, unit: started and healthy).
import { createHash } from "node:crypto";
import { existsSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { $ } from "zx";
import type { HomelabSpec } from "../config/index.ts";
import { contextDigest, PROJECT_ROOT } from "./docker-cmd.ts";
import { shellQuote } from "./docker-node.ts";
import { macFor, renderDomainXml, renderNetworkXml } from "./libvirt/domain.ts";
import { applyMachineScript, envPrelude, machineFiles, machineSpecOf, machineTar, sshArgv, stackSshDir, stackSshTarget, stopMachineScript, VM_DATA_DEVICE } from "./machine-node.ts";
import type { CreateOptions, NodeCommand, NodeOptions, NodeResources, Platform, PlatformOptions } from "./platform.ts";
import { memoryMiB } from "./platform.ts";
import type { HomelabPlan, NodeFile, NodeHandle, NodePlan } from "./plan.ts";

const sh = (argv: string[]) => argv.map(shellQuote).join(" ");

/** What scripts/make-vm-image.sh prints: the cached base image and the kernel/initrd booted directly. */
export interface VmBaseImage {
  hash: string;
  base: string;
  kernel: string;
  initrd: string;
  root: string;
}

/** The stack's libvirt names and paths (pure: the drills and `down` derive the same ones). */
export function libvirtLayout(spec: Pick<HomelabSpec, "stack" | "libvirt">, plan: Pick<HomelabPlan, "prefix">) {
  const lv = spec.libvirt ?? { uri: "qemu:///system", imageDir: "/var/lib/libvirt/images" };
  const dir = path.posix.join(lv.imageDir ?? "/var/lib/libvirt/images", plan.prefix);
  const tag = createHash("sha256").update(plan.prefix).digest("hex").slice(0, 8);
  return {
    uri: lv.uri,
    dir,
    network: `${plan.prefix}-net`,
    // Linux bridge names have at most 15 characters.
    bridge: `hlbr${tag}`,
    nodeDir: (node: Pick<NodePlan, "name">) => path.posix.join(dir, node.name),
    dataDisk: (node: Pick<NodePlan, "name">) => path.posix.join(dir, `${node.name}-data.qcow2`),
  };
}

/** VM memory: the node's budget (what the tuner sized PostgreSQL for) plus room for the guest OS. */
export const VM_OS_OVERHEAD_MIB = 256;
export const vmMemoryMiB = (node: Pick<NodePlan, "memoryBytes">) => Math.max(512, memoryMiB(node.memoryBytes) + VM_OS_OVERHEAD_MIB);

export class LibvirtPlatform implements Platform {
  readonly kind = "libvirt" as const;
  private network?: command.local.Command;
  private key?: command.local.Command;
  private image?: command.local.Command;
  private lastDomain?: command.local.Command;
  private readonly made: Record<string, pulumi.Output<NodeHandle>> = {};
  private readonly layout: ReturnType<typeof libvirtLayout>;

  constructor(
    private readonly spec: HomelabSpec,
    _opts: PlatformOptions,
  ) {
    this.layout = libvirtLayout(spec, { prefix: `homelab-${spec.stack}` });
  }

  private virsh(args: string[]): string {
    return sh(["virsh", "-q", "-c", this.layout.uri, ...args]);
  }

  createNetwork(plan: HomelabPlan, opts: CreateOptions): command.local.Command {
    if (this.network) throw new Error("createNetwork: the stack network was already created");
    const dir = stackSshDir(this.spec.stack);
    const keyFile = path.join(dir, "id_ed25519");
    // The stack's SSH key: made once on this machine (like ~/.ssh/id_ed25519), only its public half leaves it.
    this.key = new command.local.Command(
      `${opts.name}-ssh-key`,
      {
        create: [
          `mkdir -p ${shellQuote(dir)} && chmod 0700 ${shellQuote(dir)}`,
          `[ -f ${shellQuote(keyFile)} ] || ssh-keygen -q -t ed25519 -N '' -C ${shellQuote(`homelab-data ${this.spec.stack}`)} -f ${shellQuote(keyFile)} </dev/null`,
          `cat ${shellQuote(`${keyFile}.pub`)}`,
        ].join(" && "),
      },
      { parent: opts.parent },
    );
    const xml = renderNetworkXml({
      name: this.layout.network,
      bridge: this.layout.bridge,
      subnet: plan.network.subnet,
      hosts: plan.nodes.map((n) => ({ mac: macFor(n.hostname), name: n.hostname, ip: n.ipv4Address })),
    });
    const netDir = this.layout.dir;
    const xmlFile = path.posix.join(netDir, "network.xml");
    this.network = new command.local.Command(
      opts.name,
      {
        // Adopts the network of an interrupted run; a network of that name with another definition is replaced.
        create: [
          "set -eu",
          `mkdir -p ${shellQuote(netDir)}`,
          `cat >${shellQuote(xmlFile)} <<'HOMELAB_XML'\n${xml}HOMELAB_XML`,
          `if ${this.virsh(["net-info", this.layout.network])} >/dev/null 2>&1; then ${this.virsh(["net-destroy", this.layout.network])} >/dev/null 2>&1 || true; ${this.virsh(["net-undefine", this.layout.network])} >/dev/null; fi`,
          `${this.virsh(["net-define", xmlFile])} >/dev/null`,
          `${this.virsh(["net-start", this.layout.network])} >/dev/null`,
        ].join("\n"),
        delete: `${this.virsh(["net-destroy", this.layout.network])} >/dev/null 2>&1 || true; ${this.virsh(["net-undefine", this.layout.network])} >/dev/null 2>&1 || true; rm -f ${shellQuote(xmlFile)}`,
        triggers: [xml],
      },
      { parent: opts.parent, deleteBeforeReplace: true },
    );
    return this.network;
  }

  createImages(_plan: HomelabPlan, opts: CreateOptions): command.local.Command[] {
    // One base image for every VM; the role scripts travel with each node's configuration, not in the image.
    this.image = new command.local.Command(
      `${opts.name}-vm-base`,
      {
        // Builds (about 2 minutes) or reuses the cached image; its log goes to stderr, stdout is one JSON line.
        create: `bash scripts/make-vm-image.sh | tail -n 1`,
        dir: PROJECT_ROOT,
        triggers: [contextDigest(path.join(PROJECT_ROOT, "scripts"))],
      },
      // The base image stays on destroy: a build cache, not state.
      { parent: opts.parent },
    );
    return [this.image];
  }

  createNode(plan: HomelabPlan, node: NodePlan, files: pulumi.Output<NodeFile[]>, opts: NodeOptions): NodeResources {
    const { network, key, image } = this;
    if (!network || !key || !image) throw new Error(`createNode ${node.name}: call createNetwork and createImages first`);
    const lv = this.spec.libvirt;
    if (!lv) throw new Error("platform libvirt without a libvirt section (the schema refuses this)");
    const target = stackSshTarget(this.spec.stack, node.ipv4Address);
    const machine = machineSpecOf(plan, node, target, { dataDevice: VM_DATA_DEVICE, readyTimeoutSeconds: lv.readyTimeoutSeconds });
    const nodeDir = this.layout.nodeDir(node);
    const dataDisk = this.layout.dataDisk(node);
    const retain = node.volumes.some((v) => v.retainOnDestroy);

    const disk = new command.local.Command(
      `${opts.name}-disk`,
      {
        // A kept disk (the repository's after destroy, or any after a replaced VM) is used as it is.
        create: `mkdir -p ${shellQuote(this.layout.dir)} && { [ -f ${shellQuote(dataDisk)} ] || qemu-img create -q -f qcow2 ${shellQuote(dataDisk)} ${lv.dataDiskBytes}; }`,
        ...(retain ? {} : { delete: `rm -f ${shellQuote(dataDisk)}` }),
      },
      { parent: opts.parent, retainOnDelete: retain, deleteBeforeReplace: true },
    );

    const xml = pulumi.all([key.stdout, image.stdout]).apply(([pub, imageJson]) => {
      const base = JSON.parse(imageJson) as VmBaseImage;
      return renderDomainXml({
        name: node.hostname,
        hostname: node.hostname,
        memoryMiB: vmMemoryMiB(node),
        vcpus: Math.max(1, Math.ceil(node.cpus)),
        emulation: lv.emulation === "kvm" ? { type: "kvm" } : { type: "qemu", tbCacheMiB: 256 },
        rootDisk: { path: path.posix.join(nodeDir, "root.qcow2") },
        dataDisk: { path: dataDisk },
        network: { name: this.layout.network, mac: macFor(node.hostname) },
        boot: { kernel: base.kernel, initrd: base.initrd, root: base.root, extraArgs: ["quiet"] },
        sshAuthorizedKeys: [pub.trim()],
        consoleLog: path.posix.join(nodeDir, "console.log"),
      });
    });
    const baseImage = image.stdout.apply((j) => (JSON.parse(j) as VmBaseImage).base);
    const removeDomain = [
      `${this.virsh(["destroy", node.hostname])} >/dev/null 2>&1 || true`,
      `${this.virsh(["undefine", node.hostname])} >/dev/null 2>&1 || true`,
      `rm -rf ${shellQuote(nodeDir)}`,
    ].join("\n");
    const bootTimeout = lv.bootTimeoutSeconds;
    const domain = new command.local.Command(
      `${opts.name}-vm`,
      {
        create: pulumi.all([xml, baseImage]).apply(([x, base]) =>
          [
            "set -eu",
            removeDomain,
            `mkdir -p ${shellQuote(nodeDir)}`,
            `qemu-img create -q -f qcow2 -F qcow2 -b ${shellQuote(base)} ${shellQuote(path.posix.join(nodeDir, "root.qcow2"))}`,
            `cat >${shellQuote(path.posix.join(nodeDir, "domain.xml"))} <<'HOMELAB_XML'\n${x}HOMELAB_XML`,
            `${this.virsh(["define", path.posix.join(nodeDir, "domain.xml")])} >/dev/null`,
            `${this.virsh(["start", node.hostname])} >/dev/null`,
            // A new VM makes new host keys at first boot: forget the old one of this address, pin the new one.
            `ssh-keygen -q -R ${shellQuote(node.ipv4Address)} -f ${shellQuote(target.knownHosts)} >/dev/null 2>&1 || true`,
            `t0=$(date +%s); deadline=$(( t0 + ${bootTimeout} ))`,
            `until ${sh(sshArgv(target, "true"))} </dev/null >/dev/null 2>&1; do`,
            `  if [ "$(date +%s)" -ge "$deadline" ]; then echo "${node.hostname}: no SSH at ${node.ipv4Address} within ${bootTimeout}s; console:" >&2; tail -n 20 ${shellQuote(path.posix.join(nodeDir, "console.log"))} >&2 || true; exit 1; fi`,
            "  sleep 2",
            "done",
            `echo "${node.hostname}: SSH after $(( $(date +%s) - t0 ))s" >&2`,
            this.virsh(["domuuid", node.hostname]),
          ].join("\n"),
        ),
        delete: removeDomain,
      },
      // VMs boot one after the other (three booting at once under software emulation starve each other until
      // udev times out); each configuration waits only for its own VM and the nodes it depends on, so one
      // node is configured while the next boots.
      { parent: opts.parent, dependsOn: [network, key, image, disk, ...(this.lastDomain ? [this.lastDomain] : [])], deleteBeforeReplace: true },
    );
    this.lastDomain = domain;

    const configured = new command.local.Command(
      opts.name,
      {
        create: applyMachineScript(machine),
        delete: stopMachineScript(machine),
        stdin: pulumi.secret(files.apply(async (f) => (await machineTar(machineFiles(machine, f, PROJECT_ROOT))).toString("base64"))),
        // A new VM (new UUID) is configured again from scratch.
        triggers: [domain.stdout],
      },
      { parent: opts.parent, dependsOn: [domain, ...opts.dependsOn], deleteBeforeReplace: true, additionalSecretOutputs: ["stdin"] },
    );
    this.made[node.name] = configured.id.apply(
      (): NodeHandle => ({ kind: "libvirt", domain: node.hostname, uri: this.layout.uri, ssh: `${target.user}@${target.host}`, identityFile: target.identityFile, knownHosts: target.knownHosts }),
    );
    return { ready: configured, resources: [disk, domain, configured], handle: configured.id.apply(() => node.hostname) };
  }

  handles(): Record<string, pulumi.Output<NodeHandle>> {
    return { ...this.made };
  }

  runOnNode(name: string, node: NodePlan, cmd: NodeCommand, opts: { parent: pulumi.Resource; dependsOn: pulumi.Resource[] }): command.local.Command {
    const target = stackSshTarget(this.spec.stack, node.ipv4Address);
    const wrap = (script: pulumi.Input<string>) =>
      pulumi.output(script).apply((s) => {
        const inner = cmd.user ? `${envPrelude(node)}; exec runuser -u ${shellQuote(cmd.user)} -- sh -c ${shellQuote(s)}` : `${envPrelude(node)}; exec sh -c ${shellQuote(s)}`;
        return `${sh(sshArgv(target, inner))} </dev/null`;
      });
    return new command.local.Command(
      name,
      {
        create: wrap(cmd.create),
        ...(cmd.delete !== undefined ? { delete: wrap(cmd.delete) } : {}),
        ...(cmd.triggers !== undefined ? { triggers: cmd.triggers } : {}),
      },
      { parent: opts.parent, dependsOn: opts.dependsOn },
    );
  }
}

/**
 * What `homelab down` sweeps after `pulumi destroy` (an interrupted run or a failed test leaves VMs that
 * state does not know): the stack's domains, its network and every overlay; data disks too, except the
 * backup repository's unless purgeRetained. Only names under the stack's prefix are touched.
 */
export async function removeLibvirtLeftovers(spec: Pick<HomelabSpec, "stack" | "libvirt">, plan: Pick<HomelabPlan, "prefix" | "nodes">, opts: { purgeRetained: boolean }): Promise<string[]> {
  const layout = libvirtLayout(spec, plan);
  const run = $({ quiet: true, verbose: false, nothrow: true, input: "" });
  const removed: string[] = [];
  const domains = (await run`virsh -q -c ${layout.uri} list --all --name`).stdout.split("\n").map((s) => s.trim()).filter((d) => d.startsWith(`${plan.prefix}-`));
  for (const d of domains) {
    await run`virsh -q -c ${layout.uri} destroy ${d}`;
    await run`virsh -q -c ${layout.uri} undefine ${d}`;
    removed.push(`domain ${d}`);
  }
  if ((await run`virsh -q -c ${layout.uri} net-info ${layout.network}`).exitCode === 0) {
    await run`virsh -q -c ${layout.uri} net-destroy ${layout.network}`;
    await run`virsh -q -c ${layout.uri} net-undefine ${layout.network}`;
    removed.push(`network ${layout.network}`);
  }
  if (existsSync(layout.dir)) {
    const keep = new Set(plan.nodes.filter((n) => n.volumes.some((v) => v.retainOnDestroy) && !opts.purgeRetained).map((n) => path.posix.basename(layout.dataDisk(n))));
    for (const entry of readdirSync(layout.dir)) {
      if (keep.has(entry)) continue;
      rmSync(path.posix.join(layout.dir, entry), { recursive: true, force: true });
      removed.push(entry);
    }
    if (readdirSync(layout.dir).length === 0) rmSync(layout.dir, { recursive: true, force: true });
  }
  return removed;
}
