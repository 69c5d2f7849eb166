// Node control of VMs (the libvirt platform, ADR 0018): what DockerNodeControl does with `docker`, done with
// `virsh` (power) and `ssh` (everything inside), through the handle the topology gives (domain, URI, SSH
// target, the stack's key and pinned host keys). The node's service is the systemd unit the machine applier
// made (components/platform/machine-node.ts); its environment file is the node's env, as `docker exec` has it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { $ } from "zx";
import { envFile, envPrelude, unitName, HOLD_ARG, holdReleasePath, machineHealthTimeoutSeconds, nodeEnvPath, sshArgv, sshCloseArgv, type SshTarget } from "../../components/platform/machine-node.ts";
import { shellQuote, type RunResult } from "../../components/platform/docker-node.ts";
import type { TopologyNode } from "../../components/topology.ts";
import type { ControlledNode, ExecOptions, NodeControl, RecreateOptions } from "./node-types.ts";
import { waitFor, WaitTimeoutError } from "./wait.ts";

type LibvirtHandle = Extract<TopologyNode["handle"], { kind: "libvirt" }>;

function libvirtHandle(node: ControlledNode): LibvirtHandle {
  if (node.handle.kind !== "libvirt") throw new Error(`node ${node.name}: handle kind ${node.handle.kind} is not a libvirt handle`);
  return node.handle;
}

function targetOf(h: LibvirtHandle): SshTarget {
  const [user, host] = h.ssh.split("@") as [string, string];
  return { user, host, identityFile: h.identityFile, knownHosts: h.knownHosts };
}

const unitOf = unitName;

// quiet + verbose off: what a command reads or prints (secret files) never reaches the log.
const run = (argv: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}) =>
  $({ input: opts.input ?? "", nothrow: true, quiet: true, verbose: false, ...(opts.timeoutMs ? { timeout: opts.timeoutMs, timeoutSignal: "SIGKILL" as const } : {}) })`${argv}`;

export class MachineNodeControl implements NodeControl {
  readonly platform = "libvirt";

  private async virsh(node: ControlledNode, args: string[], allowFailure = false): Promise<RunResult> {
    const h = libvirtHandle(node);
    const out = await run(["virsh", "-q", "-c", h.uri, ...args], { timeoutMs: 120_000 });
    const r = { code: out.exitCode ?? -1, stdout: out.stdout, stderr: out.stderr };
    if (r.code !== 0 && !allowFailure) throw new Error(`${node.name}: virsh ${args[0]} ${h.domain} failed (exit ${r.code}): ${r.stderr.trim()}`);
    return r;
  }

