// Plans -> resources (docs/architecture.md "Data flow" step 3). A Platform applies NodePlans as Pulumi
// resources; the components only pick nodes from the plan and hand them here, so the same component code
// runs on the `docker` platform (the default: the docker CLI driven by @pulumi/command through the one node
// applier, components/platform/docker-node.ts), the `docker-api` platform (@pulumi/docker, ADR 0010) and the
// `libvirt` platform (VMs configured over SSH by the machine applier, components/platform/machine-node.ts,
// ADR 0018).
import * as pulumi from "@pulumi/pulumi";
import type { HomelabSpec } from "../config/index.ts";
import { DockerApiPlatform } from "./docker-api.ts";
import { DockerCliPlatform } from "./docker-cmd.ts";
import { LibvirtPlatform } from "./libvirt-platform.ts";
import { PlacedPlatform } from "./placed.ts";
import { networkKindOf, type HomelabPlan, type NetworkKind } from "./plan.ts";
import type { Platform, PlatformOptions } from "./platform.ts";

export type { HomelabPlan, NodeFile, NodePlan } from "./plan.ts";
export * from "./platform.ts";

/**
 * Fails (a RunError: the user's choice, no stack trace) when the stack's platform cannot be built, before any
 * resource is registered. Every platform the schema accepts is built today; kept as the one place to refuse.
 */
export function assertPlatformSupported(spec: HomelabSpec): void {
  if (!["docker", "docker-api", "libvirt"].includes(spec.platform)) {
    throw new pulumi.RunError(`homelab-data:platform: got ${JSON.stringify(spec.platform)}; expected docker, docker-api or libvirt`);
  }
}

/** Picks the platform of a stack: its one platform, or each node's (PlacedPlatform) when nodes are on several kinds of host. */
export function platformFor(spec: HomelabSpec, opts: PlatformOptions, plan?: Pick<HomelabPlan, "nodes">): Platform {
  assertPlatformSupported(spec);
  const kinds = [...new Set((plan?.nodes ?? []).map((n) => n.platform))];
  if (kinds.length > 1) {
    const parts = new Map<NetworkKind, Platform>(kinds.map((k) => [networkKindOf(k), single(spec, k, opts)]));
    return new PlacedPlatform(spec.stack, parts);
  }
  return single(spec, kinds[0] ?? spec.platform, opts);
}

function single(spec: HomelabSpec, kind: HomelabSpec["platform"], opts: PlatformOptions): Platform {
  switch (kind) {
    case "docker":
      return new DockerCliPlatform(spec, opts);
    case "docker-api":
      return new DockerApiPlatform(spec, opts);
    case "libvirt":
      return new LibvirtPlatform(spec, opts);
    default:
      throw new pulumi.RunError(`homelab-data:platform: got ${JSON.stringify(spec.platform)}; expected docker, docker-api or libvirt`);
  }
}
