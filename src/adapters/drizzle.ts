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
import { PgTransaction } from 'drizzle-orm/pg-core/session';
import {
  type AdapterOptions,
  adapterNotInTransaction,
  assertAdapterOptions,
  type Executor,
  isIdlePgClient,
  wrongHandle,
} from '../db/executor.js';
import { forgetLostStatement, isPgClient, preparedNameOn } from '../db/prepared.js';

/**
 * What the adapter uses of a Drizzle PostgreSQL database or transaction: its session's
 * `prepareQuery`. Written out rather than taken from Drizzle's classes, whose private
 * members make its ES module and CommonJS declarations two unrelated types: a CommonJS
 * project's `tx` would not fit a type from the ES module ones.
 */
export interface DrizzleLike {
  readonly _: {
    readonly session: {
      prepareQuery(
        query: { sql: string; params: unknown[] },
        fields: undefined,
        name: string | undefined,
        isResponseInArrayMode: boolean,
      ): { execute(): Promise<unknown> };
    };
  };
}

/**
 * Wraps a Drizzle transaction (the `tx` of `db.transaction(async (tx) => …)`, a nested one
 * too) as an `Executor`. A Drizzle database outside a transaction is refused with a
 * TypeError unless `{ autocommit: true }`.
 *
 * Each statement goes through the transaction's own session, from its text and values,
 * as Drizzle sends the SQL it builds: the values are bound parameters (`sql.raw` would
 * paste them into the text), it runs on the transaction's connection, and Drizzle's
 * logger sees it. A failed statement throws the driver's error, not Drizzle's wrapper
 * that quotes every value.
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
  const client = (session as { client?: unknown }).client;
  /** node-postgres's connection of the transaction, to ask whether it still is in one. */
  const pgClient =
    client !== null && typeof client === 'object' && isPgClient(client) ? client : undefined;
  // pg-pool gives a connection a `release` of its own at every checkout: one other than
  // the transaction's first seen means the connection went back to the pool and out
  // again. By the tx, new at each transaction (a session may outlive one: drizzle() of a
  // PoolClient checked out again).
  if (pgClient && !checkouts.has(tx)) checkouts.set(tx, checkoutOf(pgClient));
  const lentAgain = () => pgClient !== undefined && checkouts.get(tx) !== checkoutOf(pgClient);
  const ended = () =>
    adapterNotInTransaction(
      'fromDrizzle',
      'a Drizzle transaction that has ended',
      'the tx of db.transaction(async (tx) => …) while its callback runs',
    );
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      // node-postgres: a tx kept past the end of its callback is on a connection that has
      // committed (or gone back to the pool); a statement there would commit on its own,
      // or, the connection lent to another transaction since, be part of that one.
      if (!options.autocommit && (isIdlePgClient(client) || lentAgain())) throw ended();
      // On a node-postgres connection to the server itself, a named statement, prepared
      // once per connection as on a plain client (postgres.js prepares on its own, unless
      // `prepare: false`). No fields: the driver's own result.
      const name = pgClient && (await preparedNameOn(pgClient, text, values));
      const prepared = session.prepareQuery(
        { sql: text, params: [...values] },
        undefined,
        name,
        false,
      );
      try {
        // node-postgres gives its QueryResult ({ rows }), postgres.js the rows themselves.
        const result = (await prepared.execute()) as unknown[] | { rows: unknown[] };
        return { rows: (Array.isArray(result) ? result : result.rows) as R[] };
      } catch (error) {
        const cause = driverError(error);
        if (pgClient && name) forgetLostStatement(pgClient, name, cause);
        // postgres.js 4 refuses a statement on a transaction that has ended.
        if (!options.autocommit && (cause as { code?: unknown }).code === 'UNSAFE_TRANSACTION') {
          throw ended();
        }
        throw cause;
      }
    },
  };
}

/** The pool checkout of node-postgres's connection each Drizzle transaction was first seen in. */
const checkouts = new WeakMap<object, unknown>();

/** A PoolClient's checkout (its `release`, new at each); undefined for a plain Client. */
const checkoutOf = (client: object): unknown => (client as { release?: unknown }).release;

/**
 * The driver's error inside Drizzle's `DrizzleQueryError` (from 0.44), which puts the
 * statement and every value in its message: an event's whole payload, in every log that
 * prints the error. The driver's own error is what the other adapters throw too.
 */
function driverError(error: unknown): unknown {
  const wrapped = error as { query?: unknown; params?: unknown; cause?: unknown };
  return error instanceof Error &&
    typeof wrapped.query === 'string' &&
    Array.isArray(wrapped.params) &&
    wrapped.cause instanceof Error
    ? wrapped.cause
    : error;
}
