// The tier on VMs as a user runs it (issue 10): `homelab up` on a libvirt stack of its own (state,
// passphrase, SSH key in a temp data dir), the psql line it prints connects to the primary VM, the replica
// VM streams, the failover drill passes against the topology from `pulumi stack output` (the primary's VM
// powered off hard), a second `up` changes nothing, and `down` leaves no domain, overlay or network of the
// stack, only the backup repository's data disk (removed by `down --purge-backups` at the end).
// Real pulumi (the offline toolchain), real libvirt + qemu (TCG), the offline trixie image.
// Not in `npm test`: `npm run test:vm` (CI runs it as its own step). About 10 minutes on 2 cores.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureVmHost } from "../../cli/setup.ts";
import { libvirtLayout } from "../../components/platform/libvirt-platform.ts";
import { toolchainStatus } from "../../tools/pulumi-env.ts";
import { vmStack, type VmStack } from "./stack-harness.ts";
import { networkNames, qemuRssKiB } from "./vm-host.ts";

const STACK = "vmtest";
const PREFIX = `homelab-${STACK}`;
const SUBNET = "192.168.249.0/24";
const IMAGES = `/var/lib/libvirt/images/${PREFIX}`;
const status = toolchainStatus();
let s: VmStack;
const homelab = (...args: string[]) => s.homelab(...args);
const stackDomains = () => s.domains();

describe.runIf(status.ok)("the kvm stack: up, failover drill, idempotent up, down (real libvirt, real pulumi)", () => {
  beforeAll(async () => {
    console.log(`[vm] ${await ensureVmHost({ yes: true })}`);
    s = await vmStack(STACK, {
      platform: "libvirt",
      libvirt: { subnet: SUBNET, dataDisk: "2GiB" },
      postgres: { replicas: 1, allowedClientCidrs: [SUBNET], archiveTimeout: "30s", node: { memory: "320MiB" } },
      pgbackrest: { node: { memory: "192MiB" } },
      redis: { enabled: false },
    });
  }, 300_000);

  afterAll(() => s?.dispose(), 1_200_000);

  it("up makes three VMs and prints a psql line that reaches the primary VM", async () => {
    const r = s.upFirst();
    expect(r.out).toMatch(/^homelab: VM host: .* \(\d+\.\ds\)$/m);
    expect((await stackDomains()).sort()).toEqual([`${PREFIX}-backup`, `${PREFIX}-pg-1`, `${PREFIX}-pg-2`]);
    const psql = /PGPASSFILE=\S+ psql -h 192\.168\.249\.10 -p 5432 -U app app/.exec(r.out)?.[0];
    expect(psql, r.out).toBeDefined();
    expect(execFileSync("sh", ["-c", `${psql} -Atc 'select pg_is_in_recovery()'`], { encoding: "utf8" }).trim()).toBe("f");
    const replica = psql!.replace("192.168.249.10", "192.168.249.11");
    expect(execFileSync("sh", ["-c", `${replica} -Atc 'select pg_is_in_recovery()'`], { encoding: "utf8" }).trim()).toBe("t");
    const rss = [`${PREFIX}-pg-1`, `${PREFIX}-pg-2`, `${PREFIX}-backup`].map((d) => qemuRssKiB(d) ?? 0);
    s.numbers.qemuRssMiB = rss.map((k) => (k / 1024).toFixed(0)).join("/");
  }, 1_500_000);

  it("the failover drill passes against the VMs (the primary's VM powered off hard)", () => s.failoverPasses(), 1_200_000);

  it("a second up changes nothing", () => s.upAgainUnchanged(), 900_000);

  it("down leaves no domain, overlay or network of the stack; only the repository's data disk", async () => {
    const r = homelab("down", "--stack", STACK);
    expect(r.code, r.out).toBe(0);
    s.numbers.downSeconds = r.seconds.toFixed(0);
    expect(await stackDomains()).toEqual([]);
    expect((await networkNames()).filter((n) => n.startsWith(PREFIX))).toEqual([]);
    expect(existsSync(IMAGES) ? readdirSync(IMAGES) : []).toEqual(["backup-data.qcow2"]);
    expect(existsSync(`/sys/class/net/${libvirtLayout({ stack: STACK, libvirt: undefined }, { prefix: PREFIX }).bridge}`)).toBe(false);
  }, 900_000);
});
