// pg_hba.conf: a small rule model, the planner that applies this project's policy
// (adrs/0003-pg-hba-policy.md), and a renderer that refuses unsafe rules.
// Pure: no I/O, no Pulumi. CIDRs are checked with node:net plus our own prefix/host-bit check
// (ip-address sits in node_modules only as a transitive dependency, not one this project declares).
import { isIPv4, isIPv6 } from "node:net";

/** Authentication methods this project writes. trust is only ever allowed on `local`, and only when acknowledged. */
export type HbaMethod = "peer" | "scram-sha-256" | "cert" | "reject" | "trust";

interface HbaRuleBase {
  /** Databases: names, or the keywords all / sameuser / samerole / replication (replication connections). */
  databases: string[];
  /** Roles: names, or the keyword all. */
  users: string[];
  method: HbaMethod;
  /** One-line comment written above the rule. */
  comment?: string;
}

/** A Unix-socket rule. */
export interface HbaLocalRule extends HbaRuleBase {
  type: "local";
  /** Must be true for method trust: anyone with shell access to the socket becomes any role. */
  trustAcknowledged?: boolean;
}

/** A TCP/IP rule. */
export interface HbaHostRule extends HbaRuleBase {
  type: "host" | "hostssl" | "hostnossl";
  /** A CIDR (10.0.0.0/24, fd00::/64). */
  address: string;
}

export type HbaRule = HbaLocalRule | HbaHostRule;

export interface HbaInput {
  /** Networks application clients (and the monitoring role) connect from: CIDRs or bare IPs (become /32 or /128). */
  allowedClientCidrs: string[];
  /** Application roles and the databases each may open. */
  appRoles: { name: string; databases: string[] }[];
  /**
   * Roles allowed only from their own addresses (not from allowedClientCidrs), e.g. the DuckDB host's
   * read-only reader. The read-only part is a GRANT matter; pg_hba only narrows where they come from.
   */
  readonlyRoles?: { name: string; databases: string[]; addresses: string[] }[];
  /** The role standbys stream with (replication connections, and pg_rewind's normal connection). */
  replicationRole: string;
  /**
   * Every node that may stream from this one: CIDRs or bare IPs. List every cluster member (the current
   * primary included) so the same file is right after a failover. The pgBackRest repository host is a
   * pgBackRest TLS client, not a PostgreSQL client, and needs no rule.
   */
  replicaAddresses: string[];
  /** Role used by metrics exporters, allowed from allowedClientCidrs to every database (or as monitoringAddresses narrows it). */
  monitoringRole?: string;
  /**
   * Where monitoringRole connects from, when known (the stack's monitoring node): then it may open only the
   * "postgres" database and only from these addresses, instead of every database from allowedClientCidrs.
   */
  monitoringAddresses?: string[];
  /** OS user (and role) that gets peer access on the socket; only "postgres". */
  localSuperuser?: "postgres";
  /** hostssl instead of host for every network rule; default false (homelab LAN, scram-sha-256 protects the password). */
  requireTls?: boolean;
  /** Let replicationRole open the "postgres" database from replica addresses, for pg_rewind --source-server; default true. */
  allowRewind?: boolean;
}

