/**
 * `edupulse-outbox/kysely`: a Kysely transaction as the handle `enqueue` and
 * `inbox.process` take.
 *
 * ```ts
 * await db.transaction().execute(async (trx) => {
 *   await trx.insertInto('lesson').values(lesson).execute();
 *   await outbox.enqueue(fromKysely(trx), LessonPublished.create({ … }));
 * });
 * ```
 */
import { CompiledQuery, type QueryResult } from 'kysely';
import {
  type AdapterOptions,
  adapterNotInTransaction,
  assertAdapterOptions,
  type Executor,
  wrongHandle,
} from '../db/executor.js';

/** What the adapter uses of a Kysely instance (`Kysely`, `Transaction`, `ControlledTransaction`). */
export interface KyselyLike {
  readonly isTransaction: boolean;
  withoutPlugins(): {
    executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>>;
  };
}

/**
 * Wraps a Kysely transaction (the `trx` of `db.transaction().execute(async (trx) => …)`,
 * or of `db.startTransaction().execute()`) as an `Executor`: each statement is sent on the
 * transaction's connection with its values as bound parameters. A Kysely instance outside
 * a transaction is refused with a TypeError unless `{ autocommit: true }`.
 */
export function fromKysely(trx: KyselyLike, options: AdapterOptions = {}): Executor {
  assertAdapterOptions('fromKysely', options);
  if (typeof trx?.withoutPlugins !== 'function') {
    throw wrongHandle('fromKysely', 'a Kysely transaction', trx);
  }
  if (!trx.isTransaction && !options.autocommit) {
    throw adapterNotInTransaction(
      'fromKysely',
      'a Kysely instance outside a transaction',
      'the trx of db.transaction().execute(async (trx) => …)',
    );
  }
  // Without the instance's plugins: a CamelCasePlugin would rename the columns the
  // library reads back (in_order → inOrder).
  const db = trx.withoutPlugins();
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      const { rows } = await db.executeQuery(CompiledQuery.raw(text, [...values]));
      return { rows: rows as R[] };
    },
  };
}
