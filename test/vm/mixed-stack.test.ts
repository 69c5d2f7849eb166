// A stack on two kinds of host (issue 10 item 4, ADR 0021): PostgreSQL primary + replica as VMs on this
// machine's hypervisor, the backup repository and Redis as containers on its Docker engine, the two stack
// networks routed to each other. As a user runs it: `homelab up` (real pulumi, real libvirt + qemu under TCG,
// the real images), the VMs archive to and back up into the repository container, the failover drill
// passes against the topology from `pulumi stack output` (the primary's VM powered off hard), a second `up`
// changes nothing, and `down` leaves no domain, network, container or iptables rule of the stack, only the
// repository's volume (removed by `down --purge-backups` at the end).
// Not in `npm test`: `npm run test:vm` (CI runs it with HOMELAB_CI_VM_STACK=1). About 15 minutes on 2 cores.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureEngine, ensureVmHost } from "../../cli/setup.ts";
import { networkLinkRules } from "../../components/platform/placed.ts";
import { toolchainStatus } from "../../tools/pulumi-env.ts";
import { vmStack, type VmStack } from "./stack-harness.ts";
import { networkNames, qemuRssKiB } from "./vm-host.ts";

const STACK = "vmmix";
const VM_SUBNET = "192.168.247.0/24";
const DOCKER_SUBNET = "172.29.247.0/24";
const status = toolchainStatus();
let s: VmStack;

const docker = (...args: string[]) => execFileSync("docker", args, { encoding: "utf8" }).trim();
const stackContainers = () => docker("ps", "-a", "--filter", `label=dev.homelab-data.stack=${STACK}`, "--format", "{{.Names}}").split("\n").filter(Boolean).sort();
const linkRules = () => ["filter", "nat"].flatMap((t) => execFileSync("iptables", ["-w", "-t", t, "-S"], { encoding: "utf8" }).split("\n")).filter((l) => l.includes(`homelab-data ${STACK} link`));

describe.runIf(status.ok)("a mixed stack: PostgreSQL VMs, the repository and Redis in containers (real libvirt, docker, pulumi)", () => {
  beforeAll(async () => {
    console.log(`[vm] ${await ensureVmHost({ yes: true })}; ${await ensureEngine({ yes: true })}`);
    s = await vmStack(STACK, {
      hosts: { hv: { kind: "libvirt" }, nas: { kind: "docker" } },
      libvirt: { subnet: VM_SUBNET, dataDisk: "2GiB" },
      docker: { subnet: DOCKER_SUBNET, basePort: 35432 },
      postgres: { host: "hv", replicas: 1, allowedClientCidrs: [VM_SUBNET], archiveTimeout: "30s", node: { memory: "320MiB" } },
      pgbackrest: { host: "nas", node: { memory: "192MiB" } },
      redis: { host: "nas" },
    });
  }, 300_000);

  afterAll(() => s?.dispose(), 1_200_000);

  it("up makes two VMs and two containers; the VMs archive to and back up into the repository container", async () => {
    const r = s.upFirst();
    expect(r.out).toMatch(/valid \(postgres on hv \(libvirt\), pgbackrest on nas \(docker\), redis on nas \(docker\)\)/);
    expect((await s.domains()).sort()).toEqual([`${s.prefix}-pg-1`, `${s.prefix}-pg-2`]);
    expect(stackContainers()).toEqual([`${s.prefix}-backup`, `${s.prefix}-redis`]);
    const psql = /PGPASSFILE=\S+ psql -h 192\.168\.247\.10 -p 5432 -U app app/.exec(r.out)?.[0] ?? "";
    expect(psql, r.out).not.toBe("");
    expect(execFileSync("sh", ["-c", `${psql} -Atc 'select pg_is_in_recovery()'`], { encoding: "utf8" }).trim()).toBe("f");
    expect(execFileSync("sh", ["-c", `${psql.replace("192.168.247.10", "192.168.247.11")} -Atc 'select pg_is_in_recovery()'`], { encoding: "utf8" }).trim()).toBe("t");
    // The repository container holds a backup of the VM primary and its archive (up's `pgbackrest check`
    // archived a segment), reached across the link.
    const info = JSON.parse(docker("exec", "-u", "postgres", `${s.prefix}-backup`, "pgbackrest", "--stanza=main", "--output=json", "info")) as { backup: unknown[]; archive: { max: string | null }[]; status: { code: number } }[];
    expect(info[0]!.status.code).toBe(0);
    expect(info[0]!.backup.length).toBeGreaterThanOrEqual(1);
    expect(info[0]!.archive[0]?.max).toMatch(/^0000000100000000000000/);
    // The container resolves the VMs by name (Docker's DNS knows only containers).
    expect(docker("exec", `${s.prefix}-backup`, "getent", "hosts", `${s.prefix}-pg-1`)).toMatch(/^192\.168\.247\.10\s/);
    expect(docker("inspect", "--format", "{{.State.Health.Status}}", `${s.prefix}-redis`)).toBe("healthy");
    expect(linkRules()).toHaveLength(4);
    expect(r.out).toMatch(/^homelab: network link: 4 rules in place/m);
    s.numbers.qemuRssMiB = [`${s.prefix}-pg-1`, `${s.prefix}-pg-2`].map((d) => ((qemuRssKiB(d) ?? 0) / 1024).toFixed(0)).join("/");
  }, 1_500_000);

  it("the failover drill passes: the primary's VM powered off hard, the replica VM promoted; the new primary archives into the container", () => {
    s.failoverPasses();
    // pgbackrest check from the repository host: finds the new primary among the VMs, switches WAL and waits
    // until the segment is in the repository, across the link.
    docker("exec", "-u", "postgres", `${s.prefix}-backup`, "pgbackrest", "--stanza=main", "check");
  }, 1_200_000);

  it("a second up changes nothing in state, and puts back a link rule lost to a firewall reload", () => {
    const lost = networkLinkRules(STACK, DOCKER_SUBNET, VM_SUBNET)[0]!;
    execFileSync("iptables", ["-w", "-t", lost.table, "-D", lost.chain, ...lost.args]);
    expect(linkRules()).toHaveLength(3);
    const r = s.upAgainUnchanged();
    expect(r.out).toMatch(/^homelab: network link: 1 missing rule\(s\) put back/m);
    expect(linkRules()).toHaveLength(4);
  }, 900_000);

  it("down leaves no domain, network, container or link rule of the stack; only the repository's volume", async () => {
    const r = s.homelab("down", "--stack", STACK);
    expect(r.code, r.out).toBe(0);
    s.numbers.downSeconds = r.seconds.toFixed(0);
    expect(await s.domains()).toEqual([]);
    expect((await networkNames()).filter((n) => n.startsWith(s.prefix))).toEqual([]);
    expect(stackContainers()).toEqual([]);
    expect(linkRules()).toEqual([]);
    expect(docker("volume", "ls", "--filter", `label=dev.homelab-data.stack=${STACK}`, "--format", "{{.Name}}")).toBe(`${s.prefix}-backup-repo`);
  }, 900_000);
});
