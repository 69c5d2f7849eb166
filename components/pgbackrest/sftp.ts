// SSH material of pgBackRest's SFTP repository (repo2, ADR 0013): pgBackRest's login key pair and the
// stand-in server's host key pair, generated once by `homelab init` into the Pulumi secret
// `homelab-data:repo2Ssh` (JSON). ed25519 in OpenSSH's own private key format: what libssh2 1.11 (OpenSSL
// backend, in homelab/postgres) and OpenSSH's sshd both read. sshpk converts and fingerprints; node:crypto
// makes the keys.
import { createHash, generateKeyPairSync } from "node:crypto";
import sshpk from "sshpk";

export interface SftpKeys {
  /** pgBackRest's login key, OpenSSH private key format (repo2-sftp-private-key-file). */
  clientKey: string;
  /** Its public key, one authorized_keys line (what a NAS's ~/.ssh/authorized_keys needs). */
  clientPublicKey: string;
  /** The stand-in SFTP server's host key, OpenSSH private key format. */
  hostKey: string;
  /** Its public key, one known_hosts-style line ("ssh-ed25519 AAAA..."). */
  hostPublicKey: string;
}

function ed25519Pair(comment: string): { key: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync("ed25519");
  const parsed = sshpk.parsePrivateKey(privateKey.export({ type: "pkcs8", format: "pem" }).toString(), "pem");
  parsed.comment = comment;
  return { key: parsed.toString("openssh"), publicKey: `${parsed.toPublic().toString("ssh")}\n` };
}

/** New key pairs for pgBackRest's SFTP login and for the stand-in's host key. */
export function generateSftpKeys(stack: string): SftpKeys {
  const client = ed25519Pair(`pgbackrest@homelab-${stack}`);
  const host = ed25519Pair(`sftp-host@homelab-${stack}`);
  return { clientKey: client.key, clientPublicKey: client.publicKey, hostKey: host.key, hostPublicKey: host.publicKey };
}

/**
 * repo2-sftp-host-fingerprint for repo2-sftp-host-key-hash-type=sha256: the lower-case hex SHA-256 of the
 * host key's SSH wire blob, what libssh2_hostkey_hash(LIBSSH2_HOSTKEY_HASH_SHA256) gives pgBackRest
 * (`pgbackrest help backup repo-sftp-host-fingerprint`: `awk '{print $2}' key.pub | base64 -d | sha256sum`).
 */
export function sftpHostKeyFingerprint(publicKeyLine: string): string {
  const key = sshpk.parseKey(publicKeyLine.trim(), "ssh");
  return createHash("sha256").update(key.toBuffer("rfc4253")).digest("hex");
}

/** Parses the `repo2Ssh` secret; errors name the key and what is wrong, never the content. */
export function parseSftpKeys(text: string, fix: string): SftpKeys {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`repo2Ssh: is not JSON; ${fix}`);
  }
  const v = value as Partial<SftpKeys> | null;
  const fields = ["clientKey", "clientPublicKey", "hostKey", "hostPublicKey"] as const;
  const bad = fields.filter((f) => typeof v?.[f] !== "string" || v[f] === "");
  if (bad.length > 0) throw new Error(`repo2Ssh: expected { ${fields.join(", ")} } (missing: ${bad.join(", ")}); ${fix}`);
  return v as SftpKeys;
}
