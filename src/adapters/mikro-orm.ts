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
import {
  type AdapterOptions,
  adapterNotInTransaction,
  assertAdapterOptions,
  type Executor,
  endedByStatement,
  wrongHandle,
} from '../db/executor.js';
import { type KnexClientLike, knexClientQuery } from './knex.js';

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
  assertAdapterOptions('fromMikroORM', options);
  if (typeof em?.isInTransaction !== 'function' || typeof em.getKnex !== 'function') {
    throw wrongHandle('fromMikroORM', 'an EntityManager of @mikro-orm/postgresql', em);
  }
  const instead = 'the em of em.transactional(async (em) => …)';
  const check = () => {
    if (!options.autocommit && !em.isInTransaction()) {
      throw adapterNotInTransaction(
        'fromMikroORM',
        'a MikroORM EntityManager outside a transaction',
        instead,
      );
    }
  };
  const error = () => endedByStatement('fromMikroORM', 'a MikroORM transaction', instead);
  check();
  return {
    async query(text, values) {
      check();
      // The transaction's Knex, else the pool's.
      const transaction = em.getTransactionContext<{
        client: unknown;
        isCompleted?(): boolean;
      }>();
      const knex = transaction ?? em.getKnex();
      return knexClientQuery(
        knex.client as KnexClientLike,
        'fromMikroORM',
        text,
        values,
        // A forked em kept past em.transactional(): Knex refuses, having completed it.
        transaction && !options.autocommit ? { transaction, error } : undefined,
      );
    },
  };
}
