// The `docker` platform (the default): NodePlans made by @pulumi/command `local.Command` resources that run
// the one node applier's script (components/platform/docker-node.ts, which the e2e harness and the drills
// run too). Needs no docker provider plugin, so it works where that cannot be downloaded
// (docs/architecture.md "Facts about the build machines"); `docker-api` (@pulumi/docker) is the other choice.
//
// Secrets: a node's files reach the container as a tar stream on the command's stdin (base64, a Pulumi
// secret, marked secret in state too), `base64 -d | docker cp - <container>:/`: never in argv, env or a
// host temp file. No command prints file contents. (@pulumi/command 4.5.0 has no `logging` option; what a
// command prints is shown, so nothing secret is ever printed.)
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { HomelabSpec } from "../config/index.ts";
import { applyNodeScript, containerSpecOf, filesTarBase64, networkCreateArgs, removeNodeScript, shellQuote, volumeCreateArgs } from "./docker-node.ts";
import type { CreateOptions, NodeCommand, NodeOptions, NodeResources, Platform, PlatformOptions } from "./platform.ts";
import { builtFor, volumeResourceOptions, volumeSuffix } from "./platform.ts";
import type { HomelabPlan, ImageRef, NodeFile, NodeHandle, NodePlan } from "./plan.ts";

/** The project root: image build contexts (ImageRef.context) are relative to it. */
export const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `homelab/postgres:17` -> `postgres`: the resource-name suffix of an image. */
export function imageShortName(ref: ImageRef): string {
  const last = ref.name.split("/").at(-1) ?? ref.name;
  return last.split(":")[0] ?? last;
}

const sh = (argv: string[]) => argv.map(shellQuote).join(" ");
const quiet = (argv: string[]) => `${sh(argv)} >/dev/null`;

/** Content digest of an image build context: a changed Dockerfile or script rebuilds the image. */
export function contextDigest(dir: string): string {
  if (!existsSync(dir)) return "absent";
  const hash = createHash("sha256");
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = lstatSync(abs);
    if (st.isDirectory()) {
      for (const entry of readdirSync(abs).sort()) walk(path.join(rel, entry));
    } else {
      hash.update(`${rel}\0${st.mode & 0o777}\0`);
      hash.update(st.isSymbolicLink() ? readlinkSync(abs) : readFileSync(abs));
      hash.update("\0");
    }
  };
  walk("");
  return hash.digest("hex").slice(0, 16);
}

/** `docker exec [--user u] <container> sh -c <cmd>` for a NodeCommand. */
export function dockerExecScript(node: NodePlan, user: string | undefined, script: string): string {
  return sh(["docker", "exec", ...(user ? ["--user", user] : []), node.hostname, "sh", "-c", script]);
}

export function dockerExecCommand(
  name: string,
  node: NodePlan,
  cmd: NodeCommand,
  opts: { parent: pulumi.Resource; dependsOn: pulumi.Resource[]; dockerHost?: string },
): command.local.Command {
  const wrap = (script: pulumi.Input<string>) => pulumi.output(script).apply((s) => dockerExecScript(node, cmd.user, s));
  return new command.local.Command(
    name,
    {
      create: wrap(cmd.create),
      ...(cmd.delete !== undefined ? { delete: wrap(cmd.delete) } : {}),
      ...(cmd.triggers !== undefined ? { triggers: cmd.triggers } : {}),
      ...(opts.dockerHost ? { environment: { DOCKER_HOST: opts.dockerHost } } : {}),
    },
    { parent: opts.parent, dependsOn: opts.dependsOn },
  );
}

export class DockerCliPlatform implements Platform {
  readonly kind = "docker" as const;
  private network?: command.local.Command;
  private readonly images = new Map<string, command.local.Command>();
  private readonly environment?: Record<string, string>;
  private readonly made: Record<string, pulumi.Output<NodeHandle>> = {};

  constructor(
    private readonly spec: HomelabSpec,
    _opts: PlatformOptions,
  ) {
    if (spec.docker.host) this.environment = { DOCKER_HOST: spec.docker.host };
  }

  private args(args: command.local.CommandArgs): command.local.CommandArgs {
    return { ...args, ...(this.environment ? { environment: this.environment } : {}) };
  }

