import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { HbaError, parseCidr, planHba, renderHba, type HbaInput, type HbaRule } from "../../components/postgres/index.ts";

const input: HbaInput = {
  allowedClientCidrs: ["192.168.1.0/24", "fd00:1::/64"],
  appRoles: [{ name: "app", databases: ["app", "app_audit"] }],
  replicationRole: "replicator",
  replicaAddresses: ["172.28.0.10", "172.28.0.11/32"],
  monitoringRole: "monitor",
};

function hbaProblems(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(HbaError);
    return (error as HbaError).problems;
  }
  throw new Error("expected an HbaError");
}

const line = (rule: HbaRule) => [rule.type, rule.databases.join(","), rule.users.join(","), rule.type === "local" ? "" : rule.address, rule.method].filter(Boolean).join(" ");

describe("planHba", () => {
  it("orders rules: local peer for postgres first, then local scram, app, monitoring, replication, explicit rejects last", () => {
    expect(planHba(input).map(line)).toEqual([
      "local all postgres peer",
      "local replication postgres peer",
      "local all all scram-sha-256",
      "host app,app_audit app 192.168.1.0/24 scram-sha-256",
      "host app,app_audit app fd00:1::/64 scram-sha-256",
      "host all monitor 192.168.1.0/24 scram-sha-256",
      "host all monitor fd00:1::/64 scram-sha-256",
      "host replication replicator 172.28.0.10/32 scram-sha-256",
      "host replication replicator 172.28.0.11/32 scram-sha-256",
      "host postgres replicator 172.28.0.10/32 scram-sha-256",
      "host postgres replicator 172.28.0.11/32 scram-sha-256",
      "host all all 0.0.0.0/0 reject",
      "host all all ::/0 reject",
      "host replication all 0.0.0.0/0 reject",
      "host replication all ::/0 reject",
    ]);
  });

  it("allows replication only from replica addresses", () => {
    const replication = planHba(input).filter((r) => r.databases.includes("replication") && r.method !== "reject");
    expect(replication.flatMap((r) => (r.type === "local" ? [] : [r.address]))).toEqual(["172.28.0.10/32", "172.28.0.11/32"]);
    expect(replication.every((r) => r.type === "local" ? r.users[0] === "postgres" && r.method === "peer" : r.users[0] === "replicator")).toBe(true);
  });

  it("requireTls makes every accepting network rule hostssl; rejects stay host (they match both)", () => {
    const rules = planHba({ ...input, requireTls: true });
    for (const rule of rules) {
      if (rule.type === "local") continue;
      expect(rule.type).toBe(rule.method === "reject" ? "host" : "hostssl");
    }
  });

  it("allowRewind: false drops the pg_rewind source rules", () => {
    expect(planHba({ ...input, allowRewind: false }).some((r) => r.databases[0] === "postgres")).toBe(false);
  });

  it("read-only roles come only from their own addresses", () => {
    const rules = planHba({ ...input, readonlyRoles: [{ name: "reader", databases: ["app"], addresses: ["172.28.0.40"] }] });
    const reader = rules.filter((r) => r.users.includes("reader"));
    expect(reader.map(line)).toEqual(["host app reader 172.28.0.40/32 scram-sha-256"]);
  });

  it("bare IPs become /32 and /128, duplicates collapse, IPv6 is lowercased", () => {
    const rules = planHba({ ...input, allowedClientCidrs: ["10.1.2.3", "10.1.2.3/32", "FD00::1", "2001:db8::/32", "::ffff:10.0.0.0/104"] });
    const appAddresses = rules.filter((r) => r.users[0] === "app").map((r) => (r.type === "local" ? "" : r.address));
    expect(appAddresses).toEqual(["10.1.2.3/32", "fd00::1/128", "2001:db8::/32", "::ffff:10.0.0.0/104"]);
  });

  it("never plans trust", () => {
    expect(planHba(input).some((r) => r.method === "trust")).toBe(false);
  });

  it("reports every bad CIDR and role name at once", () => {
    const problems = hbaProblems(() =>
      planHba({
        allowedClientCidrs: ["10.0.0.0/33", "10.0.0.5/24", "not-an-ip", "0.0.0.0/0", "fe80::1%eth0", "fd00::1/129", "fd00::1/64", "10.0.0.0/ 8", "::/0"],
        appRoles: [
          { name: "App", databases: ["app"] },
          { name: "9lives", databases: ["Bad-Db"] },
          { name: "all", databases: [] },
          { name: "pg_reader", databases: ["replication"] },
          { name: "x".repeat(64), databases: ["app"] },
        ],
        replicationRole: "postgres",
        replicaAddresses: ["300.1.1.1", "172.28.0.10/32"],
        monitoringRole: "replicator-2",
      }),
    );
    const fields = problems.map((p) => p.split(":")[0]);
    expect(fields).toEqual([
      "allowedClientCidrs[0]",
      "allowedClientCidrs[1]",
      "allowedClientCidrs[2]",
      "allowedClientCidrs[3]",
      "allowedClientCidrs[4]",
      "allowedClientCidrs[5]",
      "allowedClientCidrs[6]",
      "allowedClientCidrs[7]",
      "allowedClientCidrs[8]",
      "replicaAddresses[0]",
      "replicationRole",
      "monitoringRole",
      "appRoles[0].name",
      "appRoles[1].name",
      "appRoles[1].databases[0]",
      "appRoles[2].name",
      "appRoles[2].databases",
      "appRoles[3].name",
      "appRoles[3].databases[0]",
      "appRoles[4].name",
    ]);
    expect(problems[0]).toContain("prefix length");
    expect(problems[1]).toContain("host bits");
    expect(problems[3]).toContain("every address");
    expect(problems[10]).toContain("localSuperuser");
    expect(problems[15]).toContain("keyword");
    expect(problems[17]).toContain("pg_ prefix");
  });

  it("refuses the same role in two places", () => {
    const problems = hbaProblems(() => planHba({ ...input, monitoringRole: "replicator", appRoles: [{ name: "app", databases: ["a"] }, { name: "app", databases: ["b"] }] }));
    expect(problems.map((p) => p.split(":")[0])).toEqual(["monitoringRole", "appRoles[1].name"]);
  });

  it("refuses a localSuperuser other than postgres", () => {
    const problems = hbaProblems(() => planHba({ ...input, localSuperuser: "root" as "postgres" }));
    expect(problems[0]).toMatch(/^localSuperuser: "root"/);
  });
});

