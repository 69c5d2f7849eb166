// The tier on VMs as a user runs it (issue 10): `homelab up` on a libvirt stack of its own (state,
// passphrase, SSH key in a temp data dir), the psql line it prints connects to the primary VM, the replica
// VM streams, the failover drill passes against the topology from `pulumi stack output` (the primary's VM
// powered off hard), a second `up` changes nothing, and `down` leaves no domain, overlay or network of the
// stack, only the backup repository's data disk (removed by `down --purge-backups` at the end).
// Real pulumi (the offline toolchain), real libvirt + qemu (TCG), the offline trixie image.
// Not in `npm test`: `npm run test:vm` (CI runs it as its own step). About 10 minutes on 2 cores.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { ensureVmHost } from "../../cli/setup.ts";
import { libvirtLayout } from "../../components/platform/libvirt-platform.ts";
import { REPO_ROOT, toolchainCacheRoot, toolchainStatus } from "../../tools/pulumi-env.ts";
import { domainNames, networkNames, qemuRssKiB } from "./vm-host.ts";

const STACK = "vmtest";
const PREFIX = `homelab-${STACK}`;
const SUBNET = "192.168.249.0/24";
const STACK_FILE = path.join(REPO_ROOT, "stacks", `Pulumi.${STACK}.yaml`);
const IMAGES = `/var/lib/libvirt/images/${PREFIX}`;
const status = toolchainStatus();
const numbers: Record<string, string> = {};
let dataHome: string;
let env: NodeJS.ProcessEnv;

function homelab(...args: string[]): { code: number; out: string; seconds: number } {
  const t0 = Date.now();
  const r = spawnSync("node", [path.join(REPO_ROOT, "bin/homelab.mjs"), ...args], { cwd: REPO_ROOT, env, encoding: "utf8", timeout: 1_500_000 });
  const out = `${r.stdout}${r.stderr}`;
  const seconds = (Date.now() - t0) / 1000;
  console.log(`[vm] homelab ${args.join(" ")} (exit ${r.status}, ${seconds.toFixed(1)} s):\n${out.split("\n").filter((l) => /^homelab|^\s+(PostgreSQL|drills)|Resources:|unchanged|created|SSH after|verdict|RTO|✔|✖/.test(l)).join("\n")}`);
  return { code: r.status ?? -1, out, seconds };
}

const stackDomains = async () => (await domainNames()).filter((d) => d.startsWith(`${PREFIX}-`));

