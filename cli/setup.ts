// Every set-up step between a fresh clone and a running tier, as ONE module: `homelab up` runs all of them,
// the vitest global setup (test/global-setup.ts) runs the engine, images and toolchain steps, and .ci/run
// only installs system packages and calls the README's test command. Each step prints one progress line
// with its time; a user mistake (no engine and no way to start one) is a UsageError naming what to run.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline/promises";
import { $ } from "zx";
import { IMAGES } from "../components/plan.ts";
import { waitFor } from "../drills/lib/wait.ts";
import { REPO_ROOT, pulumiEnv, toolchainStatus } from "../tools/pulumi-env.ts";
import { UsageError } from "./errors.ts";

/** Where homelab-data keeps what must outlive a shell: state backend, passphrase, logs, client files. */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_DATA_HOME || path.join(env.HOME || homedir(), ".local", "share"), "homelab-data");
}

export interface StepLog {
  (message: string): void;
}

const defaultLog: StepLog = (m) => console.error(m);

/** Runs one set-up step and prints `homelab: <name>: <detail> (<seconds>s)`. */
export async function step<T>(name: string, fn: () => Promise<T>, detail: (v: T) => string = () => "ok", log: StepLog = defaultLog): Promise<T> {
  const t0 = Date.now();
  const value = await fn();
  log(`homelab: ${name}: ${detail(value)} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  return value;
}

const sh = (opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}) => $({ quiet: true, verbose: false, nothrow: true, cwd: opts.cwd ?? REPO_ROOT, env: opts.env ?? process.env, input: opts.input ?? "" });

async function engineUp(env: NodeJS.ProcessEnv): Promise<boolean> {
  return (await sh({ env })`docker info --format {{.ServerVersion}}`).exitCode === 0;
}

async function which(bin: string): Promise<boolean> {
  return (await sh()`command -v ${bin}`).exitCode === 0;
}

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;
const isDebian = () => existsSync("/etc/debian_version");

/** What to run by hand when homelab cannot start an engine itself. */
export function engineHint(): string {
  if (!isDebian()) return "no Docker engine is reachable: install Docker for your system and start it, or set DOCKER_HOST, then run this again";
  return "no Docker engine is reachable: run `sudo apt-get install -y docker.io && sudo sh -c 'dockerd >/var/log/dockerd.log 2>&1 &'` (or `sudo systemctl start docker` where systemd runs), or rerun as root with `npx homelab up --yes` to let homelab do it";
}

async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

/** Starts dockerd in the background (no systemd on many homelab boxes and these build machines). */
async function startDockerd(): Promise<string> {
  const logFile = path.join(dataDir(), "dockerd.log");
  mkdirSync(path.dirname(logFile), { recursive: true });
  if ((await sh()`command -v systemctl`).exitCode === 0 && (await sh()`systemctl is-system-running`).stdout.trim() !== "offline") {
    const r = await sh()`systemctl start docker`;
    if (r.exitCode === 0) return "started with systemctl";
  }
  const { spawn } = await import("node:child_process");
  const out = openSync(logFile, "a");
  const child = spawn("dockerd", [], { detached: true, stdio: ["ignore", out, out] });
  child.unref();
  return `started dockerd (log ${logFile})`;
}

export interface EngineOptions {
  /** Install docker.io and start it without asking (Debian, as root). */
  yes?: boolean;
  /** Never install or start anything: only say what to run (the test setup). */
  checkOnly?: boolean;
}

/** Debian packages a machine needs for the tier, by the command that shows each is there. */
export const SYSTEM_PACKAGES: { command: string; pkg: string; why: string }[] = [
  { command: "dockerd", pkg: "docker.io", why: "the Docker engine" },
  { command: "debootstrap", pkg: "debootstrap", why: "base images made from the Debian mirror (no registry pulls)" },
  { command: "openssl", pkg: "openssl", why: "the stack's TLS certificates" },
  { command: "psql", pkg: "postgresql-client", why: "the psql line `homelab up` prints to connect" },
  { command: "perl", pkg: "perl", why: "the unit test that proves the schema's cron rules agree with homelab-cron" },
  { command: "tc", pkg: "iproute2", why: "the redis-replication-lag drill shapes a node's traffic (tc in its network namespace)" },
  { command: "nsenter", pkg: "util-linux", why: "the redis-replication-lag drill enters a node's network namespace" },
];

async function aptInstall(pkgs: string[]): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const update = await sh({ env })`apt-get update -qq`;
  const install = update.exitCode === 0 ? await sh({ env })`apt-get install -y -q ${pkgs}` : update;
  if (install.exitCode !== 0) throw new UsageError([`apt-get install -y ${pkgs.join(" ")} failed (exit ${install.exitCode}): ${install.stderr.trim().split("\n").slice(-2).join(" | ")}`]);
}

/**
 * The system packages (docker.io, debootstrap, openssl, ...): on Debian as root, missing ones are installed with
 * apt-get (asked first unless --yes); anywhere else a UsageError names the packages to install.
 */
export async function ensureSystemPackages(opts: EngineOptions = {}): Promise<string> {
  const missing: typeof SYSTEM_PACKAGES = [];
  for (const p of SYSTEM_PACKAGES) {
    // A remote or already running engine needs only the client here.
    if (p.command === "dockerd" && (process.env.DOCKER_HOST || (await engineUp(process.env)))) continue;
    if (!(await which(p.command))) missing.push(p);
  }
  if (missing.length === 0) return "present";
  const names = missing.map((p) => p.pkg);
  const what = missing.map((p) => `${p.pkg} (${p.why})`).join(", ");
  const hint = `missing ${what}: run \`sudo apt-get install -y ${names.join(" ")}\`, or rerun as root with --yes to let homelab do it`;
  if (opts.checkOnly || !isRoot() || !isDebian()) throw new UsageError([hint]);
  if (!opts.yes && !(await confirm(`Install ${names.join(" ")} with apt-get?`))) throw new UsageError([hint]);
  await aptInstall(names);
  return `installed ${names.join(" ")}`;
}

/** Debian packages a VM host needs (the libvirt platform's foundation; `npm run test:vm`), by command. */
export const VM_HOST_PACKAGES: { command: string; pkg: string; why: string }[] = [
  { command: "libvirtd", pkg: "libvirt-daemon-system", why: "the libvirt daemon that runs the VMs" },
  { command: "virsh", pkg: "libvirt-clients", why: "defining and starting VMs and networks" },
  { command: "virt-xml-validate", pkg: "libvirt-clients", why: "checking planned domain XML against libvirt's schema" },
  { command: "qemu-system-x86_64", pkg: "qemu-system-x86", why: "the emulator (TCG where there is no usable KVM)" },
  { command: "qemu-img", pkg: "qemu-utils", why: "qcow2 overlays and data disks" },
  { command: "dnsmasq", pkg: "dnsmasq-base", why: "DHCP on the VMs' NAT network" },
  { command: "iptables", pkg: "iptables", why: "the NAT rules libvirt adds for the VMs' network" },
  { command: "debootstrap", pkg: "debootstrap", why: "the offline VM base image (scripts/make-vm-image.sh)" },
  { command: "mkfs.ext4", pkg: "e2fsprogs", why: "the VM base image's root filesystem" },
  { command: "ssh", pkg: "openssh-client", why: "reaching the VMs" },
  { command: "setfacl", pkg: "acl", why: "letting libvirt-qemu open a /dev/kvm whose group it is not in" },
];

/**
 * A local libvirt host: the VM packages (installed like ensureSystemPackages) and the daemons. Without
 * systemd, `virtlogd -d` and `libvirtd -d` are started here; a running libvirtd is left alone.
 */
export async function ensureVmHost(opts: EngineOptions = {}): Promise<string> {
  const done: string[] = [];
  const missing = [];
  for (const p of VM_HOST_PACKAGES) if (!(await which(p.command))) missing.push(p);
  if (missing.length > 0) {
    const names = [...new Set(missing.map((p) => p.pkg))];
    const hint = `missing ${missing.map((p) => `${p.pkg} (${p.why})`).join(", ")}: run \`sudo apt-get install -y ${names.join(" ")}\`, or rerun as root with --yes to let homelab do it`;
    if (opts.checkOnly || !isRoot() || !isDebian()) throw new UsageError([hint]);
    if (!opts.yes && !(await confirm(`Install ${names.join(" ")} with apt-get?`))) throw new UsageError([hint]);
    await aptInstall(names);
    done.push(`installed ${names.join(" ")}`);
  }
  const up = async () => (await sh()`virsh -c qemu:///system version`).exitCode === 0;
  if (!(await up())) {
    if (opts.checkOnly || !isRoot()) throw new UsageError(["libvirtd is not reachable at qemu:///system: run `sudo virtlogd -d && sudo libvirtd -d` (or `sudo systemctl start libvirtd`)"]);
    const systemd = (await sh()`command -v systemctl`).exitCode === 0 && (await sh()`systemctl is-system-running`).stdout.trim() !== "offline";
    if (systemd) await sh()`systemctl start virtlogd libvirtd`;
    else {
      if ((await sh()`virtlogd -d`).exitCode !== 0) throw new UsageError(["`virtlogd -d` failed: see /var/log/libvirt"]);
      if ((await sh()`libvirtd -d`).exitCode !== 0) throw new UsageError(["`libvirtd -d` failed: see /var/log/libvirt"]);
    }
    await waitFor("libvirtd to answer", up, { timeoutMs: 30_000, intervalMs: 100 });
    done.push(systemd ? "started virtlogd and libvirtd with systemctl" : "started virtlogd -d and libvirtd -d");
  }
  // A /dev/kvm that qemu's probe can use but libvirt-qemu cannot open (group not `kvm`, as on some cloud
  // and nested hosts) makes libvirt throw its qemu capability cache away on EVERY lookup ("KVM was enabled
  // when probing, but it is not available now"): each `virsh define` then re-probes qemu, 12-56 s. An ACL
  // for libvirt-qemu alone fixes that without changing the device's owner or group.
  if (existsSync("/dev/kvm") && (await sh()`runuser -u libvirt-qemu -- test -r /dev/kvm -a -w /dev/kvm`).exitCode !== 0) {
    if (opts.checkOnly || !isRoot()) throw new UsageError(["libvirt-qemu cannot open /dev/kvm, so libvirt re-probes qemu on every call: run `sudo setfacl -m u:libvirt-qemu:rw /dev/kvm`"]);
    const r = await sh()`setfacl -m u:libvirt-qemu:rw /dev/kvm`;
    if (r.exitCode !== 0) throw new UsageError([`setfacl -m u:libvirt-qemu:rw /dev/kvm failed: ${r.stderr.trim()}`]);
    done.push("gave libvirt-qemu rw on /dev/kvm (ACL)");
  }
  return done.length ? done.join("; ") : "present";
}

/**
 * Finds the Docker engine, or starts it (dockerd present, as root). Anything else: a UsageError with exactly
 * what to run. ensureSystemPackages comes first (it installs docker.io where homelab may).
 */
export async function ensureEngine(opts: EngineOptions = {}): Promise<string> {
  const version = async () => (await sh()`docker info --format ${"engine {{.ServerVersion}}"}`).stdout.trim();
  if (await engineUp(process.env)) return version();
  if (opts.checkOnly || process.env.DOCKER_HOST || !isRoot() || !(await which("dockerd"))) throw new UsageError([engineHint()]);
  const did = await startDockerd();
  await waitFor("the Docker engine to answer `docker info`", () => engineUp(process.env), { timeoutMs: 60_000, intervalMs: 100 }).catch(() => {
    throw new UsageError([`the Docker engine did not come up within 60 s (${did}); see ${path.join(dataDir(), "dockerd.log")}`]);
  });
  return `${did}; ${await version()}`;
}

const IMAGE_NAMES = Object.values(IMAGES).map((i) => i.name);

/**
 * The images (debootstrap base images + docker build; a no-op of about 2 s when current). With onlyMissing,
 * images that exist are left to `pulumi up`, whose image resources rebuild one when its build context changed.
 */
export async function ensureImages(opts: { onlyMissing?: boolean } = {}): Promise<string> {
  if (opts.onlyMissing && (await sh()`docker image inspect ${IMAGE_NAMES}`).exitCode === 0) return "present (pulumi up rebuilds one whose build context changed)";
  const r = await sh()`bash scripts/build-images.sh`;
  if (r.exitCode !== 0) throw new Error(`scripts/build-images.sh failed (exit ${r.exitCode}):\n${r.stderr.trim().split("\n").slice(-15).join("\n")}`);
  const built = r.stderr.split("\n").filter((l) => /^\s+homelab\/\S+\s+built/.test(l)).length;
  return built > 0 ? `${built} built` : "current";
}

/**
 * The pinned Pulumi toolchain: a `pulumi` of the pinned version already on PATH (with its plugins), else the
 * offline build of tools/toolchain.sh (minutes cold, under a second cached). Puts it on this process's PATH
 * with the offline settings (no plugin downloads, no update check).
 */
export async function ensureToolchain(): Promise<string> {
  let status = toolchainStatus();
  if (!status.ok) {
    const r = await sh()`bash tools/toolchain.sh`;
    if (r.exitCode !== 0) throw new Error(`tools/toolchain.sh failed (exit ${r.exitCode}):\n${r.stderr.trim().split("\n").slice(-15).join("\n")}`);
    status = toolchainStatus();
    if (!status.ok) throw new Error(status.message);
  }
  const env = pulumiEnv();
  process.env.PATH = env.PATH;
  process.env.PULUMI_SKIP_UPDATE_CHECK = env.PULUMI_SKIP_UPDATE_CHECK;
  process.env.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION = env.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION;
  process.env.PULUMI_IGNORE_AMBIENT_PLUGINS = env.PULUMI_IGNORE_AMBIENT_PLUGINS;
  return `pulumi ${status.versions.pulumi}, command ${status.versions.command} (${status.found.pulumi})`;
}

/** A backend is configured: PULUMI_BACKEND_URL, or a `pulumi login` recorded in ~/.pulumi/credentials.json. */
function configuredBackend(): string | undefined {
  if (process.env.PULUMI_BACKEND_URL) return process.env.PULUMI_BACKEND_URL;
  const file = path.join(process.env.PULUMI_HOME || path.join(process.env.HOME || homedir(), ".pulumi"), "credentials.json");
  try {
    const current = (JSON.parse(readFileSync(file, "utf8")) as { current?: string }).current;
    return current || undefined;
  } catch {
    return undefined;
  }
}

/** The state backend: the one configured, else a local file backend under the data dir. */
export async function ensureBackend(): Promise<string> {
  const configured = configuredBackend();
  if (configured) {
    process.env.PULUMI_BACKEND_URL = configured;
    return `${configured} (configured)`;
  }
  const dir = path.join(dataDir(), "state");
  mkdirSync(dir, { recursive: true });
  process.env.PULUMI_BACKEND_URL = `file://${dir}`;
  return `file://${dir} (local file backend)`;
}

/**
 * The passphrase of the stack's secrets: the user's (PULUMI_CONFIG_PASSPHRASE[_FILE]) when set, else one
 * generated once into a 0600 file under the data dir and used through PULUMI_CONFIG_PASSPHRASE_FILE (never
 * printed, never in argv). Says where, the time it is made.
 */
export async function ensurePassphrase(): Promise<string> {
  if (process.env.PULUMI_CONFIG_PASSPHRASE !== undefined) return "PULUMI_CONFIG_PASSPHRASE (yours)";
  if (process.env.PULUMI_CONFIG_PASSPHRASE_FILE) return `${process.env.PULUMI_CONFIG_PASSPHRASE_FILE} (yours)`;
  const file = path.join(dataDir(), "passphrase");
  let made = false;
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, `${randomBytes(32).toString("base64url")}\n`, { mode: 0o600, flag: "wx" });
    made = true;
  }
  process.env.PULUMI_CONFIG_PASSPHRASE_FILE = file;
  return made ? `generated ${file} (mode 0600; back it up: it decrypts the stack's secrets)` : `${file}`;
}