  createNetwork(plan: HomelabPlan, opts: CreateOptions): command.local.Command {
    if (this.network) throw new Error("createNetwork: the stack network was already created");
    const net = plan.network.name;
    this.network = new command.local.Command(
      opts.name,
      this.args({
        // Adopts a network left by an interrupted run instead of failing on the name.
        create: `${quiet(["docker", "network", "inspect", net])} 2>&1 || ${quiet(["docker", ...networkCreateArgs(plan)])}`,
        delete: `if ${quiet(["docker", "network", "inspect", net])} 2>&1; then ${quiet(["docker", "network", "rm", net])}; fi`,
      }),
      { parent: opts.parent, deleteBeforeReplace: true },
    );
    return this.network;
  }

  createImages(plan: HomelabPlan, opts: CreateOptions): command.local.Command[] {
    for (const node of plan.nodes) {
      const ref = node.image;
      if (this.images.has(ref.name)) continue;
      const context = path.resolve(PROJECT_ROOT, ref.context);
      this.images.set(
        ref.name,
        new command.local.Command(
          `${opts.name}-${imageShortName(ref)}`,
          this.args({
            // scripts/build-images.sh does everything an image needs on a bare engine (debootstrap base images,
            // the DuckDB host's locked npm install, docker build; a no-op when current). Its log goes to stderr;
            // stdout is only the image ID, so containers are replaced exactly when the image changes.
            create: `${sh(["bash", "scripts/build-images.sh", imageShortName(ref)])} >&2 && ${sh(["docker", "image", "inspect", "--format", "{{.Id}}", ref.name])}`,
            dir: PROJECT_ROOT,
            triggers: [ref.name, ref.baseImage, contextDigest(context)],
          }),
          // Images stay on destroy: they are a build cache, not state.
          { parent: opts.parent },
        ),
      );
    }
    return [...this.images.values()];
  }

  createNode(plan: HomelabPlan, node: NodePlan, files: pulumi.Output<NodeFile[]>, opts: NodeOptions): NodeResources {
    const { network, image } = builtFor(node, this.network, this.images);
    const spec = containerSpecOf(plan, node);
    const volumes = node.volumes.map((v, i) => {
      const inspect = quiet(["docker", "volume", "inspect", v.name]);
      return new command.local.Command(
        `${opts.name}-${volumeSuffix(node, v.name, i)}`,
        this.args({
          // Re-attaches a retained volume (the backup repository after destroy + up) instead of failing.
          create: `${inspect} 2>&1 || ${quiet(["docker", ...volumeCreateArgs(spec.volumes[i]!)])}`,
          // A retained volume has no delete command at all (and retainOnDelete besides).
          ...(v.retainOnDestroy ? {} : { delete: `if ${inspect} 2>&1; then ${quiet(["docker", "volume", "rm", v.name])}; fi` }),
        }),
        { parent: opts.parent, ...volumeResourceOptions(v) },
      );
    });
    const container = new command.local.Command(
      opts.name,
      this.args({
        create: applyNodeScript(spec),
        delete: removeNodeScript(spec),
        stdin: pulumi.secret(files.apply(filesTarBase64)),
        // A rebuilt image (new ID) replaces the container.
        triggers: [image.stdout],
      }),
      {
        parent: opts.parent,
        dependsOn: [network, image, ...volumes, ...opts.dependsOn],
        // The container name is fixed: the old one must go before the new one is made.
        deleteBeforeReplace: true,
        additionalSecretOutputs: ["stdin"],
      },
    );
    const dockerHost = this.spec.docker.host;
    this.made[node.name] = container.id.apply((): NodeHandle => ({ kind: "docker", container: spec.name, ...(dockerHost ? { dockerHost } : {}) }));
    return { ready: container, resources: [...volumes, container], handle: container.id.apply(() => spec.name) };
  }

  handles(): Record<string, pulumi.Output<NodeHandle>> {
    return { ...this.made };
  }

  runOnNode(name: string, node: NodePlan, cmd: NodeCommand, opts: { parent: pulumi.Resource; dependsOn: pulumi.Resource[] }): command.local.Command {
    return dockerExecCommand(name, node, cmd, { ...opts, dockerHost: this.spec.docker.host });
  }
}