describe("parseCidr", () => {
  it.each([
    ["10.0.0.0/8", "10.0.0.0/8"],
    ["192.168.1.7", "192.168.1.7/32"],
    ["192.168.1.7/32", "192.168.1.7/32"],
    ["::1", "::1/128"],
    ["fe80::/10", "fe80::/10"],
    ["2001:DB8::/32", "2001:db8::/32"],
    ["::ffff:192.168.1.0/120", "::ffff:192.168.1.0/120"],
    ["1:2:3:4:5:6:7:8/128", "1:2:3:4:5:6:7:8/128"],
    ["0.0.0.0/0", "0.0.0.0/0"],
  ])("%s -> %s", (text, cidr) => {
    expect(parseCidr(text)).toMatchObject({ cidr });
  });

  it.each(["10.0.0.1/8", "10.0.0.0/-1", "10.0.0.0/33", "10.0.0.0/08x", "fe80::1/10", "::/129", "::ffff:192.168.1.1/120", "10.0.0", "10.0.0.256", "fe80::1%eth0", "", "1:2:3:4:5:6:7:8:9"])("rejects %j", (text) => {
    expect(parseCidr(text)).toHaveProperty("problem");
  });

  it("accepts every IPv4 network address and rejects it with any host bit set", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }), (n, prefix) => {
        const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
        const toIp = (v: number) => [24, 16, 8, 0].map((s) => (v >>> s) & 255).join(".");
        const network = (n & mask) >>> 0;
        expect(parseCidr(`${toIp(network)}/${prefix}`)).toEqual({ cidr: `${toIp(network)}/${prefix}`, family: 4 });
        if (network !== n >>> 0) expect(parseCidr(`${toIp(n >>> 0)}/${prefix}`)).toHaveProperty("problem");
      }),
      { numRuns: 500 },
    );
  });

  it("checks IPv6 host bits too", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), fc.integer({ min: 0, max: 128 }), (groups, prefix) => {
        const bits = groups.map((g) => g.toString(2).padStart(16, "0")).join("");
        const networkBits = bits.slice(0, prefix).padEnd(128, "0");
        const toText = (b: string) => Array.from({ length: 8 }, (_, i) => parseInt(b.slice(i * 16, i * 16 + 16), 2).toString(16)).join(":");
        expect(parseCidr(`${toText(networkBits)}/${prefix}`)).toHaveProperty("cidr");
        if (networkBits !== bits) expect(parseCidr(`${toText(bits)}/${prefix}`)).toHaveProperty("problem");
      }),
      { numRuns: 500 },
    );
  });
});

