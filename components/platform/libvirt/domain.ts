// The libvirt domain and NAT network XML of one VM, planned from a typed input: pure (no I/O, no clock, no
// randomness), so golden tests pin it and `virsh define` / `virsh net-define` get exactly what was reviewed.
// ADR 0015: VMs are made with virsh and qemu-img through @pulumi/command; the base image is an offline
// Debian trixie image booted by direct kernel boot (scripts/make-vm-image.sh).
//
// What a VM is made of:
//   - a qcow2 OVERLAY (vda) on the shared, read-only base image: replaced with the VM;
//   - a separate DATA disk (vdb, serial `hlvm-data` -> /dev/disk/by-id/virtio-hlvm-data) that survives
//     replacing the VM: PostgreSQL's data directory and the repository live there;
//   - direct kernel boot (kernel + initrd extracted from the image), hostname by `systemd.hostname=`;
//   - the SSH public key(s) as the systemd credential `ssh.authorized_keys.root` in an SMBIOS OEM string
//     (systemd >= 256 writes it to /root/.ssh/authorized_keys at boot; no cloud-init, no key baked in);
//   - one virtio NIC on a libvirt NAT network with a fixed MAC (the network's DHCP maps it to a fixed IP);
//   - a serial console (pty, optionally logged to a file), no graphics;
//   - emulation `qemu` (TCG, with the translation cache capped: ~600 MiB instead of ~1.3 GiB resident) or
//     `kvm` where the CPU has vmx/svm and a smoke boot proved it works.
import { create } from "xmlbuilder2";
import { z } from "zod";

