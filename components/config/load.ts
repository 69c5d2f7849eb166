// Stack file -> HomelabSpec. Used by the CLI (validate, render, init) without a Pulumi engine and by the
// Pulumi program (stacks/index.ts) with the engine's config: both go through validateConfig().
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { PROJECT, SECRET_KEYS, homelabConfigSchema, type HomelabSpec, type SecretKey } from "./schema.ts";

/** A user mistake in config: one line per problem, no stack trace wanted. */
export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    readonly source: string,
  ) {
    super(`${source}: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const NON_SCHEMA_KEYS = new Set<string>(Object.keys(SECRET_KEYS));

/** Validates the `homelab-data:` config (prefix stripped) of one stack. Throws ConfigError with every problem. */
export function validateConfig(stack: string, raw: Record<string, unknown>, source = `stack ${stack}`): HomelabSpec {
  const problems: string[] = [];
  if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(stack)) {
    problems.push(`stack name: got ${JSON.stringify(stack)}; expected lower-case letters, digits and '-' (at most 31 chars), it names containers and volumes`);
  }
  const plain: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (NON_SCHEMA_KEYS.has(key)) {
      if (!isSecureValue(value) && value !== undefined) {
        problems.push(`${PROJECT}:${key}: is stored in plaintext; set it with \`pulumi config set --secret ${PROJECT}:${key}\` or \`homelab init --stack ${stack}\``);
      }
      continue;
    }
    plain[key] = value;
  }
  const result = homelabConfigSchema.safeParse(plain, { reportInput: true });
  if (!result.success) problems.push(...result.error.issues.map(formatIssue));
  if (problems.length > 0 || !result.success) throw new ConfigError(problems, source);
  return { stack, ...result.data };
}

function isSecureValue(value: unknown): boolean {
  return typeof value === "object" && value !== null && "secure" in value;
}