/** `pulumi <args>` in the project root with the current environment; throws with the last lines on failure. */
export async function pulumi(args: string[], opts: { input?: string; stream?: boolean } = {}): Promise<string> {
  if (opts.stream) {
    const r = await $({ cwd: REPO_ROOT, nothrow: true, verbose: false, stdio: ["ignore", "inherit", "inherit"] })`pulumi ${args}`;
    if (r.exitCode !== 0) throw new PulumiFailed(args, r.exitCode ?? -1, "");
    return "";
  }
  const r = await sh({ input: opts.input })`pulumi ${args}`;
  if (r.exitCode !== 0) throw new PulumiFailed(args, r.exitCode ?? -1, r.stderr || r.stdout);
  return r.stdout;
}

/** A `pulumi` command failed: its output was shown (or is in the message); not a homelab bug. */
export class PulumiFailed extends Error {
  constructor(
    readonly args: string[],
    readonly exitCode: number,
    output: string,
  ) {
    super(`\`pulumi ${args.slice(0, 2).join(" ")}\` failed (exit ${exitCode})${output.trim() ? `: ${output.trim().split("\n").slice(-4).join(" | ")}` : ""}`);
    this.name = "PulumiFailed";
  }
}

/** The stack, selected (created on first use, with the passphrase secrets provider). */
export async function ensureStack(stack: string): Promise<string> {
  const list = JSON.parse((await pulumi(["stack", "ls", "--json"])) || "[]") as { name: string }[];
  if (list.some((s) => s.name === stack || s.name.endsWith(`/${stack}`))) {
    await pulumi(["stack", "select", stack]);
    return `${stack} (selected)`;
  }
  await pulumi(["stack", "init", stack, "--secrets-provider", "passphrase"]);
  return `${stack} (created)`;
}

/**
 * What any command that reads a stack through pulumi needs in this process (drills, status, secret): the
 * toolchain on PATH, the backend and the passphrase, as `homelab up` set them. Prints nothing.
 */
export async function preparePulumi(): Promise<void> {
  await ensureToolchain();
  await ensureBackend();
  await ensurePassphrase();
}
