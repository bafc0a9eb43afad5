import { CamelCasePlugin, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromKysely } from '../../src/adapters/kysely.js';
import { createInbox } from '../../src/consumer/index.js';
import { createOutbox, LessonPublished } from '../../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { lesson, outboxIds } from '../helpers/outbox.js';
import {
  type AdapterHarness,
  adapterSuite,
  callbackTransaction,
  countStatements,
} from './suite.js';

// biome-ignore lint/suspicious/noExplicitAny: the tests query only through raw SQL
type Tables = any;

let test: TestSchema;
let pool: pg.Pool;
let db: Kysely<Tables>;
let harness: AdapterHarness;

beforeAll(async () => {
  test = await createPgTestSchema('kysely');
  pool = new pg.Pool({ connectionString: PG_URL, max: 3 });
  const statements = countStatements(pool);
  db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
  harness = {
    inTransaction: callbackTransaction((body) =>
      db.transaction().execute((trx) => body(fromKysely(trx))),
    ),
    unwrapped: db,
    outside: (options) => fromKysely(db, options),
    refusal:
      'fromKysely: a Kysely instance outside a transaction is not a transaction, so the write would commit on its own',
    statements,
    // Kysely keeps its driver's connection to itself.
    seesEndedTransaction: false,
  };
});

afterAll(async () => {
  await db?.destroy(); // ends the pool
  await test?.drop();
});

describe('edupulse-outbox/kysely', () => {
  adapterSuite(() => ({ schema: test.schema, inspect: test.db, harness }));

  it('a controlled transaction (startTransaction) is a transaction too', async () => {
    const outbox = createOutbox({ schema: test.schema });
    const trx = await db.startTransaction().execute();
    await outbox.enqueue(fromKysely(trx), LessonPublished.create(lesson()));
    await trx.rollback().execute();
    expect(await outboxIds(test)).toEqual([]);
  });

  it("the instance's plugins do not touch the library's statements (CamelCasePlugin)", async () => {
    const camel = db.withPlugin(new CamelCasePlugin());
    const inbox = createInbox({ schema: test.schema, consumer: 'camel', onStale: 'skip' });
    const event = (id: string, sequence: string) => ({
      id,
      type: 'lesson-published',
      aggregateId: 'lesson-camel',
      sequence,
    });
    const process = (e: ReturnType<typeof event>) =>
      camel
        .transaction()
        .execute(async (trx) => (await inbox.process(fromKysely(trx), e, () => 1)).outcome);
    // The inbox reads back its own column names (in_order): renamed to inOrder, an event
    // older than the aggregate's last would look in order and be applied.
    expect(await process(event('camel-5', '5'))).toBe('applied');
    expect(await process(event('camel-3', '3'))).toBe('stale');
    expect(await process(event('camel-5', '5'))).toBe('duplicate');
  });

  it('a trx kept past the end of its transaction is refused, and writes nothing', async () => {
    // Kysely 0.28 refuses it itself (the peer range starts there); 0.27 ran the statement
    // on its own, after a rollback too.
    const outbox = createOutbox({ schema: test.schema });
    let kept: Parameters<typeof fromKysely>[0] | undefined;
    await db
      .transaction()
      .execute(async (trx) => {
        kept = trx;
        throw new Error('rolled back');
      })
      .catch(() => {});
    await expect(
      outbox.enqueue(fromKysely(kept as never), LessonPublished.create(lesson())),
    ).rejects.toThrow(/Transaction is already (committed|rolled back)/);
    expect(await outboxIds(test)).toEqual([]);
  });

  it('something that is not a Kysely instance is refused', () => {
    expect(() => fromKysely(pool as never)).toThrow(
      /^fromKysely: expected a Kysely transaction, got a \w*Pool$/,
    );
  });
});
