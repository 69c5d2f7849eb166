import fc from "fast-check";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadStackSpec, parseBytes, parseDurationSeconds, parseSize, validateConfig } from "../../components/config/index.ts";
import { formatPgMemory, parseMemory } from "../../components/postgres/index.ts";
import { problemsOf } from "./config-problems.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");


describe("stack config schema: platform libvirt", () => {
  const vm = { platform: "libvirt", libvirt: {}, redis: { enabled: false }, duckdb: { enabled: false }, monitoring: { enabled: false } };
  it("fills the libvirt defaults: the local hypervisor, software emulation, a 4GiB data disk", () => {
    const spec = validateConfig("kvm", vm);
    expect(spec.libvirt).toEqual({ uri: "qemu:///system", subnet: "192.168.251.0/24", emulation: "qemu", imageDir: "/var/lib/libvirt/images", dataDiskBytes: 4 * 1024 ** 3, bootTimeoutSeconds: 600, readyTimeoutSeconds: 1800 });
  });
  it("refuses what VMs cannot be yet, and bad libvirt values, each naming the key", () => {
    const problems = problemsOf(() => validateConfig("kvm", { platform: "libvirt", libvirt: { uri: "qemu+ssh://kvm/system", emulation: "xen", dataDisk: "lots", imageDir: "/root/my images" } }));
    expect(problems).toEqual([
      'homelab-data:libvirt.uri: got "qemu+ssh://kvm/system"; expected "qemu:///system" (the local hypervisor; remote qemu+ssh:// hosts are not supported yet)',
      'homelab-data:libvirt.emulation: got "xen"; expected one of "qemu", "kvm"',
      expect.stringMatching(/^homelab-data:libvirt\.dataDisk: got "lots"; expected a positive size/),
      expect.stringMatching(/^homelab-data:libvirt\.imageDir: got "\/root\/my images"; expected an absolute path/),
    ]);
    const notYet = problemsOf(() => validateConfig("kvm", { platform: "libvirt", libvirt: {} }));
    expect(notYet).toEqual([
      "homelab-data:redis.enabled: got true; VMs (libvirt) hold PostgreSQL and the backup repository; Redis is not built on VMs yet: turn it off, or place it on a docker host (hosts:, redis.host)",
      "homelab-data:duckdb.enabled: got true; VMs (libvirt) hold PostgreSQL and the backup repository; the DuckDB host is not built on VMs yet: turn it off, or place it on a docker host (hosts:, duckdb.host)",
      "homelab-data:monitoring.enabled: got true; VMs (libvirt) hold PostgreSQL and the backup repository; the monitoring node (and its exporters on VM nodes) is not built on VMs yet: turn it off, or place it on a docker host (hosts:, monitoring.host)",
    ]);
  });
  it("accepts the committed kvm stack", () => {
    const spec = loadStackSpec("kvm", path.join(ROOT, "stacks"));
    expect(spec.platform).toBe("libvirt");
    expect(spec.libvirt?.subnet).toBe("192.168.250.0/24");
  });
});

