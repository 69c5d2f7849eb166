// Pulumi mocks for component tests (docs/architecture.md "Testing pyramid": components). Records every resource
// the engine would receive (type, name, inputs as serialized for the wire, secrets still wrapped) and, through
// a legacy transformation, the resource options the SDK got (parent, dependsOn, retainOnDelete, provider):
// options are not part of what the mock monitor sees.
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { SECRET_KEYS, readStackFile, validateConfig, type HomelabSpec, type SecretKey } from "../../components/config/index.ts";
import { planHomelab, type HomelabSecrets } from "../../components/plan.ts";
import { generateSftpKeys } from "../../components/pgbackrest/sftp.ts";
import { redactedSecrets } from "../../components/secrets.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const STACKS_DIR = path.join(ROOT, "stacks");

export interface RecordedResource {
  type: string;
  name: string;
  /** As the engine would receive them: secrets are `{ [sigKey]: secretSig, value }` wrappers. */
  inputs: Record<string, unknown>;
  provider?: string;
  custom: boolean;
}

export interface RecordedOptions {
  resource: pulumi.Resource;
  type: string;
  name: string;
  parent?: string;
  opts: pulumi.CustomResourceOptions & pulumi.ComponentResourceOptions;
}

export class Recorder implements pulumi.runtime.Mocks {
  readonly resources: RecordedResource[] = [];
  readonly options: RecordedOptions[] = [];
  private readonly names = new Map<pulumi.Resource, string>();

  /** Outputs of the stack's last deployment, as the program's StackReference to itself reads them. */
  deployedOutputs: Record<string, unknown> = {};

  newResource(args: pulumi.runtime.MockResourceArgs): { id: string | undefined; state: Record<string, unknown> } {
    // The program reads its own last outputs (stacks/index.ts); that is a read, not infrastructure.
    if (args.type === "pulumi:pulumi:StackReference") return { id: String(args.inputs.name), state: { name: args.inputs.name, outputs: this.deployedOutputs, secretOutputNames: [] } };
    this.resources.push({ type: args.type, name: args.name, inputs: args.inputs as Record<string, unknown>, provider: args.provider, custom: args.custom ?? false });
    const state: Record<string, unknown> = { ...(args.inputs as Record<string, unknown>) };
    if (args.type === "docker:index/image:Image") state.repoDigest = `${String(args.inputs.imageName)}@sha256:${"0".repeat(64)}`;
    if (args.type === "command:local:Command") {
      state.stdout = args.name.endsWith("-vm-base")
        ? JSON.stringify({ hash: "0123456789abcdef", base: "/var/lib/libvirt/images/hlvm-base-0123456789abcdef/base.qcow2", kernel: "/var/lib/libvirt/images/hlvm-base-0123456789abcdef/vmlinuz", initrd: "/var/lib/libvirt/images/hlvm-base-0123456789abcdef/initrd.img", root: "/dev/vda" })
        : args.name.endsWith("-ssh-key")
          ? "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockMockMockMockMockMockMockMockMockMockMock homelab-data test"
          : args.name.includes("-image-")
            ? `sha256:${args.name}`
            : "";
      state.stderr = "";
    }
    return { id: args.custom ? `${args.name}-id` : undefined, state };
  }

  call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
    return args.inputs as Record<string, unknown>;
  }

  /** A legacy transformation that records the options of a resource and all its children. */
  readonly transformation: pulumi.ResourceTransformation = (a) => {
    this.names.set(a.resource, a.name);
    this.options.push({ resource: a.resource, type: a.type, name: a.name, parent: a.opts.parent ? this.names.get(a.opts.parent) : undefined, opts: a.opts as RecordedOptions["opts"] });
    return undefined;
  };

  nameOf(resource: pulumi.Resource | pulumi.Input<pulumi.Resource>): string | undefined {
    return this.names.get(resource as pulumi.Resource);
  }

  resource(name: string, type?: string): RecordedResource {
    const found = this.resources.filter((r) => r.name === name && (!type || r.type === type));
    if (found.length !== 1) throw new Error(`expected one recorded resource ${name}${type ? ` of type ${type}` : ""}, found ${found.length}: ${this.resources.map((r) => `${r.name} (${r.type})`).join(", ")}`);
    return found[0] as RecordedResource;
  }

  optionsOf(name: string, type?: string): RecordedOptions {
    const found = this.options.filter((r) => r.name === name && (!type || r.type === type));
    if (found.length !== 1) throw new Error(`expected options of one resource ${name}, found ${found.length}`);
    return found[0] as RecordedOptions;
  }

  clear(): void {
    this.resources.length = 0;
    this.options.length = 0;
  }
}

/** Waits until every registration of the program reached the mock monitor. */
export async function settle(recorder?: Recorder): Promise<void> {
  if (recorder) await Promise.all(recorder.options.map((o) => promiseOf(o.resource.urn)));
  // Internal, but the SDK's own way to drain outstanding RPCs (what `disconnect` waits on).
  const wait = (pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> }).waitForRPCs;
  if (wait) await wait();
}

