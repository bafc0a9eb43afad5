import { SchemaVersionError } from '../common/errors.js';

/** SQLSTATE undefined_table: what every driver reports for `INSERT INTO nope.outbox`. */
const UNDEFINED_TABLE = '42P01';

/** SQLSTATE unique_violation. */
export const UNIQUE_VIOLATION = '23505';

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
  if (!hasSqlState(error, UNDEFINED_TABLE)) return undefined;
  return new SchemaVersionError(
    `schema "${schema}" has no ${table} table: run \`edupulse-outbox migrate --schema ${schema}\` (or migrate(db, '${schema}')) before writing to it`,
    { cause: error },
  );
}

/**
 * Whether a driver's error, or the driver error an ORM wrapped, carries SQLSTATE `state`:
 * node-postgres, postgres.js and PGlite put it in `code`; Drizzle wraps theirs as
 * `cause`, Sequelize as `parent`; Prisma puts it in `meta.code`, or with a driver adapter
 * in `meta.driverAdapterError.cause.originalCode`.
 */
export function hasSqlState(error: unknown, state: string, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 4) return false;
  const { code, originalCode, cause, parent, meta, driverAdapterError } = error as Record<
    string,
    unknown
  >;
  return (
    code === state ||
    originalCode === state ||
    [cause, parent, meta, driverAdapterError].some((inner) => hasSqlState(inner, state, depth + 1))
  );
}

/** The driver's message and detail, and those of the error an ORM wrapped, as one text. */
export function errorText(error: unknown, depth = 0): string {
  if (typeof error !== 'object' || error === null || depth > 4) return '';
  const { message, detail, cause, parent, meta, driverAdapterError } = error as Record<
    string,
    unknown
  >;
  return [message, detail]
    .filter((part): part is string => typeof part === 'string')
    .concat([cause, parent, meta, driverAdapterError].map((inner) => errorText(inner, depth + 1)))
    .join(' ');
}