/** One line: `homelab-data:postgres.replicas: got -1; expected an integer from 0 to 5`. */
export function formatIssue(issue: z.core.$ZodIssue): string {
  const key = `${PROJECT}:${issue.path.map(String).join(".")}`;
  const got = "input" in issue ? describe(issue.input) : "nothing";
  switch (issue.code) {
    case "unrecognized_keys": {
      const accepted = acceptedKeysAt(issue.path.map(String));
      return issue.keys
        .map((k) => `${key === PROJECT + ":" ? PROJECT + ":" : key + "."}${k}: unknown key; accepted keys here: ${accepted.join(", ")}`)
        .join("\n  - ");
    }
    case "invalid_value":
      return `${key}: got ${got}; expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "invalid_type":
      if (issue.input === undefined) return `${key}: missing; expected ${issue.expected}`;
      return `${key}: got ${got}; expected ${issue.expected === "int" ? "a whole number" : `a ${issue.expected}`}`;
    case "too_small":
    case "too_big": {
      const bound = issue.code === "too_small" ? issue.minimum : issue.maximum;
      const range = rangeFor(issue.path.map(String));
      if (issue.origin === "array") return `${key}: got ${got}; expected ${issue.code === "too_small" ? "at least" : "at most"} ${String(bound)} entr${bound === 1 ? "y" : "ies"}`;
      return `${key}: got ${got}; expected ${range ?? `${issue.code === "too_small" ? ">=" : "<="} ${String(bound)}`}`;
    }
    default:
      return `${key}: got ${got}; ${issue.message}`;
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// Walks the schema to list the keys accepted at a path, for "unknown key" messages.
function acceptedKeysAt(pathParts: string[]): string[] {
  let node: unknown = homelabConfigSchema;
  for (const part of [...pathParts, null]) {
    node = unwrap(node);
    const shape = (node as { shape?: Record<string, unknown> }).shape;
    if (!shape) return [];
    if (part === null) return Object.keys(shape);
    node = shape[part];
  }
  return [];
}

function unwrap(node: unknown): unknown {
  let current = node as { _zod?: { def?: { innerType?: unknown; in?: unknown; schema?: unknown } } };
  for (let i = 0; i < 10 && current?._zod?.def; i++) {
    const def = current._zod.def;
    const next = def.innerType ?? def.in ?? def.schema;
    if (!next) break;
    current = next as typeof current;
  }
  return current;
}

function rangeFor(pathParts: string[]): string | undefined {
  let node: unknown = homelabConfigSchema;
  for (const part of pathParts) {
    node = unwrap(node);
    const shape = (node as { shape?: Record<string, unknown> }).shape;
    if (!shape) return undefined;
    node = shape[part];
  }
  const inner = unwrap(node) as { minValue?: number | null; maxValue?: number | null; _zod?: { def?: { type?: string } } };
  if (inner?._zod?.def?.type !== "number") return undefined;
  const lo = inner.minValue;
  const hi = inner.maxValue;
  const whole = (inner as { isInt?: boolean }).isInt ? "a whole number" : "a number";
  if (lo != null && hi != null && Number.isFinite(lo) && Number.isFinite(hi) && Math.abs(hi) < Number.MAX_SAFE_INTEGER) return `${whole} from ${lo} to ${hi}`;
  if (lo != null && Number.isFinite(lo) && Math.abs(lo) < Number.MAX_SAFE_INTEGER) return `${whole} >= ${lo}`;
  if (hi != null && Number.isFinite(hi) && Math.abs(hi) < Number.MAX_SAFE_INTEGER) return `${whole} <= ${hi}`;
  return undefined;
}

export interface StackFile {
  stack: string;
  file: string;
  /** `homelab-data:` keys, prefix stripped; secret values stay `{ secure: "v1:..." }`. */
  config: Record<string, unknown>;
  /** Keys of other namespaces (e.g. `docker:host`), kept verbatim. */
  otherConfig: Record<string, unknown>;
  encryptionSalt?: string;
}

export function stackFilePath(stack: string, stacksDir = defaultStacksDir()): string {
  return path.join(stacksDir, `Pulumi.${stack}.yaml`);
}

export function defaultStacksDir(): string {
  return path.resolve(process.env.HOMELAB_STACKS_DIR ?? path.join(process.cwd(), "stacks"));
}

/** Reads stacks/Pulumi.<stack>.yaml. YAML syntax errors and a missing file are ConfigErrors too. */
export function readStackFile(stack: string, stacksDir = defaultStacksDir()): StackFile {
  const file = stackFilePath(stack, stacksDir);
  if (!existsSync(file)) {
    throw new ConfigError([`--stack: no stack file ${file}; create it, or pick one of: ${listStacks(stacksDir).join(", ") || "(none)"}`], file);
  }
  const doc = parseDocument(readFileSync(file, "utf8"), { uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `YAML: ${e.message.split("\n")[0]}`), file);
  }
  const data = (doc.toJS() ?? {}) as { config?: Record<string, unknown>; encryptionsalt?: string };
  const config: Record<string, unknown> = {};
  const otherConfig: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data.config ?? {})) {
    if (key.startsWith(`${PROJECT}:`)) config[key.slice(PROJECT.length + 1)] = value;
    else otherConfig[key] = value;
  }
  return { stack, file, config, otherConfig, encryptionSalt: data.encryptionsalt };
}

export function listStacks(stacksDir = defaultStacksDir()): string[] {
  try {
    if (!existsSync(stacksDir)) return [];
    return readdirSync(stacksDir)
      .map((f) => /^Pulumi\.([^.]+)\.yaml$/.exec(f)?.[1])
      .filter((s): s is string => Boolean(s))
      .sort();
  } catch {
    return [];
  }
}

/** readStackFile + validateConfig. */
export function loadStackSpec(stack: string, stacksDir = defaultStacksDir()): HomelabSpec {
  const file = readStackFile(stack, stacksDir);
  return validateConfig(stack, file.config, file.file);
}

export function secretKeysPresent(file: StackFile): SecretKey[] {
  return (Object.keys(SECRET_KEYS) as SecretKey[]).filter((k) => isSecureValue(file.config[k]));
}
