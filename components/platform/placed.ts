// A stack whose nodes sit on more than one kind of host (`hosts:`, `<section>.host`; ADR 0021): each node is
// made by the platform of its host (containers by the docker platform, VMs by the libvirt one), each
// platform makes its own network, and the two networks are routed to each other on this machine, so every
// node reaches every other one at the address the plan gave it (pg_hba, pgBackRest and the certificates
// are the plan's, unchanged). Single-kind stacks never come here: platformFor returns their one platform.
import * as command from "@pulumi/command";
import type * as pulumi from "@pulumi/pulumi";
import { $ } from "zx";
import { shellQuote } from "./docker-node.ts";
import { networkKindOf, nodesOn, planOn, type HomelabPlan, type NetworkKind, type NodeFile, type NodeHandle, type NodePlan } from "./plan.ts";
import type { CreateOptions, NodeCommand, NodeOptions, NodeResources, Platform } from "./platform.ts";

/** The iptables comment every rule of a stack's network link carries (what `down` sweeps by). */
export const linkComment = (stack: string) => `homelab-data ${stack} link`;

/**
 * The rules that route the stack's Docker network and its libvirt network to each other on this machine
 * (pure): forwarding accepted both ways (Docker's FORWARD policy is DROP; libvirt's NAT network rejects new
 * connections into it), and no masquerade between them (both would rewrite the source to the host's own
 * address, and pg_hba names nodes by theirs). Inserted at the top of their chains, each only once.
 */
export function networkLinkRules(stack: string, dockerSubnet: string, libvirtSubnet: string): { table: "filter" | "nat"; chain: string; args: string[] }[] {
  const tag = ["-m", "comment", "--comment", linkComment(stack)];
  const pairs: [string, string][] = [
    [dockerSubnet, libvirtSubnet],
    [libvirtSubnet, dockerSubnet],
  ];
  return [
    ...pairs.map(([from, to]) => ({ table: "filter" as const, chain: "FORWARD", args: ["-s", from, "-d", to, ...tag, "-j", "ACCEPT"] })),
    ...pairs.map(([from, to]) => ({ table: "nat" as const, chain: "POSTROUTING", args: ["-s", from, "-d", to, ...tag, "-j", "RETURN"] })),
  ];
}

/** Shell for the link: `create` adds each missing rule at the top of its chain; `delete` removes every copy. */
export function networkLinkScript(stack: string, dockerSubnet: string, libvirtSubnet: string): { create: string; delete: string } {
  const rules = networkLinkRules(stack, dockerSubnet, libvirtSubnet);
  const ipt = (table: string, op: string, chain: string, args: string[]) => ["iptables", "-w", "-t", table, op, chain, ...(op === "-I" ? ["1"] : []), ...args].map(shellQuote).join(" ");
  return {
    create: ["set -eu", ...rules.map((r) => `${ipt(r.table, "-C", r.chain, r.args)} 2>/dev/null || ${ipt(r.table, "-I", r.chain, r.args)}`)].join("\n"),
    delete: rules.map((r) => `while ${ipt(r.table, "-D", r.chain, r.args)} 2>/dev/null; do :; done`).join("\n"),
  };
}

/**
 * Puts back any rule of the link that is missing (iptables rules do not survive a reboot or a firewall
 * reload, and Pulumi runs the link's create only once): what `homelab up` runs after `pulumi up`, so a second
 * `up` still changes nothing in state. Returns how many rules it had to add.
 */
export async function ensureNetworkLink(stack: string, dockerSubnet: string, libvirtSubnet: string): Promise<number> {
  const run = $({ quiet: true, verbose: false, nothrow: true, input: "" });
  let added = 0;
  for (const r of networkLinkRules(stack, dockerSubnet, libvirtSubnet)) {
    if ((await run`iptables -w -t ${r.table} -C ${r.chain} ${r.args}`).exitCode === 0) continue;
    const insert = await run`iptables -w -t ${r.table} -I ${r.chain} 1 ${r.args}`;
    if (insert.exitCode !== 0) throw new Error(`network link of stack ${stack}: iptables -t ${r.table} -I ${r.chain} ${r.args.join(" ")} failed: ${insert.stderr.trim()}`);
    added++;
  }
  return added;
}

