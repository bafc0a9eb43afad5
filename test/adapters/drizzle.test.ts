import type { Logger } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DrizzleLike, fromDrizzle } from '../../src/adapters/drizzle.js';
import { createOutbox, QuizSubmitted } from '../../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { outboxIds, quiz } from '../helpers/outbox.js';
import {
  type AdapterHarness,
  adapterSuite,
  callbackTransaction,
  countStatements,
  ignoreRollback,
  Rollback,
} from './suite.js';

/** The statements Drizzle's own logger saw. */
const logged: string[] = [];
const logger: Logger = { logQuery: (query) => logged.push(query) };

/** The part of a Drizzle database the tests use: both drivers' databases have it. */
interface DrizzleDb extends DrizzleLike {
  transaction<T>(fn: (tx: DrizzleDb) => Promise<T>): Promise<T>;
}

interface Driver {
  name: string;
  open(): { db: DrizzleDb; statements: () => number; close: () => Promise<unknown> };
}

const drivers: Driver[] = [
  {
    name: 'node-postgres',
    open() {
      const pool = new pg.Pool({ connectionString: PG_URL, max: 3 });
      const statements = countStatements(pool);
      const db = drizzlePg({ client: pool, logger });
      return { db, statements, close: () => pool.end() };
    },
  },
  {
    name: 'postgres.js',
    open() {
      let sent = 0;
      const sql = postgres(PG_URL, {
        max: 3,
        onnotice: () => {},
        debug: () => {
          sent++;
        },
      });
      const db = drizzlePostgresJs({ client: sql, logger });
      return { db, statements: () => sent, close: () => sql.end() };
    },
  },
];

let test: TestSchema;

beforeAll(async () => {
  test = await createPgTestSchema('drizzle');
});

afterAll(async () => {
  await test?.drop();
});

describe.each(drivers)('edupulse-outbox/drizzle on $name', (driver) => {
  let opened: ReturnType<Driver['open']>;
  let harness: AdapterHarness;

  beforeAll(() => {
    opened = driver.open();
    const { db } = opened;
    harness = {
      inTransaction: callbackTransaction((body) => db.transaction((tx) => body(fromDrizzle(tx)))),
      unwrapped: db,
      outside: (options) => fromDrizzle(db, options),
      refusal:
        'fromDrizzle: a Drizzle database outside a transaction is not a transaction, so the write would commit on its own',
      statements: opened.statements,
    };
  });

  afterAll(async () => {
    await opened?.close();
  });

  adapterSuite(() => ({ schema: test.schema, inspect: test.db, harness }));

  // postgres.js runs a finished transaction's statements on their own, and says nothing
  // that would tell: only node-postgres's connection can be asked.
  it.runIf(driver.name === 'node-postgres')(
    'a tx kept past the end of its callback is refused, and writes nothing',
    async () => {
      const outbox = createOutbox({ schema: test.schema });
      const before = await outboxIds(test);
      const kept = await opened.db.transaction(async (tx) => tx);
      const error = await outbox
        .enqueue(fromDrizzle(kept), QuizSubmitted.create(quiz()))
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toMatch(
        /^fromDrizzle: a Drizzle transaction that has ended is not a transaction/,
      );
      expect(await outboxIds(test)).toEqual(before);
    },
  );

  it('a nested transaction (savepoint) rolled back takes its event with it', async () => {
    await test.db.query(`TRUNCATE "${test.schema}".outbox`);
    const outbox = createOutbox({ schema: test.schema });
    const kept = QuizSubmitted.create(quiz());
    await opened.db.transaction(async (tx) => {
      await outbox.enqueue(fromDrizzle(tx), kept);
      await tx
        .transaction(async (inner) => {
          await outbox.enqueue(fromDrizzle(inner), QuizSubmitted.create(quiz()));
          throw new Rollback();
        })
        .catch(ignoreRollback);
    });
    expect(await outboxIds(test)).toEqual([kept.id]);
  });

  it("Drizzle's logger sees the statements", async () => {
    const outbox = createOutbox({ schema: test.schema });
    logged.length = 0;
    await opened.db.transaction((tx) =>
      outbox.enqueue(fromDrizzle(tx), QuizSubmitted.create(quiz())),
    );
    expect(logged.filter((q) => q.includes(`"${test.schema}".outbox`))).toHaveLength(1);
  });
});

describe('edupulse-outbox/drizzle', () => {
  it('something that is not a Drizzle database is refused', () => {
    expect(() => fromDrizzle({} as DrizzleLike)).toThrow(
      'fromDrizzle: expected a Drizzle PostgreSQL transaction, got an empty object',
    );
  });
});