/** Raised on invalid input: one line per problem, each naming the key, the value and what is accepted. */
export class VmPlanError extends Error {
  readonly problems: string[];
  constructor(what: string, problems: string[]) {
    super(`invalid ${what}:\n  - ${problems.join("\n  - ")}`);
    this.name = "VmPlanError";
    this.problems = problems;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Input schemas
// ---------------------------------------------------------------------------------------------------------

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
const HOSTNAME_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
const HOSTNAME_RE = new RegExp(`^${HOSTNAME_LABEL}(\\.${HOSTNAME_LABEL})*$`);
// An absolute path qemu can open: printable, no whitespace or control characters, no `..` segment, and no
// comma (qemu's -drive/-kernel option syntax would need it doubled; refusing it is simpler and safer).
const PATH_RE = /^\/[A-Za-z0-9_.+@%:=~/-]*$/;
const MAC_RE = /^52:54:00(:[0-9a-f]{2}){3}$/;
const SSH_KEY_RE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [\x20-\x7e]*)?$/;
// __proto__ would be a prototype setter, not a key, in the record the credentials are read into.
const CRED_NAME_RE = /^(?!__proto__$)[A-Za-z0-9_.-]{1,64}$/;
const CMDLINE_TOKEN_RE = /^[\x21-\x7e]{1,256}$/;

const path = (what: string) =>
  z
    .string({ error: `expected an absolute path (${what})` })
    .regex(PATH_RE, { error: `expected an absolute path of letters, digits and _ . + @ % : = ~ / - (${what}); no spaces, commas or control characters` })
    .refine((p) => !p.split("/").includes(".."), { error: `expected a path without '..' segments (${what})` });

const mac = z.string({ error: "expected a MAC address" }).regex(MAC_RE, { error: "expected a lower-case MAC in libvirt's range 52:54:00:xx:xx:xx" });
const libvirtName = (what: string) =>
  z.string({ error: `expected a ${what} name` }).regex(NAME_RE, { error: `expected a ${what} name of 1-63 letters, digits, '_', '.', '-' starting with a letter or digit` });

export const emulationSchema = z.discriminatedUnion(
  "type",
  [
    z.strictObject({
      type: z.literal("qemu"),
      /** TCG translation cache cap in MiB (default 256: ~600 MiB resident instead of ~1.3 GiB). */
      tbCacheMiB: z.int({ error: "expected a whole number of MiB" }).min(32, { error: "expected 32 to 4096 MiB" }).max(4096, { error: "expected 32 to 4096 MiB" }).default(256),
    }),
    z.strictObject({ type: z.literal("kvm") }),
  ],
  { error: 'expected {type: "qemu"} (software emulation, TCG) or {type: "kvm"} (hardware virtualization; needs vmx/svm)' },
);

export const domainInputSchema = z.strictObject({
  /** libvirt domain name (unique on the hypervisor); the project prefixes its own with `hlvm-`. */
  name: libvirtName("domain"),
  /** Guest hostname, set with `systemd.hostname=` on the kernel command line. */
  hostname: z.string({ error: "expected a hostname" }).max(253, { error: "expected at most 253 characters" }).regex(HOSTNAME_RE, { error: "expected a lower-case RFC 1123 hostname (labels of a-z, 0-9, '-')" }),
  memoryMiB: z.int({ error: "expected a whole number of MiB" }).min(256, { error: "expected 256 to 262144 MiB" }).max(262144, { error: "expected 256 to 262144 MiB" }),
  vcpus: z.int({ error: "expected a whole number of vCPUs" }).min(1, { error: "expected 1 to 64 vCPUs" }).max(64, { error: "expected 1 to 64 vCPUs" }),
  emulation: emulationSchema,
  arch: z.enum(["x86_64"], { error: 'expected "x86_64" (the only architecture the base image is built for)' }).default("x86_64"),
  /** The VM's own disk: a qcow2 overlay whose backing file is the shared base image (vda). */
  rootDisk: z.strictObject({ path: path("the qcow2 overlay") }),
  /** A disk of its own that outlives the VM (vdb; /dev/disk/by-id/virtio-<serial> in the guest). */
  dataDisk: z
    .strictObject({
      path: path("the data disk"),
      format: z.enum(["qcow2", "raw"], { error: 'expected "qcow2" or "raw"' }).default("qcow2"),
      serial: z.string().regex(/^[A-Za-z0-9_-]{1,20}$/, { error: "expected 1-20 letters, digits, '_' or '-'" }).default("hlvm-data"),
    })
    .optional(),
  network: z.strictObject({ name: libvirtName("network"), mac }),
  /** Direct kernel boot: the kernel and initrd extracted from the base image. */
  boot: z.strictObject({
    kernel: path("the kernel"),
    initrd: path("the initrd"),
    root: path("the root device").default("/dev/vda"),
    /** More kernel command line tokens (each one token: printable ASCII, no spaces). */
    extraArgs: z.array(z.string().regex(CMDLINE_TOKEN_RE, { error: "expected one kernel command line token: printable ASCII, no spaces" })).max(32).default([]),
  }),
  /** SSH public keys for root, one per entry (OpenSSH format, one line each). */
  sshAuthorizedKeys: z
    .array(z.string().regex(SSH_KEY_RE, { error: "expected one OpenSSH public key line: '<type> <base64> [comment]'" }))
    .min(1, { error: "expected at least one SSH public key (it is the only way in)" })
    .max(16, { error: "expected at most 16 keys" }),
  /** More systemd credentials (name -> value), passed like the SSH key. */
  credentials: z
    .unknown()
    // zod's record drops a "__proto__" key without a word; refuse it instead of losing a credential.
    .refine((v) => !(v !== null && typeof v === "object" && Object.hasOwn(v, "__proto__")), {
      error: "expected credential names other than __proto__",
    })
    .pipe(
      z.record(
        z.string().regex(CRED_NAME_RE, { error: "expected a credential name of 1-64 letters, digits, '_', '.', '-'" }),
        z.string().max(4096, { error: "expected at most 4096 characters" }),
      ),
    )
    .default({}),
  /** Where the serial console is also written on the host (for boot diagnostics); none if unset. */
  consoleLog: path("the serial console log").optional(),
});

export type DomainInput = z.input<typeof domainInputSchema>;
export type DomainSpec = z.output<typeof domainInputSchema>;

const ipv4 = z.ipv4({ error: "expected a dotted IPv4 address" });

export const networkInputSchema = z
  .strictObject({
    name: libvirtName("network"),
    /** Linux bridge name (at most 15 characters). */
    bridge: z.string({ error: "expected a bridge name" }).regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$/, { error: "expected a bridge name of 1-15 letters, digits, '_', '.', '-'" }),
    /** The NAT subnet, e.g. 192.168.251.0/24: pick one nothing else routes (Docker uses 172.17-172.45). */
    subnet: z.string({ error: "expected a CIDR" }).regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, { error: "expected an IPv4 CIDR such as 192.168.251.0/24" }),
    /** Fixed addresses by MAC (the DHCP server hands them out). */
    hosts: z.array(z.strictObject({ mac, name: z.string().regex(HOSTNAME_RE, { error: "expected a lower-case RFC 1123 hostname" }), ip: ipv4 })).max(200).default([]),
  })
  .superRefine((n, ctx) => {
    const cidr = parseCidr(n.subnet);
    if (typeof cidr === "string") {
      ctx.addIssue({ code: "custom", path: ["subnet"], input: n.subnet, message: cidr });
      return;
    }
    const seenMac = new Set<string>();
    const seenIp = new Set<string>();
    n.hosts.forEach((h, i) => {
      const ip = ipToInt(h.ip);
      if (ip === undefined) return;
      if (ip <= cidr.network + 1 || ip >= cidr.broadcast || (ip & cidr.mask) >>> 0 !== cidr.network) {
        ctx.addIssue({ code: "custom", path: ["hosts", i, "ip"], input: h.ip, message: `expected an address inside ${n.subnet} other than the network, gateway (${intToIp(cidr.network + 1)}) and broadcast addresses` });
      }
      if (seenMac.has(h.mac)) ctx.addIssue({ code: "custom", path: ["hosts", i, "mac"], input: h.mac, message: "expected each MAC once" });
      if (seenIp.has(h.ip)) ctx.addIssue({ code: "custom", path: ["hosts", i, "ip"], input: h.ip, message: "expected each address once" });
      seenMac.add(h.mac);
      seenIp.add(h.ip);
    });
  });

