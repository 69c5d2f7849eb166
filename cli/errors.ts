/** A mistake of the user's, not a bug: printed as one line per problem, exit code 2, no stack trace. */
export class UsageError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "UsageError";
  }
}
