/**
 * `edupulse-outbox/knex`: a Knex transaction (PostgreSQL, the `pg` client) as the handle
 * `enqueue` and `inbox.process` take.
 *
 * ```ts
 * await knex.transaction(async (trx) => {
 *   await trx('lesson').insert(lesson);
 *   await outbox.enqueue(fromKnex(trx), LessonPublished.create({ … }));
 * });
 * ```
 */
import {
  type AdapterOptions,
  adapterNotInTransaction,
  assertAdapterOptions,
  type Executor,
  endedByStatement,
  isIdlePgClient,
  wrongHandle,
} from '../db/executor.js';

/**
 * What the adapter uses of a Knex client: the connection of the transaction (or one from
 * the pool) and `query(connection, { sql, bindings })`, the step below `knex.raw` that
 * sends `sql` and its bindings to the driver as they are.
 */
export interface KnexClientLike {
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<unknown>;
  query(
    connection: unknown,
    query: { sql: string; bindings: unknown[]; method: 'raw' },
  ): Promise<{ response?: { rows?: unknown[] } }>;
  positionBindings?(sql: string): string;
}

/** A Knex instance or transaction (`Knex`, `Knex.Transaction`). */
export interface KnexLike {
  readonly isTransaction?: boolean;
  isCompleted?(): boolean;
  readonly client: unknown;
}

/**
 * Wraps a Knex transaction (the `trx` of `knex.transaction(async (trx) => …)`, or the one
 * `await knex.transaction()` resolves to) as an `Executor`. A Knex instance outside a
 * transaction is refused with a TypeError unless `{ autocommit: true }`.
 *
 * The statements do not go through `knex.raw`: it reads `?` and `??` in the text as
 * placeholders, while the library's statements use PostgreSQL's `$1…`. They are handed
 * to the client one step further down, with the values as bound parameters, where Knex
 * still checks that the transaction is not over and emits its `query` event.
 */
export function fromKnex(trx: KnexLike, options: AdapterOptions = {}): Executor {
  assertAdapterOptions('fromKnex', options);
  const client = trx?.client as KnexClientLike | undefined;
  if (typeof client?.query !== 'function' || typeof client.acquireConnection !== 'function') {
    throw wrongHandle('fromKnex', 'a Knex transaction', trx);
  }
  if (!trx.isTransaction && !options.autocommit) {
    throw adapterNotInTransaction(
      'fromKnex',
      'a Knex instance outside a transaction',
      'the trx of knex.transaction(async (trx) => …)',
    );
  }
  const ended =
    trx.isTransaction && !options.autocommit
      ? {
          transaction: trx,
          error: () =>
            endedByStatement(
              'fromKnex',
              'a Knex transaction',
              'the trx of knex.transaction(async (trx) => …)',
            ),
        }
      : undefined;
  return { query: (text, values) => knexClientQuery(client, 'fromKnex', text, values, ended) };
}

/**
 * Sends one statement through a Knex client: on the transaction's connection when the
 * client belongs to one (releasing it is a no-op), else on one from the pool. Also the
 * way MikroORM's adapter sends, through the Knex under its EntityManager. `ended`, given
 * for a transaction's client: its error is thrown when the connection (node-postgres) has
 * no transaction open though Knex has not completed the transaction, as after a COMMIT
 * sent as a statement (one Knex completed, Knex refuses itself: "Transaction query already
 * complete", the reason that is true).
 */
export async function knexClientQuery<R>(
  client: KnexClientLike,
  what: string,
  text: string,
  values: readonly unknown[] = [],
  ended?: { transaction: { isCompleted?(): boolean }; error: () => Error },
): Promise<{ rows: R[] }> {
  const sql = escapeQuestionMarks(client, text, what);
  const connection = await client.acquireConnection();
  try {
    if (ended && !ended.transaction.isCompleted?.() && isIdlePgClient(connection)) {
      throw ended.error();
    }
    const { response } = await client.query(connection, {
      sql,
      bindings: [...values],
      method: 'raw',
    });
    return { rows: (response?.rows ?? []) as R[] };
  } finally {
    await client.releaseConnection(connection);
  }
}

/**
 * The client numbers every `?` in the text as a placeholder (`$1`, `$2`, …) and turns
 * `\?` into `?`. Escapes each `?` so the text arrives as written, and checks that with
 * the client's own rewrite: text it cannot carry (a backslash before a `?`) is refused
 * rather than sent altered.
 */
function escapeQuestionMarks(client: KnexClientLike, text: string, what: string): string {
  if (!text.includes('?')) return text;
  const escaped = text.replaceAll('?', '\\?');
  if (client.positionBindings?.(escaped) !== text) {
    throw new TypeError(`${what}: a statement with "\\?" in its text cannot be sent as it is`);
  }
  return escaped;
}
