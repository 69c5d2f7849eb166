// The `docker` platform: NodePlans as @pulumi/docker resources on the local engine or a remote one
// (`docker.host: ssh://user@nuc`). The default platform. Node files travel as container uploads whose
// contents come from the secret plan, so passwords and keys stay Pulumi secrets in state and in the diff.
import path from "node:path";
import * as docker from "@pulumi/docker";
import type * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { HomelabSpec } from "../config/index.ts";
import { LABEL_NODE, LABEL_RETAIN } from "./docker-cli.ts";
import { PROJECT_ROOT, dockerExecCommand, imageShortName } from "./docker-cmd.ts";
import type { CreateOptions, NodeCommand, NodeOptions, NodeResources, Platform, PlatformOptions } from "./index.ts";
import { healthTimeoutSeconds, memoryMiB, octalMode, volumeResourceOptions, volumeSuffix } from "./index.ts";
import type { HomelabPlan, NodeFile, NodePlan } from "./plan.ts";

const labelList = (labels: Record<string, string>) => Object.entries(labels).map(([label, value]) => ({ label, value }));

/** Container uploads of a node's files; the caller passes a secret Output, so the result stays secret. */
export function uploadsOf(files: NodeFile[]): docker.types.input.ContainerUpload[] {
  return files.map((f) => ({ file: f.path, content: f.content, permissions: octalMode(f.mode) }));
}

export class DockerPlatform implements Platform {
  readonly kind = "docker" as const;
  /** Explicit provider only for a remote engine; the local engine uses the default provider. */
  readonly provider?: docker.Provider;
  private network?: docker.Network;
  private readonly images = new Map<string, docker.Image>();

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
    const network = this.network;
    const image = this.images.get(node.image.name);
    if (!network || !image) throw new Error(`createNode ${node.name}: call createNetwork and createImages first`);
    const volumes = node.volumes.map(
      (v, i) =>
        new docker.Volume(
          `${opts.name}-${volumeSuffix(node, v.name, i)}`,
          { name: v.name, labels: labelList({ ...plan.labels, [LABEL_RETAIN]: String(v.retainOnDestroy) }) },
          this.options(opts.parent, volumeResourceOptions(v)),
        ),
    );
    const h = node.healthcheck;
    const container = new docker.Container(
      opts.name,
      {
        name: node.hostname,
        hostname: node.hostname,
        // The digest, not the tag: a rebuilt image replaces the container.
        image: image.repoDigest,
        envs: Object.entries(node.env).map(([k, v]) => `${k}=${v}`),
        networksAdvanced: [{ name: network.name, ipv4Address: node.ipv4Address }],
        memory: memoryMiB(node.memoryBytes),
        // Equal to memory: no swap, so the tuner's memory budget is the real one.
        memorySwap: memoryMiB(node.memoryBytes),
        cpus: String(node.cpus),
        ports: node.ports.map((p) => ({ internal: p.containerPort, external: p.hostPort, ip: plan.publishAddress, protocol: "tcp" })),
        volumes: node.volumes.map((v, i) => ({ volumeName: (volumes[i] as docker.Volume).name, containerPath: v.mountPath })),
        healthcheck: {
          tests: h.test,
          interval: `${h.intervalSeconds}s`,
          timeout: `${h.timeoutSeconds}s`,
          retries: h.retries,
          startPeriod: `${h.startPeriodSeconds}s`,
        },
        restart: "unless-stopped",
        stopTimeout: node.stopTimeoutSeconds,
        // Give PostgreSQL its clean shutdown on destroy/replace too, not only on `docker stop`.
        destroyGraceSeconds: node.stopTimeoutSeconds,
        labels: labelList({ ...plan.labels, [LABEL_NODE]: node.name }),
        wait: true,
        waitTimeout: healthTimeoutSeconds(h),
        uploads: pulumi.secret(files.apply(uploadsOf)),
      },
      this.options(opts.parent, { dependsOn: [...volumes, ...opts.dependsOn], deleteBeforeReplace: true }),
    );
    return { ready: container, resources: [...volumes, container], handle: container.name };
  }

  runOnNode(name: string, node: NodePlan, cmd: NodeCommand, opts: { parent: pulumi.Resource; dependsOn: pulumi.Resource[] }): command.local.Command {
    return dockerExecCommand(name, node, cmd, { ...opts, dockerHost: this.spec.docker.host });
  }
}
