// Placement across hosts (issue 10 item 4, ADR 0021): `hosts:` and `<section>.host` in the schema (every
// problem named by key, value and what is accepted), the plan that puts each node on its host's network,
// the containers that learn the VMs' names, the topology that says what made each node, and the iptables
// rules that route the two networks to each other.
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../components/config/index.ts";
import { planHomelab, redactedSecrets } from "../../components/plan.ts";
import { containerCreateArgs, containerSpecOf } from "../../components/platform/docker-node.ts";
import { networkLinkRules, networkLinkScript } from "../../components/platform/placed.ts";
import { kindsOfPlan, nodesOn, planOn, platformOfPlan, publishedOf } from "../../components/platform/plan.ts";
import { handlesOf, topologyOf } from "../../components/topology.ts";
import { problemsOf } from "./config-problems.ts";


const mixed = (extra: Record<string, unknown> = {}) =>
  validateConfig("mix", {
    hosts: { hv: { kind: "libvirt" }, nas: { kind: "docker" } },
    libvirt: { subnet: "192.168.248.0/24" },
    postgres: { host: "hv", replicas: 1 },
    pgbackrest: { host: "nas" },
    redis: { host: "nas" },
    duckdb: { enabled: false },
    monitoring: { enabled: false },
    ...extra,
  });

describe("hosts and placement in the schema", () => {
  it("without hosts: every section on the stack's platform, as before", () => {
    const spec = validateConfig("local", {});
    expect(new Set(Object.values(spec.placement).map((p) => `${p.host}/${p.kind}`))).toEqual(new Set(["docker/docker"]));
    expect(platformOfPlan(planHomelab(spec, redactedSecrets()))).toBe("docker");
  });

  it("places each section on its host; unplaced ones go to the host of the stack's platform", () => {
    const spec = mixed({ duckdb: { enabled: true } });
    expect(spec.placement.postgres).toEqual({ host: "hv", kind: "libvirt" });
    expect(spec.placement.pgbackrest).toEqual({ host: "nas", kind: "docker" });
    // duckdb.host not given: the docker host, since platform defaults to docker.
    expect(spec.placement.duckdb).toEqual({ host: "nas", kind: "docker" });
  });

  it("refuses bad hosts and placements, each naming the key, the value and what is accepted", () => {
    expect(problemsOf(() => validateConfig("x", { postgres: { host: "hv" } }))).toEqual([
      'homelab-data:postgres.host: got "hv"; the stack has no hosts: section to name it in (hosts: { hv: { kind: docker | libvirt } })',
    ]);
    expect(problemsOf(() => mixed({ pgbackrest: { host: "nuc" } }))).toEqual(['homelab-data:pgbackrest.host: got "nuc"; expected one of: hv, nas (the keys of hosts)']);
    expect(problemsOf(() => mixed({ hosts: { hv: { kind: "libvirt" }, nas: { kind: "docker" }, nuc: { kind: "ssh", address: "root@nuc" } } }))).toEqual([
      'homelab-data:hosts.nuc.kind: got "ssh"; ssh hosts (an existing Debian machine configured over SSH) are not built yet: expected docker or libvirt',
    ]);
    expect(problemsOf(() => mixed({ hosts: { hv: { kind: "libvirt" }, nas: { kind: "docker" }, nas2: { kind: "docker" } } }))).toEqual([
      'homelab-data:hosts.nas2: got "docker"; a second docker host beside nas: one Docker engine and one hypervisor per stack today (remote engines and hypervisors as further hosts are not built yet)',
    ]);
    // Disabled sections (duckdb, monitoring here) make no node and need no host.
    expect(problemsOf(() => mixed({ hosts: { hv: { kind: "libvirt" } }, pgbackrest: {}, redis: {} }))).toEqual([
      "homelab-data:pgbackrest.host: got nothing; required: hosts has no docker host (the stack's platform) to put pgbackrest on by default; expected one of: hv",
      "homelab-data:redis.host: got nothing; required: hosts has no docker host (the stack's platform) to put redis on by default; expected one of: hv",
    ]);
    expect(problemsOf(() => mixed({ redis: { host: "hv" } }))).toEqual([
      "homelab-data:redis.enabled: got true; VMs (libvirt) hold PostgreSQL and the backup repository; Redis is not built on VMs yet: turn it off, or place it on a docker host (hosts:, redis.host)",
    ]);
    expect(problemsOf(() => mixed({ libvirt: undefined }))).toEqual(["homelab-data:libvirt: got nothing; a libvirt host needs a libvirt: { uri } section"]);
    expect(problemsOf(() => mixed({ docker: { host: "ssh://root@nas" } }))).toEqual([
      'homelab-data:docker.host: got "ssh://root@nas"; with nodes on both the Docker engine and the hypervisor, the engine must be this machine\'s (the two stack networks are routed to each other here): leave docker.host out',
    ]);
    expect(problemsOf(() => mixed({ postgres: { host: "hv", replicas: 1, ha: "patroni" }, objectives: { failover: { rto: "30s" } } }))).toEqual([
      "homelab-data:postgres.ha: got true; VMs (libvirt) hold PostgreSQL and the backup repository; postgres.ha: patroni (Patroni, etcd and HAProxy) is not built on VMs yet: turn it off, or place it on a docker host (hosts:, postgres.host)",
    ]);
  });
});

