// Quoting helpers and the read-only guard of GET /query. Pure functions.

/** Quote an identifier for PostgreSQL and DuckDB alike (both follow the SQL standard here). */
export function quoteIdent(name) {
  return `"${String(name).replaceAll('"', '""')}"`;
}

/** Quote a string literal for DuckDB (and PostgreSQL with standard_conforming_strings=on). */
export function quoteLiteral(value) {
  return `'${String(value).replaceAll("'", "''")}'`;
}

/**
 * A file name for `<schema>.<table>.parquet` that is safe on any file system: characters outside
 * [A-Za-z0-9_-] are percent-encoded, so `public.incidents` stays readable and `a/b` cannot escape
 * the parquet directory. Dots inside a name are encoded too, so the name splits back unambiguously.
 */
export function parquetFileName(schema, table) {
  const encode = (s) => Array.from(Buffer.from(s, 'utf8'))
    .map((b) => (/[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
  return `${encode(schema)}.${encode(table)}.parquet`;
}

/** Remove leading whitespace, `-- line` and `/* block *\/` comments and opening parentheses. */
function stripLeadingNoise(sql) {
  let s = sql;
  for (;;) {
    const before = s;
    s = s.replace(/^[\s(]+/, '');
    if (s.startsWith('--')) s = s.replace(/^--[^\n]*(\n|$)/, '');
    else if (s.startsWith('/*')) {
      const end = s.indexOf('*/');
      s = end === -1 ? '' : s.slice(end + 2);
    }
    if (s === before) return s;
  }
}

/**
 * First line of defence for GET /query: only statements that start with SELECT or WITH.
 * The service then also requires exactly one statement whose parsed type is SELECT, and runs it in
 * a READ ONLY transaction on a DuckDB instance that cannot touch files outside its data directory.
 * @returns {{ ok: true } | { ok: false, reason: string }}
 */
export function checkReadOnlySql(sql) {
  if (typeof sql !== 'string' || sql.trim() === '') return { ok: false, reason: 'missing query: pass ?sql=SELECT ...' };
  if (sql.length > 100_000) return { ok: false, reason: 'query too long (over 100000 characters)' };
  const keyword = /^[A-Za-z]+/.exec(stripLeadingNoise(sql))?.[0]?.toUpperCase();
  if (keyword !== 'SELECT' && keyword !== 'WITH') {
    return { ok: false, reason: `only SELECT or WITH queries are allowed${keyword ? `, got ${keyword}` : ''}` };
  }
  return { ok: true };
}
