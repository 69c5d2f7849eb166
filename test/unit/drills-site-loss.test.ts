// The site-loss drill's refusals (before anything is touched) and its pulumi hook: destroy, then repo1's
// volume removed, then up; against a fake `pulumi` on PATH and a recording NodeControl.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { validateConfig } from "../../components/config/index.ts";
import { planHomelab, redactedSecrets } from "../../components/plan.ts";
import { topologyOf } from "../../components/topology.ts";
import type { ControlledNode, NodeControl } from "../../drills/lib/nodes.ts";
import { RecreateRefusedError } from "../../drills/recreate.mts";
import { pulumiSiteLoss, runSiteLossOnStack } from "../../drills/site-loss.mts";

let dir: string;
const PATH = process.env.PATH;
const topologyOfConfig = (config: Record<string, unknown>) => {
  const spec = validateConfig("s", config);
  return topologyOf(spec, planHomelab(spec, redactedSecrets()));
};
async function topologyFile(config: Record<string, unknown>): Promise<string> {
  const file = path.join(dir, `topology-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify(topologyOfConfig(config)));
  return file;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "drills-site-loss-"));
});
afterEach(() => {
  process.env.PATH = PATH;
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("runSiteLossOnStack refuses before touching anything", () => {
  it.each([
    ["without --yes", { pgbackrest: { repo2: { type: "sftp" } } }, false, /destroys every PostgreSQL node and repo1 of stack s .*pass --yes/],
    ["without repo2", {}, true, /^stack s has no pgbackrest\.repo2: there is nothing off the machine to rebuild from/],
    ["with bootstrapFrom: initdb", { postgres: { bootstrapFrom: "initdb" }, pgbackrest: { repo2: { type: "sftp" } } }, true, /postgres\.bootstrapFrom: initdb: a rebuilt primary would not restore/],
    ["when destroy would purge repo2's stand-in", { pgbackrest: { purgeBackupsOnDestroy: true, repo2: { type: "sftp" } } }, true, /purgeBackupsOnDestroy: true: pulumi destroy would delete repo2's stand-in volume too/],
  ])("%s", async (_what, config, yes, message) => {
    const err = await runSiteLossOnStack({ stack: "s", yes, topologyFile: await topologyFile(config) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RecreateRefusedError);
    expect((err as Error).message).toMatch(message);
  });
});

describe("pulumiSiteLoss", () => {
  it("destroy: pulumi destroy, then repo1's volume (the repository node's) removed; create: pulumi up only", async () => {
    const bin = path.join(dir, "bin");
    const calls = path.join(dir, "calls");
    await mkdir(bin, { recursive: true });
    await writeFile(path.join(bin, "pulumi"), `#!/bin/sh\necho "pulumi $*" >> "${calls}"\n`);
    await chmod(path.join(bin, "pulumi"), 0o755);
    process.env.PATH = `${bin}:/usr/bin:/bin`;
    const removed: string[] = [];
    const ctl = { removeDataVolumes: async (n: ControlledNode) => { removed.push(...n.dataVolumes); await writeFile(calls, `volume rm ${n.dataVolumes.join(" ")}\n`, { flag: "a" }); return n.dataVolumes; } } as unknown as NodeControl;
    const hook = pulumiSiteLoss("s", topologyOfConfig({ pgbackrest: { repo2: { type: "sftp" } } }), ctl);
    await hook("destroy");
    await hook("create");
    expect((await readFile(calls, "utf8")).trim().split("\n")).toEqual([
      "pulumi destroy --yes --skip-preview --stack s",
      "volume rm homelab-s-backup-repo",
      "pulumi up --yes --skip-preview --stack s",
    ]);
    expect(removed).not.toContain("homelab-s-sftp-repo2");
  });
});
