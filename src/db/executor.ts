/**
 * The one seam between the library and a database driver: run a statement with bound
 * parameters, get rows back. Application code hands us its own transaction object and
 * `toExecutor` wraps it by shape, so no driver or ORM is imported here.
 */
export interface Executor {
  query<R = Record<string, unknown>>(
    text: string,
    values?: readonly unknown[],
  ): Promise<{ rows: R[] }>;
}

/** node-postgres `Client` / `PoolClient`, PGlite and its transactions: `query(text, values) → { rows }`. */
interface QueryShaped {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/** postgres.js `sql` and the `sql` of `sql.begin(…)`: `unsafe(text, values) → rows`. */
interface UnsafeShaped {
  unsafe(text: string, values?: unknown[]): PromiseLike<unknown[]>;
}

export type TransactionLike = Executor | QueryShaped | UnsafeShaped;

function isUnsafeShaped(value: unknown): value is UnsafeShaped {
  return (
    (typeof value === 'function' || typeof value === 'object') &&
    value !== null &&
    typeof (value as UnsafeShaped).unsafe === 'function'
  );
}

function isQueryShaped(value: unknown): value is QueryShaped {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as QueryShaped).query === 'function'
  );
}

/**
 * Wraps a driver's connection or transaction as an `Executor`. Every statement the library
 * sends uses bound parameters; parameters are strings or numbers, already in the text form
 * PostgreSQL parses, so no driver-specific type serialisation is involved.
 */
export function toExecutor(tx: TransactionLike): Executor {
  // postgres.js first: its `sql` is a function object that has no `query` of this shape.
  if (isUnsafeShaped(tx)) {
    return {
      async query<R>(text: string, values: readonly unknown[] = []) {
        const rows = await tx.unsafe(text, [...values]);
        return { rows: [...rows] as R[] };
      },
    };
  }
  if (isQueryShaped(tx)) {
    return tx as Executor;
  }
  throw new TypeError(
    'enqueue: the transaction must be a node-postgres client, a postgres.js sql/transaction or a PGlite instance/transaction (an object with query(text, values) or unsafe(text, values))',
  );
}