describe("stack config schema", () => {
  it("fills every default into a typed spec, with units parsed", () => {
    const spec = validateConfig("local", {});
    expect(spec.platform).toBe("docker");
    expect(spec.postgres.node.memory).toBe(512 * 1024 ** 2);
    expect(spec.postgres.archiveTimeout).toBe(60);
    expect(spec.pgbackrest.maxBackupAge).toBe(26 * 3600);
    expect(spec.objectives.failover).toEqual({ rpoWrites: 0, rto: 10, redundancyRestored: 120 });
    expect(spec.redis.persistence).toEqual({ aof: true, appendfsync: "everysec", save: [[3600, 1], [300, 100], [60, 10000]] });
  });

  it("reports every problem at once, each naming the key, the value and what is accepted", () => {
    const problems = problemsOf(() =>
      validateConfig("local", {
        postgres: { replicas: -1, profile: "nosuch", node: { memory: "12XB" }, bogus: 1 },
        pgbackrest: { schedules: { full: "0 3 * *" } },
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        'homelab-data:postgres.replicas: got -1; expected a whole number from 0 to 5',
        'homelab-data:postgres.profile: got "nosuch"; expected one of "web", "oltp", "dw", "mixed"',
        expect.stringMatching(/^homelab-data:postgres\.node\.memory: got "12XB"; expected a positive size/),
        expect.stringMatching(/^homelab-data:postgres\.bogus: unknown key; accepted keys here: version, profile/),
        expect.stringMatching(/^homelab-data:pgbackrest\.schedules\.full: got "0 3 \* \*"; expected a five-field cron/),
      ]),
    );
    expect(problems).toHaveLength(5);
  });

  it("checks rules across keys once the keys themselves are valid", () => {
    const problems = problemsOf(() =>
      validateConfig("local", {
        postgres: { replicas: 0, replicationMode: "sync", node: { memory: "128MiB" } },
        redis: { maxmemory: "120MiB", node: { memory: "128MiB" } },
        duckdb: { enabled: true },
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringContaining("homelab-data:postgres.replicationMode: got \"sync\"; sync replication needs postgres.replicas >= 1"),
        expect.stringContaining("homelab-data:postgres.node.memory: got \"128MiB\"; PostgreSQL with archiving and replication needs at least 256MiB"),
        expect.stringContaining("homelab-data:redis.maxmemory: got \"120MiB\"; expected at most 75% of redis.node.memory (96MiB)"),
        expect.stringContaining("homelab-data:duckdb.enabled: got true; the DuckDB host reads from a replica"),
      ]),
    );
  });

  it("refuses a password stored in plaintext and an invalid stack name", () => {
    const problems = problemsOf(() => validateConfig("Bad_Name", { postgresAppPassword: "hunter2hunter2" }));
    expect(problems.some((p) => p.startsWith("stack name:"))).toBe(true);
    expect(problems).toContain(
      "homelab-data:postgresAppPassword: is stored in plaintext; set it with `pulumi config set --secret homelab-data:postgresAppPassword` or `homelab init --stack Bad_Name`",
    );
    expect(validateConfig("ok", { postgresAppPassword: { secure: "v1:abc" } }).stack).toBe("ok");
  });

  it("accepts IPv4 and IPv6 CIDRs and rejects malformed ones", () => {
    expect(validateConfig("a", { postgres: { allowedClientCidrs: ["10.0.0.0/8", "fd00::/64", "::1/128"] } }).postgres.allowedClientCidrs).toHaveLength(3);
    const problems = problemsOf(() => validateConfig("a", { postgres: { allowedClientCidrs: ["10.0.0.0/33", "300.1.1.1/8", "fd00::/129", "nope"] } }));
    expect(problems).toHaveLength(4);
    expect(problems.every((p) => /^homelab-data:postgres\.allowedClientCidrs\.\d: got ".*"; .*expected a CIDR/.test(p))).toBe(true);
    expect(problems[0]).toBe('homelab-data:postgres.allowedClientCidrs.0: got "10.0.0.0/33"; expected a CIDR such as "192.168.1.0/24" or "fd00::/64" (IPv4 prefix 0-32, IPv6 prefix 0-128)');
  });

  it("checks CIDRs and the publish address with zod's own IPv4/IPv6 rules", () => {
    const good = ["192.168.1.0/24", "2001:db8::/32", "FD00::/64", "1:2:3:4::/64", "::ffff:10.0.0.0/104"];
    expect(validateConfig("a", { postgres: { allowedClientCidrs: good } }).postgres.allowedClientCidrs).toEqual(good);
    const bad = ["10.0.0.0", "fd00::", "010.0.0.0/8", "10.0.0.0/08", " 10.0.0.0/8", "fe80::1%eth0/64", "1:2:3:4:5:6:7:8:9/64", "1::2::3/64"];
    const problems = problemsOf(() => validateConfig("a", { postgres: { allowedClientCidrs: bad } }));
    expect(problems).toHaveLength(bad.length);
    expect(problems.every((p) => /^homelab-data:postgres\.allowedClientCidrs\.\d: got ".*"; expected a CIDR such as /.test(p))).toBe(true);
    expect(problemsOf(() => validateConfig("a", { docker: { subnet: "172.28.0.0/33" } }))).toEqual([
      'homelab-data:docker.subnet: got "172.28.0.0/33"; expected a CIDR such as "192.168.1.0/24" or "fd00::/64" (IPv4 prefix 0-32, IPv6 prefix 0-128)',
    ]);

    expect(validateConfig("a", { docker: { publishAddress: "0.0.0.0" } }).docker.publishAddress).toBe("0.0.0.0");
    for (const address of ["256.0.0.1", "::1", "1.2.3", "01.2.3.4", "127.0.0.1/32"]) {
      expect(problemsOf(() => validateConfig("a", { docker: { publishAddress: address } }))).toEqual([
        `homelab-data:docker.publishAddress: got ${JSON.stringify(address)}; expected an IPv4 address such as "127.0.0.1"`,
      ]);
    }
  });

  it("refuses client networks pg_hba would refuse (host bits set, the whole internet) at validate time, by key", () => {
    const problems = problemsOf(() => validateConfig("a", { postgres: { allowedClientCidrs: ["10.0.0.5/24", "0.0.0.0/0", "::/0", "10.0.0.0/24"] } }));
    expect(problems).toEqual([
      'homelab-data:postgres.allowedClientCidrs.0: got "10.0.0.5/24"; has host bits set beyond /24; expected the network address of the range, or /32 for a single host',
      'homelab-data:postgres.allowedClientCidrs.1: got "0.0.0.0/0"; opens PostgreSQL to every address; expected the networks clients really connect from',
      'homelab-data:postgres.allowedClientCidrs.2: got "::/0"; opens PostgreSQL to every address; expected the networks clients really connect from',
    ]);
  });

  it("property: random wrong types anywhere are reported with their key, never thrown as a crash", () => {
    const keys = ["postgres.replicas", "postgres.profile", "redis.maxmemory", "pgbackrest.processMax", "objectives.failover.rto", "docker.basePort", "duckdb.schemas"];
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.oneof(fc.constant(null), fc.boolean(), fc.constant(-7), fc.constant("??"), fc.constant({ x: 1 })), (key, value) => {
        const [section, ...rest] = key.split(".");
        const leaf = rest.reduceRight<unknown>((acc, k) => ({ [k]: acc }), value);
        let problems: string[];
        try {
          validateConfig("p", { [section as string]: leaf });
          return true; // some values are legitimately valid for some keys (e.g. a boolean nowhere here)
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
          problems = e.problems;
        }
        return problems.some((p) => p.startsWith(`homelab-data:${key}`)) && problems.every((p) => /^homelab-data:[a-z]+(\.[A-Za-z0-9]+)*: /.test(p));
      }),
    );
  });

  it("reads a stack file and reports a missing one with the stacks that exist", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "stacks-"));
    writeFileSync(path.join(dir, "Pulumi.home.yaml"), "config:\n  homelab-data:postgres:\n    replicas: 2\n  docker:host: unix:///var/run/docker.sock\n");
    expect(loadStackSpec("home", dir).postgres.replicas).toBe(2);
    expect(problemsOf(() => loadStackSpec("nosuch", dir))[0]).toMatch(/--stack: no stack file .*Pulumi\.nosuch\.yaml; create it, or pick one of: home/);
    writeFileSync(path.join(dir, "Pulumi.broken.yaml"), "config:\n  homelab-data:postgres: [\n");
    expect(problemsOf(() => loadStackSpec("broken", dir))[0]).toMatch(/^YAML: /);
  });
});

