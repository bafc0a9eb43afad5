/**
 * What every ORM adapter (edupulse-outbox/kysely, /knex, /drizzle, /typeorm, /sequelize,
 * /mikro-orm) passes against the real PostgreSQL: enqueue and inbox.process inside the
 * builder's own transaction, a handle outside one refused, `{ autocommit: true }`
 * honoured, the rows of UPDATE and DELETE … RETURNING. Each test file opens its builder
 * on a fresh migrated schema and registers this suite with a harness.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { beforeEach, expect, it } from 'vitest';
import { type ConsumedEvent, createInbox } from '../../src/consumer/index.js';
import {
  type AdapterOptions,
  createOutbox,
  type Database,
  type Executor,
  LessonPublished,
  QuizSubmitted,
  SchemaVersionError,
  type TransactionLike,
} from '../../src/index.js';
import { lesson, quiz } from '../helpers/outbox.js';

export interface AdapterHarness {
  /**
   * Runs `fn` with the adapter over a transaction of the builder's own, then commits it, or
   * rolls it back when `commit` is false (the result is returned either way).
   */
  inTransaction<T>(fn: (tx: Executor) => Promise<T>, commit: boolean): Promise<T>;
  /** The adapter over the builder's top-level handle, which is not in a transaction. */
  outside(options?: AdapterOptions): Executor;
  /** The builder's top-level handle itself, without the adapter. */
  unwrapped: unknown;
  /** The start of the TypeError `outside()` throws. */
  refusal: string;
  /** Statements the driver has sent to PostgreSQL so far, on any of its connections. */
  statements(): number;
  /**
   * False where nothing tells that a COMMIT sent as a statement ended the transaction
   * under the builder (its driver's connection cannot be reached, or cannot say).
   */
  seesEndedTransaction?: boolean;
}

export interface AdapterContext {
  schema: string;
  /** A connection of the test's own, outside the builder, to look at the tables. */
  inspect: Database;
  harness: AdapterHarness;
}

/** Counts the statements sent on every connection a node-postgres pool hands out. */
export function countStatements(pool: pg.Pool): () => number {
  let n = 0;
  pool.on('connect', (client) => {
    const query = client.query;
    client.query = ((...args: Parameters<typeof query>) => {
      n++;
      return (query as (...a: unknown[]) => unknown).apply(client, args);
    }) as typeof query;
  });
  return () => n;
}

/** Rejected on purpose to roll a transaction back. */
export class Rollback extends Error {}

/** For `.catch()`: swallows the Rollback a test threw on purpose, rethrows anything else. */
export function ignoreRollback(error: unknown): void {
  if (!(error instanceof Rollback)) throw error;
}

/**
 * `inTransaction` for a builder whose transactions take a callback (committed when it
 * resolves, rolled back when it throws): `transaction(body)` opens one and calls `body`
 * with the adapter over it.
 */
export function callbackTransaction(
  transaction: (body: (tx: Executor) => Promise<void>) => Promise<unknown>,
): AdapterHarness['inTransaction'] {
  return async <T>(fn: (tx: Executor) => Promise<T>, commit: boolean) => {
    let result: T | undefined;
    await transaction(async (tx) => {
      result = await fn(tx);
      if (!commit) throw new Rollback();
    }).catch(ignoreRollback);
    return result as T;
  };
}

/** A quiz-submitted event `id` as consume() hands it to a handler. */
function consumedQuiz(id: string): ConsumedEvent {
  const data = quiz();
  return {
    id,
    type: 'quiz-submitted',
    source: '/edupulse',
    subject: data.quiz_id,
    time: data.submitted_at,
    sequence: '7',
    aggregateType: 'quiz',
    aggregateId: data.quiz_id,
    data,
    traceparent: undefined,
    tracestate: undefined,
    extensions: {},
    origin: 'test',
    attempt: 1,
  };
}

/** Text the builders treat specially when it is in a statement: it must arrive as it is. */
const awkward = "what ? and ?? and $1 and \\? and '$2' mean";

interface StoredRow {
  id: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: string;
  headers: Record<string, string>;
  attempts: number;
}

async function stored(ctx: AdapterContext): Promise<StoredRow[]> {
  const { rows } = await ctx.inspect.query<StoredRow>(
    `SELECT id::text AS id, aggregate_type, aggregate_id, event_type, payload::text AS payload,
       headers, attempts
     FROM "${ctx.schema}".outbox ORDER BY seq`,
  );
  return rows;
}

