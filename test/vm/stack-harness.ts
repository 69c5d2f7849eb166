// What the VM stack tests (kvm-stack, mixed-stack) share: `homelab` run as a user runs it, with state,
// passphrase and the stack's SSH key in a temp data dir of the test's own, a stack file written for the
// test, and a sweep of what a killed earlier run of the same stack left (its own prefix only).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "vitest";
import { stringify } from "yaml";
import { REPO_ROOT, toolchainCacheRoot } from "../../tools/pulumi-env.ts";
import { domainNames, networkNames } from "./vm-host.ts";

export interface VmStack {
  readonly stack: string;
  readonly prefix: string;
  /** `homelab <args>` as a user runs it; prints the lines that matter. */
  homelab(...args: string[]): { code: number; out: string; seconds: number };
  /** The stack's domains on the hypervisor. */
  domains(): Promise<string[]>;
  /** What the test measured, printed by dispose(). */
  readonly numbers: Record<string, string>;
  /** The first `up --yes`: exits 0; records its time and each VM's boot to SSH. */
  upFirst(): { out: string };
  /** `drill failover` passes; records its RTO. */
  failoverPasses(): void;
  /** `up` again: exits 0 with every resource unchanged; records its time. */
  upAgainUnchanged(): { out: string };
  /** down --purge-backups, the stack file and the temp data dir removed; the numbers printed. */
  dispose(): void;
}

/**
 * What every VM stack test leaves out and expects (software emulation is about 10x slower than the hardware).
 * Replication is async: a primary powered off may take its last acknowledged writes with it (measured: 0 or 1
 * of ~140, within 116 ms), so the objective is async's, at most 1 s of writes, not sync's zero.
 */
export const VM_STACK_DEFAULTS = {
  duckdb: { enabled: false },
  monitoring: { enabled: false },
  objectives: { failover: { rpoWrites: 10, rpo: "1s", rto: "30s", redundancyRestored: "600s" } },
};

export async function vmStack(stack: string, config: Record<string, unknown>): Promise<VmStack> {
  const prefix = `homelab-${stack}`;
  const stackFile = path.join(REPO_ROOT, "stacks", `Pulumi.${stack}.yaml`);
  const dataHome = mkdtempSync(path.join(tmpdir(), "homelab-vm-"));
  const keep = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PULUMI_")));
  const env = { ...keep, XDG_DATA_HOME: dataHome, PULUMI_HOME: path.join(dataHome, "pulumi-home"), HOMELAB_TOOLCHAIN_CACHE: toolchainCacheRoot() };
  const domains = async () => (await domainNames()).filter((d) => d.startsWith(`${prefix}-`));
  // A leftover of a killed run: its own prefix only (its state died with its temp data dir).
  for (const d of await domains()) spawnSync("sh", ["-c", `virsh -c qemu:///system destroy ${d}; virsh -c qemu:///system undefine ${d}`]);
  if ((await networkNames()).includes(`${prefix}-net`)) spawnSync("sh", ["-c", `virsh -c qemu:///system net-destroy ${prefix}-net; virsh -c qemu:///system net-undefine ${prefix}-net`]);
  rmSync(`/var/lib/libvirt/images/${prefix}`, { recursive: true, force: true });
  const full = { ...VM_STACK_DEFAULTS, ...config };
  writeFileSync(stackFile, stringify({ config: Object.fromEntries(Object.entries(full).map(([k, v]) => [`homelab-data:${k}`, v])) }));

  const homelab = (...args: string[]) => {
    const t0 = Date.now();
    const r = spawnSync("node", [path.join(REPO_ROOT, "bin/homelab.mjs"), ...args], { cwd: REPO_ROOT, env, encoding: "utf8", timeout: 1_500_000 });
    const out = `${r.stdout}${r.stderr}`;
    const seconds = (Date.now() - t0) / 1000;
    console.log(`[vm] homelab ${args.join(" ")} (exit ${r.status}, ${seconds.toFixed(1)} s):\n${out.split("\n").filter((l) => /^homelab|^\s+(PostgreSQL|Redis|drills)|Resources:|unchanged|created|SSH after|verdict|RTO|✔|✖|error/i.test(l)).join("\n")}`);
    return { code: r.status ?? -1, out, seconds };
  };
  const numbers: Record<string, string> = {};
  return {
    stack,
    prefix,
    homelab,
    domains,
    numbers,
    upFirst() {
      const r = homelab("up", "--stack", stack, "--yes");
      expect(r.code, r.out).toBe(0);
      numbers.firstUpSeconds = r.seconds.toFixed(0);
      numbers.bootToSsh = [...r.out.matchAll(/SSH after (\d+)s/g)].map((m) => m[1]).join("/");
      return r;
    },
    failoverPasses() {
      const r = homelab("drill", "failover", "--stack", stack);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/failover: PASS/);
      numbers.failoverRto = /RTO ([\d.]+ s): detection/.exec(r.out)?.[1] ?? "?";
      numbers.failoverDrillSeconds = r.seconds.toFixed(0);
    },
    upAgainUnchanged() {
      const r = homelab("up", "--stack", stack);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/^\s+\d+ unchanged$/m);
      expect(r.out).not.toMatch(/^\s+[+~-] \d+ (created|updated|deleted|replaced)/m);
      numbers.secondUpSeconds = r.seconds.toFixed(0);
      return r;
    },
    dispose() {
      homelab("down", "--stack", stack, "--purge-backups", "--yes");
      rmSync(stackFile, { force: true });
      rmSync(dataHome, { recursive: true, force: true });
      console.log(`[vm] numbers: ${JSON.stringify(numbers)}`);
    },
  };
}
