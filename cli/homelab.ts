// `homelab`: the operator's CLI (up, down, status; tune, validate, render, init, secret; drill, report).
// User mistakes exit 2 with one line per problem and no stack trace; bugs still show their trace.
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { ConfigError } from "../components/config/index.ts";
import { HbaError, TuneError } from "../components/postgres/index.ts";
import { PgbackrestConfError } from "../components/pgbackrest/index.ts";
import { RedisConfError } from "../components/redis/index.ts";
import { PlanError } from "../components/plan.ts";
import { TopologyError } from "../drills/lib/topology.ts";
import { UnsupportedPlatformError } from "../drills/lib/nodes.ts";
import { UsageError } from "./errors.ts";
import { registerDrillCommands } from "./drill-commands.ts";
import { registerLifecycleCommands } from "./lifecycle-commands.ts";
import { PulumiFailed } from "./setup.ts";
import { registerStackCommands } from "./stack-commands.ts";
import { registerTuneCommand } from "./tune-command.ts";

export function buildProgram(): Command {
  const program = new Command("homelab")
    .description("Build a homelab data tier (PostgreSQL 17 + pgBackRest, Redis 7, DuckDB) and prove it survives loss.")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  registerLifecycleCommands(program);
  registerTuneCommand(program);
  registerStackCommands(program);
  registerDrillCommands(program);
  return program;
}

/** Problems of a user mistake, or undefined when the error is a bug. */
export function userProblems(err: unknown): string[] | undefined {
  if (err instanceof UsageError || err instanceof ConfigError || err instanceof TuneError || err instanceof HbaError || err instanceof PgbackrestConfError || err instanceof RedisConfError || err instanceof PlanError) {
    const e = err as Error & { problems: string[]; source?: string };
    return e.problems.map((p) => (e instanceof ConfigError ? `${e.source}: ${p}` : p));
  }
  if (err instanceof InvalidArgumentError || err instanceof TopologyError || err instanceof UnsupportedPlatformError || (err instanceof Error && err.name === "RecreateRefusedError")) return (err.message ?? "").split("\n").filter(Boolean);
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its one-line message (unknown option, missing argument, --help).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof PulumiFailed) {
      // pulumi printed its own diagnostics above; one line says which step stopped.
      console.error(`homelab: ${err.message}`);
      return 1;
    }
    const problems = userProblems(err);
    if (problems) {
      for (const p of problems) console.error(`homelab: ${p}`);
      return 2;
    }
    throw err;
  }
}

if (process.argv[1] && /homelab(\.mjs|\.ts)?$/.test(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2));
}
