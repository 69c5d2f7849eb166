// The machine applier's pure parts (components/platform/machine-node.ts): what a VM node is made of, byte
// for byte where it matters (the env file both systemd and sh read, the unit, the apply script's guards).
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../components/config/index.ts";
import { planHomelab } from "../../components/plan.ts";
import { APPLY_PATH, envFile, machineFiles, machineSpecOf, machineTar, remoteApplyScript, stackSshTarget, unitFile } from "../../components/platform/machine-node.ts";
import { redactedSecrets } from "../../components/secrets.ts";
import { PROJECT_ROOT } from "../../components/platform/docker-cmd.ts";

const spec = validateConfig("kvm", { platform: "libvirt", libvirt: { subnet: "192.168.250.0/24" }, postgres: { replicas: 1, allowedClientCidrs: ["192.168.250.0/24"] }, redis: { enabled: false }, duckdb: { enabled: false }, monitoring: { enabled: false } });
const plan = planHomelab(spec, redactedSecrets());
const pg1 = plan.nodes.find((n) => n.name === "pg-1")!;
const machine = machineSpecOf(plan, pg1, stackSshTarget("kvm", pg1.ipv4Address, { HOME: "/home/u" }), { dataDevice: "/dev/disk/by-id/virtio-hlvm-data", readyTimeoutSeconds: 900 });

describe("machine node", () => {
  it("keeps the key and known hosts in the stack's own directory under the data dir", () => {
    expect(machine.target).toEqual({ user: "root", host: "192.168.250.10", identityFile: "/home/u/.local/share/homelab-data/ssh/kvm/id_ed25519", knownHosts: "/home/u/.local/share/homelab-data/ssh/kvm/known_hosts" });
    expect(stackSshTarget("kvm", "h", { XDG_DATA_HOME: "/x" }).identityFile).toBe("/x/homelab-data/ssh/kvm/id_ed25519");
  });

  it("writes an env file that sh reads back exactly (quoted values, names checked)", () => {
    const env = { A: "plain", B: "with space", C: "it's", D: "$HOME;`x`" };
    const file = path.join(mkdtempSync(path.join(tmpdir(), "envfile-")), "node.env");
    writeFileSync(file, envFile(env));
    const r = spawnSync("sh", ["-c", `set -a; . "$0"; set +a; printf '%s|' "$A" "$B" "$C" "$D"`, file], { encoding: "utf8" });
    expect(r.stdout).toBe("plain|with space|it's|$HOME;`x`|");
    expect(() => envFile({ "bad-name": "x" })).toThrow(/not a variable name/);
    expect(() => envFile({ A: "two\nlines" })).toThrow(/A holds a newline/);
  });

  it("runs the image's entrypoint under systemd, held on a held boot, stopped like docker stop", () => {
    const unit = unitFile(machine);
    expect(unit).toContain("ExecStart=/usr/local/bin/homelab-entrypoint");
    expect(unit).toContain("EnvironmentFile=/usr/local/lib/homelab/image.env\nEnvironmentFile=/etc/homelab/node-pg-1.env");
    expect(unit).toContain("ExecCondition=/bin/sh -c '! grep -qw homelab.hold=1 /proc/cmdline || [ -e /run/homelab-release-pg-1 ]'");
    expect(unit).toContain("KillMode=mixed\nKillSignal=SIGTERM\nTimeoutStopSec=60");
    expect(unit).toContain("RequiresMountsFor=/var/lib/postgresql/data");
  });

  it("applies: data disk, binds, the image's install.sh, hosts, a restart only when something changed, the health wait", () => {
    const script = remoteApplyScript(machine, ["/etc/a", "/etc/b c"]);
    expect(spawnSync("bash", ["-n"], { input: script }).status).toBe(0);
    expect(script).toContain("blkid /dev/disk/by-id/virtio-hlvm-data >/dev/null 2>&1 || mkfs.ext4 -q -L homelab-data /dev/disk/by-id/virtio-hlvm-data");
    expect(script).toContain('fstab_line /var/lib/postgresql/data "$DATA_ROOT/homelab-kvm-pg-1-data /var/lib/postgresql/data none bind,x-systemd.requires-mounts-for=$DATA_ROOT 0 0"');
    expect(script).toContain("bash /usr/local/src/homelab/image/install.sh packages");
    expect(script).toContain("delivered=$(cat /etc/a '/etc/b c' | sha256sum | cut -d' ' -f1)");
    expect(script).toMatch(/if systemctl is-active -q homelab-pg-1\.service && \[ "\$\(cat \/var\/lib\/homelab\/applied-pg-1\.sha256 2>\/dev\/null\)" = "\$delivered" \]; then\n.*not restarted" >&2\nelse\n {2}systemctl restart homelab-pg-1\.service\nfi/);
    expect(script).toContain("deadline=$(( $(date +%s) + 900 ))");
    expect(script).toContain("192.168.250.20\thomelab-kvm-backup");
  });

  it("delivers the image context, the node's files, env, unit and apply script; same files, same bytes", async () => {
    const files = machineFiles(machine, pg1.files, PROJECT_ROOT);
    const paths = files.map((f) => f.path);
    for (const p of ["/usr/local/src/homelab/image/install.sh", "/usr/local/src/homelab/image/entrypoint.sh", "/usr/local/src/homelab/image/bin/homelab-health", "/etc/homelab/pg_hba.conf", "/etc/homelab/node-pg-1.env", "/etc/systemd/system/homelab-pg-1.service", APPLY_PATH]) {
      expect(paths).toContain(p);
    }
    expect(paths.some((p) => p.includes("/testdata/") || p.endsWith("smoke.sh"))).toBe(false);
    expect(files.find((f) => f.path.endsWith("/install.sh"))?.mode).toBe(0o755);
    expect((await machineTar(files)).equals(await machineTar(machineFiles(machine, pg1.files, PROJECT_ROOT)))).toBe(true);
  });
});
