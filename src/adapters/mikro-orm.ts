/**
 * `edupulse-outbox/mikro-orm`: a MikroORM (6.x, `@mikro-orm/postgresql`) transaction as the
 * handle `enqueue` and `inbox.process` take.
 *
 * ```ts
 * await orm.em.fork().transactional(async (em) => {
 *   em.persist(lesson);
 *   await outbox.enqueue(fromMikroORM(em), LessonPublished.create({ … }));
 * });
 * ```
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { type AdapterOptions, type Executor, notInTransaction } from '../db/executor.js';

/**
 * What the adapter uses of the Knex client under MikroORM 6: the connection (the
 * transaction's, or one from the pool) and `query(connection, { sql, bindings })`, the step
 * below `knex.raw` that sends `sql` and its bindings to `pg` as they are.
 */
interface KnexClient {
  acquireConnection(): Promise<unknown>;
  releaseConnection(connection: unknown): Promise<unknown>;
  query(
    connection: unknown,
    query: { sql: string; bindings: unknown[]; method: 'raw' },
  ): Promise<{ response?: { rows?: unknown[] } }>;
  positionBindings(sql: string): string;
}

/**
 * Wraps a MikroORM transaction as an `Executor`: the `em` of
 * `em.transactional(async (em) => …)`, or an `em` after `em.begin()`. An `em` outside a
 * transaction is refused with a TypeError unless `{ autocommit: true }`; one whose
 * transaction has ended since is refused at its next statement too. "In a transaction" is
 * what `em.isInTransaction()` says, so inside `transactional` the global `orm.em` counts as
 * in it, as it does for MikroORM's own queries.
 *
 * Not through `em.execute(sql, params)`: MikroORM writes the params into the text, between
 * quotes, and reads `?` as its placeholder, while the library's statements use
 * PostgreSQL's `$1…` and bound parameters only. Nor through `knex.raw`, which reads `?` and
 * `??` too. The statements go to the Knex client under the transaction one step further
 * down, with the values as bound parameters, where Knex still checks that the transaction
 * is not over and emits its `query` event (MikroORM's own query log does not see them).
 */
export function fromMikroORM(em: EntityManager, options: AdapterOptions = {}): Executor {
  if (typeof em?.isInTransaction !== 'function' || typeof em.getKnex !== 'function') {
    throw new TypeError('fromMikroORM: expected an EntityManager of @mikro-orm/postgresql');
  }
  const check = () => {
    if (!options.autocommit && !em.isInTransaction()) {
      throw notInTransaction(
        'fromMikroORM',
        'a MikroORM EntityManager outside a transaction',
        'the em of em.transactional(async (em) => …)',
      );
    }
  };
  check();
  return {
    async query<R>(text: string, values: readonly unknown[] = []) {
      check();
      // The transaction's Knex (its connection; releasing it is a no-op), else the pool's.
      const knex = em.getTransactionContext<{ client: unknown }>() ?? em.getKnex();
      const client = knex.client as KnexClient;
      const sql = escapeQuestionMarks(client, text);
      const connection = await client.acquireConnection();
      try {
        const { response } = await client.query(connection, {
          sql,
          bindings: [...values],
          method: 'raw',
        });
        return { rows: (response?.rows ?? []) as R[] };
      } finally {
        await client.releaseConnection(connection);
      }
    },
  };
}

/**
 * The client numbers every `?` in the text as a placeholder (`$1`, `$2`, …) and turns
 * `\?` into `?`. Escapes each `?` so the text arrives as written (a jsonb `?` operator, a
 * `'?'`), and checks that with the client's own rewrite: text it cannot carry (a backslash
 * before a `?`) is refused rather than sent altered.
 */
function escapeQuestionMarks(client: KnexClient, text: string): string {
  if (!text.includes('?')) return text;
  const escaped = text.replaceAll('?', '\\?');
  if (client.positionBindings(escaped) !== text) {
    throw new TypeError('fromMikroORM: a statement with "\\?" in its text cannot be sent as it is');
  }
  return escaped;
}
