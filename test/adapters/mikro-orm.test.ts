import { randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromMikroORM } from '../../src/adapters/mikro-orm.js';
import { createInbox } from '../../src/consumer/index.js';
import { createOutbox, LessonPublished } from '../../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { type AdapterHarness, adapterSuite } from './suite.js';

let test: TestSchema;
let orm: MikroORM;
let harness: AdapterHarness;
let sent = 0;

/** Rejected on purpose to roll a transaction back. */
class Rollback extends Error {}

beforeAll(async () => {
  test = await createPgTestSchema('mikro_orm');
  // No entities: the adapter needs only the connection.
  orm = await MikroORM.init({
    clientUrl: PG_URL,
    entities: [],
    discovery: { warnWhenNoEntities: false },
    pool: { min: 0, max: 3 },
  });
  // Knex emits `query` for every statement MikroORM sends, on any of its connections.
  orm.em.getKnex().on('query', () => {
    sent++;
  });
  harness = {
    async inTransaction(fn, commit) {
      let result: Awaited<ReturnType<typeof fn>> | undefined;
      try {
        await orm.em.fork().transactional(async (em) => {
          result = await fn(fromMikroORM(em));
          if (!commit) throw new Rollback();
        });
      } catch (error) {
        if (!(error instanceof Rollback)) throw error;
      }
      return result as Awaited<ReturnType<typeof fn>>;
    },
    outside: (options) => fromMikroORM(orm.em.fork(), options),
    refusal:
      'fromMikroORM: a MikroORM EntityManager outside a transaction is not a transaction, so the write would commit on its own',
    statements: () => sent,
  };
});

afterAll(async () => {
  await orm?.close(true);
  await test?.drop();
});

async function stored(id: string | undefined): Promise<number> {
  const { rows } = await test.db.query(`SELECT 1 FROM "${test.schema}".outbox WHERE id = $1`, [id]);
  return rows.length;
}

describe('edupulse-outbox/mikro-orm', () => {
  adapterSuite(() => ({ schema: test.schema, inspect: test.db, harness }));

  it('an em after begin() is in a transaction until commit() or rollback()', async () => {
    const outbox = createOutbox({ schema: test.schema });
    const em = orm.em.fork();
    await em.begin();
    const tx = fromMikroORM(em);
    const [kept] = await outbox.enqueue(tx, LessonPublished.create(lesson()));
    await em.commit();
    // The executor of a transaction that has ended refuses to write on its own.
    await expect(tx.query('SELECT 1')).rejects.toThrow(TypeError);
    await em.begin();
    const [lost] = await outbox.enqueue(fromMikroORM(em), LessonPublished.create(lesson()));
    await em.rollback();
    expect([await stored(kept), await stored(lost)]).toEqual([1, 0]);
  });

  it('inside transactional(), the global em is in the transaction, as MikroORM has it', async () => {
    const outbox = createOutbox({ schema: test.schema });
    let id: string | undefined;
    await orm.em
      .transactional(async () => {
        expect(orm.em.isInTransaction()).toBe(true);
        [id] = await outbox.enqueue(fromMikroORM(orm.em), LessonPublished.create(lesson()));
        expect(await stored(id)).toBe(0); // not committed yet
        throw new Rollback();
      })
      .catch((error) => {
        if (!(error instanceof Rollback)) throw error;
      });
    expect(await stored(id)).toBe(0);
  });

  it('the text reaches PostgreSQL as written: ? and ?? are not placeholders', async () => {
    const result = await harness.inTransaction(
      (tx) =>
        tx.query(`SELECT '{"a": 1}'::jsonb ? 'a' AS has, $1::text AS v, '??' AS q, $1 || $2 AS w`, [
          "it's ? or $1",
          '?',
        ]),
      true,
    );
    expect(result.rows).toEqual([{ has: true, v: "it's ? or $1", q: '??', w: "it's ? or $1?" }]);
    // Knex cannot carry a backslash before a ?: refused, not sent altered.
    await expect(
      harness.inTransaction((tx) => tx.query(`SELECT E'\\\\?' AS x`), true),
    ).rejects.toThrow('fromMikroORM: a statement with "\\?" in its text cannot be sent as it is');
  });

  it('UPDATE and DELETE … RETURNING give their rows too (inbox.purge)', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: `purge-${randomUUID()}` });
    await harness.inTransaction(async (tx) => {
      for (const aggregateId of ['a', 'b', 'c']) {
        const event = { id: randomUUID(), type: 'lesson-published', aggregateId, sequence: '1' };
        await inbox.process(tx, event, () => 1);
      }
    }, true);
    const purged = await harness.inTransaction(
      (tx) => inbox.purge(tx, new Date(Date.now() + 60_000)),
      true,
    );
    expect(purged).toBe(3);
  });

  it('something that is not an EntityManager is refused', () => {
    expect(() => fromMikroORM({} as never, { autocommit: true })).toThrow(
      'fromMikroORM: expected an EntityManager of @mikro-orm/postgresql',
    );
  });
});

function lesson() {
  return {
    lesson_id: randomUUID(),
    author_id: randomUUID(),
    title: 'Cells',
    published_at: '2024-05-01T09:30:00Z',
  };
}
