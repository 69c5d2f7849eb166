// Helpers for the VM smoke test (test/vm/smoke-boot.test.ts): virsh, qemu-img and ssh through zx, every
// call bounded. Only names under the test's own prefix are ever touched (a sweep of leftovers included).
import { existsSync, readFileSync } from "node:fs";
import { $ } from "zx";
import { REPO_ROOT } from "../../tools/pulumi-env.ts";

export const CONNECT = process.env.HLVM_LIBVIRT_URI ?? "qemu:///system";

const sh = $({ quiet: true, verbose: false, nothrow: true, cwd: REPO_ROOT, input: "" });

export interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  const p = sh({ timeout: timeoutMs })`${cmd} ${args}`;
  const r = await p;
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

async function must(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`);
  return r.stdout;
}

export const virsh = (args: string[], timeoutMs?: number) => run("virsh", ["-c", CONNECT, ...args], timeoutMs);
export const mustVirsh = (args: string[], timeoutMs?: number) => must("virsh", ["-c", CONNECT, ...args], timeoutMs);
export const qemuImg = (args: string[]) => must("qemu-img", args);

export interface BaseImage {
  hash: string;
  dir: string;
  base: string;
  kernel: string;
  initrd: string;
  root: string;
}

/** Builds or reuses the base image (scripts/make-vm-image.sh prints one JSON line on stdout). */
export async function baseImage(log: (m: string) => void): Promise<{ image: BaseImage; seconds: number; stderr: string }> {
  const t0 = Date.now();
  const r = await run("bash", [`${REPO_ROOT}/scripts/make-vm-image.sh`], 15 * 60_000);
  if (r.exitCode !== 0) throw new Error(`scripts/make-vm-image.sh failed (exit ${r.exitCode}):\n${r.stderr.trim().split("\n").slice(-15).join("\n")}`);
  for (const line of r.stderr.trim().split("\n")) log(line);
  const image = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as BaseImage;
  return { image, seconds: (Date.now() - t0) / 1000, stderr: r.stderr };
}

export async function domainNames(): Promise<string[]> {
  return (await mustVirsh(["list", "--all", "--name"])).split("\n").map((s) => s.trim()).filter(Boolean);
}

export async function networkNames(): Promise<string[]> {
  return (await mustVirsh(["net-list", "--all", "--name"])).split("\n").map((s) => s.trim()).filter(Boolean);
}

/** Destroys and undefines a domain if it exists; idempotent. */
export async function removeDomain(name: string): Promise<void> {
  if (!(await domainNames()).includes(name)) return;
  await virsh(["destroy", name]);
  await mustVirsh(["undefine", name]);
}

/** Stops and undefines a network if it exists (libvirt then removes its bridge and NAT rules); idempotent. */
export async function removeNetwork(name: string): Promise<void> {
  if (!(await networkNames()).includes(name)) return;
  await virsh(["net-destroy", name]);
  await mustVirsh(["net-undefine", name]);
}

/** IPv4 destinations the host already routes (`ip -4 route`), to pick a NAT subnet that collides with none. */
export async function hostRoutes(): Promise<string[]> {
  const out = await must("ip", ["-4", "route", "show", "table", "all"]);
  return out
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((d) => /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(d));
}

/** Resident memory (KiB) of a running domain's qemu process, from libvirt's pid file. */
export function qemuRssKiB(name: string): number | undefined {
  const pidFile = `/run/libvirt/qemu/${name}.pid`;
  if (!existsSync(pidFile)) return undefined;
  const pid = readFileSync(pidFile, "utf8").trim();
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : undefined;
}

export interface SshTarget {
  ip: string;
  keyFile: string;
  knownHosts: string;
  /** Where the multiplexing socket lives (the test's own temporary directory). */
  controlDir: string;
}

/** Ends the multiplexing master for a target, if one runs. */
export async function sshClose(t: SshTarget): Promise<void> {
  await run("ssh", ["-o", `ControlPath=${t.controlDir}/cm-%C`, "-O", "exit", `root@${t.ip}`], 10_000);
}

/**
 * Runs a command as root in the VM. Host keys: the VM made its own at first boot, so the first contact
 * records it (accept-new) in a known_hosts file of the test's own; a changed key later fails.
 */
export function ssh(t: SshTarget, command: string, timeoutMs = 30_000): Promise<Run> {
  return run(
    "ssh",
    [
      "-i", t.keyFile,
      "-o", "BatchMode=yes",
      "-o", "IdentitiesOnly=yes",
      "-o", "StrictHostKeyChecking=accept-new",
      "-o", `UserKnownHostsFile=${t.knownHosts}`,
      "-o", "ConnectTimeout=5",
      "-o", "LogLevel=ERROR",
      // One connection for all the checks: a key exchange costs ~2 s under TCG.
      "-o", "ControlMaster=auto",
      "-o", `ControlPath=${t.controlDir}/cm-%C`,
      "-o", "ControlPersist=60",
      `root@${t.ip}`,
      command,
    ],
    timeoutMs,
  );
}

export async function keygen(file: string): Promise<string> {
  await must("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "hlvm-smoke-throwaway", "-f", file]);
  return readFileSync(`${file}.pub`, "utf8").trim();
}

export async function xmlValidate(file: string, kind: "domain" | "network"): Promise<Run | undefined> {
  if ((await run("sh", ["-c", "command -v virt-xml-validate"])).exitCode !== 0) return undefined;
  return run("virt-xml-validate", [file, kind]);
}
