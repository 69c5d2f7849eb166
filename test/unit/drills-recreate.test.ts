// The recreate drill's pulumi hook (zx's $ with argument arrays) against a fake `pulumi` on PATH that
// records its argv, one argument a line: what runs, with which arguments, and what a failure says.
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { pulumiRecreate, RecreateRefusedError, runRecreateOnStack } from "../../drills/recreate.mts";

let dir: string;
let calls: string;
const PATH = process.env.PATH;

/** A fake pulumi: records argv (a blank line between calls), then runs `body` (sh). */
async function fakePulumi(body: string): Promise<void> {
  const bin = path.join(dir, "bin");
  await import("node:fs/promises").then((fs) => fs.mkdir(bin, { recursive: true }));
  await writeFile(path.join(bin, "pulumi"), `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a" >> "${calls}"; done\necho >> "${calls}"\n${body}\n`);
  await chmod(path.join(bin, "pulumi"), 0o755);
  process.env.PATH = `${bin}:/usr/bin:/bin`;
}

const recorded = async (): Promise<string[][]> =>
  (await readFile(calls, "utf8").catch(() => ""))
    .split("\n\n")
    .filter((c) => c.trim() !== "")
    .map((c) => c.split("\n").filter((l) => l !== ""));

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "drills-recreate-"));
  calls = path.join(dir, "calls");
});
afterEach(async () => {
  process.env.PATH = PATH;
  await rm(calls, { force: true });
  vi.restoreAllMocks();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("pulumiRecreate", () => {
  it("destroy: pulumi destroy --yes --skip-preview --stack <stack>, the stack name one argument however it is spelt", async () => {
    await fakePulumi("exit 0");
    await pulumiRecreate("my 'odd' stack")("destroy");
    expect(await recorded()).toEqual([["destroy", "--yes", "--skip-preview", "--stack", "my 'odd' stack"]]);
  });

  it("create on a stack that restores by itself (bootstrapFrom: auto): only pulumi up, the stack file untouched", async () => {
    await fakePulumi("exit 0");
    await pulumiRecreate("local", { restoresByItself: true })("create");
    expect(await recorded()).toEqual([["up", "--yes", "--skip-preview", "--stack", "local"]]);
  });

  it("create on a stack pinned to initdb: sets postgres.bootstrapFrom backup, then pulumi up", async () => {
    await fakePulumi("exit 0");
    await pulumiRecreate("local")("create");
    expect(await recorded()).toEqual([
      ["config", "set", "--path", "homelab-data:postgres.bootstrapFrom", "backup", "--stack", "local"],
      ["up", "--yes", "--skip-preview", "--stack", "local"],
    ]);
  });

  it("a failure names the command, the exit code and the last stderr lines", async () => {
    await fakePulumi("echo 'Updating (local)' >&2; echo 'error: resource homelab-local-pg-1 failed' >&2; exit 3");
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    await expect(pulumiRecreate("local")("destroy")).rejects.toThrow("pulumi destroy --yes --skip-preview --stack local failed (exit 3): Updating (local) | error: resource homelab-local-pg-1 failed");
  });

  it("a missing pulumi says how to get it on PATH", async () => {
    process.env.PATH = path.join(dir, "empty-bin");
    vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    await expect(pulumiRecreate("local")("destroy")).rejects.toThrow(/^pulumi not found on PATH: run `eval "\$\(bash tools\/toolchain\.sh --env\)"` first$/);
  });
});

describe("runRecreateOnStack refusals", () => {
  it("refuses without --yes, before running anything", async () => {
    await fakePulumi("exit 0");
    await expect(runRecreateOnStack({ stack: "local", yes: false })).rejects.toThrow(RecreateRefusedError);
    expect(await recorded()).toEqual([]);
  });

  it("refuses when destroy would delete the backups (the captured config get, its output not echoed)", async () => {
    await fakePulumi('echo true; echo "warning: from pulumi" >&2');
    const stdout = vi.spyOn(process.stdout, "write");
    const stderr = vi.spyOn(process.stderr, "write");
    await expect(runRecreateOnStack({ stack: "local", yes: true })).rejects.toThrow(/pgbackrest\.purgeBackupsOnDestroy: true: pulumi destroy would delete the backups/);
    expect(await recorded()).toEqual([["config", "get", "--path", "homelab-data:pgbackrest.purgeBackupsOnDestroy", "--stack", "local"]]);
    const echoed = [...stdout.mock.calls, ...stderr.mock.calls].map((c) => String(c[0])).join("");
    expect(echoed).not.toMatch(/warning: from pulumi|config get/);
  });
});
