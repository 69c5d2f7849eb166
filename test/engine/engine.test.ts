// Engine tests: a real `pulumi` (the offline toolchain of tools/toolchain.sh, ADR 0004) drives
// the fixture program in test/engine/fixture through preview, up, a no-op up, refresh and
// destroy, with a file:// backend and the passphrase secrets provider in a temp dir.
//
// Without the toolchain these tests fail with the message that names what is missing when CI is
// set, and are skipped (with that message printed) otherwise.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LocalWorkspace, PulumiCommand, type Stack } from "@pulumi/pulumi/automation/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT, ToolchainMissingError, pulumiEnv, toolchainStatus } from "../../tools/pulumi-env.ts";

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), "fixture");
const PROJECT = "homelab-engine-fixture";
const STACK = "engine";
const PASSPHRASE = "engine-test-passphrase";
// Random per run, so finding it anywhere in the state proves a leak, not a coincidence.
const SECRET = `fixture-secret-${Math.random().toString(36).slice(2)}-${Date.now()}`;
// Pulumi's marker for an encrypted secret in state and in exported deployments.
const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

const isCI = !!process.env.CI && !["0", "false"].includes(process.env.CI.toLowerCase());
const status = toolchainStatus();

if (!status.ok && !isCI) {
  console.warn(`[test/engine] skipped: ${status.message}`);
}

describe.runIf(!status.ok && isCI)("offline Pulumi toolchain (required when CI is set)", () => {
  it("is installed", () => {
    throw new ToolchainMissingError(status);
  });
});

function allFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? allFiles(p) : [p];
  });
}

describe.runIf(status.ok)("pulumi engine on the fixture project (real CLI, file backend)", () => {
  let tmp: string;
  let stateDir: string;
  let workDir: string;
  let marker: string;
  let stack: Stack;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "homelab-engine-"));
    stateDir = join(tmp, "state");
    workDir = join(tmp, "project");
    const outDir = join(tmp, "out");
    marker = join(outDir, "marker.txt");
    cpSync(FIXTURE, workDir, { recursive: true });
    mkdirSync(outDir);
    // The fixture resolves @pulumi/* (and tsx, from nodeargs) from the repository's node_modules.
    symlinkSync(join(REPO_ROOT, "node_modules"), join(workDir, "node_modules"), "dir");

    const envVars = pulumiEnv({ backendDir: stateDir, passphrase: PASSPHRASE, pulumiHome: join(tmp, "pulumi-home") });
    const pulumiBin = status.found.pulumi!;
    const pulumiCommand = await PulumiCommand.get({ root: dirname(dirname(pulumiBin)) });
    stack = await LocalWorkspace.createStack({ stackName: STACK, workDir }, { pulumiCommand, envVars });
    await stack.setConfig("dir", { value: outDir });
    await stack.setConfig("token", { value: SECRET, secret: true });
  }, 120_000);

  afterAll(async () => {
    if (stack) {
      try {
        await stack.destroy();
        await stack.workspace.removeStack(STACK);
      } catch {
        // best effort: the temp dir goes away anyway
      }
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 300_000);

  it("the CLI reports the pinned version", async () => {
    expect(status.pulumiVersion).toBe(`v${status.versions.pulumi}`);
    const version = await stack.workspace.pulumiVersion;
    expect(version).toBe(status.versions.pulumi);
  });

  it("preview plans the stack and the command without running it", async () => {
    const result = await stack.preview();
    expect(result.changeSummary).toEqual({ create: 2 });
    expect(existsSync(marker)).toBe(false);
  }, 300_000);

  it("up runs the command with the secret config value", async () => {
    const result = await stack.up();
    expect(result.summary.result).toBe("succeeded");
    expect(result.summary.resourceChanges).toEqual({ create: 2 });
    expect(readFileSync(marker, "utf8")).toBe(SECRET);
    expect(result.outputs.markerPath).toEqual({ value: marker, secret: false });
    expect(result.outputs.createStdout?.secret).toBe(true);
    expect(result.outputs.createStdout?.value).toBe(`wrote ${marker}`);
  }, 300_000);

  it("a second up reports zero changes", async () => {
    const result = await stack.up();
    expect(result.summary.result).toBe("succeeded");
    expect(result.summary.resourceChanges).toEqual({ same: 2 });
    const preview = await stack.preview({ expectNoChanges: true });
    expect(preview.changeSummary).toEqual({ same: 2 });
  }, 300_000);

  it("the secret round-trips encrypted: ciphertext in state and config, plaintext nowhere", async () => {
    const stateFile = join(stateDir, ".pulumi", "stacks", PROJECT, `${STACK}.json`);
    const text = readFileSync(stateFile, "utf8");
    expect(text).not.toContain(SECRET);

    const state = JSON.parse(text) as {
      checkpoint: { latest: { resources: { type: string; inputs?: Record<string, unknown>; outputs?: Record<string, unknown> }[] } };
    };
    const cmd = state.checkpoint.latest.resources.find((r) => r.type === "command:local:Command");
    expect(cmd).toBeDefined();
    for (const props of [cmd!.inputs, cmd!.outputs]) {
      const env = props?.environment as Record<string, Record<string, string>>;
      expect(env.FIXTURE_TOKEN?.[SECRET_SIG_KEY]).toBe(SECRET_SIG);
      expect(env.FIXTURE_TOKEN?.ciphertext).toMatch(/^v1:/);
    }

    // Every file the backend wrote (history, backups) and the stack's config file.
    for (const f of allFiles(stateDir)) expect(readFileSync(f, "utf8"), f).not.toContain(SECRET);
    const stackConfig = readFileSync(join(workDir, `Pulumi.${STACK}.yaml`), "utf8");
    expect(stackConfig).not.toContain(SECRET);
    expect(stackConfig).toMatch(/secure: v1:/);

    // ...and it decrypts back to the value that was set.
    expect(await stack.getConfig("token")).toEqual({ value: SECRET, secret: true });
    // An export (which decrypts) still marks the value as a secret.
    const exported = await stack.exportStack();
    const exportedCmd = (exported.deployment.resources as { type: string; inputs: { environment: Record<string, Record<string, string>> } }[])
      .find((r) => r.type === "command:local:Command");
    expect(exportedCmd?.inputs.environment.FIXTURE_TOKEN?.[SECRET_SIG_KEY]).toBe(SECRET_SIG);
  }, 300_000);

  it("refresh finds no drift", async () => {
    const result = await stack.refresh();
    expect(result.summary.result).toBe("succeeded");
    expect(result.summary.resourceChanges).toEqual({ same: 2 });
  }, 300_000);

  it("destroy runs the delete command and empties the stack", async () => {
    const result = await stack.destroy();
    expect(result.summary.result).toBe("succeeded");
    expect(result.summary.resourceChanges).toEqual({ delete: 2 });
    expect(existsSync(marker)).toBe(false);
    const after = await stack.exportStack();
    expect(after.deployment.resources ?? []).toEqual([]);
  }, 300_000);
});
