// tools/pulumi-env.ts without a toolchain: pins come from package.json, the environment is
// offline-only, and a missing binary produces an error that names it and the command providing it.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  REPO_ROOT,
  ToolchainMissingError,
  assertToolchain,
  pinnedVersions,
  pulumiEnv,
  toolchainBinDir,
  toolchainStatus,
} from "../../tools/pulumi-env.ts";

const tmp = mkdtempSync(join(tmpdir(), "homelab-pulumi-env-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> };
const env = { PATH: "", HOME: tmp } as NodeJS.ProcessEnv;

describe("pinned versions", () => {
  it("come from package.json", () => {
    const v = pinnedVersions(REPO_ROOT, env);
    expect(v.pulumi).toBe(pkg.dependencies["@pulumi/pulumi"]!.replace(/^[\^~v]/, ""));
    expect(v.command).toBe(pkg.dependencies["@pulumi/command"]!.replace(/^[\^~v]/, ""));
  });

  it("HOMELAB_PULUMI_VERSION overrides the CLI version only", () => {
    const v = pinnedVersions(REPO_ROOT, { ...env, HOMELAB_PULUMI_VERSION: "v3.1.2" });
    expect(v.pulumi).toBe("3.1.2");
    expect(v.command).toBe(pinnedVersions(REPO_ROOT, env).command);
  });

  it("select a per-version bin dir in the cache", () => {
    const v = { pulumi: "3.1.2", command: "4.5.0" };
    expect(toolchainBinDir(v, { HOME: "/h" })).toBe("/h/.cache/homelab-data/toolchain/v3.1.2/bin");
    expect(toolchainBinDir(v, { HOMELAB_TOOLCHAIN_CACHE: "/c" })).toBe("/c/v3.1.2/bin");
  });
});

describe("missing toolchain", () => {
  it("names every missing binary and the command that provides it", () => {
    const empty = join(tmp, "empty-bin");
    const status = toolchainStatus({ binDir: empty, pathEnv: "", env });
    expect(status.ok).toBe(false);
    for (const name of ["pulumi", "pulumi-language-nodejs", "pulumi-resource-command"]) {
      expect(status.message).toContain(`${name} (`);
    }
    expect(status.message).toContain(`@pulumi/command ${status.versions.command}`);
    expect(status.message).toContain("bash tools/toolchain.sh");
    expect(() => assertToolchain({ binDir: empty, pathEnv: "", env })).toThrow(ToolchainMissingError);
  });

  it("rejects a pulumi CLI at another version", () => {
    const bin = join(tmp, "wrong-version-bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "pulumi"), "#!/bin/sh\necho v0.0.1\n");
    writeFileSync(join(bin, "pulumi-language-nodejs"), "#!/bin/sh\n");
    writeFileSync(join(bin, "pulumi-resource-command"), "#!/bin/sh\n");
    for (const name of ["pulumi", "pulumi-language-nodejs", "pulumi-resource-command"]) chmodSync(join(bin, name), 0o755);
    const status = toolchainStatus({ binDir: bin, pathEnv: "", env });
    expect(status.ok).toBe(false);
    expect(status.problems).toHaveLength(1);
    expect(status.message).toContain("reports v0.0.1");
  });
});

describe("pulumiEnv", () => {
  it("is offline: file backend, passphrase provider, no downloads, toolchain first on PATH", () => {
    const state = join(tmp, "state");
    const out = pulumiEnv({ backendDir: state, passphrase: "p", binDir: "/tc/bin", env: { PATH: "/usr/bin" } });
    expect(out.PATH).toBe("/tc/bin:/usr/bin");
    expect(out.PULUMI_BACKEND_URL).toBe(`file://${state}`);
    expect(out.PULUMI_CONFIG_PASSPHRASE).toBe("p");
    expect(out.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION).toBe("true");
    expect(out.PULUMI_SKIP_UPDATE_CHECK).toBe("true");
    expect(out.PULUMI_IGNORE_AMBIENT_PLUGINS).toBe("false");
  });

  it("keeps a backend URL and passphrase the user already chose", () => {
    const out = pulumiEnv({ binDir: "/tc/bin", env: { PATH: "", PULUMI_BACKEND_URL: "file:///srv/state", PULUMI_CONFIG_PASSPHRASE: "x" } });
    expect(out.PULUMI_BACKEND_URL).toBe("file:///srv/state");
    expect(out.PULUMI_CONFIG_PASSPHRASE).toBe("x");
  });
});
