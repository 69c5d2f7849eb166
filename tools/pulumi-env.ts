// The environment a real `pulumi` runs in on machines without internet (ADR 0004, tools/README.md):
// the offline toolchain that tools/toolchain.sh provides, a local file:// state backend, the
// passphrase secrets provider, and no plugin downloads. Tests (test/engine) and the homelab CLI use
// this; nothing here installs anything.
import { spawnSync } from "node:child_process";
import { accessSync, constants, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The command that provides a missing toolchain (printed in every error). */
export const TOOLCHAIN_COMMAND = "bash tools/toolchain.sh";
export const TOOLCHAIN_ENV_COMMAND = 'eval "$(bash tools/toolchain.sh --env)"';

export interface PinnedVersions {
  /** @pulumi/pulumi: the CLI and the Node.js language host (no leading "v"). */
  pulumi: string;
  /** @pulumi/command: the command provider plugin (no leading "v"). */
  command: string;
}

function stripRange(v: string): string {
  return v.trim().replace(/^[v^~=]+/, "").replace(/^v/, "");
}

/**
 * The versions package.json pins, read the same way tools/toolchain.sh reads them so the two
 * cannot drift. HOMELAB_PULUMI_VERSION overrides the CLI version (an escape hatch; see the README).
 */
export function pinnedVersions(root: string = REPO_ROOT, env: NodeJS.ProcessEnv = process.env): PinnedVersions {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
    dependencies?: Record<string, string>;
  };
  const deps = pkg.dependencies ?? {};
  const pulumi = deps["@pulumi/pulumi"];
  const command = deps["@pulumi/command"];
  if (!pulumi || !command) {
    throw new Error(`${join(root, "package.json")} must pin both @pulumi/pulumi and @pulumi/command`);
  }
  const override = env.HOMELAB_PULUMI_VERSION;
  return { pulumi: stripRange(override || pulumi), command: stripRange(command) };
}

/** Root of the toolchain cache (HOMELAB_TOOLCHAIN_CACHE, else ~/.cache/homelab-data/toolchain). */
export function toolchainCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HOMELAB_TOOLCHAIN_CACHE) return env.HOMELAB_TOOLCHAIN_CACHE;
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), ".cache"), "homelab-data", "toolchain");
}

/** Where tools/toolchain.sh puts the binaries of one pulumi version. */
export function toolchainBinDir(versions: PinnedVersions = pinnedVersions(), env: NodeJS.ProcessEnv = process.env): string {
  return join(toolchainCacheRoot(env), `v${versions.pulumi}`, "bin");
}

/**
 * Default file:// backend for stacks run by hand (tests pass a temp dir instead): state is data, not cache,
 * so it lives under the user's data dir (`homelab up` logs in here too, cli/setup.ts).
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_DATA_HOME || join(env.HOME || homedir(), ".local", "share"), "homelab-data", "state");
}

interface BinarySpec {
  name: string;
  what: (v: PinnedVersions) => string;
}

export const TOOLCHAIN_BINARIES: readonly BinarySpec[] = [
  { name: "pulumi", what: (v) => `the Pulumi CLI ${v.pulumi}` },
  { name: "pulumi-language-nodejs", what: (v) => `the Node.js language host for pulumi ${v.pulumi}` },
  { name: "pulumi-resource-command", what: (v) => `the provider plugin of @pulumi/command ${v.command}` },
];

export interface ToolchainStatus {
  ok: boolean;
  versions: PinnedVersions;
  binDir: string;
  /** Where each binary was found (the bin dir first, then PATH). */
  found: Record<string, string>;
  /** The `pulumi version` output of the CLI that was found, if any. */
  pulumiVersion?: string;
  problems: string[];
  /** A human-readable explanation naming what is missing and the command that provides it. */
  message: string;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds a binary in binDir first, then on the given PATH. */