export type NetworkInput = z.input<typeof networkInputSchema>;
export type NetworkSpec = z.output<typeof networkInputSchema>;

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function formatIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.map(String).join(".") || "(input)";
  if (issue.code === "unrecognized_keys") return `${key === "(input)" ? "" : key + "."}${issue.keys.join(", ")}: unknown key`;
  const got = "input" in issue ? describe(issue.input) : "nothing";
  return `${key}: got ${got}; ${issue.message}`;
}

function parse<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input, { reportInput: true });
  if (!r.success) throw new VmPlanError(what, r.error.issues.map(formatIssue));
  return r.data;
}

/** Validates a domain input once (defaults filled in); throws VmPlanError naming every bad key. */
export function parseDomainInput(input: unknown): DomainSpec {
  return parse(domainInputSchema, input, "VM domain input");
}

/** Validates a network input once; throws VmPlanError naming every bad key. */
export function parseNetworkInput(input: unknown): NetworkSpec {
  return parse(networkInputSchema, input, "VM network input");
}

// ---------------------------------------------------------------------------------------------------------
// IPv4 helpers (pure)
// ---------------------------------------------------------------------------------------------------------

export function ipToInt(ip: string): number | undefined {
  const parts = ip.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n >>> 0;
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => String((n >>> s) & 255)).join(".");
}

export interface Cidr {
  network: number;
  mask: number;
  prefix: number;
  broadcast: number;
}

/** Parses `a.b.c.d/p` (p 16-29, the address must be the network address); a string says what is wrong. */
export function parseCidr(cidr: string): Cidr | string {
  const [addr, len] = cidr.split("/");
  const ip = addr === undefined ? undefined : ipToInt(addr);
  const prefix = Number(len);
  if (ip === undefined || !Number.isInteger(prefix)) return "expected an IPv4 CIDR such as 192.168.251.0/24";
  if (prefix < 16 || prefix > 29) return "expected a prefix length from /16 to /29";
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((ip & mask) >>> 0 !== ip) return `expected the network address (${intToIp((ip & mask) >>> 0)}/${prefix}), not a host address`;
  return { network: ip, mask, prefix, broadcast: (ip | (~mask >>> 0)) >>> 0 };
}

/** True when two CIDRs share an address (e.g. the NAT subnet against `ip -4 route` destinations). */
export function cidrsOverlap(a: string, b: string): boolean {
  const parse1 = (c: string) => {
    const [addr, len] = c.split("/");
    const ip = addr === undefined ? undefined : ipToInt(addr);
    const prefix = len === undefined ? 32 : Number(len);
    if (ip === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) return undefined;
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    return { lo: (ip & mask) >>> 0, hi: (ip | (~mask >>> 0)) >>> 0 };
  };
  const x = parse1(a);
  const y = parse1(b);
  if (!x || !y) return false;
  return x.lo <= y.hi && y.lo <= x.hi;
}

// ---------------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------------

/** The kernel command line of a VM: root device, serial console, hostname, then the extra tokens. */
export function kernelCmdline(spec: DomainSpec): string {
  return [`root=${spec.boot.root}`, "ro", "console=ttyS0", `systemd.hostname=${spec.hostname}`, ...spec.boot.extraArgs].join(" ");
}

/**
 * SMBIOS type 11 OEM strings carrying systemd credentials. Binary (base64) form, so a key comment or value
 * with commas, quotes or newlines needs no escaping anywhere between here and the guest.
 */
export function credentialOemStrings(spec: DomainSpec): string[] {
  const creds: [string, string][] = [["ssh.authorized_keys.root", spec.sshAuthorizedKeys.join("\n") + "\n"], ...Object.entries(spec.credentials).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))];
  return creds.map(([name, value]) => `io.systemd.credential.binary:${name}=${Buffer.from(value, "utf8").toString("base64")}`);
}

