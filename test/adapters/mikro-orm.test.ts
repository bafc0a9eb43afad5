import { randomBytes } from 'node:crypto';
import { EntitySchema, MikroORM, type Options } from '@mikro-orm/postgresql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromMikroORM } from '../../src/adapters/mikro-orm.js';
import {
  createOutbox,
  LessonPublished,
  migrate,
  outboxTables,
  pgDatabase,
} from '../../src/index.js';
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
let orm: MikroORM;
let harness: AdapterHarness;
let sent = 0;

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
    inTransaction: callbackTransaction((body) =>
      orm.em.fork().transactional((em) => body(fromMikroORM(em))),
    ),
    unwrapped: orm.em,
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
    await outbox.enqueue(fromMikroORM(em), LessonPublished.create(lesson()));
    await em.rollback();
    expect(await outboxIds(test)).toEqual([kept]);
  });

  it('a forked em kept past transactional() is refused by Knex, with its reason', async () => {
    const outbox = createOutbox({ schema: test.schema });
    const kept = await orm.em.fork().transactional(async (em) => em);
    const refused = await outbox
      .enqueue(fromMikroORM(kept), LessonPublished.create(lesson()))
      .catch((e: unknown) => e);
    // Not the adapter's "a COMMIT or ROLLBACK sent as a statement", which did not happen.
    expect((refused as Error).message).toMatch(/Transaction query already complete/);
    expect(await outboxIds(test)).toEqual([]);
  });

  it('inside transactional(), the global em is in the transaction, as MikroORM has it', async () => {
    const outbox = createOutbox({ schema: test.schema });
    await orm.em
      .transactional(async () => {
        expect(orm.em.isInTransaction()).toBe(true);
        await outbox.enqueue(fromMikroORM(orm.em), LessonPublished.create(lesson()));
        expect(await outboxIds(test)).toEqual([]); // not committed yet
        throw new Rollback();
      })
      .catch(ignoreRollback);
    expect(await outboxIds(test)).toEqual([]);
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

  it('something that is not an EntityManager is refused', async () => {
    expect(() => fromMikroORM({} as never, { autocommit: true })).toThrow(
      'fromMikroORM: expected an EntityManager of @mikro-orm/postgresql, got an empty object',
    );
    expect(() => fromMikroORM(orm as never)).toThrow(/, got a MikroORM$/);
    // The instance MikroORM.init returns, passed straight to enqueue, is named as what it is.
    await expect(
      createOutbox({ schema: test.schema }).enqueue(orm as never, LessonPublished.create(lesson())),
    ).rejects.toThrow(
      "enqueue: the handle is MikroORM's instance (what MikroORM.init returns), not an EntityManager, which is passed through its adapter: fromMikroORM(em)",
    );
  });
});

describe("MikroORM's schema generator beside the outbox", () => {
  // A database of its own: the generator compares every schema of the database it is
  // given with the entities, and the shared one holds other tests' schemas.
  const name = `mikro_schema_${randomBytes(4).toString('hex')}`;
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  const Lesson = new EntitySchema({
    name: 'Lesson',
    tableName: 'lesson',
    properties: { id: { type: 'string', primary: true }, title: { type: 'string' } },
  });
  const updateSql = async (config: Partial<Options>) => {
    const generator = await MikroORM.init({
      clientUrl: url.href,
      entities: [Lesson],
      pool: { min: 0, max: 1 },
      ...config,
    });
    try {
      return await generator.schema.getUpdateSchemaSQL();
    } finally {
      await generator.close(true);
    }
  };

  beforeAll(async () => {
    await test.db.query(`CREATE DATABASE ${name}`);
    const db = pgDatabase({ connectionString: url.href, maxConnections: 1 });
    try {
      // The outbox beside the application's tables, and in a schema of its own.
      await migrate(db, 'public');
      await migrate(db, 'events');
    } finally {
      await db.close();
    }
  });
  afterAll(() => test.db.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));

  it('drops the outbox tables unless told to leave them, as the README shows', async () => {
    const unconfigured = await updateSql({});
    expect(unconfigured).toContain('drop table if exists "outbox" cascade');
    expect(unconfigured).toContain('drop table if exists "events"."outbox" cascade');

    const configured = await updateSql({
      schemaGenerator: { skipTables: [...outboxTables], ignoreSchema: ['events'] },
    });
    expect(configured).toContain('create table "lesson"');
    expect(configured).not.toMatch(/outbox|inbox|consumer_dead_letter|events/);
  });
});
