import { describe, expect, it } from "vitest";
import { bootstrapRefusal, repositoryHolding } from "../../components/platform/bootstrap-preflight.ts";

const ctx = { stack: "local", stanza: "main" };

describe("repositoryHolding (pgbackrest info JSON)", () => {
  it("reads backups, a missing stanza and a stanza without backups as the entrypoint does", () => {
    expect(repositoryHolding(JSON.stringify([{ name: "main", status: { code: 0, message: "ok" }, backup: [{ label: "20261201-030000F" }, { label: "20261202-030000F" }] }]), "main")).toEqual({ kind: "backups", newest: "20261202-030000F", count: 2 });
    expect(repositoryHolding(JSON.stringify([{ name: "main", status: { code: 1, message: "missing stanza path" }, backup: [] }]), "main")).toEqual({ kind: "none" });
    expect(repositoryHolding(JSON.stringify([{ name: "main", status: { code: 2, message: "no valid backups" }, backup: [] }]), "main")).toEqual({ kind: "empty", code: 2, message: "no valid backups" });
  });
});

describe("bootstrapRefusal: what the primary would refuse, said before anything is made", () => {
  const backups = { kind: "backups", newest: "20261202-030000F", count: 2 } as const;
  it("auto restores backups and initdb's a new repository; initdb over no stanza is fine", () => {
    expect(bootstrapRefusal("auto", backups, ctx)).toBeUndefined();
    expect(bootstrapRefusal("backup", backups, ctx)).toBeUndefined();
    expect(bootstrapRefusal("auto", { kind: "none" }, ctx)).toBeUndefined();
    expect(bootstrapRefusal("initdb", { kind: "none" }, ctx)).toBeUndefined();
  });
  it("initdb over a stanza with backups: names the key, the stanza, the newest backup and both ways out", () => {
    expect(bootstrapRefusal("initdb", backups, ctx)).toBe(
      "homelab-data:postgres.bootstrapFrom: initdb, but the retained repository holds stanza 'main' with 2 backups (newest 20261202-030000F): a new cluster would never match its archive. Either restore it (bootstrapFrom: auto, the default, or backup), or start empty after `npx homelab down --stack local --purge-backups --yes` (deletes every backup of the stack)",
    );
  });
  it("backup from a repository without the stanza, and a stanza without backups for any mode", () => {
    expect(bootstrapRefusal("backup", { kind: "none" }, ctx)).toMatch(/^homelab-data:postgres\.bootstrapFrom: backup, but the repository holds no stanza 'main' \(nothing to restore\)\. Use bootstrapFrom: auto .* or initdb$/);
    for (const mode of ["auto", "initdb", "backup"] as const) {
      expect(bootstrapRefusal(mode, { kind: "empty", code: 2, message: "no valid backups" }, ctx)).toMatch(/^stanza 'main' exists in the retained repository but holds no backup \(pgbackrest status 2: no valid backups\)/);
    }
  });
});