export function promiseOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((v) => resolve(v)));
}

export async function isSecretOutput(output: pulumi.Output<unknown>): Promise<boolean> {
  return (await (output as unknown as { isSecret: Promise<boolean> }).isSecret) === true;
}

/** The stack of Pulumi.local.yaml, optionally changed (a deep merge over its config, units as written). */
/**
 * stacks/Pulumi.local.yaml with `overrides`, and without its Redis replica unless an override asks for one:
 * the resource-graph tests count the six nodes they were written for, and libvirt (which builds no Redis
 * replica yet) reuses this spec. test/components/program.test.ts builds the file exactly as it is.
 */
export function localSpec(overrides: Record<string, unknown> = {}): HomelabSpec {
  return validateConfig("local", deepMerge(deepMerge(readStackFile("local", STACKS_DIR).config, { redis: { replica: false } }), overrides));
}

export function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = v && typeof v === "object" && !Array.isArray(v) && prev && typeof prev === "object" && !Array.isArray(prev) ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** Distinctive fake secrets: every one is searchable, none can occur by accident. */
export function fakeSecrets(spec: HomelabSpec): HomelabSecrets {
  const passwords = Object.fromEntries(
    (Object.keys(SECRET_KEYS) as SecretKey[]).filter((k) => k !== "tls" && k !== "repo2Ssh").map((k) => [k, `Pw-${k}-9fQ2xLk7Zr`]),
  ) as Omit<HomelabSecrets, "tls" | "repo2Ssh">;
  // Public keys must parse (the plan fingerprints the host key); the private ones are distinctive fakes.
  const publicKeys = generateSftpKeys("mock");
  const hostnames = planHomelab(spec, redactedSecrets()).nodes.map((n) => n.hostname);
  return {
    ...passwords,
    tls: {
      caCert: "-----BEGIN CERTIFICATE-----\nfake-ca-certificate\n-----END CERTIFICATE-----\n",
      caKey: "-----BEGIN PRIVATE KEY-----\nCaKey-secret-3Wm8Qp\n-----END PRIVATE KEY-----\n",
      nodes: Object.fromEntries(
        hostnames.map((h) => [h, { cert: `-----BEGIN CERTIFICATE-----\nfake-cert-${h}\n-----END CERTIFICATE-----\n`, key: `-----BEGIN PRIVATE KEY-----\nNodeKey-${h}-secret-7Tb4Vn\n-----END PRIVATE KEY-----\n` }]),
      ),
    },
    repo2Ssh: {
      clientKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nSftpClientKey-secret-4Hd9Rw\n-----END OPENSSH PRIVATE KEY-----\n",
      clientPublicKey: publicKeys.clientPublicKey,
      hostKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nSftpHostKey-secret-8Jc2Ty\n-----END OPENSSH PRIVATE KEY-----\n",
      hostPublicKey: publicKeys.hostPublicKey,
    },
  };
}

/** Every value that must never appear outside a Pulumi secret. */
export function secretValues(secrets: HomelabSecrets): string[] {
  const { tls, repo2Ssh, ...passwords } = secrets;
  return [...Object.values(passwords), tls.caKey, ...Object.values(tls.nodes).map((n) => n.key), repo2Ssh.clientKey, repo2Ssh.hostKey].map((v) => v.replace(/-----[A-Z ]+-----/g, "").trim());
}

export interface Leak {
  resource: string;
  type: string;
  path: string;
  secret: string;
}

const isSecretWrapper = (v: unknown): boolean =>
  typeof v === "object" && v !== null && (v as Record<string, unknown>)[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig;

/**
 * Walks every recorded input outside secret wrappers and reports each place a secret value appears, also
 * inside base64 blobs (a tar on a command's stdin) and JSON strings.
 */
export function findLeaks(resources: RecordedResource[], secrets: string[]): Leak[] {
  const leaks: Leak[] = [];
  const check = (r: RecordedResource, where: string, text: string) => {
    for (const s of secrets) if (text.includes(s)) leaks.push({ resource: r.name, type: r.type, path: where, secret: s });
  };
  const walk = (r: RecordedResource, where: string, v: unknown) => {
    if (isSecretWrapper(v)) return;
    if (typeof v === "string") {
      check(r, where, v);
      if (v.length >= 16 && /^[A-Za-z0-9+/]+={0,2}$/.test(v)) check(r, `${where} (base64-decoded)`, Buffer.from(v, "base64").toString("latin1"));
    } else if (Array.isArray(v)) v.forEach((x, i) => walk(r, `${where}[${i}]`, x));
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(r, where ? `${where}.${k}` : k, x);
  };
  for (const r of resources) walk(r, "", r.inputs);
  return leaks;
}

/** The value inside a secret wrapper; throws if the input is not a secret. */
export function unwrapSecret(v: unknown): unknown {
  if (!isSecretWrapper(v)) throw new Error(`expected a secret, got ${JSON.stringify(v)?.slice(0, 200)}`);
  return (v as { value: unknown }).value;
}
