// The network link of a mixed stack (ADR 0021) on this machine's real iptables: `homelab up`'s ensure step
// adds the four rules once, puts back one that went missing (a reboot, a firewall reload) and adds nothing
// when all are there; `homelab down`'s sweep removes every rule of the stack and nothing else. Subnets from
// the documentation ranges (RFC 5737), a stack name no other test uses.
import { execFileSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { ensureNetworkLink, linkComment, networkLinkRules, removeNetworkLink } from "../../components/platform/placed.ts";

const STACK = "e2e-link";
const A = "198.51.100.0/24";
const B = "203.0.113.0/24";
const rulesOf = (comment: string) =>
  ["filter", "nat"].flatMap((t) => execFileSync("iptables", ["-w", "-t", t, "-S"], { encoding: "utf8" }).split("\n").filter((l) => l.includes(`"${comment}"`)).map((l) => `${t} ${l}`));

describe("the network link on real iptables", () => {
  afterAll(async () => {
    await removeNetworkLink(STACK);
  });

  it("adds the four rules once, puts back a missing one, and down's sweep removes them all", async () => {
    expect(await ensureNetworkLink(STACK, A, B)).toBe(4);
    const made = rulesOf(linkComment(STACK));
    expect(made).toHaveLength(4);
    expect(made).toEqual(expect.arrayContaining([`filter -A FORWARD -s ${A} -d ${B} -m comment --comment "${linkComment(STACK)}" -j ACCEPT`, `nat -A POSTROUTING -s ${B} -d ${A} -m comment --comment "${linkComment(STACK)}" -j RETURN`]));
    // At the top of their chains (above Docker's and libvirt's rules).
    expect(execFileSync("iptables", ["-w", "-S", "FORWARD"], { encoding: "utf8" }).split("\n")[1]).toContain(linkComment(STACK));
    expect(await ensureNetworkLink(STACK, A, B)).toBe(0);
    // One lost (as after a firewall reload): put back, the others left alone.
    const lost = networkLinkRules(STACK, A, B)[1]!;
    execFileSync("iptables", ["-w", "-t", lost.table, "-D", lost.chain, ...lost.args]);
    expect(rulesOf(linkComment(STACK))).toHaveLength(3);
    expect(await ensureNetworkLink(STACK, A, B)).toBe(1);
    expect(rulesOf(linkComment(STACK))).toHaveLength(4);
    expect(await removeNetworkLink(STACK)).toBe(4);
    expect(rulesOf(linkComment(STACK))).toEqual([]);
    expect(await removeNetworkLink(STACK)).toBe(0);
  });
});
