// `homelab tune`: PGTune-style settings for one node, printed as postgresql.conf or JSON.
import { type Command, Option } from "commander";
import { MEMORY_FORMAT_HINT, parseBytes } from "../components/config/index.ts";
import { PROFILES, STORAGE_TYPES, TuneError, renderPostgresConf, tunePostgres, type Profile, type StorageType } from "../components/postgres/index.ts";

// TuneInput field -> the flag a user typed, so every message names what they can fix.
const FLAG_OF_FIELD: Record<string, string> = {
  memoryBytes: "--memory",
  cpus: "--cpus",
  storage: "--storage",
  profile: "--profile",
  version: "--pg",
  maxConnections: "--max-connections",
};

interface TuneFlags {
  memory: string;
  cpus: string;
  storage: string;
  profile: string;
  pg: string;
  maxConnections?: string;
  format: "conf" | "json";
}

export function registerTuneCommand(program: Command): void {
  program
    .command("tune")
    .description("Compute postgresql.conf settings (PGTune formulas + replication/archiving needs) for one node")
    .requiredOption("--memory <size>", `memory of the node, ${MEMORY_FORMAT_HINT}`)
    .requiredOption("--cpus <n>", "CPUs of the node (whole number >= 1)")
    .addOption(new Option("--storage <class>", "storage class").choices([...STORAGE_TYPES]).default("ssd"))
    .addOption(new Option("--profile <profile>", "workload profile").choices([...PROFILES]).default("mixed"))
    .option("--pg <version>", "PostgreSQL major version (13-17)", "17")
    .option("--max-connections <n>", "max_connections (default by profile, as PGTune)")
    .addOption(new Option("--format <format>", "output format").choices(["conf", "json"]).default("conf"))
    .action((flags: TuneFlags) => {
      const problems: string[] = [];
      const memoryBytes = parseBytes(flags.memory);
      if (memoryBytes === undefined) problems.push(`--memory: got ${JSON.stringify(flags.memory)}; expected ${MEMORY_FORMAT_HINT}`);
      const cpus = wholeNumber("--cpus", flags.cpus, problems);
      const version = wholeNumber("--pg", flags.pg, problems);
      const maxConnections = flags.maxConnections === undefined ? undefined : wholeNumber("--max-connections", flags.maxConnections, problems);
      if (problems.length > 0) throw new TuneError(problems);
      let settings;
      try {
        settings = tunePostgres({
          memoryBytes: memoryBytes as number,
          cpus: cpus as number,
          storage: flags.storage as StorageType,
          profile: flags.profile as Profile,
          version,
          maxConnections,
        });
      } catch (err) {
        if (err instanceof TuneError) throw new TuneError(err.problems.map(toFlagWording));
        throw err;
      }
      process.stdout.write(flags.format === "json" ? `${JSON.stringify(settings, null, 2)}\n` : renderPostgresConf(settings));
    });
}

function wholeNumber(flag: string, text: string, problems: string[]): number | undefined {
  if (!/^-?\d+$/.test(text.trim())) {
    problems.push(`${flag}: got ${JSON.stringify(text)}; expected a whole number`);
    return undefined;
  }
  return Number(text);
}

function toFlagWording(problem: string): string {
  const m = /^([A-Za-z.]+): (.*)$/.exec(problem);
  const flag = m && FLAG_OF_FIELD[m[1] as string];
  return flag ? `${flag}: ${m[2]}` : problem;
}
