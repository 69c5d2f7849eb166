// The `docker-api` platform: NodePlans as @pulumi/docker resources on the local engine or a remote one
// (`docker.host: ssh://user@nuc`). An explicit choice (`platform: docker-api`), verified here with Pulumi
// mocks only: its provider plugin cannot be installed offline (ADR 0010). The container's settings come from
// the same ContainerSpec the default platform's node applier uses (docker-node.ts). Node files travel as container uploads whose
// contents come from the secret plan, so passwords and keys stay Pulumi secrets in state and in the diff.
import path from "node:path";
import * as docker from "@pulumi/docker";
import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { HomelabSpec } from "../config/index.ts";
import { containerSpecOf, healthTimeoutSeconds } from "./docker-node.ts";
import { PROJECT_ROOT, dockerExecCommand, imageShortName } from "./docker-cmd.ts";
import type { CreateOptions, NodeCommand, NodeOptions, NodeResources, Platform, PlatformOptions } from "./platform.ts";
import { builtFor, memoryMiB, octalMode, volumeResourceOptions, volumeSuffix } from "./platform.ts";
import type { HomelabPlan, NodeFile, NodeHandle, NodePlan } from "./plan.ts";

const labelList = (labels: Record<string, string>) => Object.entries(labels).map(([label, value]) => ({ label, value }));

/** Container uploads of a node's files; the caller passes a secret Output, so the result stays secret. */
export function uploadsOf(files: NodeFile[]): docker.types.input.ContainerUpload[] {
  return files.map((f) => ({ file: f.path, content: f.content, permissions: octalMode(f.mode) }));
}

export class DockerApiPlatform implements Platform {
  readonly kind = "docker-api" as const;
  /** Explicit provider only for a remote engine; the local engine uses the default provider. */
  readonly provider?: docker.Provider;
  private network?: docker.Network;
  private readonly images = new Map<string, docker.Image>();
  private readonly made: Record<string, pulumi.Output<NodeHandle>> = {};

  constructor(
    private readonly spec: HomelabSpec,
    opts: PlatformOptions,
  ) {
    if (spec.docker.host) {
      this.provider = new docker.Provider(`${opts.name}-docker`, { host: spec.docker.host }, { parent: opts.parent });
    }
  }

  private options(parent: pulumi.Resource, extra: pulumi.CustomResourceOptions = {}): pulumi.CustomResourceOptions {
    return { parent, ...(this.provider ? { provider: this.provider } : {}), ...extra };
  }

  createNetwork(plan: HomelabPlan, opts: CreateOptions): docker.Network {
    if (this.network) throw new Error("createNetwork: the stack network was already created");
    this.network = new docker.Network(
      opts.name,
      {
        name: plan.network.name,
        driver: "bridge",
        ipamConfigs: [{ subnet: plan.network.subnet, gateway: plan.network.gateway }],
        labels: labelList(plan.labels),
      },
      this.options(opts.parent, { deleteBeforeReplace: true }),
    );
    return this.network;
  }

  createImages(plan: HomelabPlan, opts: CreateOptions): docker.Image[] {
    for (const node of plan.nodes) {
      const ref = node.image;
      if (this.images.has(ref.name)) continue;
      this.images.set(
        ref.name,
        new docker.Image(
          `${opts.name}-${imageShortName(ref)}`,
          {
            imageName: ref.name,
            skipPush: true,
            build: { context: path.resolve(PROJECT_ROOT, ref.context), args: { BASE_IMAGE: ref.baseImage } },
          },
          this.options(opts.parent),
        ),
      );
    }
    return [...this.images.values()];
  }

  createNode(plan: HomelabPlan, node: NodePlan, files: pulumi.Output<NodeFile[]>, opts: NodeOptions): NodeResources {
    const { network, image } = builtFor(node, this.network, this.images);
    const spec = containerSpecOf(plan, node);
    const volumes = spec.volumes.map(
      (v, i) =>
        new docker.Volume(
          `${opts.name}-${volumeSuffix(node, v.name, i)}`,
          { name: v.name, labels: labelList(v.labels) },
          this.options(opts.parent, volumeResourceOptions(node.volumes[i]!)),
        ),
    );
    const h = spec.healthcheck;
    const container = new docker.Container(
      opts.name,
      {
        name: spec.name,
        hostname: spec.hostname,
        // The digest, not the tag: a rebuilt image replaces the container.
        image: image.repoDigest,
        envs: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
        networksAdvanced: [{ name: network.name, ipv4Address: spec.ipv4Address }],
        memory: memoryMiB(spec.memoryBytes),
        // Equal to memory: no swap, so the tuner's memory budget is the real one.
        memorySwap: memoryMiB(spec.memoryBytes),
        cpus: String(spec.cpus),
        ports: spec.publish.map((p) => ({ internal: p.containerPort, external: p.hostPort, ip: p.host, protocol: "tcp" })),
        ...(spec.extraHosts ? { hosts: spec.extraHosts.map((h) => ({ host: h.hostname, ip: h.ip })) } : {}),
        volumes: spec.volumes.map((v, i) => ({ volumeName: (volumes[i] as docker.Volume).name, containerPath: v.mountPath })),
        healthcheck: {
          tests: h.test,
          interval: `${h.intervalSeconds}s`,
          timeout: `${h.timeoutSeconds}s`,
          retries: h.retries,
          startPeriod: `${h.startPeriodSeconds}s`,
        },
        restart: spec.restart,
        stopTimeout: spec.stopTimeoutSeconds,
        // Give PostgreSQL its clean shutdown on destroy/replace too, not only on `docker stop`.
        destroyGraceSeconds: spec.stopTimeoutSeconds,
        labels: labelList(spec.labels),
        wait: true,
        waitTimeout: healthTimeoutSeconds(h),
        uploads: pulumi.secret(files.apply(uploadsOf)),
      },
      this.options(opts.parent, { dependsOn: [...volumes, ...opts.dependsOn], deleteBeforeReplace: true }),
    );
    const dockerHost = this.spec.docker.host;
    this.made[node.name] = container.name.apply((c): NodeHandle => ({ kind: "docker", container: c, ...(dockerHost ? { dockerHost } : {}) }));
    return { ready: container, resources: [...volumes, container], handle: container.name };
  }

  handles(): Record<string, pulumi.Output<NodeHandle>> {
    return { ...this.made };
  }

  runOnNode(name: string, node: NodePlan, cmd: NodeCommand, opts: { parent: pulumi.Resource; dependsOn: pulumi.Resource[] }): command.local.Command {
    return dockerExecCommand(name, node, cmd, { ...opts, dockerHost: this.spec.docker.host });
  }
}
