// THE node applier of machines (VMs of the libvirt platform, ADR 0018): one module turns a NodePlan into a
// systemd service on a Debian machine reached over SSH, the way docker-node.ts turns it into a container.
//   - The role logic is the container image's, not a copy: the image's build context (entrypoint, lib/, bin/,
//     install.sh) travels to the machine and its install.sh (the script the Dockerfile runs) puts it in
//     place; a systemd unit runs the image's entrypoint as the service's main process.
//   - A node's files, the image context, the unit and the remote apply script travel as ONE tar stream on
//     ssh's stdin (base64): secrets never in argv, env or a temp file, on either side.
//   - Data lives on the VM's data disk (vdb, mounted at /srv/homelab); each NodePlan volume is a directory
//     there, bind-mounted at its mount path, so replacing the VM keeps the data exactly as replacing a
//     container keeps its volumes.
// `pulumi up` runs applyMachineScript as a local command (components/platform/libvirt-platform.ts); the
// drills run the same commands through MachineNodeControl (drills/lib/nodes.ts).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import tar from "tar-stream";
import { shellQuote } from "./docker-node.ts";
import type { Healthcheck, HomelabPlan, NodeFile, NodePlan } from "./plan.ts";

/** Where a machine is reached: root over SSH with the stack's own key, its host key pinned in known_hosts. */
export interface SshTarget {
  user: string;
  host: string;
  identityFile: string;
  knownHosts: string;
}

/** One machine node as the applier makes it: everything but the files (which hold secrets). */
export interface MachineSpec {
  name: string;
  hostname: string;
  target: SshTarget;
  /** The image build context (relative to the project root) whose install.sh and role scripts the node runs. */
  context: string;
  /** systemd unit of the node. */
  unit: string;
  /** Non-secret environment of the node's processes. */
  env: Record<string, string>;
  /** Directories under the data root, bind-mounted at mountPath. */
  volumes: { name: string; mountPath: string }[];
  /** Block device holding the data root (the VM's data disk); absent: a directory on the root file system. */
  dataDevice?: string;
  healthcheck: Healthcheck;
  /** How long an apply waits for the node to report healthy (a bootstrap from backups runs first). */
  readyTimeoutSeconds: number;
  stopTimeoutSeconds: number;
  /** /etc/hosts entries: every node of the stack by hostname (containers get this from Docker's DNS). */
  hosts: { ip: string; hostname: string }[];
}

/** Where the data disk is mounted and volumes live on a machine. */
export const DATA_ROOT = "/srv/homelab";
/** Where the image contexts land on a machine (install.sh and the role scripts are installed from there). */
export const CONTEXT_ROOT = "/usr/local/src/homelab";
/** The per-node apply script inside the tar (run by ssh right after unpacking). */
export const APPLY_PATH = "/usr/local/lib/homelab/machine-apply";
/** The VM data disk as the guest sees it (components/platform/libvirt/domain.ts: serial hlvm-data). */
export const VM_DATA_DEVICE = "/dev/disk/by-id/virtio-hlvm-data";

/** The stack's SSH key and known_hosts on the machine running Pulumi and the drills (made by the platform). */
export function stackSshDir(stack: string, env: NodeJS.ProcessEnv = process.env): string {
  // The data directory of the CLI (cli/setup.ts dataDir): XDG_DATA_HOME, else ~/.local/share.
  return path.join(env.XDG_DATA_HOME || path.join(env.HOME || homedir(), ".local", "share"), "homelab-data", "ssh", stack);
}

export function stackSshTarget(stack: string, host: string, env?: NodeJS.ProcessEnv): SshTarget {
  const dir = stackSshDir(stack, env);
  return { user: "root", host, identityFile: path.join(dir, "id_ed25519"), knownHosts: path.join(dir, "known_hosts") };
}

/** The machine node of a planned node (pure). */
export function machineSpecOf(plan: Pick<HomelabPlan, "nodes">, node: NodePlan, target: SshTarget, opts: { dataDevice?: string; readyTimeoutSeconds?: number } = {}): MachineSpec {
  return {
    name: node.name,
    hostname: node.hostname,
    target,
    context: node.image.context,
    unit: unitName(node),
    env: { ...node.env },
    volumes: node.volumes.map((v) => ({ name: v.name, mountPath: v.mountPath })),
    ...(opts.dataDevice ? { dataDevice: opts.dataDevice } : {}),
    healthcheck: { ...node.healthcheck, test: [...node.healthcheck.test] },
    readyTimeoutSeconds: opts.readyTimeoutSeconds ?? machineHealthTimeoutSeconds(node.healthcheck),
    stopTimeoutSeconds: node.stopTimeoutSeconds,
    hosts: plan.nodes.map((n) => ({ ip: n.ipv4Address, hostname: n.hostname })),
  };
}