/** The domain XML for `virsh define`. Accepts raw input (validated here) or an already parsed spec. */
export function renderDomainXml(input: DomainInput | DomainSpec): string {
  const spec = parseDomainInput(input);
  const doc = create().ele("domain", { type: spec.emulation.type });
  doc.ele("name").txt(spec.name);
  doc.ele("title").txt(`homelab-data VM ${spec.hostname}`);
  doc.ele("memory", { unit: "MiB" }).txt(String(spec.memoryMiB));
  doc.ele("currentMemory", { unit: "MiB" }).txt(String(spec.memoryMiB));
  doc.ele("vcpu", { placement: "static" }).txt(String(spec.vcpus));

  const oem = doc.ele("sysinfo", { type: "smbios" }).ele("oemStrings");
  for (const s of credentialOemStrings(spec)) oem.ele("entry").txt(s);

  const os = doc.ele("os");
  os.ele("type", { arch: spec.arch, machine: "pc" }).txt("hvm");
  os.ele("kernel").txt(spec.boot.kernel);
  os.ele("initrd").txt(spec.boot.initrd);
  os.ele("cmdline").txt(kernelCmdline(spec));
  os.ele("smbios", { mode: "sysinfo" });

  const features = doc.ele("features");
  features.ele("acpi");
  if (spec.emulation.type === "qemu") {
    features.ele("tcg").ele("tb-cache", { unit: "MiB" }).txt(String(spec.emulation.tbCacheMiB));
  } else {
    doc.ele("cpu", { mode: "host-passthrough" });
  }
  doc.ele("clock", { offset: "utc" });
  doc.ele("on_poweroff").txt("destroy");
  doc.ele("on_reboot").txt("restart");
  doc.ele("on_crash").txt("destroy");

  const dev = doc.ele("devices");
  const root = dev.ele("disk", { type: "file", device: "disk" });
  root.ele("driver", { name: "qemu", type: "qcow2", discard: "unmap" });
  root.ele("source", { file: spec.rootDisk.path });
  root.ele("target", { dev: "vda", bus: "virtio" });
  if (spec.dataDisk) {
    const data = dev.ele("disk", { type: "file", device: "disk" });
    data.ele("driver", { name: "qemu", type: spec.dataDisk.format, discard: "unmap" });
    data.ele("source", { file: spec.dataDisk.path });
    data.ele("target", { dev: "vdb", bus: "virtio" });
    data.ele("serial").txt(spec.dataDisk.serial);
  }
  const nic = dev.ele("interface", { type: "network" });
  nic.ele("mac", { address: spec.network.mac });
  nic.ele("source", { network: spec.network.name });
  nic.ele("model", { type: "virtio" });
  const serial = dev.ele("serial", { type: "pty" });
  if (spec.consoleLog) serial.ele("log", { file: spec.consoleLog, append: "off" });
  serial.ele("target", { port: "0" });
  dev.ele("console", { type: "pty" }).ele("target", { type: "serial", port: "0" });
  dev.ele("rng", { model: "virtio" }).ele("backend", { model: "random" }).txt("/dev/urandom");
  dev.ele("memballoon", { model: "none" });
  dev.ele("video").ele("model", { type: "none" });
  return doc.end({ prettyPrint: true, headless: true }) + "\n";
}

/** The NAT network XML for `virsh net-define`: gateway .1, DHCP for the rest, fixed hosts by MAC. */
export function renderNetworkXml(input: NetworkInput | NetworkSpec): string {
  const spec = parseNetworkInput(input);
  const cidr = parseCidr(spec.subnet) as Cidr;
  const doc = create().ele("network");
  doc.ele("name").txt(spec.name);
  doc.ele("forward", { mode: "nat" });
  doc.ele("bridge", { name: spec.bridge, stp: "on", delay: "0" });
  const ip = doc.ele("ip", { address: intToIp(cidr.network + 1), netmask: intToIp(cidr.mask) });
  const dhcp = ip.ele("dhcp");
  dhcp.ele("range", { start: intToIp(cidr.network + 2), end: intToIp(cidr.broadcast - 1) });
  for (const h of spec.hosts) dhcp.ele("host", { mac: h.mac, name: h.name, ip: h.ip });
  return doc.end({ prettyPrint: true, headless: true }) + "\n";
}

/**
 * A stable MAC in libvirt's 52:54:00 range from a name (FNV-1a): the same VM gets the same MAC (and so the
 * same DHCP address) every time it is made.
 */
export function macFor(name: string): string {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(name, "utf8")) {
    h ^= c;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `52:54:00:${[16, 8, 0].map((s) => ((h >>> s) & 255).toString(16).padStart(2, "0")).join(":")}`;
}