describe("units", () => {
  it("parses sizes as PostgreSQL does (1024 multiples) and durations", () => {
    expect(parseBytes("16GiB")).toBe(16 * 1024 ** 3);
    expect(parseBytes("16GB")).toBe(16 * 1024 ** 3);
    expect(parseBytes("512MiB")).toBe(512 * 1024 ** 2);
    expect(parseBytes(1024)).toBe(1024);
    for (const bad of ["0", "-1GiB", "12XB", "", "GiB", 0, -5, 1.5]) expect(parseBytes(bad)).toBeUndefined();
    expect(parseDurationSeconds("500ms")).toBe(0.5);
    expect(parseDurationSeconds("5min")).toBe(300);
    expect(parseDurationSeconds("2h")).toBe(7200);
    expect(parseDurationSeconds(30)).toBe(30);
    expect(parseDurationSeconds("soon")).toBeUndefined();
  });

  it("one size parser: the config spelling and PostgreSQL's (parseMemory) read every PostgreSQL-spelled size alike", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 40 }), (bytes) => {
        const text = formatPgMemory(bytes);
        expect(parseBytes(text)).toBe(bytes);
        expect(parseMemory(text)).toBe(bytes);
        expect(parseSize(text, "postgres")).toEqual({ bytes });
      }),
    );
  });

  it("the PostgreSQL spelling is the strict mode of the same parser: unit required, exact case, whole bytes", () => {
    expect(parseSize("16gb")).toEqual({ bytes: 16 * 1024 ** 3 });
    expect(parseSize("16gb", "postgres")).toEqual({ problem: expect.stringMatching(/^unknown unit "gb"; expected a positive number and a unit/) });
    expect(parseSize("4096")).toEqual({ bytes: 4096 });
    expect(parseSize("4096", "postgres")).toEqual({ problem: expect.stringMatching(/^a unit is required; /) });
    expect(parseSize(4096, "postgres")).toEqual({ problem: expect.stringMatching(/^expected a positive number and a unit/) });
    expect(parseSize("1.5B", "postgres")).toEqual({ problem: expect.stringMatching(/^1\.5 is not a whole number of bytes/) });
    expect(parseSize("12XB")).toEqual({ problem: expect.stringMatching(/^unknown unit "XB"; expected a positive size such as "512MiB"/) });
  });
});