  /** Runs a shell command line as root on the node over SSH. */
  async ssh(node: ControlledNode, remote: string, opts: { input?: string | Buffer; allowFailure?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    const out = await run(sshArgv(targetOf(libvirtHandle(node)), remote), { input: opts.input, timeoutMs: opts.timeoutMs ?? 60_000 });
    const r = { code: out.exitCode ?? -1, stdout: out.stdout, stderr: out.stderr };
    if (r.code !== 0 && !opts.allowFailure) throw new Error(`${node.name}: ssh command failed (exit ${r.code}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
    return r;
  }

  private async domState(node: ControlledNode): Promise<string> {
    const r = await this.virsh(node, ["domstate", libvirtHandle(node).domain], true);
    return r.code === 0 ? r.stdout.trim() : "missing";
  }

  /** Drops the shared SSH connection (the VM went down or is coming back: a new one must be made). */
  private async closeSsh(node: ControlledNode): Promise<void> {
    await run(sshCloseArgv(targetOf(libvirtHandle(node))), { timeoutMs: 10_000 });
  }

  /** Hard power-off (`virsh destroy`): the machine is lost, as pulling its plug. */
  async kill(node: ControlledNode): Promise<void> {
    await this.virsh(node, ["destroy", libvirtHandle(node).domain]);
    await this.closeSsh(node);
    await waitFor(`${node.name}: VM off`, async () => !(await this.isRunning(node)), { timeoutMs: 30_000, intervalMs: 100 });
  }

  /** Orderly: the node's service stops (PostgreSQL's clean shutdown); the VM stays up. */
  async stop(node: ControlledNode, timeoutS: number): Promise<void> {
    await this.ssh(node, `systemctl stop ${unitOf(node)}`, { timeoutMs: (timeoutS + 30) * 1000 });
  }

  /** Powers the VM on (its unit starts at boot) or starts the unit of a running VM. */
  async start(node: ControlledNode): Promise<void> {
    if ((await this.domState(node)) !== "running") {
      await this.closeSsh(node);
      await this.virsh(node, ["start", libvirtHandle(node).domain]);
      await this.waitSsh(node, 300_000);
    }
    await this.ssh(node, `touch ${holdReleasePath(node)}; systemctl start ${unitOf(node)}`, { timeoutMs: 120_000 });
  }

  private async waitSsh(node: ControlledNode, timeoutMs: number): Promise<void> {
    await waitFor(`${node.name}: SSH`, async () => (await this.ssh(node, "true", { allowFailure: true, timeoutMs: 20_000 })).code === 0, { timeoutMs, intervalMs: 100 });
  }

  /**
   * Boots a powered-off VM HELD: with homelab.hold=1 on its kernel command line for this boot only, so its
   * unit does not start by itself (a lost primary must not come back as a second primary). The domain's
   * stored definition is put back at once; the next boot is a normal one.
   */
  private async bootHeld(node: ControlledNode): Promise<void> {
    const domain = libvirtHandle(node).domain;
    const xml = (await this.virsh(node, ["dumpxml", "--inactive", domain])).stdout;
    if (!/<cmdline>[^<]*<\/cmdline>/.test(xml)) throw new Error(`${node.name}: domain ${domain} has no kernel command line to hold its boot with`);
    const held = xml.replace(/<cmdline>([^<]*)<\/cmdline>/, (_m, c: string) => `<cmdline>${c} ${HOLD_ARG}</cmdline>`);
    // virsh reads a definition from a file only (no secrets in it: keys are public, the rest is hardware).
    const dir = mkdtempSync(path.join(tmpdir(), "homelab-held-"));
    const define = async (text: string) => {
      const file = path.join(dir, "domain.xml");
      writeFileSync(file, text);
      await this.virsh(node, ["define", file]);
    };
    await this.closeSsh(node);
    await define(held);
    try {
      await this.virsh(node, ["start", domain]);
    } finally {
      await define(xml).finally(() => rmSync(dir, { recursive: true, force: true }));
    }
    await this.waitSsh(node, 300_000);
  }

  exec(node: ControlledNode, argv: readonly string[], opts: ExecOptions = {}): Promise<RunResult> {
    if (argv.length === 0) throw new Error(`exec on ${node.name}: empty command`);
    const env = Object.entries(opts.env ?? {}).map(([k, v]) => `export ${k}=${shellQuote(v)}; `).join("");
    const cmd = argv.map(shellQuote).join(" ");
    const remote = `${envPrelude(node)}; ${env}exec ${opts.user && opts.user !== "root" ? `runuser -u ${shellQuote(opts.user)} -- ` : ""}${cmd}`;
    return this.ssh(node, remote, { input: opts.input, allowFailure: opts.allowFailure, timeoutMs: opts.timeoutMs }).catch((e: Error) => {
      throw new Error(`${node.name}: ${argv[0]} failed: ${e.message}`);
    });
  }

  async isRunning(node: ControlledNode): Promise<boolean> {
    return (await this.domState(node)) === "running";
  }

  async removeDataVolumes(node: ControlledNode): Promise<string[]> {
    throw new Error(`${node.name}: losing the data disk of a VM is not a drill step yet (replace the VM's data disk by hand: runbooks/replace-vm.md)`);
  }

  async waitHealthy(node: ControlledNode, timeoutMs: number): Promise<void> {
    let last = "";
    await waitFor(
      `${node.name} healthy`,
      async () => {
        const r = await this.ssh(node, `${envPrelude(node)}; homelab-health`, { allowFailure: true, timeoutMs: 20_000 });
        last = (r.stdout + r.stderr).trim();
        return r.code === 0;
      },
      { timeoutMs, intervalMs: 100 },
    ).catch(async (e: unknown) => {
      if (!(e instanceof WaitTimeoutError)) throw e;
      const journal = await this.ssh(node, `journalctl -u ${unitOf(node)} -n 20 --no-pager -o cat`, { allowFailure: true, timeoutMs: 20_000 }).catch(() => undefined);
      throw new Error(`${node.name} did not become healthy within ${Math.round(timeoutMs / 1000)} s (last: ${last || "no answer"})${journal ? `; last journal lines:\n${journal.stdout.trim()}` : ""}`, { cause: e });
    });
  }

  /**
   * The node's service again with `env` over the stack's (HOMELAB_ROLE=restore for pg_rewind), or exactly as
   * the stack made it (no env), on the same data. A powered-off VM is booted held first.
   */
  async recreate(node: ControlledNode & Pick<TopologyNode, "container">, opts: RecreateOptions = {}): Promise<void> {
    if (!(await this.isRunning(node))) await this.bootHeld(node);
    const env = envFile({ ...node.container.env, ...(opts.env ?? {}) });
    await this.ssh(node, `set -e; umask 022; cat >${nodeEnvPath(node)}; touch ${holdReleasePath(node)}; systemctl reset-failed ${unitOf(node)} 2>/dev/null || true; systemctl restart ${unitOf(node)}`, { input: env, timeoutMs: 180_000 });
    const timeoutS = opts.timeoutSeconds ?? machineHealthTimeoutSeconds(node.container.healthcheck);
    await this.waitHealthy(node, timeoutS * 1000);
  }
}