/** The systemd unit of a machine node (the applier makes it, drills stop and start it). */
export const unitName = (node: Pick<MachineSpec, "name">) => `homelab-${node.name}.service`;

/** The multiplexing socket of a target, beside the stack's known_hosts. */
const controlPath = (t: SshTarget) => `${path.dirname(t.knownHosts)}/cm-%C`;

/** ssh options of a target: key only, batch mode, the host key pinned on first contact (accept-new). */
export function sshOptions(t: SshTarget): string[] {
  return [
    "-i", t.identityFile,
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "StrictHostKeyChecking=accept-new",
    "-o", `UserKnownHostsFile=${t.knownHosts}`,
    "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=6",
    "-o", "LogLevel=ERROR",
    // One connection per machine, reused for 2 minutes: a key exchange costs 3-4 s under software emulation,
    // and a drill runs hundreds of commands. The socket sits beside the stack's key (mode 0700 directory).
    "-o", "ControlMaster=auto",
    "-o", `ControlPath=${controlPath(t)}`,
    "-o", "ControlPersist=120",
  ];
}

/** Ends the shared connection to a machine (after its VM was powered off, a reused one would hang). */
export function sshCloseArgv(t: SshTarget): string[] {
  return ["ssh", "-o", `ControlPath=${controlPath(t)}`, "-O", "exit", `${t.user}@${t.host}`];
}

/** `ssh <options> user@host <remote command>` as argv (ssh hands the command line to the remote shell). */
export function sshArgv(t: SshTarget, remote: string): string[] {
  return ["ssh", ...sshOptions(t), `${t.user}@${t.host}`, remote];
}

const sh = (argv: string[]) => argv.map(shellQuote).join(" ");

/** A node's environment file (systemd EnvironmentFile and POSIX sh `.` read it the same: quoted values). */
export function envFile(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => {
      if (!/^[A-Z_][A-Z0-9_]*$/.test(k)) throw new Error(`node environment: ${JSON.stringify(k)} is not a variable name`);
      if (/[\n\r]/.test(v)) throw new Error(`node environment: ${k} holds a newline`);
      return `${k}=${shellQuote(v)}\n`;
    })
    .join("");
}

export const nodeEnvPath = (spec: Pick<MachineSpec, "name">) => `/etc/homelab/node-${spec.name}.env`;
const IMAGE_ENV = "/usr/local/lib/homelab/image.env";

/** The shell prelude that gives a command the node's environment (what `docker exec` gets from the image). */
export function envPrelude(spec: Pick<MachineSpec, "name">): string {
  return `set -a; . ${IMAGE_ENV}; . ${nodeEnvPath(spec)}; set +a`;
}

/** Kernel argument of a held boot (the node's unit waits for a release). */
export const HOLD_ARG = "homelab.hold=1";
export const holdReleasePath = (spec: Pick<MachineSpec, "name">) => `/run/homelab-release-${spec.name}`;