describe("pgbackrest schedules (five-field cron)", () => {
  const scheduleProblems = (full: string) => problemsOf(() => validateConfig("a", { pgbackrest: { schedules: { full } } }));
  const schemaAccepts = (full: string) => {
    try {
      validateConfig("a", { pgbackrest: { schedules: { full } } });
      return true;
    } catch (e) {
      if (e instanceof ConfigError) return false;
      throw e;
    }
  };

  it("names the field that is out of range, its value and the range accepted", () => {
    expect(scheduleProblems("0 25 * * *")).toEqual(['homelab-data:pgbackrest.schedules.full: got "0 25 * * *"; hour 25 is out of range 0-23']);
    expect(scheduleProblems("60 * * * *")).toEqual(['homelab-data:pgbackrest.schedules.full: got "60 * * * *"; minute 60 is out of range 0-59']);
    expect(scheduleProblems("* * 0 * *")).toEqual(['homelab-data:pgbackrest.schedules.full: got "* * 0 * *"; day-of-month 0 is out of range 1-31']);
    expect(scheduleProblems("* * * 13 *")).toEqual(['homelab-data:pgbackrest.schedules.full: got "* * * 13 *"; month 13 is out of range 1-12']);
    expect(scheduleProblems("* * * * 8")).toEqual(['homelab-data:pgbackrest.schedules.full: got "* * * * 8"; day-of-week 8 is out of range 0-7']);
    expect(scheduleProblems("0 1,30 * * *")).toEqual(['homelab-data:pgbackrest.schedules.full: got "0 1,30 * * *"; hour 30 is out of range 0-23']);
    expect(scheduleProblems("60 25 * * *")).toEqual(['homelab-data:pgbackrest.schedules.full: got "60 25 * * *"; minute 60 is out of range 0-59; hour 25 is out of range 0-23']);
  });

  it("wants exactly five fields", () => {
    expect(scheduleProblems("0 3 * *")).toEqual([
      'homelab-data:pgbackrest.schedules.full: got "0 3 * *"; expected a five-field cron expression (minute hour day-of-month month day-of-week) such as "0 3 * * 0", got 4 fields',
    ]);
    expect(scheduleProblems("0 0 3 * * 0")).toEqual([
      'homelab-data:pgbackrest.schedules.full: got "0 0 3 * * 0"; expected a five-field cron expression (minute hour day-of-month month day-of-week) such as "0 3 * * 0", got 6 fields',
    ]);
    // A newline would end the crontab line early: it is no field separator.
    expect(scheduleProblems("0 3 * *\n0")[0]).toMatch(/got 4 fields$/);
  });

  it("refuses what homelab-cron does not read: names, L, W, #, ?, steps on a number, steps longer than the field", () => {
    expect(scheduleProblems("0 3 * * MON")).toEqual([
      'homelab-data:pgbackrest.schedules.full: got "0 3 * * MON"; day-of-week "MON" is not accepted; expected numbers 0-7, *, ranges a-b, steps */n or a-b/n, lists a,b (homelab-cron reads no names such as MON, nor L, W, # or ?)',
    ]);
    for (const bad of ["0 3 * JAN *", "0 3 L * *", "0 3 15W * *", "0 3 * * 1#2", "0 3 ? * *", "@daily"]) expect(scheduleProblems(bad)).toHaveLength(1);
    expect(scheduleProblems("5/15 * * * *")[0]).toMatch(/; minute 5\/15 is not accepted: .*numeric prefix/);
    expect(scheduleProblems("*/0 * * * *")[0]).toMatch(/; minute \*\/0 is not accepted: .*stepping: 0/);
    expect(scheduleProblems("0 */25 * * *")[0]).toMatch(/; hour \*\/25 is not accepted: .*steps cannot be greater/);
    expect(scheduleProblems("0 3 5-1 * *")[0]).toMatch(/; day-of-month 5-1 is not accepted: .*larger than/);
  });

  it("accepts numbers, *, ranges, steps and lists within each field's range", () => {
    for (const good of ["0 3 * * 0", "*/15 * * * *", "0 3 * * 1-6", "0 0 1,15 * *", "0 3 * * 7", "0-30/10 */6 1-31 1-12 0-7", "  0 3 * * 0  ", "0\t3 * * 0"]) {
      expect(schemaAccepts(good), good).toBe(true);
    }
    expect(validateConfig("a", { pgbackrest: { schedules: { incr: "*/15 * * * *" } } }).pgbackrest.schedules.incr).toBe("*/15 * * * *");
  });

  // The schema must accept exactly what runs: homelab-cron (Perl, core modules only) parses the crontab on the
  // repository host (plan.ts backupCrontab writes "<schedule> <command>") and refuses to start on a bad line.
  // It takes a schedule when "<schedule> <command>" is one job and the schedule alone is not: otherwise the
  // schedule's own text spilled into the command (a sixth field) or ended the line early (a newline).
  const HOMELAB_CRON = path.join(ROOT, "components/postgres/image/bin/homelab-cron");
  const cronDir = mkdtempSync(path.join(os.tmpdir(), "homelab-cron-"));
  const oneJob = (crontab: string): boolean => {
    const file = path.join(cronDir, "crontab");
    writeFileSync(file, crontab);
    const run = spawnSync("perl", [HOMELAB_CRON, "--check", file], { encoding: "utf8" });
    if (run.error) throw run.error;
    return run.status === 0 && run.stdout.trim() === "1 job(s)";
  };
  const homelabCronAccepts = (expression: string): boolean =>
    oneJob(`${expression} pgbackrest --stanza=main --type=full backup\n`) && !oneJob(`${expression}\n`);

  const EXPRESSIONS = [
    // accepted
    "0 3 * * 0", "*/15 * * * *", "0 3 * * 1-6", "0 0 1,15 * *", "0 3 * * 7", "0 3 * * 0-7", "0-59/30 * * * *", "*/60 */24 */31 */12 */7",
    "007 3 * * 0", "59 23 31 12 6", "0 0 31 2 *", " 0 3 * * 0", "0\t3 * * 0", "1,2,3-5,*/20 * * * *",
    // refused
    "0 25 * * *", "60 * * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "* * * *", "* * * * * *", "", "0 3 * *\n0", "0 3 * * 0\n",
    "5/15 * * * *", "0/5 * * * *", "*/0 * * * *", "*/61 * * * *", "* */25 * * *", "* * */32 * *", "* * * */13 *", "* * * * */8", "5-1 * * * *",
    "1,,2 * * * *", "1, * * * *", "*/ * * * *", "/5 * * * *", "-1 * * * *", "1-2-3 * * * *", "*/5/2 * * * *", "** * * * *",
    "* * * * MON", "* * * JAN *", "0 0 L * *", "0 0 1W * *", "* * * * 1#2", "? * * * *", "@daily", "# * * * *", "99999999999999999999 * * * *",
  ];

  it("agrees with homelab-cron --check on every expression of a list", () => {
    const verdicts = EXPRESSIONS.map((e) => ({ expression: e, schema: schemaAccepts(e), homelabCron: homelabCronAccepts(e) }));
    expect(verdicts.filter((v) => v.schema !== v.homelabCron)).toEqual([]);
    // Both verdicts occur, so the list tests something either way.
    expect(verdicts.filter((v) => v.schema).length).toBeGreaterThanOrEqual(10);
    expect(verdicts.filter((v) => !v.schema).length).toBeGreaterThanOrEqual(10);
  });

  it("property: agrees with homelab-cron --check on random expressions", () => {
    const number = fc.constantFrom("0", "1", "5", "6", "7", "8", "12", "13", "23", "24", "31", "32", "59", "60");
    const item = fc.oneof(
      number,
      fc.constant("*"),
      fc.tuple(number, number).map(([a, b]) => `${a}-${b}`),
      fc.tuple(fc.constantFrom("*", "1-5", "0-7", "5"), number).map(([r, s]) => `${r}/${s}`),
      fc.constantFrom("MON", "L", "?", ""),
    );
    const field = fc.array(item, { minLength: 1, maxLength: 3 }).map((items) => items.join(","));
    const expression = fc.array(field, { minLength: 4, maxLength: 6 }).map((fields) => fields.join(" "));
    fc.assert(fc.property(expression, (e) => schemaAccepts(e) === homelabCronAccepts(e)), { numRuns: 60 });
  });
});

