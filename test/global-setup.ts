// vitest global setup: the same set-up code `homelab up` runs (cli/setup.ts), not a copy in .ci/run, so
// `npm ci && npm test` needs nothing else but a reachable Docker engine. Unit and component runs
// (`npm run test:unit`, or files under test/unit and test/components only) need neither engine nor toolchain.
import { ensureEngine, ensureImages, ensureToolchain, step } from "../cli/setup.ts";
import { UsageError } from "../cli/errors.ts";

const PURE = /(^|\/)test\/(unit|components)(\/|$)/;

/** True when the files asked for are all pure (no engine, no pulumi). */
export function onlyPureLayers(argv: readonly string[]): boolean {
  const filters = argv.slice(argv.findIndex((a) => a === "run") + 1).filter((a) => !a.startsWith("-") && /test\//.test(a));
  return filters.length > 0 && filters.every((f) => PURE.test(f));
}

export default async function setup(): Promise<void> {
  if (onlyPureLayers(process.argv)) return;
  const log = (m: string) => console.log(`[setup] ${m}`);
  try {
    await step("docker engine", () => ensureEngine({ checkOnly: true }), (v) => v, log);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    // One line, what to run; no stack trace: a missing engine is the machine's state, not a test failure.
    console.error(`npm test: ${e.problems.join(" ")}`);
    process.exit(1);
  }
  await step("images", () => ensureImages(), (v) => v, log);
  await step("pulumi toolchain", ensureToolchain, (v) => v, log);
}
