import { DataSource, type Logger } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromTypeORM } from '../../src/adapters/typeorm.js';
import { createOutbox, LessonPublished } from '../../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { lesson, outboxIds } from '../helpers/outbox.js';
import { type AdapterHarness, adapterSuite, callbackTransaction } from './suite.js';

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

beforeAll(async () => {
  test = await createPgTestSchema('typeorm');
  // No entities: the adapter needs only the raw connection.
  dataSource = new DataSource({ type: 'postgres', url: PG_URL, logger: counting, poolSize: 3 });
  await dataSource.initialize();
  harness = {
    inTransaction: callbackTransaction((body) =>
      dataSource.transaction((manager) => body(fromTypeORM(manager))),
    ),
    unwrapped: dataSource.manager,
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
      await outbox.enqueue(fromTypeORM(runner), LessonPublished.create(lesson()));
      await runner.rollbackTransaction();
      expect(await outboxIds(test)).toEqual([kept]);
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
    expect(await outboxIds(test)).toEqual([id]);
  });

  it('something that is not a TypeORM handle is refused', () => {
    expect(() => fromTypeORM({} as never)).toThrow(
      'fromTypeORM: expected a TypeORM EntityManager or QueryRunner, got an empty object',
    );
  });
});
