// pgBackRest's TLS server mode authenticates both ends with certificates from one CA
// (pgbackrest.org/user-guide "Setup TLS"): each node gets a key + certificate whose CN is its host name,
// which `tls-server-auth=<client-cn>=<stanza>` on the other side allows. Made with the openssl CLI
// (present on Debian hosts and in our images) because Node has no X.509 issuing API; this is I/O and lives
// outside the planners. `homelab init` stores the result as ONE Pulumi secret; the e2e harness makes its own.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface TlsBundle {
  caCert: string;
  /** Per host name: PEM certificate and PEM private key. */
  nodes: Record<string, { cert: string; key: string }>;
  /** CA key: kept (secret) so `homelab init` can issue certificates for nodes added later. */
  caKey: string;
}

const DAYS = "3650";

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: Buffer; code?: string };
    if (err.code === "ENOENT") throw new Error("openssl is not installed: apt-get install -y openssl", { cause: e });
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.toString().trim() ?? String(e)}`, { cause: e });
  }
}

/** Issues certificates for `hostnames` (reusing the CA and existing node certs of `existing`). */
export function generateTlsBundle(hostnames: string[], existing?: TlsBundle): TlsBundle {
  const dir = mkdtempSync(path.join(os.tmpdir(), "homelab-tls-"));
  try {
    let caCert = existing?.caCert;
    let caKey = existing?.caKey;
    if (!caCert || !caKey) {
      openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", DAYS, "-subj", "/CN=homelab-data CA"], dir);
      caCert = readFileSync(path.join(dir, "ca.crt"), "utf8");
      caKey = readFileSync(path.join(dir, "ca.key"), "utf8");
    } else {
      writeFileSync(path.join(dir, "ca.crt"), caCert);
      writeFileSync(path.join(dir, "ca.key"), caKey, { mode: 0o600 });
    }
    const nodes: TlsBundle["nodes"] = { ...(existing?.nodes ?? {}) };
    for (const host of hostnames) {
      if (nodes[host]) continue;
      if (!/^[a-z0-9][a-z0-9.-]{0,62}$/.test(host)) throw new Error(`TLS: host name ${JSON.stringify(host)} is not a valid DNS name`);
      writeFileSync(path.join(dir, "ext.cnf"), `subjectAltName=DNS:${host}\nextendedKeyUsage=serverAuth,clientAuth\n`);
      openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", `/CN=${host}`], dir);
      openssl(["x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "node.crt", "-days", DAYS, "-extfile", "ext.cnf"], dir);
      nodes[host] = { cert: readFileSync(path.join(dir, "node.crt"), "utf8"), key: readFileSync(path.join(dir, "node.key"), "utf8") };
    }
    return { caCert, caKey, nodes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
