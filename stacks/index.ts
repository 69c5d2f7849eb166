// The Pulumi program (Pulumi.yaml `main`): stack config -> validated spec -> Homelab (docs/architecture.md
// "Data flow"). A config mistake stops here with every problem listed and nothing created.
import * as pulumi from "@pulumi/pulumi";
import { CONFIG_KEYS, ConfigError, validateConfig } from "../components/config/index.ts";
import { Homelab } from "../components/homelab.ts";
import { planHomelab } from "../components/plan.ts";
import { platformOfPlan } from "../components/platform/plan.ts";
import { bootstrapRefusal, repositoryHoldingOnDocker } from "../components/platform/bootstrap-preflight.ts";
import { readSecrets, redactedSecrets } from "../components/secrets.ts";

const config = new pulumi.Config();
const stack = pulumi.getStack();

// Every top-level schema key (platform, docker, libvirt, hosts, postgres, pgbackrest, redis, duckdb, objectives).
// Structured values reach the program as JSON (getObject); a plain scalar such as `platform: docker` is not
// JSON and is passed on as the string it is, for the schema to judge.
const raw: Record<string, unknown> = {};
for (const key of CONFIG_KEYS) {
  const text = config.get(key);
  if (text === undefined) continue;
  try {
    raw[key] = config.getObject<unknown>(key);
  } catch {
    raw[key] = text;
  }
}

let spec;
try {
  spec = validateConfig(stack, raw, `stack ${stack} (stacks/Pulumi.${stack}.yaml)`);
} catch (err) {
  // RunError: the engine prints the message without a stack trace; it is the user's config, not our bug.
  if (err instanceof ConfigError) throw new pulumi.RunError(err.message);
  throw err;
}

// Switching platform on a deployed stack would replace every node under another resource type (ADR 0010):
// refused before anything is registered, in preview and up alike, from the stack's own last outputs.
const deployed = (await new pulumi.StackReference(`organization/${pulumi.getProject()}/${stack}`).getOutputDetails("topology")).value as { platform?: string } | undefined;
const structural = planHomelab(spec, redactedSecrets());
const platform = platformOfPlan(structural);
if (deployed?.platform && deployed.platform !== platform) {
  const key = platform === "mixed" || deployed.platform === "mixed" ? "hosts" : "platform";
  throw new pulumi.RunError(
    `homelab-data:${key}: stack ${stack} was built with platform ${deployed.platform} and stacks/Pulumi.${stack}.yaml now says ${platform}; switching would replace every node that moves. Set it back to ${deployed.platform}, or run \`npx homelab down --stack ${stack}\` first (the backup repository stays) and then \`up\` again`,
  );
}

// An empty cluster over a retained repository: refused now, in preview and up alike, when the primary would
// refuse anyway (initdb over a stanza with backups, a restore from nothing), rather than after minutes of up.
if (spec.placement.pgbackrest.kind !== "libvirt") {
  const holding = await repositoryHoldingOnDocker(structural, spec.pgbackrest.stanza, spec.docker.host);
  const refusal = holding && bootstrapRefusal(spec.postgres.bootstrapFrom, holding, { stack, stanza: spec.pgbackrest.stanza });
  if (refusal) throw new pulumi.RunError(refusal);
}

const lab = new Homelab("homelab", { spec, secrets: readSecrets(config, stack) });

export const topology = lab.topology;