export function findBinary(name: string, binDir: string, pathEnv: string = process.env.PATH ?? ""): string | undefined {
  for (const dir of [binDir, ...pathEnv.split(delimiter)]) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export interface ToolchainStatusOptions {
  root?: string;
  binDir?: string;
  /** PATH to search after the bin dir (default: process.env.PATH). */
  pathEnv?: string;
  env?: NodeJS.ProcessEnv;
}

/** Checks, without installing anything, that the pinned toolchain is there. */
export function toolchainStatus(opts: ToolchainStatusOptions = {}): ToolchainStatus {
  const env = opts.env ?? process.env;
  const versions = pinnedVersions(opts.root ?? REPO_ROOT, env);
  const binDir = opts.binDir ?? toolchainBinDir(versions, env);
  const pathEnv = opts.pathEnv ?? env.PATH ?? "";
  const found: Record<string, string> = {};
  const problems: string[] = [];
  let pulumiVersion: string | undefined;

  for (const bin of TOOLCHAIN_BINARIES) {
    const path = findBinary(bin.name, binDir, pathEnv);
    if (!path) {
      problems.push(`${bin.name} (${bin.what(versions)}) was not found in ${binDir} or on PATH`);
      continue;
    }
    found[bin.name] = path;
  }
  if (found.pulumi) {
    const r = spawnSync(found.pulumi, ["version"], {
      encoding: "utf8",
      timeout: 30_000,
      env: { ...env, PULUMI_SKIP_UPDATE_CHECK: "true" },
    });
    pulumiVersion = (r.stdout ?? "").trim();
    if (r.status !== 0 || pulumiVersion !== `v${versions.pulumi}`) {
      problems.push(
        `${found.pulumi} reports ${pulumiVersion || `nothing (exit ${r.status ?? r.signal})`}, ` +
          `but package.json pins @pulumi/pulumi ${versions.pulumi}`,
      );
    }
  }

  const ok = problems.length === 0;
  const message = ok
    ? `pulumi ${versions.pulumi} and @pulumi/command ${versions.command} plugins found (${found.pulumi})`
    : [
        `The offline Pulumi toolchain is not ready (package.json pins @pulumi/pulumi ${versions.pulumi}, @pulumi/command ${versions.command}):`,
        ...problems.map((p) => `  - ${p}`),
        "Plugins are never downloaded here (PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true; no internet).",
        "Provide them with:",
        `  ${TOOLCHAIN_COMMAND}                   # builds them from Go modules (minutes cold, under a second cached)`,
        `  ${TOOLCHAIN_ENV_COMMAND}   # the same, and puts them on PATH for this shell`,
      ].join("\n");
  return { ok, versions, binDir, found, pulumiVersion, problems, message };
}

export class ToolchainMissingError extends Error {
  constructor(readonly status: ToolchainStatus) {
    super(status.message);
    this.name = "ToolchainMissingError";
  }
}

/** Throws ToolchainMissingError (naming the missing binaries and `bash tools/toolchain.sh`) unless the toolchain is complete. */
export function assertToolchain(opts: ToolchainStatusOptions = {}): ToolchainStatus {
  const status = toolchainStatus(opts);
  if (!status.ok) throw new ToolchainMissingError(status);
  return status;
}

export interface PulumiEnvOptions {
  /** Directory of the file:// state backend (created). Default: PULUMI_BACKEND_URL if set, else ~/.cache/homelab-data/state. */
  backendDir?: string;
  /** Passphrase of the passphrase secrets provider. Default: PULUMI_CONFIG_PASSPHRASE(_FILE) from the environment. */
  passphrase?: string;
  /** PULUMI_HOME (workspace settings, plugin cache). Default: unchanged. */
  pulumiHome?: string;
  /** The toolchain bin dir put first on PATH. Default: toolchainBinDir(). */
  binDir?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Environment variables for running `pulumi` (the CLI or the Automation API's envVars) offline:
 * the toolchain first on PATH, a file:// backend, the passphrase secrets provider, no update
 * check, no plugin downloads, and ambient (PATH) plugins allowed.
 */
export function pulumiEnv(opts: PulumiEnvOptions = {}): Record<string, string> {
  const env = opts.env ?? process.env;
  const binDir = opts.binDir ?? toolchainBinDir(pinnedVersions(REPO_ROOT, env), env);
  const out: Record<string, string> = {
    PATH: [binDir, env.PATH ?? ""].filter(Boolean).join(delimiter),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    // Plugins are found on PATH; an inherited "true" would hide them.
    PULUMI_IGNORE_AMBIENT_PLUGINS: "false",
  };
  if (opts.backendDir || !env.PULUMI_BACKEND_URL) {
    const dir = resolve(opts.backendDir ?? defaultStateDir(env));
    mkdirSync(dir, { recursive: true });
    out.PULUMI_BACKEND_URL = `file://${dir}`;
  } else {
    out.PULUMI_BACKEND_URL = env.PULUMI_BACKEND_URL;
  }
  if (opts.passphrase !== undefined) {
    out.PULUMI_CONFIG_PASSPHRASE = opts.passphrase;
  } else if (env.PULUMI_CONFIG_PASSPHRASE !== undefined) {
    out.PULUMI_CONFIG_PASSPHRASE = env.PULUMI_CONFIG_PASSPHRASE;
  } else if (env.PULUMI_CONFIG_PASSPHRASE_FILE) {
    out.PULUMI_CONFIG_PASSPHRASE_FILE = env.PULUMI_CONFIG_PASSPHRASE_FILE;
  }
  if (opts.pulumiHome) {
    mkdirSync(opts.pulumiHome, { recursive: true });
    out.PULUMI_HOME = opts.pulumiHome;
  }
  return out;
}
