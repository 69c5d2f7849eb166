// `homelab`: the operator's CLI (up, down, status; tune, validate, render, init, secret; drill, report; bench).
// User mistakes exit 2 with one line per problem and no stack trace; bugs still show their trace.
import { Command } from "commander";
import { registerBenchCommands } from "./bench-commands.ts";
import { registerDrillCommands } from "./drill-commands.ts";
import { registerLifecycleCommands } from "./lifecycle-commands.ts";
import { runProgram } from "./run.ts";
import { registerStackCommands } from "./stack-commands.ts";
import { registerTuneCommand } from "./tune-command.ts";

export { userProblems } from "./run.ts";

export function buildProgram(): Command {
  const program = new Command("homelab")
    .description("Build a homelab data tier (PostgreSQL 17 + pgBackRest, Redis 7, DuckDB) and prove it survives loss.")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  registerLifecycleCommands(program);
  registerTuneCommand(program);
  registerStackCommands(program);
  registerDrillCommands(program);
  registerBenchCommands(program);
  return program;
}

export function main(argv: string[]): Promise<number> {
  return runProgram(buildProgram(), argv, "homelab");
}

if (process.argv[1] && /homelab(\.mjs|\.ts)?$/.test(process.argv[1])) {
  process.exitCode = await main(process.argv.slice(2));
}
