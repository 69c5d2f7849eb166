// The stack's secrets as the Pulumi program sees them: read from `homelab-data:<key>` secret config (set by
// `homelab init`) into ONE Output that stays a Pulumi secret end to end (docs/architecture.md "Components":
// secrets only ever travel as Pulumi secrets). The structural plan uses redactedSecrets() instead, so names,
// ports and volumes are known at construction without ever unwrapping a real secret.
import * as pulumi from "@pulumi/pulumi";
import { PROJECT, SECRET_KEYS, type SecretKey } from "./config/index.ts";
import { parseSftpKeys } from "./pgbackrest/sftp.ts";
import type { TlsBundle } from "./pgbackrest/tls.ts";
import type { HomelabSecrets } from "./plan.ts";

/** Placeholders for structural plans and review renders: every secret is visibly redacted, nothing real is read. */
export { redactedSecrets } from "./plan.ts";

/** Raised while the program starts: a user mistake, reported without a stack trace and before anything is created. */
export class MissingSecretsError extends pulumi.RunError {
  constructor(
    stack: string,
    readonly missing: SecretKey[],
  ) {
    super(
      `stack ${stack}: ${missing.length} secret${missing.length === 1 ? " is" : "s are"} not set: ` +
        `${missing.map((k) => `${PROJECT}:${k}`).join(", ")}; run \`homelab init --stack ${stack}\` to generate and store them`,
    );
    this.name = "MissingSecretsError";
  }
}

/**
 * Every key of SECRET_KEYS as one secret Output. All missing keys are reported at once (one
 * `homelab init` fixes them all); `tls` is JSON and is parsed inside the apply, so its content never leaves
 * the secret.
 */
export function readSecrets(config: pulumi.Config, stack: string = pulumi.getStack()): pulumi.Output<HomelabSecrets> {
  const keys = Object.keys(SECRET_KEYS) as SecretKey[];
  // getSecret (not requireSecret) so that every missing key is named in one message.
  const values = new Map(keys.map((k) => [k, config.getSecret(k)] as const));
  const missing = keys.filter((k) => values.get(k) === undefined);
  if (missing.length > 0) throw new MissingSecretsError(stack, missing);
  const record = Object.fromEntries(keys.map((k) => [k, values.get(k) as pulumi.Output<string>])) as Record<SecretKey, pulumi.Output<string>>;
  return pulumi.secret(
    pulumi.all(record).apply((values): HomelabSecrets => {
      const { tls, repo2Ssh, ...passwords } = values as Record<SecretKey, string>;
      return { ...passwords, tls: parseTlsBundle(tls, stack), repo2Ssh: parseRepo2Ssh(repo2Ssh, stack) };
    }),
  );
}

/** Parses the `repo2Ssh` secret (JSON key pairs); errors name the key, never the content. */
export function parseRepo2Ssh(text: string, stack: string): HomelabSecrets["repo2Ssh"] {
  try {
    return parseSftpKeys(text, `run \`homelab init --stack ${stack} --rotate\` to generate new keys`);
  } catch (err) {
    throw new pulumi.RunError(`${PROJECT}:${(err as Error).message}`);
  }
}

/** Parses the `tls` secret; errors name the key and what is wrong, never the content. */
export function parseTlsBundle(text: string, stack: string): TlsBundle {
  const fix = `run \`homelab init --stack ${stack} --rotate\` to issue a new one`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new pulumi.RunError(`${PROJECT}:tls: is not JSON; ${fix}`);
  }
  const bundle = value as Partial<TlsBundle> | null;
  if (!bundle || typeof bundle.caCert !== "string" || typeof bundle.caKey !== "string" || typeof bundle.nodes !== "object" || bundle.nodes === null) {
    throw new pulumi.RunError(`${PROJECT}:tls: expected { caCert, caKey, nodes: { <host>: { cert, key } } }; ${fix}`);
  }
  return bundle as TlsBundle;
}