/**
 * Removes every rule of the stack's network link, whatever subnets it was made with (what `homelab down`
 * sweeps after destroy: an interrupted run leaves rules state does not know). Returns how many went.
 */
export async function removeNetworkLink(stack: string): Promise<number> {
  const run = $({ quiet: true, verbose: false, nothrow: true, input: "" });
  let removed = 0;
  for (const table of ["filter", "nat"]) {
    const listed = await run`iptables -w -t ${table} -S`;
    if (listed.exitCode !== 0) continue;
    for (const rule of listed.stdout.split("\n").filter((l) => l.startsWith("-A ") && l.includes(`"${linkComment(stack)}"`))) {
      // iptables -S quotes the comment; the argv of -D takes it unquoted.
      const argv = rule.slice(3).replace(`"${linkComment(stack)}"`, "\u0000").split(" ").map((w) => (w === "\u0000" ? linkComment(stack) : w));
      if ((await run`iptables -w -t ${table} -D ${argv}`).exitCode === 0) removed++;
    }
  }
  return removed;
}

export class PlacedPlatform implements Platform {
  readonly kind = "mixed" as const;
  private readonly networks: pulumi.Resource[] = [];
  private link?: pulumi.Resource;

  constructor(
    private readonly stack: string,
    private readonly parts: ReadonlyMap<NetworkKind, Platform>,
  ) {}

  private partFor(node: NodePlan): { kind: NetworkKind; platform: Platform } {
    const kind = networkKindOf(node.platform);
    const platform = this.parts.get(kind);
    if (!platform) throw new Error(`node ${node.name} is placed on ${node.host} (${node.platform}), a kind of host this stack has no platform for`);
    return { kind, platform };
  }

  /** The plan as the platform of `kind` sees it when it makes its network and images: its own nodes only. */
  private only(plan: HomelabPlan, kind: NetworkKind): HomelabPlan {
    return { ...planOn(plan, kind), nodes: nodesOn(plan, kind) };
  }

  createNetwork(plan: HomelabPlan, opts: CreateOptions): pulumi.Resource {
    for (const [kind, platform] of this.parts) this.networks.push(platform.createNetwork(this.only(plan, kind), { ...opts, name: `${opts.name}-${kind}` }));
    const dockerNet = plan.networks.docker;
    const libvirtNet = plan.networks.libvirt;
    if (!dockerNet || !libvirtNet) throw new Error(`stack ${this.stack}: a placed stack needs a docker and a libvirt network (has ${Object.keys(plan.networks).join(", ")})`);
    const link = networkLinkScript(this.stack, dockerNet.subnet, libvirtNet.subnet);
    this.link = new command.local.Command(`${opts.name}-link`, { create: link.create, delete: link.delete, triggers: [dockerNet.subnet, libvirtNet.subnet] }, { parent: opts.parent, dependsOn: this.networks, deleteBeforeReplace: true });
    return this.link;
  }

  createImages(plan: HomelabPlan, opts: CreateOptions): pulumi.Resource[] {
    return [...this.parts].flatMap(([kind, platform]) => platform.createImages(this.only(plan, kind), opts));
  }

  createNode(plan: HomelabPlan, node: NodePlan, files: pulumi.Output<NodeFile[]>, opts: NodeOptions): NodeResources {
    const { kind, platform } = this.partFor(node);
    if (!this.link) throw new Error(`createNode ${node.name}: call createNetwork first`);
    // Every node starts once the networks are linked: a VM archives to a repository container from its first start.
    return platform.createNode(planOn(plan, kind), node, files, { ...opts, dependsOn: [...opts.dependsOn, this.link] });
  }

  handles(): Record<string, pulumi.Output<NodeHandle>> {
    return Object.assign({}, ...[...this.parts.values()].map((p) => p.handles())) as Record<string, pulumi.Output<NodeHandle>>;
  }

  runOnNode(name: string, node: NodePlan, cmd: NodeCommand, opts: { parent: pulumi.Resource; dependsOn: pulumi.Resource[] }): command.local.Command {
    return this.partFor(node).platform.runOnNode(name, node, cmd, opts);
  }
}
