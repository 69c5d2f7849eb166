// The problems a ConfigError names (what a user sees), for the schema tests; throws when fn does not fail.
import { ConfigError } from "../../components/config/index.ts";

export function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected a ConfigError");
}