describe("a placed plan", () => {
  const spec = mixed();
  const plan = planHomelab(spec, redactedSecrets());
  const node = (name: string) => plan.nodes.find((n) => n.name === name)!;

  it("puts each node on its host's network at the offsets of a single-host stack", () => {
    expect(plan.nodes.map((n) => [n.name, n.host, n.platform, n.ipv4Address])).toEqual([
      ["pg-1", "hv", "libvirt", "192.168.248.10"],
      ["pg-2", "hv", "libvirt", "192.168.248.11"],
      ["backup", "nas", "docker", "172.28.0.20"],
      ["redis", "nas", "docker", "172.28.0.30"],
    ]);
    expect(plan.networks).toEqual({
      libvirt: { name: "homelab-mix-net", subnet: "192.168.248.0/24", gateway: "192.168.248.1" },
      docker: { name: "homelab-mix-net", subnet: "172.28.0.0/24", gateway: "172.28.0.1" },
    });
    expect([...kindsOfPlan(plan)].sort()).toEqual(["docker", "libvirt"]);
    expect(platformOfPlan(plan)).toBe("mixed");
    expect(nodesOn(plan, "libvirt").map((n) => n.name)).toEqual(["pg-1", "pg-2"]);
    expect(planOn(plan, "libvirt").network.subnet).toBe("192.168.248.0/24");
    // The primary's config names the repository by its container address's host name; pg_hba the replica by its VM address.
    expect(node("pg-1").env.HOMELAB_REPO_HOST ?? node("pg-1").files.find((f) => f.path.endsWith("pgbackrest.conf"))?.content).toContain("homelab-mix-backup");
    expect(node("pg-1").files.find((f) => f.path.endsWith("pg_hba.conf"))?.content).toContain("192.168.248.11/32");
  });

  it("gives containers the VMs' names (Docker's DNS knows only containers) and the host the VMs' own addresses", () => {
    const repo = containerSpecOf(planOn(plan, "docker"), node("backup"));
    expect(repo.extraHosts).toEqual([
      { hostname: "homelab-mix-pg-1", ip: "192.168.248.10" },
      { hostname: "homelab-mix-pg-2", ip: "192.168.248.11" },
    ]);
    expect(containerCreateArgs(repo).join(" ")).toContain("--add-host homelab-mix-pg-1:192.168.248.10 --add-host homelab-mix-pg-2:192.168.248.11");
    // A single-host docker stack gets none.
    const local = planHomelab(validateConfig("local", {}), redactedSecrets());
    expect(containerSpecOf(local, local.nodes[0]!).extraHosts).toBeUndefined();
    expect(publishedOf(plan, node("pg-1"))).toEqual({ host: "192.168.248.10", port: 5432 });
    expect(publishedOf(plan, node("redis"))).toEqual({ host: "127.0.0.1", port: node("redis").ports[0]!.hostPort });
  });

  it("records what made each node in the topology: a libvirt handle for VMs, a docker one for containers", () => {
    const t = topologyOf(spec, plan, handlesOf(spec, plan));
    expect(t.platform).toBe("mixed");
    expect(t.nodes.map((n) => [n.name, n.handle.kind])).toEqual([
      ["pg-1", "libvirt"],
      ["pg-2", "libvirt"],
      ["backup", "docker"],
      ["redis", "docker"],
    ]);
  });
});

describe("the network link", () => {
  it("accepts forwarding both ways and skips masquerade between the two subnets, tagged with the stack", () => {
    expect(networkLinkRules("mix", "172.28.0.0/24", "192.168.248.0/24")).toEqual([
      { table: "filter", chain: "FORWARD", args: ["-s", "172.28.0.0/24", "-d", "192.168.248.0/24", "-m", "comment", "--comment", "homelab-data mix link", "-j", "ACCEPT"] },
      { table: "filter", chain: "FORWARD", args: ["-s", "192.168.248.0/24", "-d", "172.28.0.0/24", "-m", "comment", "--comment", "homelab-data mix link", "-j", "ACCEPT"] },
      { table: "nat", chain: "POSTROUTING", args: ["-s", "172.28.0.0/24", "-d", "192.168.248.0/24", "-m", "comment", "--comment", "homelab-data mix link", "-j", "RETURN"] },
      { table: "nat", chain: "POSTROUTING", args: ["-s", "192.168.248.0/24", "-d", "172.28.0.0/24", "-m", "comment", "--comment", "homelab-data mix link", "-j", "RETURN"] },
    ]);
    const script = networkLinkScript("mix", "172.28.0.0/24", "192.168.248.0/24");
    // Each rule added once, at the top of its chain; removed with every copy.
    expect(script.create.split("\n")[1]).toBe(
      "iptables -w -t filter -C FORWARD -s 172.28.0.0/24 -d 192.168.248.0/24 -m comment --comment 'homelab-data mix link' -j ACCEPT 2>/dev/null || iptables -w -t filter -I FORWARD 1 -s 172.28.0.0/24 -d 192.168.248.0/24 -m comment --comment 'homelab-data mix link' -j ACCEPT",
    );
    expect(script.delete.split("\n")).toHaveLength(4);
    expect(script.delete).toMatch(/^while iptables -w -t filter -D FORWARD -s 172\.28\.0\.0\/24 .* 2>\/dev\/null; do :; done$/m);
  });
});
