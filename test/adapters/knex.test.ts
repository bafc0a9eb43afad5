import knexFactory, { type Knex } from 'knex';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromKnex } from '../../src/adapters/knex.js';
import { createInbox } from '../../src/consumer/index.js';
import { createOutbox, type Executor, QuizSubmitted } from '../../src/index.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { outboxIds, quiz } from '../helpers/outbox.js';
import {
  type AdapterHarness,
  adapterSuite,
  callbackTransaction,
  ignoreRollback,
  Rollback,
} from './suite.js';

let test: TestSchema;
let knex: Knex;
let harness: AdapterHarness;
let sent = 0;

/** A Knex on the test server whose pg connections count the statements they send. */
function openKnex(config: Partial<Knex.Config> = {}): Knex {
  return knexFactory({
    client: 'pg',
    connection: PG_URL,
    ...config,
    pool: {
      min: 0,
      max: 3,
      afterCreate(connection: pg.Client, done: (error: Error | null, c: pg.Client) => void) {
        const query = connection.query;
        connection.query = ((...args: unknown[]) => {
          sent++;
          return (query as (...a: unknown[]) => unknown).apply(connection, args);
        }) as typeof query;
        done(null, connection);
      },
    },
  });
}

/** The harness's `inTransaction` on `db`. */
const inKnexTransaction = (db: Knex) =>
  callbackTransaction((body) => db.transaction((trx) => body(fromKnex(trx))));

beforeAll(async () => {
  test = await createPgTestSchema('knex');
  knex = openKnex();
  harness = {
    inTransaction: inKnexTransaction(knex),
    unwrapped: knex,
    outside: (options) => fromKnex(knex, options),
    refusal:
      'fromKnex: a Knex instance outside a transaction is not a transaction, so the write would commit on its own',
    statements: () => sent,
  };
});

afterAll(async () => {
  await knex?.destroy();
  await test?.drop();
});

describe('edupulse-outbox/knex', () => {
  adapterSuite(() => ({ schema: test.schema, inspect: test.db, harness }));

  it('text with ? reaches PostgreSQL as written, and values with ?, ?? and $1 as values', async () => {
    const rows = await knex.transaction(async (trx) => {
      const { rows } = await fromKnex(trx).query(
        `SELECT $1::jsonb ? 'a' AS has_a, $1::jsonb ?| array['x', 'y'] AS has_x_or_y,
           $2::text AS value, '??' AS literal`,
        ['{"a": 1}', '? ?? $1 $2 \\?'],
      );
      return rows;
    });
    expect(rows).toEqual([
      { has_a: true, has_x_or_y: false, value: '? ?? $1 $2 \\?', literal: '??' },
    ]);
  });

  it('text it cannot carry (a backslash before a ?) is refused, not altered', async () => {
    await knex.transaction(async (trx) => {
      await expect(fromKnex(trx).query(`SELECT E'\\\\?' AS a`)).rejects.toThrow(
        'fromKnex: a statement with "\\?" in its text cannot be sent as it is',
      );
    });
  });

  it('an executor kept past its transaction is refused, not run on a pooled connection', async () => {
    const outbox = createOutbox({ schema: test.schema });
    let kept: Executor | undefined;
    await knex.transaction(async (trx) => {
      kept = fromKnex(trx);
    });
    await expect(outbox.enqueue(kept as Executor, QuizSubmitted.create(quiz()))).rejects.toThrow(
      'Transaction query already complete',
    );
    expect(await outboxIds(test)).toEqual([]);
  });

  it('a nested transaction (savepoint) rolled back takes its event with it', async () => {
    await test.db.query(`TRUNCATE "${test.schema}".outbox`);
    const outbox = createOutbox({ schema: test.schema });
    const kept = QuizSubmitted.create(quiz());
    await knex.transaction(async (trx) => {
      await outbox.enqueue(fromKnex(trx), kept);
      await trx
        .transaction(async (inner) => {
          await outbox.enqueue(fromKnex(inner), QuizSubmitted.create(quiz()));
          throw new Rollback();
        })
        .catch(ignoreRollback);
    });
    expect(await outboxIds(test)).toEqual([kept.id]);
  });

  it("the instance's postProcessResponse does not touch the library's statements", async () => {
    const camelCase = (key: string) => key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const camelRow = (row: object) =>
      Object.fromEntries(Object.entries(row).map(([k, v]) => [camelCase(k), v]));
    // Renames the columns of query builder results (rows) and of knex.raw's (result.rows).
    const rename = (result: unknown): unknown =>
      Array.isArray(result)
        ? result.map(camelRow)
        : Array.isArray((result as pg.QueryResult | undefined)?.rows)
          ? { ...(result as pg.QueryResult), rows: (result as pg.QueryResult).rows.map(camelRow) }
          : result;
    const camel = openKnex({ postProcessResponse: rename });
    try {
      // What this instance does to knex.raw's results:
      expect((await camel.raw('SELECT 0 AS in_order')).rows).toEqual([{ inOrder: 0 }]);
      const inbox = createInbox({ schema: test.schema, consumer: 'camel', onStale: 'skip' });
      const event = (id: string, sequence: string) => ({
        id,
        type: 'quiz-submitted',
        aggregateId: 'quiz-camel',
        sequence,
      });
      const process = (e: ReturnType<typeof event>) =>
        inKnexTransaction(camel)(async (tx) => (await inbox.process(tx, e, () => 1)).outcome, true);
      // The inbox reads back its own column names (in_order): renamed to inOrder, an event
      // older than the aggregate's last would look in order and be applied.
      expect(await process(event('camel-5', '5'))).toBe('applied');
      expect(await process(event('camel-3', '3'))).toBe('stale');
      expect(await process(event('camel-5', '5'))).toBe('duplicate');
    } finally {
      await camel.destroy();
    }
  });

  it('something that is not a Knex instance is refused', () => {
    expect(() => fromKnex({} as Knex)).toThrow(
      'fromKnex: expected a Knex transaction, got an empty object',
    );
  });
});
