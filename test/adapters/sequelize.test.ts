import { AsyncLocalStorage } from 'node:async_hooks';
import { Sequelize } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromSequelize } from '../../src/adapters/sequelize.js';
import { toExecutor } from '../../src/db/executor.js';
import { createOutbox, type Executor, LessonPublished } from '../../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { lesson, outboxIds } from '../helpers/outbox.js';
import {
  type AdapterHarness,
  adapterSuite,
  callbackTransaction,
  ignoreRollback,
  Rollback,
} from './suite.js';

let test: TestSchema;
let sequelize: Sequelize;
let harness: AdapterHarness;
let sent = 0;

beforeAll(async () => {
  test = await createPgTestSchema('sequelize');
  // `logging` sees every statement Sequelize sends, on any of its connections.
  sequelize = new Sequelize(PG_URL, { logging: () => void sent++, pool: { max: 3 } });
  harness = {
    inTransaction: callbackTransaction((body) =>
      sequelize.transaction((t) => body(fromSequelize(sequelize, t))),
    ),
    unwrapped: sequelize,
    outside: (options) => fromSequelize(sequelize, undefined, options),
    refusal:
      'fromSequelize: a Sequelize instance without a transaction is not a transaction, so the write would commit on its own',
    statements: () => sent,
  };
});

afterAll(async () => {
  await sequelize?.close();
  await test?.drop();
});

/** A CLS namespace as Sequelize.useCLS takes it (the cls-hooked API), on AsyncLocalStorage. */
function namespace() {
  const storage = new AsyncLocalStorage<Map<string, unknown>>();
  return {
    run: (fn: (context: Map<string, unknown>) => unknown) => {
      const context = new Map<string, unknown>();
      return storage.run(context, () => fn(context));
    },
    bind: <F>(fn: F) => fn,
    get: (key: string) => storage.getStore()?.get(key),
    set: (key: string, value: unknown) => storage.getStore()?.set(key, value),
  };
}

describe('edupulse-outbox/sequelize', () => {
  adapterSuite(() => ({ schema: test.schema, inspect: test.db, harness }));

  it('an unmanaged transaction (await sequelize.transaction()) is a transaction too', async () => {
    const outbox = createOutbox({ schema: test.schema });
    const t = await sequelize.transaction();
    await outbox.enqueue(fromSequelize(sequelize, t), LessonPublished.create(lesson()));
    await t.rollback();
    expect(await outboxIds(test)).toEqual([]);
  });

  it('a transaction Sequelize finished is refused by Sequelize, with its reason (afterCommit)', async () => {
    const outbox = createOutbox({ schema: test.schema });
    let refused: unknown;
    await sequelize.transaction(async (t) => {
      t.afterCommit(async () => {
        refused = await outbox
          .enqueue(fromSequelize(sequelize, t), LessonPublished.create(lesson()))
          .catch((e: unknown) => e);
      });
    });
    await expect.poll(() => refused).toBeInstanceOf(Error);
    // Not the adapter's "a COMMIT or ROLLBACK sent as a statement", which did not happen.
    expect((refused as Error).message).toMatch(/commit has been called on this transaction/);
    expect(await outboxIds(test)).toEqual([]);
  });

  it('the text reaches PostgreSQL as written: $$, $name, $9 and ? are not rewritten', async () => {
    const query = (tx: Executor) =>
      tx.query(
        `SELECT $1::text AS a, '$$' AS b, $tag$ $name $$ $9 $tag$ AS c, 'x$1' AS d, $2::int AS e,
           $1 || '$1' AS f, '?' AS g`,
        ['?', 7],
      );
    expect((await harness.inTransaction(query, true)).rows).toEqual([
      { a: '?', b: '$$', c: ' $name $$ $9 ', d: 'x$1', e: 7, f: '?$1', g: '?' },
    ]);
    const none = await harness.inTransaction((tx) => tx.query(`SELECT '$$ $1' AS b`), true);
    expect(none.rows).toEqual([{ b: '$$ $1' }]);
  });

  it('a value with a NUL character is refused rather than sent altered', async () => {
    await expect(
      harness.inTransaction((tx) => tx.query('SELECT $1::text AS a', ['a\0b']), true),
    ).rejects.toThrow('fromSequelize: a value contains a NUL character');
  });

  it("with CLS: the instance is refused, and autocommit writes outside CLS's transaction", async () => {
    const outbox = createOutbox({ schema: test.schema });
    Sequelize.useCLS(namespace());
    let kept: string | undefined;
    try {
      await sequelize
        .transaction(async (t) => {
          expect(() => fromSequelize(sequelize)).toThrow(
            'fromSequelize: a Sequelize instance without a transaction (its CLS transaction is not picked up implicitly) is not a transaction',
          );
          const autocommit = fromSequelize(sequelize, null, { autocommit: true });
          [kept] = await outbox.enqueue(autocommit, LessonPublished.create(lesson()));
          await outbox.enqueue(fromSequelize(sequelize, t), LessonPublished.create(lesson()));
          throw new Rollback();
        })
        .catch(ignoreRollback);
    } finally {
      // Sequelize has no way to turn CLS off again.
      (Sequelize as unknown as { _cls?: unknown })._cls = undefined;
    }
    expect(await outboxIds(test)).toEqual([kept]);
  });

  it('something that is not a Sequelize instance is refused', () => {
    expect(() => fromSequelize({} as never, null, { autocommit: true })).toThrow(
      'fromSequelize: expected a Sequelize instance, then its transaction, got an empty object',
    );
    const Lesson = sequelize.define('lesson', {}, { tableName: 'lesson_never_created' });
    expect(() => fromSequelize(sequelize, Lesson as never)).toThrow(
      'fromSequelize: expected a Sequelize Transaction as the transaction, got a function (lesson)',
    );
    expect(() => toExecutor(Lesson as never)).toThrow(
      'enqueue: the handle is a Sequelize model, which is passed through its adapter',
    );
    expect(() => fromSequelize(sequelize, {} as never)).toThrow(
      'fromSequelize: expected a Sequelize Transaction as the transaction, got an empty object',
    );
  });
});
