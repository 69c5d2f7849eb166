// postgres.ha: patroni (ADR 0017): the schema's refusals, the timing planner, patroni.yml and haproxy.cfg,
// and the plan of an HA stack. Manual stacks' plans are pinned by the golden tests elsewhere (unchanged).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { validateConfig } from "../../components/config/index.ts";
import { planHomelab, redactedSecrets } from "../../components/plan.ts";
import { PATRONI_RTO_FLOOR_SECONDS, etcdMembersProblem, planPatroniTiming, renderHaproxyConf } from "../../components/postgres/index.ts";
import { topologyOf } from "../../components/topology.ts";
import { problemsOf } from "./config-problems.ts";


const haConfig = (extra: Record<string, unknown> = {}) => ({ postgres: { ha: "patroni", replicationMode: "sync" }, objectives: { failover: { rto: "27s" } }, ...extra });

describe("schema: postgres.ha", () => {
  it("defaults to manual, with no patroni section", () => {
    const spec = validateConfig("local", {});
    expect(spec.postgres.ha).toBe("manual");
    expect(spec.postgres.patroni).toBeUndefined();
  });

  it("refuses patroni with no replica, naming why", () => {
    const problems = problemsOf(() => validateConfig("a", haConfig({ postgres: { ha: "patroni", replicas: 0 }, duckdb: { enabled: false } })));
    expect(problems).toContainEqual(expect.stringMatching(/postgres\.ha.*patroni needs postgres\.replicas >= 1 \(got 0\).*nothing to fail over to/));
  });

  it("refuses an RTO objective below what ttl >= 20 allows, saying the floor (the default 10s included)", () => {
    const problems = problemsOf(() => validateConfig("a", { postgres: { ha: "patroni" } }));
    expect(problems).toEqual([expect.stringMatching(/objectives\.failover\.rto.*10s.*Patroni cannot fail over within 10s: its ttl is at least 20s, so the floor is 27s.*expected at least 27s/)]);
    expect(problemsOf(() => validateConfig("a", haConfig({ objectives: { failover: { rto: "26s" } } })))).toHaveLength(1);
    expect(validateConfig("a", haConfig()).objectives.failover.rto).toBe(27);
  });

  it("refuses an etcd member count that cannot keep quorum", () => {
    for (const n of [1, 2, 4, 6]) {
      const problems = problemsOf(() => validateConfig("a", haConfig({ postgres: { ha: "patroni", patroni: { etcdMembers: n } } })));
      expect(problems, String(n)).toEqual([expect.stringMatching(new RegExp(`postgres\\.patroni\\.etcdMembers.*${n}.*expected an odd number of at least 3`))]);
    }
    expect(validateConfig("a", haConfig({ postgres: { ha: "patroni", patroni: { etcdMembers: 5 } } })).postgres.patroni?.etcdMembers).toBe(5);
  });

  it("refuses a patroni section on a manual stack", () => {
    expect(problemsOf(() => validateConfig("a", { postgres: { patroni: { etcdMembers: 3 } } }))).toEqual([expect.stringMatching(/postgres\.patroni.*only with postgres\.ha: patroni/)]);
  });
});

describe("planPatroniTiming", () => {
  it("tunes the floor objective (27s) to ttl 20, loop_wait 1 and says each phase's budget", () => {
    expect(PATRONI_RTO_FLOOR_SECONDS).toBe(27);
    expect(planPatroniTiming(27)).toEqual({ ttlSeconds: 20, loopWaitSeconds: 1, retryTimeoutSeconds: 9, budget: { leaseExpirySeconds: 20, electionSeconds: 1, leaderRaceSeconds: 2, promotionSeconds: 2, endpointSeconds: 2 } });
    expect(planPatroniTiming(46)).toMatchObject({ ttlSeconds: 36, loopWaitSeconds: 4, retryTimeoutSeconds: 10 });
    expect(planPatroniTiming(26)).toEqual({ problem: expect.stringContaining("the floor is 27s") });
  });

  it("keeps Patroni's rules for every objective it accepts: ttl >= 20, loop_wait + 2*retry_timeout <= ttl, phases within the objective", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 3600 }), (rto) => {
      const t = planPatroniTiming(rto);
      if ("problem" in t) return rto < PATRONI_RTO_FLOOR_SECONDS;
      const b = t.budget;
      return rto >= PATRONI_RTO_FLOOR_SECONDS && t.ttlSeconds >= 20 && t.loopWaitSeconds >= 1 && t.retryTimeoutSeconds >= 3
        && t.loopWaitSeconds + 2 * t.retryTimeoutSeconds <= t.ttlSeconds
        && b.leaseExpirySeconds + b.electionSeconds + b.leaderRaceSeconds + b.promotionSeconds + b.endpointSeconds <= rto;
    }));
  });

  it("etcd quorum: odd and at least 3", () => {
    expect([1, 2, 3, 4, 5, 7].map((n) => etcdMembersProblem(n) === undefined)).toEqual([false, false, true, false, true, true]);
  });
});

