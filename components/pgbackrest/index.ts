// pgBackRest domain: pure planners for the repository host and the PostgreSQL hosts' pgbackrest.conf.
export * from "./conf.ts";
export * from "./sftp.ts";
