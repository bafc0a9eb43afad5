import { randomUUID } from 'node:crypto';
import { DataSource, type Logger } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromTypeORM } from '../../src/adapters/typeorm.js';
import { createInbox } from '../../src/consumer/index.js';
import { createOutbox, LessonPublished } from '../../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { type AdapterHarness, adapterSuite } from './suite.js';

let test: TestSchema;
let dataSource: DataSource;
let harness: AdapterHarness;
let sent = 0;

/** Counts every statement TypeORM sends, on any of its connections. */
const counting: Logger = {
  logQuery: () => {
    sent++;
  },
  logQueryError: () => {},
  logQuerySlow: () => {},
  logSchemaBuild: () => {},
  logMigration: () => {},
  log: () => {},
};

/** Rejected on purpose to roll a transaction back. */
class Rollback extends Error {}

beforeAll(async () => {
  test = await createPgTestSchema('typeorm');
  // No entities: the adapter needs only the raw connection.
  dataSource = new DataSource({ type: 'postgres', url: PG_URL, logger: counting, poolSize: 3 });
  await dataSource.initialize();
  harness = {
    async inTransaction(fn, commit) {
      let result: Awaited<ReturnType<typeof fn>> | undefined;
      try {
        await dataSource.transaction(async (manager) => {
          result = await fn(fromTypeORM(manager));
          if (!commit) throw new Rollback();
        });
      } catch (error) {
        if (!(error instanceof Rollback)) throw error;
      }
      return result as Awaited<ReturnType<typeof fn>>;
    },
    outside: (options) => fromTypeORM(dataSource.manager, options),
    refusal:
      'fromTypeORM: a TypeORM EntityManager outside a transaction is not a transaction, so the write would commit on its own',
    statements: () => sent,
  };
});

afterAll(async () => {
  await dataSource?.destroy();
  await test?.drop();
});

async function stored(id: string): Promise<number> {
  const { rows } = await test.db.query(`SELECT 1 FROM "${test.schema}".outbox WHERE id = $1`, [id]);
  return rows.length;
}

describe('edupulse-outbox/typeorm', () => {
  adapterSuite(() => ({ schema: test.schema, inspect: test.db, harness }));

  it('a QueryRunner after startTransaction() is a transaction; before, it is refused', async () => {
    const outbox = createOutbox({ schema: test.schema });
    const runner = dataSource.createQueryRunner();
    try {
      expect(() => fromTypeORM(runner)).toThrow(
        'fromTypeORM: a TypeORM QueryRunner with no transaction started is not a transaction',
      );
      await runner.startTransaction();
      const tx = fromTypeORM(runner);
      const [kept] = await outbox.enqueue(tx, LessonPublished.create(lesson()));
      await runner.commitTransaction();
      await runner.startTransaction();
      const [lost] = await outbox.enqueue(fromTypeORM(runner), LessonPublished.create(lesson()));
      await runner.rollbackTransaction();
      expect([await stored(kept ?? ''), await stored(lost ?? '')]).toEqual([1, 0]);
      // The executor of a transaction that has ended refuses to write on its own.
      await expect(tx.query('SELECT 1')).rejects.toThrow(TypeError);
    } finally {
      await runner.release();
    }
  });

  it('the DataSource itself is refused, and writes with { autocommit: true }', async () => {
    const outbox = createOutbox({ schema: test.schema });
    expect(() => fromTypeORM(dataSource)).toThrow(
      'fromTypeORM: a TypeORM DataSource is not a transaction',
    );
    const [id] = await outbox.enqueue(
      fromTypeORM(dataSource, { autocommit: true }),
      LessonPublished.create(lesson()),
    );
    expect(await stored(id ?? '')).toBe(1);
  });

  it('UPDATE and DELETE … RETURNING give their rows too (inbox.purge)', async () => {
    const inbox = createInbox({ schema: test.schema, consumer: `purge-${randomUUID()}` });
    const events = ['a', 'b', 'c'].map((aggregateId) => ({
      id: randomUUID(),
      type: 'lesson-published',
      aggregateId,
      sequence: '1',
    }));
    await dataSource.transaction(async (manager) => {
      for (const event of events) await inbox.process(fromTypeORM(manager), event, () => 1);
    });
    const purged = await dataSource.transaction((manager) =>
      inbox.purge(fromTypeORM(manager), new Date(Date.now() + 60_000)),
    );
    expect(purged).toBe(3);
    const rows = await dataSource.transaction(async (manager) => {
      const tx = fromTypeORM(manager);
      await tx.query('CREATE TEMP TABLE marks (n int) ON COMMIT DROP');
      await tx.query('INSERT INTO marks VALUES ($1), ($2)', [1, 2]);
      return (await tx.query<{ n: number }>('UPDATE marks SET n = n * 10 RETURNING n')).rows;
    });
    expect(rows.map((row) => row.n).sort()).toEqual([10, 20]);
  });

  it('something that is not a TypeORM handle is refused', () => {
    expect(() => fromTypeORM({} as never)).toThrow(
      'fromTypeORM: expected a TypeORM EntityManager or QueryRunner',
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