/** The systemd unit: the image's entrypoint as main process, stopped like `docker stop` (SIGTERM, then KILL). */
export function unitFile(spec: MachineSpec): string {
  const mounts = spec.volumes.map((v) => v.mountPath).join(" ");
  return [
    "[Unit]",
    `Description=homelab-data node ${spec.hostname}`,
    "After=network-online.target local-fs.target",
    "Wants=network-online.target",
    ...(mounts ? [`RequiresMountsFor=${mounts}`] : []),
    // A node that keeps failing must stay visible as failed (the drills and `up` read it), not loop forever.
    "StartLimitIntervalSec=120",
    "StartLimitBurst=5",
    "",
    "[Service]",
    "Type=exec",
    `EnvironmentFile=${IMAGE_ENV}`,
    `EnvironmentFile=${nodeEnvPath(spec)}`,
    // A VM booted with homelab.hold=1 on its kernel command line (a drill bringing back a lost primary, or the
    // runbook) does NOT start the node until released: a killed primary must never come back as a second
    // primary by itself (docker: the drill never restarts the old container). Release: holdReleaseCommand.
    `ExecCondition=/bin/sh -c '! grep -qw ${HOLD_ARG} /proc/cmdline || [ -e ${holdReleasePath(spec)} ]'`,
    // /run is a tmpfs on a machine: the socket directory the image makes at build time is made at each start.
    "ExecStartPre=/usr/bin/install -d -o postgres -g postgres -m 2775 /run/postgresql",
    "ExecStart=/usr/local/bin/homelab-entrypoint",
    // SIGTERM to the entrypoint only (it stops postgres cleanly itself), SIGKILL to what is left after the timeout.
    "KillMode=mixed",
    "KillSignal=SIGTERM",
    `TimeoutStopSec=${spec.stopTimeoutSeconds}`,
    // `docker run --restart unless-stopped`: back after a crash, not after `systemctl stop`.
    "Restart=on-failure",
    "RestartSec=2",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

/** `/etc/hosts` lines the apply script keeps between its markers. */
export function hostsBlock(spec: Pick<MachineSpec, "hosts">): string {
  return spec.hosts.map((h) => `${h.ip}\t${h.hostname}`).join("\n");
}

/** How long the apply waits for the node to report healthy (as the docker applier: start period, retries, slack). */
export function machineHealthTimeoutSeconds(h: Healthcheck): number {
  return h.startPeriodSeconds + h.retries * (h.intervalSeconds + h.timeoutSeconds) + 120;
}

/** The health check as a shell command on the machine, in the node's environment. */
export function healthCommand(spec: MachineSpec): string {
  const [kind, ...cmd] = spec.healthcheck.test;
  const body = kind === "CMD-SHELL" ? cmd.join(" ") : sh(cmd);
  return `(${envPrelude(spec)}; ${body})`;
}

/**
 * The script that runs ON the machine (as root) after the tar is unpacked: the data root and volume binds,
 * install.sh (packages when missing, role scripts), /etc/hosts, the unit (re)started, then the health wait.
 * Exits non-zero with the unit's last journal lines when the node fails or stays unhealthy.
 */
export function remoteApplyScript(spec: MachineSpec, delivered: readonly string[]): string {
  const ctx = `${CONTEXT_ROOT}/${path.posix.basename(spec.context)}`;
  const timeout = spec.readyTimeoutSeconds;
  // What this apply delivers, by content: an unchanged node that runs is not restarted (a retried apply
  // must not kill a bootstrap that is still restoring from backups).
  const applied = `/var/lib/homelab/applied-${spec.name}.sha256`;
  const journal = `journalctl -u ${spec.unit} -n 30 --no-pager -o cat >&2 || true`;
  const lines = [
    "#!/bin/bash",
    `# ${spec.hostname}: generated by homelab-data (components/platform/machine-node.ts); re-run by every apply.`,
    "set -Eeuo pipefail",
    `DATA_ROOT=${DATA_ROOT}`,
    "fstab_line() { # <mount point> <line>: the one fstab line for that mount point",
    "  local tmp; tmp=$(mktemp /etc/fstab.XXXXXX)",
    "  awk -v mp=\"$1\" '$2 != mp' /etc/fstab >\"$tmp\"; printf '%s\\n' \"$2\" >>\"$tmp\"",
    "  chmod 0644 \"$tmp\"; mv \"$tmp\" /etc/fstab",
    "}",
    "mkdir -p \"$DATA_ROOT\"",
  ];
  if (spec.dataDevice) {
    const dev = shellQuote(spec.dataDevice);
    lines.push(
      `for _ in $(seq 1 30); do [ -e ${dev} ] && break; sleep 1; done`,
      `[ -e ${dev} ] || { echo "${spec.hostname}: no data disk at ${spec.dataDevice}" >&2; exit 1; }`,
      // A new disk gets a file system; a kept one (the VM was replaced) is used as it is.
      `blkid ${dev} >/dev/null 2>&1 || mkfs.ext4 -q -L homelab-data ${dev}`,
      `fstab_line "$DATA_ROOT" "${spec.dataDevice} $DATA_ROOT ext4 defaults,nofail 0 2"`,
      "mountpoint -q \"$DATA_ROOT\" || mount \"$DATA_ROOT\"",
    );
  }
  for (const v of spec.volumes) {
    const src = `$DATA_ROOT/${v.name}`;
    lines.push(
      `mkdir -p "${src}" ${shellQuote(v.mountPath)}`,
      `fstab_line ${shellQuote(v.mountPath)} "${src} ${v.mountPath} none bind,x-systemd.requires-mounts-for=$DATA_ROOT 0 0"`,
      `mountpoint -q ${shellQuote(v.mountPath)} || mount ${shellQuote(v.mountPath)}`,
    );
  }
  lines.push(
    "systemctl daemon-reload",
    // The image's own steps: packages (only when missing), users, directories, then the role scripts.
    `bash ${ctx}/install.sh packages >/var/log/homelab-install.log 2>&1 || { tail -20 /var/log/homelab-install.log >&2; exit 1; }`,
    `bash ${ctx}/install.sh files ${ctx} >>/var/log/homelab-install.log 2>&1 || { tail -20 /var/log/homelab-install.log >&2; exit 1; }`,
    "hosts_tmp=$(mktemp /etc/hosts.XXXXXX)",
    "awk '/^# BEGIN homelab-data$/{skip=1} !skip{print} /^# END homelab-data$/{skip=0}' /etc/hosts >\"$hosts_tmp\"",
    `printf '# BEGIN homelab-data\\n%s\\n# END homelab-data\\n' ${shellQuote(hostsBlock(spec))} >>"$hosts_tmp"`,
    "chmod 0644 \"$hosts_tmp\"; mv \"$hosts_tmp\" /etc/hosts",
    // What the stack applies runs, held boot or not.
    `touch ${holdReleasePath(spec)}`,
    `systemctl reset-failed ${spec.unit} 2>/dev/null || true`,
    `systemctl enable ${spec.unit} >/dev/null 2>&1`,
    `delivered=$(cat ${delivered.map(shellQuote).join(" ")} | sha256sum | cut -d' ' -f1)`,
    "mkdir -p /var/lib/homelab",
    `if systemctl is-active -q ${spec.unit} && [ "$(cat ${applied} 2>/dev/null)" = "$delivered" ]; then`,
    `  echo "${spec.hostname}: ${spec.unit} runs what was delivered: not restarted" >&2`,
    "else",
    `  systemctl restart ${spec.unit}`,
    "fi",
    `echo "$delivered" >${applied}`,
    `deadline=$(( $(date +%s) + ${timeout} ))`,
    "while :; do",
    `  if ${healthCommand(spec)} >/dev/null 2>&1; then break; fi`,
    `  state=$(systemctl is-active ${spec.unit} 2>/dev/null || true)`,
    `  if [ "$state" = failed ]; then echo "${spec.hostname}: ${spec.unit} failed while starting" >&2; ${journal}; exit 1; fi`,
    `  if [ "$(date +%s)" -ge "$deadline" ]; then echo "${spec.hostname}: not healthy within ${timeout}s (unit $state)" >&2; ${journal}; exit 1; fi`,
    "  sleep 1",
    "done",
    "",
  );
  return lines.join("\n");
}

/** Files of an image build context (what the Dockerfile COPYs), under CONTEXT_ROOT/<basename>. */
export function contextFiles(projectRoot: string, context: string): NodeFile[] {
  const root = path.resolve(projectRoot, context);
  const base = `${CONTEXT_ROOT}/${path.posix.basename(context)}`;
  const out: NodeFile[] = [];
  const walk = (rel: string) => {
    const abs = path.join(root, rel);
    const st = statSync(abs);
    if (st.isDirectory()) {
      for (const e of readdirSync(abs).sort()) {
        // Tests and their fixtures stay home: only what the image installs travels.
        if (rel === "" && (e === "testdata" || e === "smoke.sh" || e === "node_modules" || e.startsWith("."))) continue;
        walk(path.join(rel, e));
      }
    } else {
      out.push({ path: `${base}/${rel.split(path.sep).join("/")}`, content: readFileSync(abs, "utf8"), mode: st.mode & 0o111 ? 0o755 : 0o644, secret: false });
    }
  };
  walk("");
  return out;
}

/** Everything one apply delivers: the image context, the node's files, its env file, unit and apply script. */
export function machineFiles(spec: MachineSpec, nodeFiles: NodeFile[], projectRoot: string): NodeFile[] {
  const files: NodeFile[] = [
    ...contextFiles(projectRoot, spec.context),
    ...nodeFiles,
    { path: nodeEnvPath(spec), content: envFile(spec.env), mode: 0o644, secret: false },
    { path: `/etc/systemd/system/${spec.unit}`, content: unitFile(spec), mode: 0o644, secret: false },
  ];
  // The apply script names every other delivered file (paths only): "unchanged" compares their contents.
  return [...files, { path: APPLY_PATH, content: remoteApplyScript(spec, files.map((f) => f.path)), mode: 0o700, secret: false }];
}

/**
 * A tar rooted at `/` with mtime 0 on every entry (same files, same bytes: Pulumi compares the secret stdin
 * between runs). Directories are NOT entries: `tar -x` on the machine makes missing parents with its umask
 * and leaves existing ones (/etc, /usr/local) as they are.
 */
export async function machineTar(files: NodeFile[]): Promise<Buffer> {
  const pack = tar.pack();
  const epoch = new Date(0);
  for (const f of files) pack.entry({ name: f.path.slice(1), mode: f.mode, mtime: epoch }, f.content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The local script `pulumi up` runs for one machine node: the base64 tar arrives on stdin and goes straight
 * into ssh; the machine unpacks it and runs the apply script it held.
 */
export function applyMachineScript(spec: MachineSpec): string {
  const remote = `set -e; umask 022; base64 -d | tar --no-same-owner --no-overwrite-dir -xf - -C /; exec ${APPLY_PATH}`;
  return sh(sshArgv(spec.target, remote));
}

/** Stops the node's service cleanly (PostgreSQL's shutdown) before its VM goes; succeeds when unreachable. */
export function stopMachineScript(spec: MachineSpec): string {
  return `${sh(sshArgv(spec.target, `systemctl stop ${spec.unit} || true`))} </dev/null >/dev/null 2>&1 || true`;
}
