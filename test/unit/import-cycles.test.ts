// No import cycles among the project's own modules (components/, cli/, drills/). dpdm parses every file with
// TypeScript and follows its static imports, type-only ones included: a cycle is a cycle to a reader and to
// module initialisation order alike. A dynamic `import()` taken at run time (the CLI's lazy drill runners, a
// drill script's main loading the CLI's flag definitions when run on its own) is not part of initialisation
// and is not counted.
import { readdirSync } from "node:fs";
import path from "node:path";
import { parseCircular, parseDependencyTree, shortenTree, uniqueCirculars } from "dpdm";
import { beforeAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const DIRS = ["components", "cli", "drills"];
const SOURCE = /\.(ts|mts|js|mjs)$/;

const sourceFiles = DIRS.flatMap((dir) =>
  (readdirSync(path.join(ROOT, dir), { recursive: true }) as string[])
    .map((file) => path.posix.join(dir, file.split(path.sep).join("/")))
    .filter((file) => SOURCE.test(file) && !file.split("/").includes("node_modules") && !file.endsWith(".d.ts")),
).sort();

async function cycles(): Promise<{ tree: Record<string, unknown>; found: string[][] }> {
  const tree = await parseDependencyTree(sourceFiles, {
    context: ROOT,
    cwd: ROOT,
    tsconfig: path.join(ROOT, "tsconfig.json"),
    extensions: [".ts", ".mts", ".js", ".mjs", ".json"],
    js: [".ts", ".mts", ".js", ".mjs"],
    transform: false,
  });
  const short = shortenTree(ROOT, tree);
  return { tree: short, found: uniqueCirculars(parseCircular(short, true)) };
}

describe("import cycles", () => {
  let tree: Record<string, unknown> = {};
  let found: string[][] = [];
  beforeAll(async () => ({ tree, found } = await cycles()));

  it("reads every source file of components/, cli/ and drills/", () => {
    expect(sourceFiles.length).toBeGreaterThan(40);
    expect(sourceFiles.filter((file) => !(file in tree))).toEqual([]);
  });

  it("finds none", () => {
    expect(found.map((cycle) => [...cycle, cycle[0]].join(" -> ")), "import cycles (move the shared piece into a module both sides import)").toEqual([]);
  });
});