/** Registers the shared tests; `context` is called inside each test, after beforeAll. */
export function adapterSuite(context: () => AdapterContext): void {
  beforeEach(async () => {
    const ctx = context();
    await ctx.inspect.query(`TRUNCATE "${ctx.schema}".outbox`);
  });

  it('commit: the event is there with its columns, values with ? and $1 as they were', async () => {
    const ctx = context();
    const outbox = createOutbox({ schema: ctx.schema });
    const event = LessonPublished.create(lesson(awkward), { headers: { note: awkward } });
    const ids = await ctx.harness.inTransaction((tx) => outbox.enqueue(tx, event), true);
    expect(ids).toEqual([event.id]);
    const rows = await stored(ctx);
    expect(rows).toEqual([
      {
        id: event.id,
        aggregate_type: 'lesson',
        aggregate_id: event.payload.lesson_id,
        event_type: 'lesson-published',
        payload: JSON.stringify(event.payload),
        headers: { note: awkward },
        attempts: 0,
      },
    ]);
    expect(JSON.parse(rows[0]?.payload ?? '{}').title).toBe(awkward);
  });

  it('rollback: no event', async () => {
    const ctx = context();
    const outbox = createOutbox({ schema: ctx.schema });
    const ids = await ctx.harness.inTransaction(
      (tx) => outbox.enqueue(tx, [LessonPublished.create(lesson()), QuizSubmitted.create(quiz())]),
      false,
    );
    expect(ids).toHaveLength(2);
    expect(await stored(ctx)).toEqual([]);
  });

  it('many events in one call are one statement', async () => {
    const ctx = context();
    const outbox = createOutbox({ schema: ctx.schema });
    const events = Array.from({ length: 100 }, (_, i) =>
      i % 2 ? LessonPublished.create(lesson(`${awkward} ${i}`)) : QuizSubmitted.create(quiz()),
    );
    const sent = await ctx.harness.inTransaction(async (tx) => {
      const before = ctx.harness.statements();
      await outbox.enqueue(tx, events);
      return ctx.harness.statements() - before;
    }, true);
    expect(sent).toBe(1);
    const rows = await stored(ctx);
    expect(rows.map((r) => r.id)).toEqual(events.map((e) => e.id));
    expect(rows.map((r) => r.payload)).toEqual(events.map((e) => JSON.stringify(e.payload)));
  });

  it('a handle outside a transaction is refused with a TypeError, and nothing is written', async () => {
    const ctx = context();
    const outbox = createOutbox({ schema: ctx.schema });
    const before = ctx.harness.statements();
    await expect(
      (async () => outbox.enqueue(ctx.harness.outside(), LessonPublished.create(lesson())))(),
    ).rejects.toThrow(TypeError);
    expect(() => ctx.harness.outside()).toThrow(ctx.harness.refusal);
    expect(() => ctx.harness.outside()).toThrow(
      /, or give \{ autocommit: true \} to write without a transaction on purpose$/,
    );
    expect(() => ctx.harness.outside({ autocommit: false })).toThrow(TypeError);
    expect(ctx.harness.statements()).toBe(before);
    expect(await stored(ctx)).toEqual([]);
  });

  it('a transaction a COMMIT statement ended under the builder is refused, and nothing is written', async ({
    skip,
  }) => {
    const ctx = context();
    if (ctx.harness.seesEndedTransaction === false) skip();
    const outbox = createOutbox({ schema: ctx.schema });
    const refused = await ctx.harness.inTransaction(async (tx) => {
      await tx.query('COMMIT');
      return outbox.enqueue(tx, LessonPublished.create(lesson())).catch((e: unknown) => e);
    }, false);
    expect(refused).toBeInstanceOf(TypeError);
    expect((refused as Error).message).toMatch(
      /^from\w+: a \w+ transaction that .*has ended is not a transaction/,
    );
    expect(await stored(ctx)).toEqual([]);
  });

  it('into a schema that was never migrated: the SchemaVersionError that says to run migrate', async () => {
    const outbox = createOutbox({ schema: 'never_migrated_adapter' });
    const inbox = createInbox({ schema: 'never_migrated_adapter', consumer: 'c' });
    const event = consumedQuiz(randomUUID());
    for (const write of [
      (tx: Executor) => outbox.enqueue(tx, LessonPublished.create(lesson())),
      (tx: Executor) => inbox.process(tx, event, () => undefined).then(() => []),
    ]) {
      const error = await context()
        .harness.inTransaction(write, false)
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SchemaVersionError);
      expect((error as Error).message).toMatch(
        /^schema "never_migrated_adapter" has no (outbox|inbox) table: run `edupulse-outbox migrate --schema never_migrated_adapter`/,
      );
    }
  });

  it("the builder's own handle without the adapter is refused, naming the adapter", async () => {
    const ctx = context();
    const outbox = createOutbox({ schema: ctx.schema });
    const inbox = createInbox({ schema: ctx.schema, consumer: `unwrapped-${randomUUID()}` });
    const before = ctx.harness.statements();
    const handle = ctx.harness.unwrapped as TransactionLike;
    const refusals = [
      await outbox.enqueue(handle, LessonPublished.create(lesson())).catch((e: unknown) => e),
      await inbox.process(handle, consumedQuiz(randomUUID()), () => {}).catch((e: unknown) => e),
    ];
    for (const error of refusals) {
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toMatch(
        /^(enqueue|inbox\.process): the handle is an? \w+ object, which is passed through its adapter: from\w+\(.*\) from edupulse-outbox\/[a-z-]+$/,
      );
    }
    expect(ctx.harness.statements()).toBe(before);
    expect(await stored(ctx)).toEqual([]);
  });

  it('a misspelt option is refused by name, and nothing is written', async () => {
    const ctx = context();
    const before = ctx.harness.statements();
    const misspelt = { autoCommit: true } as AdapterOptions;
    expect(() => ctx.harness.outside(misspelt)).toThrow(
      /^autoCommit: is not an option of from\w+; did you mean "autocommit"\?$/,
    );
    const text = { autocommit: 'false' } as unknown as AdapterOptions;
    expect(() => ctx.harness.outside(text)).toThrow(
      'autocommit: must be true or false, not "false"',
    );
    expect(ctx.harness.statements()).toBe(before);
    expect(await stored(ctx)).toEqual([]);
  });

  it('{ autocommit: true } writes outside a transaction', async () => {
    const ctx = context();
    const outbox = createOutbox({ schema: ctx.schema });
    const event = QuizSubmitted.create(quiz());
    await outbox.enqueue(ctx.harness.outside({ autocommit: true }), event);
    expect((await stored(ctx)).map((r) => [r.id, r.event_type])).toEqual([
      [event.id, 'quiz-submitted'],
    ]);
  });

  it('inbox.process applies an event once, and reports a duplicate the second time', async () => {
    const ctx = context();
    await ctx.inspect.query(
      `CREATE TABLE IF NOT EXISTS "${ctx.schema}".effects (event_id text, note text)`,
    );
    const inbox = createInbox({ schema: ctx.schema, consumer: `adapter-${randomUUID()}` });
    const event = consumedQuiz(`${randomUUID()} ${awkward}`);
    let ran = 0;
    const apply = (tx: Executor) =>
      inbox.process(tx, event, async () => {
        ran++;
        await tx.query(`INSERT INTO "${ctx.schema}".effects VALUES ($1, $2)`, [event.id, awkward]);
        return 'applied it';
      });
    // A rolled-back transaction records nothing: the redelivery applies.
    expect((await ctx.harness.inTransaction(apply, false)).outcome).toBe('applied');
    expect(await ctx.harness.inTransaction(apply, true)).toEqual({
      outcome: 'applied',
      result: 'applied it',
    });
    expect(await ctx.harness.inTransaction(apply, true)).toEqual({ outcome: 'duplicate' });
    expect(ran).toBe(2);
    const { rows } = await ctx.inspect.query(
      `SELECT event_id, note FROM "${ctx.schema}".effects WHERE event_id = $1`,
      [event.id],
    );
    expect(rows).toEqual([{ event_id: event.id, note: awkward }]);
  });

  it('UPDATE and DELETE … RETURNING give their rows too (inbox.purge)', async () => {
    const ctx = context();
    const inbox = createInbox({ schema: ctx.schema, consumer: `purge-${randomUUID()}` });
    await ctx.harness.inTransaction(async (tx) => {
      for (const aggregateId of ['a', 'b', 'c']) {
        const event = { id: randomUUID(), type: 'lesson-published', aggregateId, sequence: '1' };
        await inbox.process(tx, event, () => 1);
      }
    }, true);
    const purged = await ctx.harness.inTransaction(
      (tx) => inbox.purge(tx, new Date(Date.now() + 60_000)),
      true,
    );
    expect(purged).toBe(3);
    const { rows } = await ctx.harness.inTransaction(async (tx) => {
      await tx.query('CREATE TEMP TABLE marks (n int) ON COMMIT DROP');
      await tx.query('INSERT INTO marks VALUES ($1), ($2)', [1, 2]);
      return tx.query<{ n: number }>('UPDATE marks SET n = n * 10 RETURNING n');
    }, true);
    expect(rows.map((row) => row.n).sort()).toEqual([10, 20]);
  });
}
