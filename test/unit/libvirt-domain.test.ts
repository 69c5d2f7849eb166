import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { create } from "xmlbuilder2";
import { cidrsOverlap, credentialOemStrings, type DomainInput, kernelCmdline, macFor, parseCidr, parseDomainInput, parseNetworkInput, renderDomainXml, renderNetworkXml, VmPlanError } from "../../components/platform/libvirt/domain.ts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHlabHomelabDataTestKeyOnlyNotARealOne0123456 test@hlvm";

const typical: DomainInput = {
  name: "hlvm-pg-0",
  hostname: "pg-0",
  memoryMiB: 1024,
  vcpus: 1,
  emulation: { type: "qemu", tbCacheMiB: 256 },
  rootDisk: { path: "/var/lib/libvirt/images/hlvm-pg-0/root.qcow2" },
  dataDisk: { path: "/var/lib/libvirt/images/hlvm-pg-0-data.qcow2" },
  network: { name: "hlvm-net", mac: "52:54:00:12:34:56" },
  boot: { kernel: "/var/lib/libvirt/images/hlvm-base-0123456789abcdef/vmlinuz", initrd: "/var/lib/libvirt/images/hlvm-base-0123456789abcdef/initrd.img" },
  sshAuthorizedKeys: [KEY],
  consoleLog: "/var/lib/libvirt/images/hlvm-pg-0/console.log",
};

const GOLDEN_DOMAIN = `<domain type="qemu">
  <name>hlvm-pg-0</name>
  <title>homelab-data VM pg-0</title>
  <memory unit="MiB">1024</memory>
  <currentMemory unit="MiB">1024</currentMemory>
  <vcpu placement="static">1</vcpu>
  <sysinfo type="smbios">
    <oemStrings>
      <entry>io.systemd.credential.binary:ssh.authorized_keys.root=${Buffer.from(KEY + "\n").toString("base64")}</entry>
    </oemStrings>
  </sysinfo>
  <os>
    <type arch="x86_64" machine="pc">hvm</type>
    <kernel>/var/lib/libvirt/images/hlvm-base-0123456789abcdef/vmlinuz</kernel>
    <initrd>/var/lib/libvirt/images/hlvm-base-0123456789abcdef/initrd.img</initrd>
    <cmdline>root=/dev/vda ro console=ttyS0 systemd.hostname=pg-0</cmdline>
    <smbios mode="sysinfo"/>
  </os>
  <features>
    <acpi/>
    <tcg>
      <tb-cache unit="MiB">256</tb-cache>
    </tcg>
  </features>
  <clock offset="utc"/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2" discard="unmap"/>
      <source file="/var/lib/libvirt/images/hlvm-pg-0/root.qcow2"/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2" discard="unmap"/>
      <source file="/var/lib/libvirt/images/hlvm-pg-0-data.qcow2"/>
      <target dev="vdb" bus="virtio"/>
      <serial>hlvm-data</serial>
    </disk>
    <interface type="network">
      <mac address="52:54:00:12:34:56"/>
      <source network="hlvm-net"/>
      <model type="virtio"/>
    </interface>
    <serial type="pty">
      <log file="/var/lib/libvirt/images/hlvm-pg-0/console.log" append="off"/>
      <target port="0"/>
    </serial>
    <console type="pty">
      <target type="serial" port="0"/>
    </console>
    <rng model="virtio">
      <backend model="random">/dev/urandom</backend>
    </rng>
    <memballoon model="none"/>
    <video>
      <model type="none"/>
    </video>
  </devices>
</domain>
`;

const network = { name: "hlvm-net", bridge: "hlvm-br0", subnet: "192.168.251.0/24", hosts: [{ mac: "52:54:00:12:34:56", name: "pg-0", ip: "192.168.251.10" }] };

const GOLDEN_NETWORK = `<network>
  <name>hlvm-net</name>
  <forward mode="nat"/>
  <bridge name="hlvm-br0" stp="on" delay="0"/>
  <ip address="192.168.251.1" netmask="255.255.255.0">
    <dhcp>
      <range start="192.168.251.2" end="192.168.251.254"/>
      <host mac="52:54:00:12:34:56" name="pg-0" ip="192.168.251.10"/>
    </dhcp>
  </ip>
</network>
`;

