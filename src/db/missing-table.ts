import { SchemaVersionError } from '../common/errors.js';

/** SQLSTATE undefined_table: what every driver reports for `INSERT INTO nope.outbox`. */
const UNDEFINED_TABLE = '42P01';

/**
 * A statement on one of our tables failed because the table is not there (the schema was
 * never migrated, or not to the version that made it): the driver's "relation … does not
 * exist" becomes a SchemaVersionError that says what to run. Any other error: undefined.
 */
export function missingTableError(
  error: unknown,
  schema: string,
  table: string,
): SchemaVersionError | undefined {
  if ((error as { code?: unknown } | null)?.code !== UNDEFINED_TABLE) return undefined;
  return new SchemaVersionError(
    `schema "${schema}" has no ${table} table: run \`edupulse-outbox migrate --schema ${schema}\` (or migrate(db, '${schema}')) before writing to it`,
    { cause: error },
  );
}