describe("plan of an ha: patroni stack", () => {
  const spec = validateConfig("ha", haConfig({ docker: { subnet: "172.40.0.0/24", basePort: 26532 } }));
  const plan = planHomelab(spec, redactedSecrets());
  const node = (name: string) => {
    const n = plan.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  };

  it("adds 3 etcd members and the HAProxy endpoint; the topology exports the endpoints", () => {
    expect(plan.nodes.map((n) => `${n.name}:${n.role}:${n.ipv4Address}`)).toEqual([
      "pg-1:postgres-primary:172.40.0.10", "pg-2:postgres-replica:172.40.0.11", "backup:backup-repository:172.40.0.20",
      "etcd-1:etcd:172.40.0.44", "etcd-2:etcd:172.40.0.45", "etcd-3:etcd:172.40.0.46", "haproxy:postgres-endpoint:172.40.0.49",
      "redis:redis:172.40.0.30", "duckdb:duckdb:172.40.0.40", "monitoring:monitoring:172.40.0.41",
    ]);
    expect(node("etcd-2").env.HOMELAB_ETCD_INITIAL_CLUSTER).toBe("etcd-1=http://172.40.0.44:2380,etcd-2=http://172.40.0.45:2380,etcd-3=http://172.40.0.46:2380");
    expect(node("haproxy").ports).toEqual([{ name: "primary", containerPort: 5000, hostPort: 26542 }, { name: "replicas", containerPort: 5001, hostPort: 26543 }]);
    const t = topologyOf(spec, plan);
    expect(t.postgres.endpoints).toEqual({ primary: { host: "127.0.0.1", port: 26542 }, replicas: { host: "127.0.0.1", port: 26543 } });
    expect(t.postgres.ha).toMatchObject({ mode: "patroni", ttlSeconds: 20, loopWaitSeconds: 1, retryTimeoutSeconds: 9, etcdNodes: ["etcd-1", "etcd-2", "etcd-3"] });
  });

  it("PostgreSQL nodes run Patroni from a 0600 secret patroni.yml: tuner settings, pg_hba, sync mode, pgBackRest replicas; no password in env", () => {
    const secrets = { ...redactedSecrets(), postgresReplicationPassword: "s3cret-repl", postgresSuperuserPassword: "s3cret-su" };
    const real = planHomelab(spec, secrets).nodes.find((n) => n.name === "pg-2");
    if (!real) throw new Error("no pg-2");
    expect(real.image.name).toMatch(/\/postgres-ha:17$/);
    expect(real.env).toEqual({ HOMELAB_ROLE: "patroni", HOMELAB_STANZA: "main", HOMELAB_REPO_HOST: "homelab-ha-backup" });
    expect(JSON.stringify(real.env)).not.toContain("s3cret");
    const file = real.files.find((f) => f.path === "/etc/homelab/patroni.yml");
    expect(file).toMatchObject({ mode: 0o600, secret: true });
    expect(real.files.map((f) => f.path)).not.toContain("/etc/homelab/postgresql.conf");
    const y = parse(file?.content ?? "");
    expect(y.name).toBe("pg_2");
    expect(y.etcd3.hosts).toEqual(["172.40.0.44:2379", "172.40.0.45:2379", "172.40.0.46:2379"]);
    expect(y.bootstrap.dcs).toMatchObject({ ttl: 20, loop_wait: 1, retry_timeout: 9, synchronous_mode: true, synchronous_mode_strict: false, maximum_lag_on_failover: 1048576 });
    expect(y.bootstrap.dcs.postgresql.parameters).toMatchObject({ wal_level: "replica", max_connections: expect.any(String), wal_log_hints: "on" });
    expect(y.postgresql.parameters).toMatchObject({ archive_command: "pgbackrest --stanza=main archive-push %p", shared_buffers: expect.any(String) });
    expect(y.postgresql.parameters.synchronous_standby_names).toBeUndefined();
    expect(y.postgresql.recovery_conf.restore_command).toBe('pgbackrest --stanza=main archive-get %f "%p"');
    expect(y.postgresql.create_replica_methods).toEqual(["pgbackrest", "basebackup"]);
    expect(y.postgresql.authentication.replication).toEqual({ username: "replicator", password: "s3cret-repl" });
    // HAProxy relays clients from its own address: pg_hba lets it in; never trust over the network.
    expect(y.postgresql.pg_hba).toContainEqual(expect.stringMatching(/^host app app 172\.40\.0\.49\/32 scram-sha-256$/));
    expect(y.postgresql.pg_hba.filter((l: string) => /^host.*trust/.test(l))).toEqual([]);
    expect(y.watchdog).toEqual({ mode: "off" });
  });

  it("async stacks turn synchronous_mode off", () => {
    const a = planHomelab(validateConfig("ha", haConfig({ postgres: { ha: "patroni", replicationMode: "async" } })), redactedSecrets());
    expect(parse(a.nodes[0]?.files.find((f) => f.path.endsWith("patroni.yml"))?.content ?? "").bootstrap.dcs.synchronous_mode).toBe(false);
  });
});

describe("renderHaproxyConf", () => {
  it("checks Patroni's /primary for the primary port and /replica for the replicas port, cutting sessions of a node marked down", () => {
    const cfg = renderHaproxyConf({ primaryPort: 5000, replicasPort: 5001, checkIntervalSeconds: 1, nodes: [{ name: "pg_1", address: "10.0.0.10", port: 5432, restPort: 8008 }] });
    expect(cfg).toMatch(/listen primary\n {4}bind \*:5000\n {4}option httpchk OPTIONS \/primary\n/);
    expect(cfg).toMatch(/listen replicas\n {4}bind \*:5001\n {4}option httpchk OPTIONS \/replica\n/);
    expect(cfg).toContain("server pg_1 10.0.0.10:5432 maxconn 200 check port 8008");
    expect(cfg).toContain("fall 2 rise 1 on-marked-down shutdown-sessions");
  });
});