describe("renderHba", () => {
  it("renders aligned columns with comments, in order, deterministic", () => {
    const text = renderHba(planHba(input));
    expect(text).toBe(renderHba(planHba(structuredClone(input))));
    const rules = text.split("\n").filter((l) => l && !l.startsWith("#"));
    expect(rules[0]).toMatch(/^local\s+all\s+postgres\s+peer$/);
    expect(rules.at(-4)).toMatch(/^host\s+all\s+all\s+0\.0\.0\.0\/0\s+reject$/);
    expect(rules.at(-3)).toMatch(/^host\s+all\s+all\s+::\/0\s+reject$/);
    // Columns are aligned: the method starts at the same offset on every line.
    const methodColumn = new Set(rules.map((r) => r.search(/(peer|scram-sha-256|reject)$/)));
    expect(methodColumn.size).toBe(1);
    expect(rules).toHaveLength(planHba(input).length);
    expect(text.endsWith("reject\n")).toBe(true);
  });

  it("refuses trust over the network", () => {
    const problems = hbaProblems(() => renderHba([{ type: "host", databases: ["all"], users: ["all"], address: "10.0.0.0/8", method: "trust" }]));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^rules\[0\]\.method: "trust" over the network/);
    expect(() => renderHba([{ type: "hostssl", databases: ["app"], users: ["app"], address: "::1/128", method: "trust" }])).toThrow(HbaError);
  });

  it("allows local trust only when acknowledged", () => {
    const rule: HbaRule = { type: "local", databases: ["all"], users: ["all"], method: "trust" };
    expect(hbaProblems(() => renderHba([rule]))[0]).toMatch(/trustAcknowledged/);
    expect(renderHba([{ ...rule, trustAcknowledged: true }])).toMatch(/^local\s+all\s+all\s+trust$/m);
  });

  it("refuses peer on a network rule, bad names, bad addresses and bad methods, all at once", () => {
    const problems = hbaProblems(() =>
      renderHba([
        { type: "host", databases: ["all"], users: ["postgres"], address: "10.0.0.0/8", method: "peer" },
        { type: "host", databases: ["Bad"], users: [], address: "10.0.0.1/8", method: "md5" as "reject" },
        { type: "local", databases: ["all"], users: ["all"], method: "scram-sha-256", comment: "two\nlines" },
      ]),
    );
    expect(problems.map((p) => p.split(":")[0])).toEqual([
      "rules[0].method",
      "rules[1].databases[0]",
      "rules[1].users",
      "rules[1].method",
      "rules[1].address",
      "rules[2].comment",
    ]);
  });

  it("planned rules for random valid inputs always render, end in rejects, and contain no trust", () => {
    const role = fc.stringMatching(/^[a-z][a-z0-9_]{0,20}$/).filter((r) => !["all", "sameuser", "samerole", "replication", "postgres"].includes(r) && !r.startsWith("pg_"));
    const ipv4 = fc.tuple(fc.integer({ min: 1, max: 223 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 254 })).map((p) => p.join("."));
    fc.assert(
      fc.property(fc.uniqueArray(role, { minLength: 3, maxLength: 6 }), fc.array(ipv4, { minLength: 1, maxLength: 4 }), fc.array(ipv4, { maxLength: 3 }), fc.boolean(), (roles, clients, replicas, requireTls) => {
        const [replicationRole = "r", monitoringRole, ...apps] = roles;
        const rules = planHba({ allowedClientCidrs: clients, appRoles: apps.map((name) => ({ name, databases: [name] })), replicationRole, replicaAddresses: replicas, monitoringRole, requireTls });
        const text = renderHba(rules);
        expect(rules[0]).toMatchObject({ type: "local", users: ["postgres"], method: "peer" });
        expect(rules.slice(-4).every((r) => r.method === "reject")).toBe(true);
        expect(rules.some((r) => r.method === "trust")).toBe(false);
        expect(text).not.toMatch(/\btrust\b/);
      }),
      { numRuns: 200 },
    );
  });
});
