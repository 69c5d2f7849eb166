// How every entry point (the `homelab` CLI, each drills/<name>.mts) runs its commander program:
// user mistakes exit 2 with one line per problem and no stack trace; bugs still show their trace.
import { type Command, CommanderError, InvalidArgumentError } from "commander";
import { ConfigError } from "../components/config/index.ts";
import { HbaError, TuneError } from "../components/postgres/index.ts";
import { PgbackrestConfError } from "../components/pgbackrest/index.ts";
import { RedisConfError } from "../components/redis/index.ts";
import { PlanError } from "../components/plan.ts";
import { TopologyError } from "../drills/lib/topology.ts";
import { UnsupportedPlatformError } from "../drills/lib/nodes.ts";
import { UsageError } from "./errors.ts";
import { PulumiFailed } from "./setup.ts";

/** Problems of a user mistake, or undefined when the error is a bug. */
export function userProblems(err: unknown): string[] | undefined {
  if (err instanceof UsageError || err instanceof ConfigError || err instanceof TuneError || err instanceof HbaError || err instanceof PgbackrestConfError || err instanceof RedisConfError || err instanceof PlanError) {
    const e = err as Error & { problems: string[]; source?: string };
    return e.problems.map((p) => (e instanceof ConfigError ? `${e.source}: ${p}` : p));
  }
  if (err instanceof InvalidArgumentError || err instanceof TopologyError || err instanceof UnsupportedPlatformError || (err instanceof Error && err.name === "RecreateRefusedError")) return (err.message ?? "").split("\n").filter(Boolean);
  return undefined;
}

/**
 * Parses `argv` (user arguments, no node/script) with `program` (built with exitOverride) and runs it.
 * Resolves with the exit code: 0, the code the action set, 2 for a user mistake (commander already printed
 * its one line; other problems are printed here, each as `<prefix>: <problem>`). A bug is rethrown.
 */
export async function runProgram(program: Command, argv: readonly string[], prefix: string): Promise<number> {
  try {
    await program.parseAsync([...argv], { from: "user" });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its one-line message (unknown option, missing argument, --help).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof PulumiFailed) {
      // pulumi printed its own diagnostics above; one line says which step stopped.
      console.error(`${prefix}: ${err.message}`);
      return 1;
    }
    const problems = userProblems(err);
    if (problems) {
      for (const p of problems) console.error(`${prefix}: ${p}`);
      return 2;
    }
    throw err;
  }
}
