// Service configuration: environment variables only, plus ONE secret read from a file.
// The password is deliberately absent from this object: it is read from the file at every sync
// (so a rotated secret is picked up without a restart) and handed straight to the pg client.
import path from 'node:path';

export const DEFAULTS = Object.freeze({
  HOMELAB_SOURCE_PORT: '5432',
  HOMELAB_SOURCE_SCHEMAS: 'public',
  HOMELAB_SOURCE_SSLMODE: 'disable',
  HOMELAB_SOURCE_PASSWORD_FILE: '/etc/homelab/secrets/source.password',
  HOMELAB_SYNC_INTERVAL_SECONDS: '300',
  HOMELAB_DATA_DIR: '/var/lib/duckdb',
  HOMELAB_HTTP_PORT: '8080',
  HOMELAB_DUCKDB_MEMORY_LIMIT: '256MB',
  HOMELAB_DUCKDB_THREADS: '2',
  HOMELAB_QUERY_TIMEOUT_SECONDS: '30',
  HOMELAB_QUERY_MAX_ROWS: '10000',
});

const SSL_MODES = ['disable', 'require', 'verify-full'];

export class ConfigError extends Error {}

/**
 * Read and validate the configuration from an environment object.
 * Every problem names the variable, the bad value and what would be accepted; all problems are
 * reported at once.
 * @param {Record<string, string | undefined>} env
 */
export function readConfig(env) {
  const problems = [];
  const get = (name) => {
    const raw = env[name];
    return raw === undefined || raw.trim() === '' ? DEFAULTS[name] : raw.trim();
  };
  const required = (name, what) => {
    const value = get(name);
    if (value === undefined) problems.push(`${name} is not set: expected ${what}`);
    return value;
  };
  const integer = (name, min, max) => {
    const value = get(name);
    const n = Number(value);
    if (!/^\d+$/.test(value ?? '') || n < min || n > max) {
      problems.push(`${name}=${JSON.stringify(value)} is invalid: expected an integer from ${min} to ${max}`);
      return undefined;
    }
    return n;
  };
  const absolutePath = (name) => {
    const value = get(name);
    if (!path.isAbsolute(value)) problems.push(`${name}=${JSON.stringify(value)} is invalid: expected an absolute path`);
    return path.resolve(value);
  };

  if (env.HOMELAB_SOURCE_PASSWORD !== undefined || env.PGPASSWORD !== undefined) {
    problems.push('HOMELAB_SOURCE_PASSWORD/PGPASSWORD must not be set: the password is read only from the file named by HOMELAB_SOURCE_PASSWORD_FILE');
  }

  const schemas = get('HOMELAB_SOURCE_SCHEMAS').split(',').map((s) => s.trim()).filter(Boolean);
  if (schemas.length === 0) problems.push('HOMELAB_SOURCE_SCHEMAS is empty: expected a comma-separated list of schema names, e.g. "public,app"');
  const internal = schemas.filter((s) => /^(pg_|information_schema$)/.test(s));
  if (internal.length > 0) problems.push(`HOMELAB_SOURCE_SCHEMAS contains system schema(s) ${internal.join(', ')}: expected user schemas only`);
  if (new Set(schemas).size !== schemas.length) problems.push(`HOMELAB_SOURCE_SCHEMAS=${JSON.stringify(get('HOMELAB_SOURCE_SCHEMAS'))} lists a schema twice`);

  const sslMode = get('HOMELAB_SOURCE_SSLMODE');
  if (!SSL_MODES.includes(sslMode)) problems.push(`HOMELAB_SOURCE_SSLMODE=${JSON.stringify(sslMode)} is invalid: expected one of ${SSL_MODES.join(', ')}`);
  const sslRootCertFile = env.HOMELAB_SOURCE_SSLROOTCERT?.trim() || undefined;
  if (sslMode === 'verify-full' && !sslRootCertFile) problems.push('HOMELAB_SOURCE_SSLROOTCERT is not set: expected the path of the CA certificate when HOMELAB_SOURCE_SSLMODE=verify-full');

  const memoryLimit = get('HOMELAB_DUCKDB_MEMORY_LIMIT');
  if (!/^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i.test(memoryLimit)) {
    problems.push(`HOMELAB_DUCKDB_MEMORY_LIMIT=${JSON.stringify(memoryLimit)} is invalid: expected a size such as 256MB or 1GiB`);
  }

  const config = {
    source: {
      host: required('HOMELAB_SOURCE_HOST', 'the host name of the PostgreSQL replica'),
      port: integer('HOMELAB_SOURCE_PORT', 1, 65535),
      database: required('HOMELAB_SOURCE_DATABASE', 'the database to mirror'),
      user: required('HOMELAB_SOURCE_USER', 'a read-only role on the replica'),
      passwordFile: absolutePath('HOMELAB_SOURCE_PASSWORD_FILE'),
      sslMode,
      sslRootCertFile,
      schemas,
    },
    syncIntervalSeconds: integer('HOMELAB_SYNC_INTERVAL_SECONDS', 0, 7 * 24 * 3600),
    dataDir: absolutePath('HOMELAB_DATA_DIR'),
    httpPort: integer('HOMELAB_HTTP_PORT', 1, 65535),
    duckdb: {
      memoryLimit,
      threads: integer('HOMELAB_DUCKDB_THREADS', 1, 256),
    },
    query: {
      timeoutMs: (integer('HOMELAB_QUERY_TIMEOUT_SECONDS', 1, 3600) ?? 0) * 1000,
      maxRows: integer('HOMELAB_QUERY_MAX_ROWS', 1, 1_000_000),
    },
  };
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  config.databaseFile = path.join(config.dataDir, 'homelab.duckdb');
  config.parquetDir = path.join(config.dataDir, 'parquet');
  config.stagingDir = path.join(config.dataDir, 'staging');
  config.tempDir = path.join(config.dataDir, 'tmp');
  return config;
}
