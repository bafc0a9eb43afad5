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
 * A driver's error and the ones an ORM wrapped around or inside it, outermost first:
 * Drizzle wraps the driver's as `cause`, Sequelize as `parent`; Prisma keeps what it knows
 * in `meta`, with a driver adapter in `meta.driverAdapterError.cause`.
 */
function* errorLayers(error: unknown, depth = 0): Generator<Record<string, unknown>> {
  if (typeof error !== 'object' || error === null || depth > 4) return;
  const layer = error as Record<string, unknown>;
  yield layer;
  for (const inner of [layer.cause, layer.parent, layer.meta, layer.driverAdapterError]) {
    yield* errorLayers(inner, depth + 1);
  }
}

/** True when `error` (or an error an ORM wrapped) has a SQLSTATE of `stateClass` ('22'). */
export function hasSqlStateClass(error: unknown, stateClass: string): boolean {
  for (const { code, originalCode } of errorLayers(error)) {
    for (const state of [code, originalCode]) {
      if (typeof state === 'string' && state.length === 5 && state.startsWith(stateClass)) {
        return true;
      }
    }
  }
  return false;
}

/**
 * Whether a driver's error, or the driver error an ORM wrapped, carries SQLSTATE `state`:
 * node-postgres, postgres.js and PGlite put it in `code`, Prisma in `meta.code` or, with
 * a driver adapter, `originalCode`.
 */
export function hasSqlState(error: unknown, state: string): boolean {
  for (const { code, originalCode } of errorLayers(error)) {
    if (code === state || originalCode === state) return true;
  }
  return false;
}

/** The messages and details of a driver's error and of those an ORM wrapped, as one text. */
export function errorText(error: unknown): string {
  return [...errorLayers(error)]
    .flatMap(({ message, detail }) => [message, detail])
    .filter((part): part is string => typeof part === 'string')
    .join(' ');
}
