// The set-up steps `homelab up`, `homelab prepare` and the test global setup share (cli/setup.ts): where
// state and the passphrase go, that a user's own settings win, and that a missing engine is one line
// saying what to run. The steps that install or start things run for real in the engine tests and CI.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { UsageError } from "../../cli/errors.ts";
import { connectLines } from "../../cli/lifecycle-commands.ts";
import { dataDir, engineHint, ensureBackend, ensureEngine, ensurePassphrase, ensureSystemPackages, step } from "../../cli/setup.ts";
import { validateConfig } from "../../components/config/index.ts";
import { planHomelab, redactedSecrets } from "../../components/plan.ts";
import { topologyOf } from "../../components/topology.ts";
import { onlyPureLayers } from "../global-setup.ts";

const KEYS = ["HOME", "XDG_DATA_HOME", "PULUMI_BACKEND_URL", "PULUMI_HOME", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "DOCKER_HOST"] as const;
let saved: Record<string, string | undefined>;
let home: string;

beforeEach(() => {
  saved = Object.fromEntries(KEYS.map((k) => [k, process.env[k]]));
  for (const k of KEYS) delete process.env[k];
  home = mkdtempSync(path.join(tmpdir(), "homelab-setup-"));
  process.env.HOME = home;
});
afterEach(() => {
  for (const k of KEYS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  rmSync(home, { recursive: true, force: true });
});

describe("data dir, backend and passphrase", () => {
  it("keeps state under the user's data dir (XDG_DATA_HOME when set)", () => {
    expect(dataDir()).toBe(path.join(home, ".local/share/homelab-data"));
    process.env.XDG_DATA_HOME = "/srv/data";
    expect(dataDir()).toBe("/srv/data/homelab-data");
  });

  it("logs into a local file backend under the data dir when none is configured, and keeps a configured one", async () => {
    expect(await ensureBackend()).toBe(`file://${home}/.local/share/homelab-data/state (local file backend)`);
    expect(process.env.PULUMI_BACKEND_URL).toBe(`file://${home}/.local/share/homelab-data/state`);
    expect(statSync(path.join(home, ".local/share/homelab-data/state")).isDirectory()).toBe(true);
    // a `pulumi login` the user made (credentials.json) wins
    delete process.env.PULUMI_BACKEND_URL;
    mkdirSync(path.join(home, ".pulumi"));
    writeFileSync(path.join(home, ".pulumi/credentials.json"), JSON.stringify({ current: "s3://my-bucket" }));
    expect(await ensureBackend()).toBe("s3://my-bucket (configured)");
    expect(process.env.PULUMI_BACKEND_URL).toBe("s3://my-bucket");
  });

  it("generates one passphrase into a 0600 file, says so once, and reuses it", async () => {
    const first = await ensurePassphrase();
    const file = path.join(home, ".local/share/homelab-data/passphrase");
    expect(first).toMatch(/^generated .*passphrase \(mode 0600; back it up/);
    expect(process.env.PULUMI_CONFIG_PASSPHRASE_FILE).toBe(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const value = readFileSync(file, "utf8").trim();
    expect(value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    delete process.env.PULUMI_CONFIG_PASSPHRASE_FILE;
    expect(await ensurePassphrase()).toBe(file);
    expect(readFileSync(file, "utf8").trim()).toBe(value);
  });

  it("uses the user's own passphrase settings and writes no file", async () => {
    process.env.PULUMI_CONFIG_PASSPHRASE = "mine";
    expect(await ensurePassphrase()).toBe("PULUMI_CONFIG_PASSPHRASE (yours)");
    delete process.env.PULUMI_CONFIG_PASSPHRASE;
    process.env.PULUMI_CONFIG_PASSPHRASE_FILE = "/etc/my-pass";
    expect(await ensurePassphrase()).toBe("/etc/my-pass (yours)");
    expect(() => statSync(path.join(home, ".local/share/homelab-data/passphrase"))).toThrow();
  });
});

describe("engine and packages", () => {
  it("with no reachable engine, the test setup gets one line saying what to run", async () => {
    process.env.DOCKER_HOST = "unix:///nonexistent/docker.sock";
    const err = await ensureEngine({ checkOnly: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).problems).toEqual([engineHint()]);
    expect(engineHint()).toMatch(/^no Docker engine is reachable: run `/);
  });

  it("checkOnly never installs: a missing package is named with the command that installs it", async () => {
    process.env.DOCKER_HOST = "unix:///nonexistent/docker.sock";
    const r = await ensureSystemPackages({ checkOnly: true }).catch((e: unknown) => e);
    // On this machine every package is there (then: "present"); elsewhere the one line names what is missing.
    if (r instanceof UsageError) expect(r.problems[0]).toMatch(/^missing .*: run `sudo apt-get install -y /);
    else expect(r).toBe("present");
  });

  it("step prints one line with the step's detail and its time", async () => {
    const lines: string[] = [];
    expect(await step("images", async () => 3, (n) => `${n} built`, (l) => lines.push(l))).toBe(3);
    expect(lines).toEqual([expect.stringMatching(/^homelab: images: 3 built \(\d+\.\ds\)$/)]);
  });
});

describe("connect lines", () => {
  it("name each service's published address and the pgpass file, never a password", () => {
    const spec = validateConfig("local", {});
    const secrets = redactedSecrets();
    const lines = connectLines(topologyOf(spec, planHomelab(spec, secrets)), "/home/me/.local/share/homelab-data/stacks/local/pgpass");
    expect(lines[0]).toBe("  PostgreSQL primary  PGPASSFILE=/home/me/.local/share/homelab-data/stacks/local/pgpass psql -h 127.0.0.1 -p 15432 -U app app");
    expect(lines.some((l) => l.includes("-p 15433") && l.includes("read-only"))).toBe(true);
    expect(lines.some((l) => l.includes("redis-cli -h 127.0.0.1 -p 15452 --user app --askpass"))).toBe(true);
    expect(lines.some((l) => l.includes("curl http://127.0.0.1:15462/healthz"))).toBe(true);
    expect(lines.join("\n")).not.toMatch(/REDACTED/);
  });
});

describe("the test global setup", () => {
  it("skips engine and toolchain only when every file asked for is a unit or component test", () => {
    expect(onlyPureLayers(["node", "vitest", "run", "test/unit", "test/components"])).toBe(true);
    expect(onlyPureLayers(["node", "vitest", "run", "test/unit/config.test.ts"])).toBe(true);
    expect(onlyPureLayers(["node", "vitest", "run"])).toBe(false);
    expect(onlyPureLayers(["node", "vitest", "run", "test/unit", "test/e2e"])).toBe(false);
    expect(onlyPureLayers(["node", "vitest", "run", "test/engine/engine.test.ts"])).toBe(false);
  });
});