export class HbaError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid pg_hba input:\n- ${problems.join("\n- ")}`);
    this.name = "HbaError";
    this.problems = problems;
  }
}

/** PostgreSQL identifier as this project allows it: 1..63 chars (NAMEDATALEN - 1), lowercase, digits, "_", not starting with a digit. */
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const DATABASE_KEYWORDS = new Set(["all", "sameuser", "samerole", "replication"]);
const USER_KEYWORDS = new Set(["all"]);
/** Words that mean something else in a pg_hba column and so cannot name a role or database unquoted. */
const RESERVED_NAMES = new Set(["all", "sameuser", "samerole", "replication"]);
const ACCEPTED_IDENTIFIER = "1..63 characters: lowercase letters, digits and \"_\", not starting with a digit";

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

/** Checks a role name; returns a problem or undefined. */
function roleProblem(field: string, name: unknown): string | undefined {
  if (typeof name !== "string" || !IDENTIFIER.test(name)) return `${field}: ${describe(name)} is not a valid role name; expected ${ACCEPTED_IDENTIFIER}`;
  if (RESERVED_NAMES.has(name)) return `${field}: ${describe(name)} is a pg_hba keyword, not a role; expected a role name (${ACCEPTED_IDENTIFIER})`;
  if (name.startsWith("pg_")) return `${field}: ${describe(name)} uses the pg_ prefix PostgreSQL reserves for its own roles; expected another name`;
  return undefined;
}

function parseIPv4(text: string): number[] {
  return text.split(".").map(Number);
}

/** 16 bytes of an IPv6 address (node:net has already said it is valid; zone ids are refused before this). */
function parseIPv6(text: string): number[] {
  let s = text;
  // An embedded IPv4 tail (::ffff:10.0.0.1) is the last two groups.
  if (s.includes(".")) {
    const lastColon = s.lastIndexOf(":");
    const [a = 0, b = 0, c = 0, d = 0] = parseIPv4(s.slice(lastColon + 1));
    s = `${s.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const split = (part: string) => (part === "" ? [] : part.split(":"));
  const doubleColon = s.indexOf("::");
  let groups: string[];
  if (doubleColon >= 0) {
    const left = split(s.slice(0, doubleColon));
    const right = split(s.slice(doubleColon + 2));
    groups = [...left, ...new Array<string>(8 - left.length - right.length).fill("0"), ...right];
  } else {
    groups = split(s);
  }
  return groups.flatMap((group) => {
    const n = parseInt(group, 16);
    return [n >> 8, n & 0xff];
  });
}

function hostBitsSet(bytes: number[], prefix: number): boolean {
  return bytes.some((byte, i) => {
    const networkBits = Math.min(Math.max(prefix - i * 8, 0), 8);
    const hostMask = 0xff >> networkBits;
    return (byte & hostMask) !== 0;
  });
}

/**
 * Normalises a CIDR or a bare IP ("10.0.0.5" -> "10.0.0.5/32", "fd00::1" -> "fd00::1/128").
 * Returns the CIDR or a problem. Prefixes must be in range, and host bits must be zero: PostgreSQL
 * would silently ignore them, and "10.0.0.5/24" usually means a typo for /32 or 10.0.0.0/24.
 */
export function parseCidr(text: string): { cidr: string; family: 4 | 6 } | { problem: string } {
  if (typeof text !== "string") return { problem: `${describe(text)} is not a string` };
  const trimmed = text.trim().toLowerCase();
  const slash = trimmed.indexOf("/");
  const address = slash >= 0 ? trimmed.slice(0, slash) : trimmed;
  const prefixText = slash >= 0 ? trimmed.slice(slash + 1) : undefined;
  const family = isIPv4(address) ? 4 : isIPv6(address) && !address.includes("%") ? 6 : undefined;
  if (family === undefined) {
    return { problem: `${describe(text)} is not an IPv4 or IPv6 address or CIDR; expected e.g. 192.168.1.0/24, 10.0.0.5, fd00::/64 (no zone ids)` };
  }
  const maxPrefix = family === 4 ? 32 : 128;
  if (prefixText === undefined) return { cidr: `${address}/${maxPrefix}`, family };
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
    return { problem: `${describe(text)} has prefix length ${describe(prefixText)}; expected a whole number from 0 to ${maxPrefix} for IPv${family}` };
  }
  const prefix = Number(prefixText);
  const bytes = family === 4 ? parseIPv4(address) : parseIPv6(address);
  if (hostBitsSet(bytes, prefix)) {
    return { problem: `${describe(text)} has host bits set beyond /${prefix}; expected the network address of the range, or /${maxPrefix} for a single host` };
  }
  return { cidr: `${address}/${prefix}`, family };
}

