import { randomUUID } from 'node:crypto';
import type { Logger } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import pg from 'pg';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DrizzleLike, fromDrizzle } from '../../src/adapters/drizzle.js';
import { createOutbox, type Executor, QuizSubmitted } from '../../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { type AdapterHarness, adapterSuite, countStatements } from './suite.js';

/** Rejected on purpose to roll a transaction back. */
class Rollback extends Error {}

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

async function outboxIds(): Promise<string[]> {
  const { rows } = await test.db.query<{ id: string }>(
    `SELECT id::text AS id FROM "${test.schema}".outbox ORDER BY seq`,
  );
  return rows.map((r) => r.id);
}

const quiz = () =>
  QuizSubmitted.create({
    quiz_id: randomUUID(),
    student_id: randomUUID(),
    score: 7,
    submitted_at: '2024-05-01T10:00:00Z',
  });

describe.each(drivers)('edupulse-outbox/drizzle on $name', (driver) => {
  let opened: ReturnType<Driver['open']>;
  let harness: AdapterHarness;

  beforeAll(() => {
    opened = driver.open();
    const { db } = opened;
    harness = {
      async inTransaction<T>(fn: (tx: Executor) => Promise<T>, commit: boolean) {
        let result: T | undefined;
        try {
          await db.transaction(async (tx) => {
            result = await fn(fromDrizzle(tx));
            if (!commit) throw new Rollback();
          });
        } catch (error) {
          if (!(error instanceof Rollback)) throw error;
        }
        return result as T;
      },
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

  it('a nested transaction (savepoint) rolled back takes its event with it', async () => {
    await test.db.query(`TRUNCATE "${test.schema}".outbox`);
    const outbox = createOutbox({ schema: test.schema });
    const kept = quiz();
    await opened.db.transaction(async (tx) => {
      await outbox.enqueue(fromDrizzle(tx), kept);
      await tx
        .transaction(async (inner) => {
          await outbox.enqueue(fromDrizzle(inner), quiz());
          throw new Rollback();
        })
        .catch((error) => {
          if (!(error instanceof Rollback)) throw error;
        });
    });
    expect(await outboxIds()).toEqual([kept.id]);
  });

  it("Drizzle's logger sees the statements", async () => {
    const outbox = createOutbox({ schema: test.schema });
    logged.length = 0;
    await opened.db.transaction((tx) => outbox.enqueue(fromDrizzle(tx), quiz()));
    expect(logged.filter((q) => q.includes(`"${test.schema}".outbox`))).toHaveLength(1);
  });
});

describe('edupulse-outbox/drizzle', () => {
  it('something that is not a Drizzle database is refused', () => {
    expect(() => fromDrizzle({} as DrizzleLike)).toThrow(
      'fromDrizzle: expected a Drizzle PostgreSQL transaction',
    );
  });
});
