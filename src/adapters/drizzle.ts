/**
 * `edupulse-outbox/drizzle`: a Drizzle transaction on PostgreSQL (`drizzle-orm/node-postgres`,
 * `drizzle-orm/postgres-js`) as the handle `enqueue` and `inbox.process` take.
 *
 * ```ts
 * await db.transaction(async (tx) => {
 *   await tx.insert(lesson).values(row);
 *   await outbox.enqueue(fromDrizzle(tx), LessonPublished.create({ … }));
 * });
 * ```
 */
import { is } from 'drizzle-orm/entity';
import { type PgSession, PgTransaction } from 'drizzle-orm/pg-core/session';
import {
  type AdapterOptions,
  adapterNotInTransaction,
  assertAdapterOptions,
  type Executor,
  isIdlePgClient,
  wrongHandle,
} from '../db/executor.js';

/** What the adapter uses of a Drizzle PostgreSQL database or transaction: its session. */
export interface DrizzleLike {
  readonly _: { readonly session: Pick<PgSession, 'prepareQuery'> };
}

/**
 * Wraps a Drizzle transaction (the `tx` of `db.transaction(async (tx) => …)`, a nested one
 * too) as an `Executor`. A Drizzle database outside a transaction is refused with a
 * TypeError unless `{ autocommit: true }`.
 *
 * Each statement is prepared by the transaction's own session from its text and values,
 * as Drizzle does with the SQL it builds: the values are bound parameters (`sql.raw`
 * would paste them into the text), it runs on the transaction's connection, and Drizzle's
 * logger sees it.
 */
export function fromDrizzle(tx: DrizzleLike, options: AdapterOptions = {}): Executor {
  assertAdapterOptions('fromDrizzle', options);
  const session = tx?._?.session;
  if (typeof session?.prepareQuery !== 'function') {
    throw wrongHandle('fromDrizzle', 'a Drizzle PostgreSQL transaction', tx);
  }
  if (!is(tx, PgTransaction) && !options.autocommit) {
    throw adapterNotInTransaction(
      'fromDrizzle',
      'a Drizzle database outside a transaction',
      'the tx of db.transaction(async (tx) => …)',
    );
  }
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      // node-postgres: a tx kept past the end of its callback is on a connection that has
      // committed (or gone back to the pool); a statement there would commit on its own.
      if (!options.autocommit && isIdlePgClient((session as { client?: unknown }).client)) {
        throw adapterNotInTransaction(
          'fromDrizzle',
          'a Drizzle transaction that has ended',
          'the tx of db.transaction(async (tx) => …) while its callback runs',
        );
      }
      // No fields and no name: the driver's own result, not a named prepared statement.
      const prepared = session.prepareQuery(
        { sql: text, params: [...values] },
        undefined,
        undefined,
        false,
      );
      // node-postgres gives its QueryResult ({ rows }), postgres.js the rows themselves.
      const result = (await prepared.execute()) as unknown[] | { rows: unknown[] };
      return { rows: (Array.isArray(result) ? result : result.rows) as R[] };
    },
  };
}