/** Collects valid, de-duplicated CIDRs from a list, reporting each bad one under `field[i]`. */
function cidrList(problems: string[], field: string, list: unknown, allowWholeInternet: boolean): string[] {
  if (!Array.isArray(list)) {
    problems.push(`${field}: ${describe(list)} is not accepted; expected a list of CIDRs or IP addresses`);
    return [];
  }
  const out: string[] = [];
  list.forEach((entry, i) => {
    const parsed = parseCidr(entry as string);
    if ("problem" in parsed) {
      problems.push(`${field}[${i}]: ${parsed.problem}`);
    } else if (!allowWholeInternet && parsed.cidr.endsWith("/0")) {
      problems.push(`${field}[${i}]: ${describe(entry)} opens PostgreSQL to every address; expected the networks clients really connect from`);
    } else if (!out.includes(parsed.cidr)) {
      out.push(parsed.cidr);
    }
  });
  return out;
}

/**
 * Applies the pg_hba policy of adrs/0003-pg-hba-policy.md: peer for the OS postgres user, scram-sha-256
 * for everyone else locally, app roles and monitoring from the client networks, replication only from
 * replica addresses, and an explicit reject of everything else. All problems are thrown at once as an HbaError.
 */
export function planHba(input: HbaInput): HbaRule[] {
  const problems: string[] = [];
  const superuser = input.localSuperuser ?? "postgres";
  if (superuser !== "postgres") {
    problems.push(`localSuperuser: ${describe(superuser)} is not accepted; expected "postgres" (the OS user the server runs as)`);
  }
  const clients = cidrList(problems, "allowedClientCidrs", input.allowedClientCidrs, false);
  const replicas = cidrList(problems, "replicaAddresses", input.replicaAddresses, false);
  const monitoringFrom = input.monitoringAddresses === undefined ? undefined : cidrList(problems, "monitoringAddresses", input.monitoringAddresses, false);
  if (monitoringFrom && input.monitoringRole === undefined) problems.push("monitoringAddresses: given without monitoringRole; expected both or neither");

  const taken = new Map<string, string>(); // role name -> field that uses it
  const claim = (field: string, name: string) => {
    const other = taken.get(name);
    if (other !== undefined) problems.push(`${field}: ${describe(name)} is already used by ${other}; expected a distinct role`);
    else taken.set(name, field);
  };
  taken.set(superuser, "localSuperuser (the superuser connects only through the local socket)");

  const replProblem = roleProblem("replicationRole", input.replicationRole);
  if (replProblem) problems.push(replProblem);
  else claim("replicationRole", input.replicationRole);

  if (input.monitoringRole !== undefined) {
    const p = roleProblem("monitoringRole", input.monitoringRole);
    if (p) problems.push(p);
    else claim("monitoringRole", input.monitoringRole);
  }

  const checkDatabases = (field: string, databases: unknown) => {
    if (!Array.isArray(databases) || databases.length === 0) {
      problems.push(`${field}: ${describe(databases)} is not accepted; expected a non-empty list of database names (or "all" / "sameuser")`);
      return;
    }
    databases.forEach((db: unknown, j) => {
      const dbField = `${field}[${j}]`;
      if (db === "all" || db === "sameuser") return;
      if (db === "replication" || db === "samerole") {
        problems.push(`${dbField}: ${describe(db)} is not accepted for an app role; expected a database name, "all" or "sameuser" (replication is for replicationRole only)`);
      } else if (typeof db !== "string" || !IDENTIFIER.test(db)) {
        problems.push(`${dbField}: ${describe(db)} is not a valid database name; expected ${ACCEPTED_IDENTIFIER}`);
      }
    });
  };

  const appRoles = Array.isArray(input.appRoles) ? input.appRoles : [];
  if (!Array.isArray(input.appRoles)) problems.push(`appRoles: ${describe(input.appRoles)} is not accepted; expected a list of { name, databases }`);
  appRoles.forEach((role, i) => {
    const field = `appRoles[${i}]`;
    const p = roleProblem(`${field}.name`, role?.name);
    if (p) problems.push(p);
    else claim(`${field}.name`, role.name);
    checkDatabases(`${field}.databases`, role?.databases);
  });

  const readonlyRoles = input.readonlyRoles ?? [];
  if (!Array.isArray(readonlyRoles)) problems.push(`readonlyRoles: ${describe(readonlyRoles)} is not accepted; expected a list of { name, databases, addresses }`);
  const readonlyAddresses = (Array.isArray(readonlyRoles) ? readonlyRoles : []).map((role, i) => {
    const field = `readonlyRoles[${i}]`;
    const p = roleProblem(`${field}.name`, role?.name);
    if (p) problems.push(p);
    else claim(`${field}.name`, role.name);
    checkDatabases(`${field}.databases`, role?.databases);
    const addresses = cidrList(problems, `${field}.addresses`, role?.addresses, false);
    if (Array.isArray(role?.addresses) && role.addresses.length === 0) {
      problems.push(`${field}.addresses: [] is not accepted; expected at least one CIDR or IP the role connects from`);
    }
    return addresses;
  });

  if (problems.length > 0) throw new HbaError(problems);

  const hostType = input.requireTls ? "hostssl" : "host";
  const rules: HbaRule[] = [
    { type: "local", databases: ["all"], users: [superuser], method: "peer", comment: "OS user postgres only: administration, pgBackRest, pg_rewind on this host" },
    { type: "local", databases: ["replication"], users: [superuser], method: "peer", comment: "local pg_basebackup / pg_receivewal as the OS postgres user" },
    { type: "local", databases: ["all"], users: ["all"], method: "scram-sha-256", comment: "every other local role with its password" },
  ];
  for (const role of appRoles) {
    const databases = [...new Set(role.databases)];
    clients.forEach((address, i) => {
      rules.push({ type: hostType, databases, users: [role.name], address, method: "scram-sha-256", comment: i === 0 ? `app role ${role.name}` : undefined });
    });
  }
  (Array.isArray(readonlyRoles) ? readonlyRoles : []).forEach((role, i) => {
    const databases = [...new Set(role.databases)];
    (readonlyAddresses[i] ?? []).forEach((address, j) => {
      rules.push({ type: hostType, databases, users: [role.name], address, method: "scram-sha-256", comment: j === 0 ? `read-only role ${role.name}, only from its own hosts` : undefined });
    });
  });
  if (input.monitoringRole !== undefined) {
    const monitoringRole = input.monitoringRole;
    (monitoringFrom ?? clients).forEach((address, i) => {
      rules.push({ type: hostType, databases: monitoringFrom ? ["postgres"] : ["all"], users: [monitoringRole], address, method: "scram-sha-256", comment: i === 0 ? (monitoringFrom ? "monitoring, only from the monitoring node" : "monitoring") : undefined });
    });
  }
  replicas.forEach((address, i) => {
    rules.push({ type: hostType, databases: ["replication"], users: [input.replicationRole], address, method: "scram-sha-256", comment: i === 0 ? "streaming replication, only from cluster members" : undefined });
  });
  if (input.allowRewind ?? true) replicas.forEach((address, i) => {
    rules.push({ type: hostType, databases: ["postgres"], users: [input.replicationRole], address, method: "scram-sha-256", comment: i === 0 ? "pg_rewind's source connection when a demoted primary rejoins" : undefined });
  });
  rules.push(
    { type: "host", databases: ["all"], users: ["all"], address: "0.0.0.0/0", method: "reject", comment: "everything else is refused, explicitly" },
    { type: "host", databases: ["all"], users: ["all"], address: "::/0", method: "reject" },
    { type: "host", databases: ["replication"], users: ["all"], address: "0.0.0.0/0", method: "reject" },
    { type: "host", databases: ["replication"], users: ["all"], address: "::/0", method: "reject" },
  );
  return rules.map((rule) => (rule.comment === undefined ? withoutComment(rule) : rule));
}

