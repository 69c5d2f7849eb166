import { describe, expect, it } from "vitest";
import { validateConfig } from "../../components/config/index.ts";
import { PlanError, addressPlan, imageNamespace, planHomelab, postUpSteps } from "../../components/plan.ts";
import { containerCreateArgs, containerSpecOf, filesTar, networkCreateArgs } from "../../components/platform/docker-node.ts";
import { startOrder } from "../../components/platform/plan.ts";
import { redactedSecrets } from "../../components/plan.ts";
import tar from "tar-stream";
import { Readable } from "node:stream";

const spec = validateConfig("t", { postgres: { replicas: 2, replicationMode: "sync" }, redis: { replica: true } });
const plan = planHomelab(spec, redactedSecrets());
const node = (name: string) => plan.nodes.find((n) => n.name === name)!;

describe("planHomelab", () => {
  it("plans a primary, replicas, the repository, redis (+replica) and duckdb on fixed addresses", () => {
    expect(plan.nodes.map((n) => `${n.name}:${n.role}:${n.ipv4Address}`)).toEqual([
      "pg-1:postgres-primary:172.28.0.10",
      "pg-2:postgres-replica:172.28.0.11",
      "pg-3:postgres-replica:172.28.0.12",
      "backup:backup-repository:172.28.0.20",
      "redis:redis:172.28.0.30",
      "redis-replica:redis-replica:172.28.0.31",
      "duckdb:duckdb:172.28.0.40",
      "monitoring:monitoring:172.28.0.41",
    ]);
    expect(startOrder(plan.nodes).map((n) => n.name).indexOf("pg-1")).toBeLessThan(startOrder(plan.nodes).map((n) => n.name).indexOf("pg-2"));
  });

  it("gives every PG node the same settings, naming every member as a possible sync standby", () => {
    const confs = ["pg-1", "pg-2", "pg-3"].map((n) => node(n).files.find((f) => f.path === "/etc/homelab/postgresql.conf")!.content);
    expect(new Set(confs).size).toBe(1);
    expect(confs[0]).toMatch(/^synchronous_standby_names = 'ANY 1 \(pg_1, pg_2, pg_3\)'$/m);
    expect(node("pg-2").env).toMatchObject({ HOMELAB_ROLE: "database", HOMELAB_BOOTSTRAP_FROM: "clone", HOMELAB_APPLICATION_NAME: "pg_2", HOMELAB_REPLICATION_SLOT: "pg_2", HOMELAB_PRIMARY_HOST: "homelab-t-pg-1" });
  });

  it("keeps passwords out of env and marks every secret file secret", () => {
    for (const n of plan.nodes) {
      expect(JSON.stringify(n.env)).not.toMatch(/REDACTED/);
      for (const f of n.files) if (f.content.includes("REDACTED-") || f.path.endsWith(".key")) expect(f.secret, `${n.name}:${f.path}`).toBe(true);
    }
  });

  it("retains the repository volume on destroy unless purgeBackupsOnDestroy", () => {
    expect(node("backup").volumes[0]?.retainOnDestroy).toBe(true);
    const purge = planHomelab(validateConfig("t", { pgbackrest: { purgeBackupsOnDestroy: true } }), redactedSecrets());
    expect(purge.nodes.find((n) => n.name === "backup")!.volumes[0]?.retainOnDestroy).toBe(false);
    expect(node("pg-1").volumes[0]?.retainOnDestroy).toBe(false);
  });

  it("schedules full and diff backups and bootstraps the stanza after up", () => {
    const cron = node("backup").files.find((f) => f.path === "/etc/homelab/crontab")!.content;
    expect(cron).toContain("0 3 * * 0 pgbackrest --stanza=main --type=full backup");
    expect(cron).toContain("0 3 * * 1-6 pgbackrest --stanza=main --type=diff backup");
    expect(postUpSteps(plan, "main").map((s) => s.command.join(" "))).toEqual([`sh -c i=0; until pgbackrest --stanza=main stanza-create; do rc=$?; i=$((i+1)); [ "$rc" = 50 ] && [ "$i" -lt 30 ] || exit "$rc"; sleep 1; done`, "pgbackrest --stanza=main check", "pgbackrest --stanza=main --type=full backup"]);
  });

  it("gives both Redis nodes the admin user and the app/admin passwords the redis drill reads on the node", () => {
    for (const name of ["redis", "redis-replica"]) {
      const files = node(name).files;
      const acl = files.find((f) => f.path === "/etc/homelab/users.acl")!.content;
      expect(acl).toMatch(/^user admin on resetpass #[0-9a-f]{64} ~\* &\* \+@all$/m);
      for (const user of ["health", "app", "admin"]) {
        expect(files.find((f) => f.path === `/etc/homelab/secrets/${user}.password`), `${name}: ${user}`).toMatchObject({ content: `REDACTED-redis${user[0]!.toUpperCase()}${user.slice(1)}Password`, mode: 0o600, secret: true });
      }
    }
  });

  it("rejects a subnet too small for the fixed host offsets", () => {
    expect(() => addressPlan("10.0.0.0/28")).toThrow(PlanError);
    expect(addressPlan("10.1.2.0/24").at(10)).toBe("10.1.2.10");
  });
});

describe("docker CLI argv", () => {
  it("creates a node with resources, health, restart policy, static address and loopback-published port", () => {
    const args = containerCreateArgs(containerSpecOf(plan, node("pg-1")));
    const joined = args.join(" ");
    expect(args[0]).toBe("create");
    expect(joined).toContain(`--memory ${512 * 1024 ** 2}`);
    expect(joined).toContain("--restart unless-stopped");
    expect(joined).toContain("--ip 172.28.0.10");
    expect(joined).toContain("--publish 127.0.0.1:15432:5432");
    expect(joined).toContain("--health-cmd /usr/local/bin/homelab-health");
    expect(joined).toContain("--volume homelab-t-pg-1-data:/var/lib/postgresql/data");
    expect(joined).not.toMatch(/REDACTED/);
    expect(args.at(-1)).toBe("homelab/postgres:17");
    expect(networkCreateArgs(plan)).toContain("172.28.0.0/24");
  });

  it("packs node files into a tar with their modes", async () => {
    const buf = await filesTar(node("pg-1").files);
    const extract = tar.extract();
    const entries: Record<string, number> = {};
    const done = new Promise<void>((resolve) => extract.on("finish", () => resolve()));
    extract.on("entry", (header, stream, next) => {
      entries[header.name] = header.mode ?? 0;
      stream.on("end", next);
      stream.resume();
    });
    Readable.from(buf).pipe(extract);
    await done;
    expect(entries["etc/homelab/secrets/app.password"]).toBe(0o600);
    expect(entries["etc/homelab/tls/node.key"]).toBe(0o600);
    expect(entries["etc/homelab/postgresql.conf"]).toBe(0o644);
    expect(entries["etc/homelab"]).toBe(0o755);
  });
});

describe("imageNamespace (HOMELAB_IMAGE_NAMESPACE)", () => {
  it("defaults to homelab and takes a docker repository path", () => {
    expect(imageNamespace({})).toBe("homelab");
    expect(imageNamespace({ HOMELAB_IMAGE_NAMESPACE: "registry.lan/wt-b" })).toBe("registry.lan/wt-b");
  });
  it("refuses a value docker cannot tag, naming the variable, the value and what is accepted", () => {
    expect(() => imageNamespace({ HOMELAB_IMAGE_NAMESPACE: "Homelab B" })).toThrow(/^HOMELAB_IMAGE_NAMESPACE: got "Homelab B"; expected a docker repository path/);
    expect(() => imageNamespace({ HOMELAB_IMAGE_NAMESPACE: "" })).toThrow(/HOMELAB_IMAGE_NAMESPACE: got ""/);
  });
});
