/**
 * SQL pieces more than one statement shares, named once: the text form of times, and
 * the advisory-lock keys (which migrations 0004 and 0005 derive in the insert trigger
 * too; test/migrate.test.ts checks that the shipped migrations still spell them so).
 */

/**
 * `column` as RFC 3339 in UTC with microseconds: the form every timestamp leaves the
 * database in. NULL where RFC 3339 cannot carry it (infinity, a BC date, year 10000).
 */
export const rfc3339 = (column: string) =>
  `CASE WHEN ${column} >= '0001-01-01 00:00:00+00' AND ${column} < '10000-01-01 00:00:00+00'
    THEN to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END`;

/**
 * A time as PostgreSQL's ISO text in UTC, era included (`0044-03-15 00:00:00+00 BC`),
 * whatever the session's DateStyle and TimeZone; `infinity` as such.
 */
export const isoText = (column: string) =>
  `CASE WHEN isfinite(${column})
    THEN to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"+00"')
      || CASE WHEN ${column} < '0001-01-01 00:00:00+00' THEN ' BC' ELSE '' END
    ELSE ${column}::text END`;

/**
 * The order locks' first key (migration 0004): this schema's tag in the high bits, the
 * partition in the low ten. `schema` is an SQL expression giving the schema's name.
 */
export const ORDER_LOCK_TAG = (schema: string) =>
  `(hashtext('edupulse-outbox:order:' || ${schema}) & ${ORDER_TAG_MASK})`;
/** The bits of the first key that hold the schema's tag: all but the low ten. */
export const ORDER_TAG_MASK = 2147482624;
/** The bits of the first key that hold the partition (partitions are at most 1024). */
export const ORDER_PARTITION_MASK = 1023;

/** The session-lock namespaces dispatchers share partitions with, per schema. */
export const OWNERSHIP_NAMESPACES = (schema: string) =>
  `hashtext('edupulse-outbox:members:' || ${schema}) & 2147483647 AS members,
  hashtext('edupulse-outbox:partitions:' || ${schema}) & 2147483647 AS partitions`;

/** The key concurrent migrators of one schema queue on (hashed with hashtextextended). */
export const migrationLockKey = (schema: string) => `edupulse-outbox:migrate:${schema}`;

/** The key the dispatchers' dead-letter janitors of one schema take turns on (the same). */
export const deadLetterJanitorLockKey = (schema: string) =>
  `edupulse-outbox:dead-letter-janitor:${schema}`;

/** A PostgreSQL array literal of numbers (seqs, partitions), bound as text: every driver passes it unchanged. */
export function pgArray(values: readonly (string | number)[]): string {
  return `{${values.join(',')}}`;
}

/**
 * Text values as a PostgreSQL array literal, each quoted: a value may hold a comma, a
 * brace or a quote (a consumer's event id is any text, an operator's search anything),
 * which unquoted would split it or make the literal malformed.
 */
export function pgTextArray(values: readonly string[]): string {
  return `{${values.map((value) => `"${value.replace(/["\\]/g, '\\$&')}"`).join(',')}}`;
}
