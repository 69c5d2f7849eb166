// How an empty cluster will be filled, decided before anything is registered (ADR 0012): `pulumi preview` and
// `up` fail in seconds when the primary's entrypoint would refuse anyway (initdb over a stanza that holds
// backups, a restore from a repository that holds none), naming the stanza, its newest backup and the ways
// out. The entrypoint (components/postgres/image entrypoint.sh bootstrap_primary) keeps the same rules, for
// nodes made by other means; this is the early answer, on the Docker platforms, read from the engine:
//   - any PostgreSQL data volume exists: an existing data directory decides (ADR 0011), nothing to check;
//   - else the repository volume: absent (a new repository), or `pgbackrest info` read from it, offline.
import type { HomelabPlan } from "./plan.ts";
import { docker, dockerEnv } from "./docker-node.ts";

export type BootstrapFrom = "auto" | "initdb" | "backup";

/** What the retained repository holds for the stanza: as the entrypoint's repository_state. */
export type RepositoryHolding = { kind: "none" } | { kind: "backups"; newest: string; count: number } | { kind: "empty"; code: number; message: string };

/**
 * The refusal the primary's entrypoint would die with on an empty data directory, or undefined when it will
 * initdb or restore. Messages name the config key, the stanza, its newest backup and the two ways out.
 */
export function bootstrapRefusal(mode: BootstrapFrom, holding: RepositoryHolding, ctx: { stack: string; stanza: string }): string | undefined {
  const key = "homelab-data:postgres.bootstrapFrom";
  const purge = `\`npx homelab down --stack ${ctx.stack} --purge-backups --yes\` (deletes every backup of the stack)`;
  if (holding.kind === "backups") {
    if (mode !== "initdb") return undefined;
    return `${key}: initdb, but the retained repository holds stanza '${ctx.stanza}' with ${holding.count} backup${holding.count === 1 ? "" : "s"} (newest ${holding.newest}): a new cluster would never match its archive. Either restore it (bootstrapFrom: auto, the default, or backup), or start empty after ${purge}`;
  }
  if (holding.kind === "none") {
    if (mode !== "backup") return undefined;
    return `${key}: backup, but the repository holds no stanza '${ctx.stanza}' (nothing to restore). Use bootstrapFrom: auto (restores when there is a backup, initdb otherwise) or initdb`;
  }
  return `stanza '${ctx.stanza}' exists in the retained repository but holds no backup (pgbackrest status ${holding.code}: ${holding.message}): it can neither be restored nor initdb'ed over (bootstrapFrom: ${mode}). Take a backup if its cluster still runs, or remove it to start empty: ${purge}`;
}

/** `pgbackrest --output=json info` of one stanza -> what the repository holds (the entrypoint's reading). */
export function repositoryHolding(infoJson: string, stanza: string): RepositoryHolding {
  const list = JSON.parse(infoJson) as { name?: string; status?: { code?: number; message?: string }; backup?: { label?: string }[] }[];
  const entry = list.find((s) => s.name === stanza) ?? list[0];
  const backups = entry?.backup ?? [];
  if (backups.length > 0) return { kind: "backups", newest: backups[backups.length - 1]?.label ?? "?", count: backups.length };
  const code = entry?.status?.code ?? 1;
  return code === 1 ? { kind: "none" } : { kind: "empty", code, message: entry?.status?.message ?? "" };
}

/**
 * What the early check may conclude from repo1 alone. With repo2 (ADR 0013) the primary asks both
 * repositories; repo2 sits off the machine and is not read offline here, so only backups in repo1 are a
 * conclusion; anything less (after a site loss repo1 is empty and repo2 holds the stanza) is the
 * entrypoint's to decide.
 */
export function holdingWithRepo2(holding: RepositoryHolding | undefined, hasRepo2: boolean): RepositoryHolding | undefined {
  return hasRepo2 && holding?.kind !== "backups" ? undefined : holding;
}

/**
 * On a Docker engine: what an empty primary would find, or undefined when there is nothing to decide (a data
 * volume exists) or nothing readable (no engine, no image yet: the entrypoint decides then).
 */
export async function repositoryHoldingOnDocker(plan: HomelabPlan, stanza: string, dockerHost?: string): Promise<RepositoryHolding | undefined> {
  try {
    return holdingWithRepo2(await readHolding(plan, stanza, dockerHost), plan.facts.pgbackrest.repo2 !== undefined);
  } catch {
    return undefined; // no docker CLI here: the node applier will say so, with its own error
  }
}

async function readHolding(plan: HomelabPlan, stanza: string, dockerHost?: string): Promise<RepositoryHolding | undefined> {
  const env = dockerEnv(dockerHost);
  // No engine answering: nothing can be read (and up would fail on its own first step anyway).
  if ((await docker(["version", "--format", "{{.Server.Version}}"], { env, allowFailure: true, timeoutMs: 15_000 })).code !== 0) return undefined;
  const volumeExists = async (name: string) => (await docker(["volume", "inspect", name], { env, allowFailure: true, timeoutMs: 15_000 })).code === 0;
  const pgVolumes = plan.nodes.filter((n) => n.role === "postgres-primary" || n.role === "postgres-replica").flatMap((n) => n.volumes.map((v) => v.name));
  for (const v of pgVolumes) if (await volumeExists(v)) return undefined;
  const repo = plan.nodes.find((n) => n.role === "backup-repository");
  const repoVolume = repo?.volumes[0];
  if (!repo || !repoVolume) return undefined;
  if (!(await volumeExists(repoVolume.name))) return { kind: "none" };
  if ((await docker(["image", "inspect", repo.image.name], { env, allowFailure: true, timeoutMs: 15_000 })).code !== 0) return undefined;
  // The repository read offline from its volume (read-only, no network): pgBackRest needs no server for info.
  const r = await docker(
    ["run", "--rm", "--network", "none", "--user", "postgres", "--entrypoint", "/usr/bin/pgbackrest", "-v", `${repoVolume.name}:${repoVolume.mountPath}:ro`, repo.image.name, `--stanza=${stanza}`, `--repo1-path=${repoVolume.mountPath}`, "--log-level-console=off", "--log-level-file=off", "--lock-path=/tmp", "--output=json", "info"],
    { env, allowFailure: true, timeoutMs: 60_000 },
  );
  if (r.code !== 0) return undefined;
  return repositoryHolding(r.stdout, stanza);
}