describe("postgres.settings and the keys that decide a setting", () => {
  it("refuses in the schema a setting a stack key decides, naming that key, and the tuner's safety refusals", () => {
    const problems = (settings: Record<string, unknown>) => {
      try {
        validateConfig("t", { postgres: { settings } });
        return "";
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(problems({ idle_in_transaction_session_timeout: "1min" })).toMatch(/postgres\.settings\.idle_in_transaction_session_timeout: got "1min"; not accepted; set postgres\.idleInTransactionSessionTimeout instead/);
    expect(problems({ archive_timeout: 30 })).toMatch(/postgres\.settings\.archive_timeout: got 30; not accepted; set postgres\.archiveTimeout instead/);
    expect(problems({ max_wal_senders: 20 })).toMatch(/max_wal_senders.*planned from postgres\.replicas/);
    expect(problems({ fsync: false })).toMatch(/postgres\.settings\.fsync: got false; not accepted; fsync off loses committed data on a crash/);
    expect(problems({ work_mem: "8MB", statement_timeout: "30s" })).toBe("");
  });

  it("postgres.idleInTransactionSessionTimeout reaches postgresql.conf (default 10 min, 0 disables)", async () => {
    const { planHomelab, redactedSecrets } = await import("../../components/plan.ts");
    const conf = (postgres: Record<string, unknown>) => planHomelab(validateConfig("t", { postgres }), redactedSecrets()).nodes.find((n) => n.name === "pg-1")!.files.find((f) => f.path.endsWith("postgresql.conf"))!.content;
    expect(conf({})).toMatch(/^idle_in_transaction_session_timeout = 10min$/m);
    expect(conf({ idleInTransactionSessionTimeout: "90s" })).toMatch(/^idle_in_transaction_session_timeout = 90s$/m);
    expect(conf({ idleInTransactionSessionTimeout: 0 })).toMatch(/^idle_in_transaction_session_timeout = 0$/m);
  });
});