function withoutComment(rule: HbaRule): HbaRule {
  const copy = { ...rule };
  delete copy.comment;
  return copy;
}

const HOST_TYPES = new Set(["host", "hostssl", "hostnossl"]);
const METHODS = new Set<HbaMethod>(["peer", "scram-sha-256", "cert", "reject", "trust"]);

function checkNames(problems: string[], field: string, names: unknown, keywords: Set<string>) {
  if (!Array.isArray(names) || names.length === 0) {
    problems.push(`${field}: ${describe(names)} is not accepted; expected a non-empty list`);
    return;
  }
  names.forEach((name, i) => {
    if (typeof name !== "string" || (!keywords.has(name) && !IDENTIFIER.test(name))) {
      problems.push(`${field}[${i}]: ${describe(name)} is not accepted; expected ${[...keywords].join(", ")} or a name of ${ACCEPTED_IDENTIFIER}`);
    }
  });
}

/**
 * Renders rules as pg_hba.conf, in order (PostgreSQL uses the first match), columns aligned, deterministic.
 * Refuses, with every problem at once in an HbaError: trust on any network rule, trust on a local rule that
 * is not acknowledged, peer on a network rule, malformed CIDRs, names and methods.
 */
export function renderHba(rules: HbaRule[]): string {
  const problems: string[] = [];
  const rows: Array<{ comment?: string; cells: string[] }> = [];
  rules.forEach((rule, i) => {
    const field = `rules[${i}]`;
    checkNames(problems, `${field}.databases`, rule.databases, DATABASE_KEYWORDS);
    checkNames(problems, `${field}.users`, rule.users, USER_KEYWORDS);
    if (!METHODS.has(rule.method)) {
      problems.push(`${field}.method: ${describe(rule.method)} is not accepted; expected one of ${[...METHODS].join(", ")}`);
    }
    if (rule.comment !== undefined && /[\r\n]/.test(rule.comment)) {
      problems.push(`${field}.comment: must be one line`);
    }
    const cells = [rule.type, (rule.databases ?? []).join(","), (rule.users ?? []).join(",")];
    if (rule.type === "local") {
      if (rule.method === "trust" && rule.trustAcknowledged !== true) {
        problems.push(`${field}.method: "trust" on a local rule lets any OS user become any role; set trustAcknowledged: true if that is really meant, or use peer / scram-sha-256`);
      }
    } else if (HOST_TYPES.has(rule.type)) {
      if (rule.method === "trust") {
        problems.push(`${field}.method: "trust" over the network (${rule.type} ${describe(rule.address)}) is refused; expected scram-sha-256, cert or reject`);
      }
      if (rule.method === "peer") {
        problems.push(`${field}.method: "peer" works only on local rules; expected scram-sha-256, cert or reject for ${rule.type}`);
      }
      const parsed = parseCidr(rule.address);
      if ("problem" in parsed) problems.push(`${field}.address: ${parsed.problem}`);
      else cells.push(parsed.cidr);
    } else {
      problems.push(`${field}.type: ${describe((rule as { type: unknown }).type)} is not accepted; expected local, host, hostssl or hostnossl`);
    }
    if (rule.type === "local") cells.push("");
    cells.push(rule.method);
    rows.push({ comment: rule.comment, cells });
  });
  if (problems.length > 0) throw new HbaError(problems);

  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r.cells[c]?.length ?? 0)));
  const lines = [
    "# pg_hba.conf generated by homelab-data (components/postgres/hba.ts); policy: adrs/0003-pg-hba-policy.md.",
    "# PostgreSQL uses the first rule that matches type, database, user and address.",
    "",
  ];
  for (const row of rows) {
    if (row.comment !== undefined) lines.push(`# ${row.comment}`);
    const padded = row.cells.map((cell, c) => (c < 4 ? cell.padEnd(widths[c] ?? 0) : cell));
    lines.push(padded.join("  ").replace(/\s+$/, ""));
  }
  return `${lines.join("\n")}\n`;
}