describe.runIf(status.ok)("the kvm stack: up, failover drill, idempotent up, down (real libvirt, real pulumi)", () => {
  beforeAll(async () => {
    console.log(`[vm] ${await ensureVmHost({ yes: true })}`);
    dataHome = mkdtempSync(path.join(tmpdir(), "homelab-vm-"));
    const keep = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PULUMI_")));
    env = { ...keep, XDG_DATA_HOME: dataHome, PULUMI_HOME: path.join(dataHome, "pulumi-home"), HOMELAB_TOOLCHAIN_CACHE: toolchainCacheRoot() };
    // A leftover of a killed run: its own prefix only (its state died with its temp data dir).
    for (const d of await stackDomains()) spawnSync("sh", ["-c", `virsh -c qemu:///system destroy ${d}; virsh -c qemu:///system undefine ${d}`]);
    if ((await networkNames()).includes(`${PREFIX}-net`)) spawnSync("sh", ["-c", `virsh -c qemu:///system net-destroy ${PREFIX}-net; virsh -c qemu:///system net-undefine ${PREFIX}-net`]);
    rmSync(IMAGES, { recursive: true, force: true });
    writeFileSync(
      STACK_FILE,
      stringify({
        config: {
          "homelab-data:platform": "libvirt",
          "homelab-data:libvirt": { subnet: SUBNET, dataDisk: "2GiB" },
          "homelab-data:postgres": { replicas: 1, allowedClientCidrs: [SUBNET], archiveTimeout: "30s", node: { memory: "320MiB" } },
          "homelab-data:pgbackrest": { node: { memory: "192MiB" } },
          "homelab-data:redis": { enabled: false },
          "homelab-data:duckdb": { enabled: false },
          "homelab-data:monitoring": { enabled: false },
          "homelab-data:objectives": { failover: { rpoWrites: 0, rto: "30s", redundancyRestored: "600s" } },
        },
      }),
    );
  }, 300_000);

  afterAll(async () => {
    if (env) homelab("down", "--stack", STACK, "--purge-backups", "--yes");
    rmSync(STACK_FILE, { force: true });
    if (dataHome) rmSync(dataHome, { recursive: true, force: true });
    console.log(`[vm] numbers: ${JSON.stringify(numbers)}`);
  }, 1_200_000);

  it("up makes three VMs and prints a psql line that reaches the primary VM", async () => {
    const r = homelab("up", "--stack", STACK, "--yes");
    expect(r.code, r.out).toBe(0);
    numbers.firstUpSeconds = r.seconds.toFixed(0);
    numbers.bootToSsh = [...r.out.matchAll(/SSH after (\d+)s/g)].map((m) => m[1]).join("/");
    expect(r.out).toMatch(/^homelab: VM host: .* \(\d+\.\ds\)$/m);
    expect((await stackDomains()).sort()).toEqual([`${PREFIX}-backup`, `${PREFIX}-pg-1`, `${PREFIX}-pg-2`]);
    const psql = /PGPASSFILE=\S+ psql -h 192\.168\.249\.10 -p 5432 -U app app/.exec(r.out)?.[0];
    expect(psql, r.out).toBeDefined();
    expect(execFileSync("sh", ["-c", `${psql} -Atc 'select pg_is_in_recovery()'`], { encoding: "utf8" }).trim()).toBe("f");
    const replica = psql!.replace("192.168.249.10", "192.168.249.11");
    expect(execFileSync("sh", ["-c", `${replica} -Atc 'select pg_is_in_recovery()'`], { encoding: "utf8" }).trim()).toBe("t");
    const rss = [`${PREFIX}-pg-1`, `${PREFIX}-pg-2`, `${PREFIX}-backup`].map((d) => qemuRssKiB(d) ?? 0);
    numbers.qemuRssMiB = rss.map((k) => (k / 1024).toFixed(0)).join("/");
  }, 1_500_000);

  it("the failover drill passes against the VMs (the primary's VM powered off hard)", () => {
    const r = homelab("drill", "failover", "--stack", STACK);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/failover: PASS/);
    numbers.failoverRto = /RTO ([\d.]+ s): detection/.exec(r.out)?.[1] ?? "?";
    numbers.failoverDrillSeconds = r.seconds.toFixed(0);
  }, 1_200_000);

  it("a second up changes nothing", () => {
    const r = homelab("up", "--stack", STACK);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^\s+\d+ unchanged$/m);
    expect(r.out).not.toMatch(/^\s+[+~-] \d+ (created|updated|deleted|replaced)/m);
    numbers.secondUpSeconds = r.seconds.toFixed(0);
  }, 900_000);

  it("down leaves no domain, overlay or network of the stack; only the repository's data disk", async () => {
    const r = homelab("down", "--stack", STACK);
    expect(r.code, r.out).toBe(0);
    numbers.downSeconds = r.seconds.toFixed(0);
    expect(await stackDomains()).toEqual([]);
    expect((await networkNames()).filter((n) => n.startsWith(PREFIX))).toEqual([]);
    expect(existsSync(IMAGES) ? readdirSync(IMAGES) : []).toEqual(["backup-data.qcow2"]);
    expect(existsSync(`/sys/class/net/${libvirtLayout({ stack: STACK, libvirt: undefined }, { prefix: PREFIX }).bridge}`)).toBe(false);
  }, 900_000);
});