function problems(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    if (e instanceof VmPlanError) return e.problems;
    throw e;
  }
  return [];
}

/** The parsed XML as a plain object (xmlbuilder2's own parser: what libvirt would read back). */
function parsed(xml: string): Record<string, unknown> {
  return create(xml).end({ format: "object" }) as Record<string, unknown>;
}

describe("libvirt domain XML planner", () => {
  it("renders a TCG VM with overlay, data disk, direct kernel boot and the SSH key credential (golden)", () => {
    expect(renderDomainXml(typical)).toBe(GOLDEN_DOMAIN);
  });

  it("renders the NAT network with fixed DHCP hosts (golden)", () => {
    expect(renderNetworkXml(network)).toBe(GOLDEN_NETWORK);
  });

  it("renders kvm with host-passthrough and no TCG cache; no data disk or console log when not given", () => {
    const { dataDisk: _d, consoleLog: _c, ...rest } = typical;
    const xml = renderDomainXml({ ...rest, emulation: { type: "kvm" } });
    expect(xml).toContain('<domain type="kvm">');
    expect(xml).toContain('<cpu mode="host-passthrough"/>');
    expect(xml).not.toContain("tb-cache");
    expect(xml).not.toContain("vdb");
    expect(xml).not.toContain("<log ");
  });

  it("fills defaults once: tb-cache 256 MiB, root /dev/vda, data disk qcow2 with serial hlvm-data", () => {
    const spec = parseDomainInput({ ...typical, emulation: { type: "qemu" }, dataDisk: { path: "/d.qcow2" } });
    expect(spec.emulation).toEqual({ type: "qemu", tbCacheMiB: 256 });
    expect(spec.boot.root).toBe("/dev/vda");
    expect(spec.dataDisk).toEqual({ path: "/d.qcow2", format: "qcow2", serial: "hlvm-data" });
    expect(kernelCmdline({ ...spec, boot: { ...spec.boot, extraArgs: ["quiet", "systemd.show_status=0"] } })).toBe("root=/dev/vda ro console=ttyS0 systemd.hostname=pg-0 quiet systemd.show_status=0");
  });

  it("names every bad key, the value and what is accepted, all at once", () => {
    const p = problems(() =>
      renderDomainXml({ ...typical, name: "bad name", hostname: "Pg_0", memoryMiB: 100, vcpus: 0, emulation: { type: "xen" }, rootDisk: { path: "relative.qcow2" }, network: { name: "hlvm-net", mac: "00:11:22:33:44:55" }, sshAuthorizedKeys: [], extra: true } as never),
    );
    expect(p).toEqual([
      `name: got "bad name"; expected a domain name of 1-63 letters, digits, '_', '.', '-' starting with a letter or digit`,
      `hostname: got "Pg_0"; expected a lower-case RFC 1123 hostname (labels of a-z, 0-9, '-')`,
      "memoryMiB: got 100; expected 256 to 262144 MiB",
      "vcpus: got 0; expected 1 to 64 vCPUs",
      `emulation.type: got {"type":"xen"}; expected {type: "qemu"} (software emulation, TCG) or {type: "kvm"} (hardware virtualization; needs vmx/svm)`,
      `rootDisk.path: got "relative.qcow2"; expected an absolute path of letters, digits and _ . + @ % : = ~ / - (the qcow2 overlay); no spaces, commas or control characters`,
      `network.mac: got "00:11:22:33:44:55"; expected a lower-case MAC in libvirt's range 52:54:00:xx:xx:xx`,
      "sshAuthorizedKeys: got []; expected at least one SSH public key (it is the only way in)",
      "extra: unknown key",
    ]);
    expect(() => renderDomainXml({ ...typical, vcpus: 0 })).toThrow(/invalid VM domain input:\n {2}- vcpus: got 0; expected 1 to 64 vCPUs/);
  });

  it("refuses paths qemu or the shell would misread, and multi-line keys", () => {
    for (const bad of ["/a b.qcow2", "/a,b.qcow2", "/x/../etc/shadow", "/a\nb", "/a<b>"]) {
      expect(problems(() => parseDomainInput({ ...typical, rootDisk: { path: bad } }))[0], bad).toMatch(/^rootDisk\.path: got /);
    }
    expect(problems(() => parseDomainInput({ ...typical, sshAuthorizedKeys: [`${KEY}\nssh-ed25519 AAAA evil`] }))[0]).toMatch(/^sshAuthorizedKeys\.0: got .*one OpenSSH public key line/);
    expect(problems(() => parseDomainInput({ ...typical, boot: { ...typical.boot, extraArgs: ["a b"] } }))[0]).toMatch(/^boot\.extraArgs\.0: got "a b"; expected one kernel command line token/);
  });

  it("refuses a credential named __proto__ instead of dropping it", () => {
    const creds = JSON.parse('{"__proto__": "x"}') as Record<string, string>;
    expect(Object.keys(creds)).toEqual(["__proto__"]);
    expect(() => parseDomainInput({ ...typical, credentials: creds })).toThrow(/credentials: got .*expected credential names other than __proto__/);
  });

  it("validates the network: CIDR, prefix, fixed hosts inside it, each MAC and address once", () => {
    expect(problems(() => parseNetworkInput({ ...network, subnet: "192.168.251.7/24" }))).toEqual([`subnet: got "192.168.251.7/24"; expected the network address (192.168.251.0/24), not a host address`]);
    expect(problems(() => parseNetworkInput({ ...network, subnet: "10.0.0.0/8" }))).toEqual([`subnet: got "10.0.0.0/8"; expected a prefix length from /16 to /29`]);
    expect(
      problems(() =>
        parseNetworkInput({
          ...network,
          hosts: [
            { mac: "52:54:00:00:00:01", name: "a", ip: "192.168.251.1" },
            { mac: "52:54:00:00:00:02", name: "b", ip: "10.0.0.5" },
            { mac: "52:54:00:00:00:02", name: "c", ip: "192.168.251.20" },
            { mac: "52:54:00:00:00:03", name: "d", ip: "192.168.251.20" },
          ],
        }),
      ),
    ).toEqual([
      `hosts.0.ip: got "192.168.251.1"; expected an address inside 192.168.251.0/24 other than the network, gateway (192.168.251.1) and broadcast addresses`,
      `hosts.1.ip: got "10.0.0.5"; expected an address inside 192.168.251.0/24 other than the network, gateway (192.168.251.1) and broadcast addresses`,
      `hosts.2.mac: got "52:54:00:00:00:02"; expected each MAC once`,
      `hosts.3.ip: got "192.168.251.20"; expected each address once`,
    ]);
    expect(parseCidr("192.168.251.0/24")).toEqual({ network: 0xc0a8fb00, mask: 0xffffff00, prefix: 24, broadcast: 0xc0a8fbff });
  });

  it("tells overlapping subnets (the NAT subnet against host routes such as Docker's 172.17.0.0/16)", () => {
    expect(cidrsOverlap("172.16.0.0/12", "172.28.0.0/24")).toBe(true);
    expect(cidrsOverlap("192.168.251.0/24", "172.17.0.0/16")).toBe(false);
    expect(cidrsOverlap("192.168.251.0/24", "192.168.251.77")).toBe(true);
    expect(cidrsOverlap("192.168.251.0/24", "0.0.0.0/0")).toBe(true);
    expect(cidrsOverlap("192.168.251.0/24", "default")).toBe(false);
  });

  it("gives each name a stable MAC in libvirt's range", () => {
    expect(macFor("hlvm-pg-0")).toBe(macFor("hlvm-pg-0"));
    expect(macFor("hlvm-pg-0")).not.toBe(macFor("hlvm-pg-1"));
    fc.assert(fc.property(fc.string(), (s) => /^52:54:00(:[0-9a-f]{2}){3}$/.test(macFor(s))));
  });

  it("property: any credential value (quotes, <, &, ]]>, commas, newlines, unicode) reaches the guest unchanged", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/).filter((k) => k !== "ssh.authorized_keys.root" && k !== "__proto__"), fc.string({ unit: "grapheme", maxLength: 200 }), { maxKeys: 4 }), fc.stringMatching(/^[\x20-\x7e]{0,60}$/), (creds, comment) => {
        const key = `${KEY.split(" ").slice(0, 2).join(" ")}${comment ? ` ${comment}` : ""}`;
        const xml = renderDomainXml({ ...typical, sshAuthorizedKeys: [key], credentials: creds });
        const o = parsed(xml) as { domain: { sysinfo: { oemStrings: { entry: string | string[] } } } };
        const entries = ([] as string[]).concat(o.domain.sysinfo.oemStrings.entry);
        const decoded = Object.fromEntries(
          entries.map((e) => {
            const m = /^io\.systemd\.credential\.binary:([^=]+)=([A-Za-z0-9+/=]*)$/.exec(e);
            expect(m, e).not.toBeNull();
            return [m![1], Buffer.from(m![2]!, "base64").toString("utf8")];
          }),
        );
        expect(decoded).toEqual({ "ssh.authorized_keys.root": key + "\n", ...creds });
        expect(credentialOemStrings(parseDomainInput({ ...typical, sshAuthorizedKeys: [key], credentials: creds }))).toEqual(entries);
      }),
      { numRuns: 200 },
    );
  });

  it("property: any input is either refused with a VmPlanError or rendered as well-formed XML that reads back the same", () => {
    const anyText = fc.oneof(fc.string({ maxLength: 40 }), fc.stringMatching(/^[a-z0-9/._<>&"'-]{1,30}$/), fc.constantFrom("hlvm-a", "/var/lib/x.qcow2", "a&b", "<x>", '"', "]]>"));
    fc.assert(
      fc.property(anyText, anyText, anyText, anyText, fc.integer({ min: -10, max: 300_000 }), fc.integer({ min: -1, max: 80 }), (name, hostname, kernel, netName, mem, vcpus) => {
        const input = { ...typical, name, hostname, memoryMiB: mem, vcpus, network: { ...typical.network, name: netName }, boot: { ...typical.boot, kernel } };
        let xml: string;
        try {
          xml = renderDomainXml(input);
        } catch (e) {
          expect(e).toBeInstanceOf(VmPlanError);
          expect((e as VmPlanError).problems.length).toBeGreaterThan(0);
          return;
        }
        const o = parsed(xml) as { domain: { name: string; memory: { "#": string }; os: { kernel: string; cmdline: string }; devices: { interface: { source: { "@network": string } } } } };
        expect(o.domain.name).toBe(name);
        expect(o.domain.os.kernel).toBe(kernel);
        expect(o.domain.os.cmdline).toContain(`systemd.hostname=${hostname}`);
        expect(o.domain.devices.interface.source["@network"]).toBe(netName);
      }),
      { numRuns: 300 },
    );
  });

  const hasValidator = (() => {
    try {
      execFileSync("sh", ["-c", "command -v virt-xml-validate"], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!hasValidator)("passes libvirt's own schema (virt-xml-validate, libvirt-clients)", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "hlvm-xml-"));
    try {
      const { dataDisk: _d, consoleLog: _c, ...minimal } = typical;
      const cases: [string, string, string][] = [
        ["domain-tcg.xml", renderDomainXml(typical), "domain"],
        ["domain-kvm.xml", renderDomainXml({ ...minimal, emulation: { type: "kvm" }, credentials: { "x.y": "a,b<c>&" } }), "domain"],
        ["network.xml", renderNetworkXml(network), "network"],
        ["network-empty.xml", renderNetworkXml({ ...network, hosts: [] }), "network"],
      ];
      for (const [file, xml, kind] of cases) {
        writeFileSync(path.join(dir, file), xml);
        const r = spawnSync("virt-xml-validate", [path.join(dir, file), kind], { encoding: "utf8" });
        expect(r.status, `${file}: ${r.stdout}${r.stderr}`).toBe(0);
        expect(r.stdout + r.stderr).toContain("validates");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
