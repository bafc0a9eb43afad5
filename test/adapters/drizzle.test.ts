import type { Logger } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import pg from 'pg';
import postgres from 'postgres';
import postgres4 from 'postgres4';
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

/** Drizzle on a postgres.js of `connect`'s release, counting the statements it sends. */
function postgresJs(name: string, connect: typeof postgres): Driver {
  return {
    name,
    open() {
      let sent = 0;
      const sql = connect(PG_URL, {
        max: 3,
        onnotice: () => {},
        debug: () => {
          sent++;
        },
      });
      const db = drizzlePostgresJs({ client: sql, logger });
      return { db, statements: () => sent, close: () => sql.end() };
    },
  };
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
  postgresJs('postgres.js', postgres),
  // Drizzle's types name postgres.js 3's Sql; its driver takes 4's alike.
  postgresJs('postgres.js 4', postgres4 as unknown as typeof postgres),
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
      // postgres.js knows of the transactions it ended itself only.
      seesEndedTransaction: driver.name === 'node-postgres',
    };
  });

  afterAll(async () => {
    await opened?.close();
  });

  adapterSuite(() => ({ schema: test.schema, inspect: test.db, harness }));

  // postgres.js 3 runs a finished transaction's statements on their own, and says nothing
  // that would tell; node-postgres's connection can be asked, and postgres.js 4 refuses.
  it.runIf(driver.name !== 'postgres.js')(
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

  // Its connection back in the pool and lent to another transaction, a kept tx would
  // write into that one: refused once the tx was seen while its transaction ran.
  it.runIf(driver.name === 'node-postgres')(
    "a tx kept past its callback is refused on the connection's next transaction",
    async () => {
      const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
      const db = drizzlePg({ client: pool }) as unknown as DrizzleDb;
      try {
        const outbox = createOutbox({ schema: test.schema });
        const before = await outboxIds(test);
        const kept = await db.transaction(async (tx) => {
          const executor = fromDrizzle(tx);
          await executor.query('SELECT 1');
          return tx;
        });
        let error: unknown;
        await db
          .transaction(async () => {
            error = await outbox
              .enqueue(fromDrizzle(kept), QuizSubmitted.create(quiz()))
              .catch((e: unknown) => e);
            throw new Rollback();
          })
          .catch(ignoreRollback);
        expect(error).toBeInstanceOf(TypeError);
        expect((error as Error).message).toMatch(
          /^fromDrizzle: a Drizzle transaction that has ended is not a transaction/,
        );
        expect(await outboxIds(test)).toEqual(before);
      } finally {
        await pool.end();
      }
    },
  );

  // drizzle() of a PoolClient keeps one session across the client's checkouts: each
  // transaction is judged by its own first checkout, not the session's.
  it.runIf(driver.name === 'node-postgres')(
    'drizzle() of a PoolClient checked out again writes in its new transactions',
    async () => {
      const pool = new pg.Pool({ connectionString: PG_URL, max: 1 });
      try {
        const outbox = createOutbox({ schema: test.schema });
        const client = await pool.connect();
        const db = drizzlePg({ client }) as unknown as DrizzleDb;
        await db.transaction(async (tx) => {
          await fromDrizzle(tx).query('SELECT 1');
        });
        client.release();
        const again = await pool.connect();
        expect(again).toBe(client);
        const event = QuizSubmitted.create(quiz());
        try {
          await db.transaction((tx) => outbox.enqueue(fromDrizzle(tx), event));
        } finally {
          again.release();
        }
        expect(await outboxIds(test)).toContain(event.id);
      } finally {
        await pool.end();
      }
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

  it("a failed statement throws the driver's error, not Drizzle's that quotes every value", async () => {
    const outbox = createOutbox({ schema: test.schema });
    const event = QuizSubmitted.create(quiz());
    const error = await opened.db
      .transaction(async (tx) => {
        // A read-only transaction: the insert fails.
        await fromDrizzle(tx).query('SET TRANSACTION READ ONLY');
        await outbox.enqueue(fromDrizzle(tx), event);
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: '25006' });
    expect(String((error as Error).message)).not.toContain(event.id);
    expect(String((error as Error).message)).not.toContain(event.payload.student_id);
  });

  it.runIf(driver.name === 'node-postgres')(
    'the insert is a prepared statement of the connection, as on a plain client',
    async () => {
      const outbox = createOutbox({ schema: test.schema });
      const prepared = await opened.db.transaction(async (tx) => {
        await outbox.enqueue(fromDrizzle(tx), QuizSubmitted.create(quiz()));
        const { rows } = await fromDrizzle(tx).query<{ statement: string }>(
          'SELECT statement FROM pg_prepared_statements',
        );
        return rows.map((row) => row.statement);
      });
      expect(
        prepared.filter((text) => text.includes(`INSERT INTO "${test.schema}".outbox`)).length,
      ).toBeGreaterThan(0);
    },
  );

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
