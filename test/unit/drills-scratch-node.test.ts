// Drill-made nodes come from the stack's own ContainerSpec through the one node applier: a copy keeps the
// node's identity and takes another name, volume and node label; a rebuild is the spec itself.
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../components/config/index.ts";
import { planHomelab, redactedSecrets } from "../../components/plan.ts";
import { LABEL_NODE, LABEL_RETAIN, containerCreateArgs, containerSpecOf } from "../../components/platform/docker-node.ts";
import { copySpec, LABEL_DRILL_SCRATCH, withEnv } from "../../drills/lib/scratch-node.ts";

const spec = validateConfig("e2e-restore-dev", { docker: { subnet: "172.31.0.0/24", basePort: 25632 } });
const plan = planHomelab(spec, redactedSecrets());
const primary = containerSpecOf(plan, plan.nodes.find((n) => n.name === "pg-1")!);

describe("copySpec: a disposable copy with the node's identity", () => {
  const copy = copySpec(primary, { name: "homelab-e2e-restore-dev-pg-1-restore-pitr", nodeLabel: "pg-1-restore-pitr", env: { HOMELAB_ROLE: "restore" } });
  const args = containerCreateArgs(copy);
  const value = (flag: string) => args.filter((_, i) => args[i - 1] === flag);

  it("keeps hostname, network, limits and health check; takes another name, volume and node label", () => {
    expect(value("--name")).toEqual(["homelab-e2e-restore-dev-pg-1-restore-pitr"]);
    expect(value("--hostname")).toEqual(["homelab-e2e-restore-dev-pg-1"]);
    expect(value("--network")).toEqual(["homelab-e2e-restore-dev-net"]);
    expect(value("--memory")).toEqual([String(spec.postgres.node.memory)]);
    expect(value("--health-cmd")).toEqual(["/usr/local/bin/homelab-health"]);
    expect(value("--volume")).toEqual(["homelab-e2e-restore-dev-pg-1-restore-pitr-data:/var/lib/postgresql/data"]);
    expect(value("--label")).toContain(`${LABEL_NODE}=pg-1-restore-pitr`);
    expect(value("--label")).toContain(`${LABEL_DRILL_SCRATCH}=true`);
    expect(value("--label")).toContain("dev.homelab-data.stack=e2e-restore-dev");
    expect(value("--env")).toContain("HOMELAB_ROLE=restore");
    expect(value("--env")).toContain("HOMELAB_STANZA=main");
    expect(args[args.length - 1]).toBe("homelab/postgres:17");
  });

  it("leaves the static address and the host port to the engine, and never restarts", () => {
    expect(args).not.toContain("--ip");
    expect(value("--publish")).toEqual(["127.0.0.1::5432"]);
    expect(value("--restart")).toEqual(["no"]);
    // the original is untouched (a rebuild uses it as it was)
    expect(containerCreateArgs(primary)).toEqual(expect.arrayContaining(["--ip", "172.31.0.10", "--restart", "unless-stopped", "--publish", "127.0.0.1:25632:5432"]));
  });

  it("a copy's volume keeps the stack labels, is never retained, and is marked scratch", () => {
    expect(copy.volumes[0]!.labels).toEqual({
      ...plan.labels,
      [LABEL_RETAIN]: "false",
      [LABEL_NODE]: "pg-1-restore-pitr",
      [LABEL_DRILL_SCRATCH]: "true",
    });
  });
});

describe("withEnv", () => {
  it("overrides entries and keeps the rest; the stack's spec is not changed", () => {
    const restore = withEnv(primary, { HOMELAB_ROLE: "restore" });
    expect(restore.env.HOMELAB_ROLE).toBe("restore");
    expect(restore.env.HOMELAB_STANZA).toBe("main");
    expect(primary.env.HOMELAB_ROLE).toBe("database");
  });
});
