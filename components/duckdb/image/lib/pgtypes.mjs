// PostgreSQL column -> how it travels through CSV and what it becomes in DuckDB. Pure.
//
// Each column is selected on the source as `pgExpr` (text in CSV), read by DuckDB's CSV reader as
// `csvType`, and turned into the mirror's column by `duckExpr` (a template over the CSV column).
// The source session pins TimeZone=UTC, DateStyle=ISO and IntervalStyle=postgres, so text forms are
// stable. Mapping follows DuckDB's own postgres scanner where it can (unconstrained numeric -> DOUBLE).
import { quoteIdent } from './sql.mjs';

// DuckDB DECIMAL holds at most 38 digits (https://duckdb.org/docs/sql/data_types/numeric).
const DUCKDB_MAX_DECIMAL_WIDTH = 38;
// PostgreSQL stores numeric(p,s) as typmod = ((p << 16) | (s & 0x7ff)) + VARHDRSZ (src/backend/utils/adt/numeric.c).
const VARHDRSZ = 4;

const SIMPLE = {
  bool: 'BOOLEAN',
  int2: 'SMALLINT',
  int4: 'INTEGER',
  int8: 'BIGINT',
  oid: 'BIGINT',
  float4: 'FLOAT',
  float8: 'DOUBLE',
  uuid: 'UUID',
  date: 'DATE',
  time: 'TIME',
  timetz: 'TIMETZ',
  timestamp: 'TIMESTAMP',
  timestamptz: 'TIMESTAMPTZ',
  json: 'JSON',
  jsonb: 'JSON',
};

/** Decode numeric's typmod into { precision, scale }, or undefined when unconstrained. */
export function numericTypmod(typmod) {
  if (typmod === null || typmod === undefined || typmod < VARHDRSZ) return undefined;
  const t = typmod - VARHDRSZ;
  const precision = (t >> 16) & 0xffff;
  // PostgreSQL 15+ allows a negative scale: an 11-bit two's complement field.
  const scale = ((t & 0x7ff) ^ 1024) - 1024;
  return { precision, scale };
}

/**
 * @param {{ name: string, typname: string, typtype: string, typcategory: string, typmod: number }} column
 *   typname/typtype/typcategory/typmod of the column's type, with domains already resolved to their base type.
 * @param {number} index position of the column, names its CSV column `c<index>`
 * @returns {{ name: string, pgType: string, pgExpr: string, csvType: string, duckExpr: string, duckType: string }}
 */
export function planColumn(column, index) {
  const ident = quoteIdent(column.name);
  const csv = `c${index}`;
  const plan = (pgExpr, csvType, duckType, duckExpr = csv) => ({
    name: column.name, pgType: column.typname, pgExpr, csvType, duckExpr, duckType,
  });

  if (column.typcategory === 'A') {
    // Arrays become JSON arrays: queryable with DuckDB's json functions, exact for any element type.
    return plan(`to_json(${ident})`, 'VARCHAR', 'JSON');
  }
  if (column.typtype === 'e') return plan(`${ident}::text`, 'VARCHAR', 'VARCHAR');

  const simple = SIMPLE[column.typname];
  if (simple) return plan(ident, simple, simple);

  switch (column.typname) {
    case 'numeric': {
      const mod = numericTypmod(column.typmod);
      if (mod && mod.precision <= DUCKDB_MAX_DECIMAL_WIDTH && mod.scale >= 0 && mod.scale <= mod.precision) {
        const type = `DECIMAL(${mod.precision},${mod.scale})`;
        // numeric(p,s) may hold NaN, which DECIMAL cannot: it becomes NULL.
        return plan(`NULLIF(${ident}, 'NaN'::numeric)`, type, type);
      }
      // Unconstrained (or wider than DuckDB allows): DOUBLE, like DuckDB's postgres scanner; NaN/Infinity survive.
      return plan(ident, 'DOUBLE', 'DOUBLE');
    }
    case 'bytea':
      return plan(`encode(${ident}, 'hex')`, 'VARCHAR', 'BLOB', `unhex(${csv})`);
    case 'interval':
      // PostgreSQL prints mixed-sign intervals ('-1 days +02:00:00') in forms DuckDB does not parse;
      // spell out the three fields an interval is made of instead.
      return plan(
        `CASE WHEN ${ident} IS NULL THEN NULL ELSE format('%s months %s days %s microseconds', `
          + `extract(year from ${ident})::bigint * 12 + extract(month from ${ident})::bigint, `
          + `extract(day from ${ident})::bigint, `
          + `(extract(epoch from ${ident} - date_trunc('day', ${ident})) * 1000000)::bigint) END`,
        'VARCHAR', 'INTERVAL', `CAST(${csv} AS INTERVAL)`,
      );
    case 'bpchar':
    case 'varchar':
    case 'text':
    case 'name':
    case 'char':
      return plan(ident, 'VARCHAR', 'VARCHAR');
    default:
      // citext, inet, cidr, macaddr, money, xml, ranges, composites, extension types: their text form.
      return plan(`${ident}::text`, 'VARCHAR', 'VARCHAR');
  }
}

/** The `COPY (...) TO STDOUT` statement that exports one table as CSV. */
export function copyOutSql(schema, table, columns) {
  const select = columns.map((c) => c.pgExpr).join(', ');
  return `COPY (SELECT ${select} FROM ${quoteIdent(schema)}.${quoteIdent(table)}) TO STDOUT WITH (FORMAT csv)`;
}
