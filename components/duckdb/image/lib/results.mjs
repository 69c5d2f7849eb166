// DuckDB result -> JSON the HTTP API returns. Pure apart from reading the reader.
//
// @duckdb/node-api's JSON conversion turns every 64/128-bit integer and DECIMAL into a string (they
// may not fit a JS number). Most analytics answers do fit (count(*), sum(smallint)), so integers
// that are safe JS integers become numbers, and DECIMALs narrow enough to survive a double
// (width <= 15 digits) become numbers; anything else stays a string, never a rounded number.
import { DuckDBTypeId } from '@duckdb/node-api';

const WIDE_INTEGERS = new Set([DuckDBTypeId.BIGINT, DuckDBTypeId.UBIGINT, DuckDBTypeId.HUGEINT, DuckDBTypeId.UHUGEINT]);
const DOUBLE_SAFE_DECIMAL_WIDTH = 15;

/** Convert one JSON-converted value of the given DuckDB type into the API's value. */
export function apiValue(type, value) {
  if (typeof value !== 'string') return value;
  if (WIDE_INTEGERS.has(type.typeId)) {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value;
  }
  if (type.typeId === DuckDBTypeId.DECIMAL && type.width <= DOUBLE_SAFE_DECIMAL_WIDTH) {
    return Number(value);
  }
  return value;
}

/**
 * @param {import('@duckdb/node-api').DuckDBResultReader} reader
 * @param {number} maxRows rows beyond this are cut and `truncated` is set
 */
export function readerToJson(reader, maxRows) {
  const names = reader.deduplicatedColumnNames();
  const types = reader.columnTypes();
  const rows = reader.getRowsJson();
  const truncated = rows.length > maxRows;
  const kept = truncated ? rows.slice(0, maxRows) : rows;
  return {
    columns: names.map((name, i) => ({ name, type: types[i].alias ?? types[i].toString() })), // alias: JSON is a VARCHAR alias
    rows: kept.map((row) => Object.fromEntries(row.map((v, i) => [names[i], apiValue(types[i], v)]))),
    rowCount: kept.length,
    truncated,
  };
}
