// `homelab validate|render|init --stack <name>`: the stack file checked, rendered for review, given secrets.
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { PROJECT, SECRET_KEYS, loadStackSpec, readStackFile, secretKeysPresent, validateConfig, type HomelabSpec, type SecretKey } from "../components/config/index.ts";
import { placementSummary, planHomelab, redactedSecrets } from "../components/plan.ts";
import { generateSftpKeys } from "../components/pgbackrest/sftp.ts";
import { generateTlsBundle, type TlsBundle } from "../components/pgbackrest/tls.ts";
import { topologyOf } from "../components/topology.ts";
import { UsageError } from "./errors.ts";

interface StackFlags {
  stack: string;
  stacksDir?: string;
}

const stackOption = (cmd: Command) =>
  cmd.requiredOption("--stack <name>", "stack name (stacks/Pulumi.<name>.yaml)").option("--stacks-dir <dir>", "folder of the stack files", "stacks");


export function registerStackCommands(program: Command): void {
  stackOption(program.command("validate").description("Check a stack file against the schema; every problem is reported")).action((flags: StackFlags) => {
    const spec = loadStackSpec(flags.stack, path.resolve(flags.stacksDir ?? "stacks"));
    const plan = planHomelab(spec, redactedSecrets());
    console.log(`stack ${spec.stack}: valid (${placementSummary(spec, plan)}; ${plan.nodes.map((n) => n.name).join(", ")})`);
  });

  stackOption(program.command("render").description("Write every file the stack would put on every node, for review (secrets redacted)"))
    .requiredOption("--out <dir>", "output folder (one sub-folder per node)")
    .action((flags: StackFlags & { out: string }) => {
      const spec = loadStackSpec(flags.stack, path.resolve(flags.stacksDir ?? "stacks"));
      const plan = planHomelab(spec, redactedSecrets());
      const out = path.resolve(flags.out);
      for (const node of plan.nodes) {
        const dir = path.join(out, node.hostname);
        for (const file of node.files) {
          const target = path.join(dir, file.path.replace(/^\/etc\/homelab\//, ""));
          mkdirSync(path.dirname(target), { recursive: true });
          writeFileSync(target, file.content, { mode: file.mode });
        }
        const { files, ...rest } = node;
        writeFileSync(path.join(dir, "node.json"), `${JSON.stringify({ ...rest, files: files.map((f) => ({ path: f.path, mode: f.mode.toString(8), secret: f.secret })) }, null, 2)}\n`);
      }
      writeFileSync(path.join(out, "topology.json"), `${JSON.stringify(topologyOf(spec, plan), null, 2)}\n`);
      console.log(`rendered ${plan.nodes.length} nodes of stack ${spec.stack} into ${out}: ${plan.nodes.map((n) => n.hostname).join(", ")}`);
    });

  stackOption(program.command("init").description("Generate strong passwords and TLS certificates and store them as Pulumi secrets"))
    .option("--rotate", "replace existing secrets too (re-run pulumi up afterwards)", false)
    .action(async (flags: StackFlags & { rotate: boolean }) => {
      console.log(`stack ${flags.stack}: ${(await ensureSecrets(flags.stack, path.resolve(flags.stacksDir ?? "stacks"), { rotate: flags.rotate })).detail}`);
    });

  stackOption(program.command("secret").description("Print one secret of the stack (decrypted), e.g. for redis-cli --askpass"))
    .argument("<key>", Object.keys(SECRET_KEYS).filter((k) => k !== "tls").join(" | "))
    .action(async (key: string, flags: StackFlags) => {
      const keys = Object.keys(SECRET_KEYS).filter((k) => k !== "tls");
      if (!keys.includes(key)) throw new UsageError([`secret: got ${JSON.stringify(key)}; expected one of ${keys.join(", ")}`]);
      const { preparePulumi, pulumi } = await import("./setup.ts");
      await preparePulumi();
      process.stdout.write(await pulumi(["config", "get", `${PROJECT}:${key}`, "--stack", flags.stack]));
    });
}

/**
 * Every secret the stack needs, in Pulumi secret config: generated when missing (all of them with `rotate`,
 * but an existing repo2 passphrase: secretsToGenerate),
 * and a TLS certificate, from the stack's own CA, for every node the plan has and the bundle lacks (a node
 * added to the stack file later). Returns what it did, in one line.
 */
export async function ensureSecrets(stack: string, stacksDir: string, opts: { rotate?: boolean } = {}): Promise<{ detail: string; secrets: Partial<Record<SecretKey, string>> }> {
  const file = readStackFile(stack, stacksDir);
  const spec = validateConfig(stack, file.config, file.file);
  const { generate: missing, kept } = secretsToGenerate(secretKeysPresent(file), Boolean(opts.rotate));
  const done: string[] = [];
  if (kept.length > 0) done.push(`kept ${kept.join(", ")}: a new repo2 passphrase could not decrypt the backups already in repo2`);
  if (missing.length > 0) {
    const values = generateSecrets(spec, missing);
    for (const key of missing) pulumiConfigSetSecret(stack, key, values[key] as string);
    done.push(`stored ${missing.length} secret(s) as Pulumi secrets: ${missing.join(", ")}`);
  }
  let secrets = readStackSecrets(stack);
  if (!missing.includes("tls") && secrets.tls) {
    const hostnames = planHomelab(spec, redactedSecrets()).nodes.map((n) => n.hostname);
    const bundle = JSON.parse(secrets.tls) as TlsBundle;
    const lacking = hostnames.filter((h) => !bundle.nodes[h]);
    if (lacking.length > 0) {
      pulumiConfigSetSecret(stack, "tls", JSON.stringify(generateTlsBundle(hostnames, bundle)));
      done.push(`issued TLS certificates from the stack's CA for ${lacking.join(", ")}`);
      secrets = readStackSecrets(stack);
    }
  }
  return { detail: done.length > 0 ? done.join("; ") : `all ${Object.keys(SECRET_KEYS).length} set (\`homelab init --rotate\` replaces them)`, secrets };
}

/**
 * Which secrets to generate: the missing ones, or with `rotate` all of them except repo2's cipher
 * passphrase when it exists (pgBackRest cannot re-encrypt a repository: a new passphrase would leave every
 * backup and WAL file in repo2 unreadable, ADR 0013).
 */
export function secretsToGenerate(present: readonly SecretKey[], rotate: boolean): { generate: SecretKey[]; kept: SecretKey[] } {
  const keep = new Set<SecretKey>(rotate ? present.filter((k) => k === "repo2CipherPass") : present);
  return { generate: (Object.keys(SECRET_KEYS) as SecretKey[]).filter((k) => !keep.has(k)), kept: rotate ? [...keep] : [] };
}

/** The stack's secret config, decrypted in this process only (one `pulumi config` call; never printed). */
export function readStackSecrets(stack: string): Partial<Record<SecretKey, string>> {
  const r = spawnSync("pulumi", ["config", "--json", "--show-secrets", "--stack", stack], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new UsageError([`pulumi config --stack ${stack} failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-2).join(" ")}`]);
  const all = JSON.parse(r.stdout || "{}") as Record<string, { value?: string; secret?: boolean }>;
  const out: Partial<Record<SecretKey, string>> = {};
  for (const key of Object.keys(SECRET_KEYS) as SecretKey[]) {
    const v = all[`${PROJECT}:${key}`]?.value;
    if (typeof v === "string") out[key] = v;
  }
  return out;
}

/** 32 random bytes per password (base64url: no quoting trouble in conninfo, ACL or pgpass files). */
export function generatePassword(): string {
  return randomBytes(32).toString("base64url");
}

export function generateSecrets(spec: HomelabSpec, keys: SecretKey[]): Partial<Record<SecretKey, string>> {
  const out: Partial<Record<SecretKey, string>> = {};
  for (const key of keys) {
    if (key === "tls") {
      const hostnames = planHomelab(spec, redactedSecrets()).nodes.map((n) => n.hostname);
      out.tls = JSON.stringify(generateTlsBundle(hostnames));
    } else if (key === "repo2Ssh") out.repo2Ssh = JSON.stringify(generateSftpKeys(spec.stack));
    else out[key] = generatePassword();
  }
  return out;
}

function pulumiConfigSetSecret(stack: string, key: SecretKey, value: string): void {
  // The value goes through stdin, never argv (argv is visible in `ps`).
  const r = spawnSync("pulumi", ["config", "set", "--secret", "--stack", stack, `${PROJECT}:${key}`], { input: value, encoding: "utf8" });
  if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") {
    throw new UsageError([`pulumi CLI not found on PATH; run \`eval "$(bash tools/toolchain.sh --env)"\` first (see tools/README.md)`]);
  }
  if (r.status !== 0) throw new UsageError([`pulumi config set --secret ${PROJECT}:${key} failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-2).join(" ")}`]);
}
