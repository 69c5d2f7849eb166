// The main of every drills/<name>.mts run on its own (`npx tsx drills/failover.mts --stack local`): the
// flags and the runner of `homelab drill <name>`, defined once in cli/drill-commands.ts, loaded only when
// the file is the process's script (not when a test or the CLI imports it).
import { pathToFileURL } from "node:url";
import type { DrillName } from "../../cli/drill-commands.ts";

/** Runs drill `drill` with the process's argv when `moduleUrl` (the caller's import.meta.url) is the script. */
export function runIfMain(moduleUrl: string, drill: DrillName): void {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  void import("../../cli/drill-commands.ts")
    .then(({ runDrillScript }) => runDrillScript(drill, process.argv.slice(2)))
    .then(
      (code) => {
        process.exitCode = code;
      },
      (e: unknown) => {
        console.error(e);
        process.exitCode = 1;
      },
    );
}
