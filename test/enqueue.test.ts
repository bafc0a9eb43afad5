import { randomUUID } from 'node:crypto';
import type { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import postgres from 'postgres';
import postgres4 from 'postgres4';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  autocommit,
  createOutbox,
  type Executor,
  LessonCompleted,
  LessonPublished,
  type OutboxEvent,
  QuizSubmitted,
  SchemaVersionError,
  type TransactionLike,
  ValidationError,
} from '../src/index.js';
import {
  createPgliteTestSchema,
  createPgTestSchema,
  PG_URL,
  type TestSchema,
} from './helpers/db.js';

let pgSchema: TestSchema;
let pgliteSchema: TestSchema & { pglite: PGlite };
let pool: pg.Pool;
let client: pg.Client;
let sql: postgres.Sql;

beforeAll(async () => {
  [pgSchema, pgliteSchema] = await Promise.all([
    createPgTestSchema('enqueue'),
    createPgliteTestSchema('enqueue'),
  ]);
  pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
  client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  sql = postgres(PG_URL, { max: 2, onnotice: () => {} });
});

afterAll(async () => {
  await Promise.allSettled([client?.end(), pool?.end(), sql?.end()]);
  await Promise.allSettled([pgSchema?.drop(), pgliteSchema?.drop()]);
});

/** Rejected on purpose to roll a transaction back. */
class Rollback extends Error {}

interface Driver {
  name: string;
  /** Where the outbox lives, and a connection outside the test's transaction to look at it. */
  target: () => { schema: string; inspect: Executor };
  /** Runs `fn` in a transaction and commits, or rolls back when `commit` is false. */
  inTransaction<T>(fn: (tx: TransactionLike) => Promise<T>, commit: boolean): Promise<T>;
}

const onPg = () => ({ schema: pgSchema.schema, inspect: pool as unknown as Executor });
const onPglite = () => ({ schema: pgliteSchema.schema, inspect: pgliteSchema.db });

async function withBeginCommit<T>(
  session: { query: (text: string) => Promise<unknown> },
  fn: (tx: TransactionLike) => Promise<T>,
  commit: boolean,
): Promise<T> {
  await session.query('BEGIN');
  try {
    const result = await fn(session as TransactionLike);
    await session.query(commit ? 'COMMIT' : 'ROLLBACK');
    return result;
  } catch (error) {
    await session.query('ROLLBACK');
    throw error;
  }
}

const drivers: Driver[] = [
  {
    name: 'node-postgres Client',
    target: onPg,
    inTransaction: (fn, commit) => withBeginCommit(client, fn, commit),
  },
  {
    name: 'node-postgres PoolClient',
    target: onPg,
    async inTransaction(fn, commit) {
      const session = await pool.connect();
      try {
        return await withBeginCommit(session, fn, commit);
      } finally {
        session.release();
      }
    },
  },
  {
    name: 'postgres.js sql.begin',
    target: onPg,
    async inTransaction<T>(fn: (tx: TransactionLike) => Promise<T>, commit: boolean) {
      let result: T | undefined;
      try {
        await sql.begin(async (tx) => {
          result = await fn(tx);
          if (!commit) throw new Rollback();
        });
      } catch (error) {
        if (!(error instanceof Rollback)) throw error;
      }
      return result as T;
    },
  },
  {
    name: 'PGlite instance',
    target: onPglite,
    inTransaction: (fn, commit) => withBeginCommit(pgliteSchema.pglite, fn, commit),
  },
  {
    name: 'PGlite transaction',
    target: onPglite,
    async inTransaction<T>(fn: (tx: TransactionLike) => Promise<T>, commit: boolean) {
      return pgliteSchema.pglite.transaction(async (tx) => {
        const result = await fn(tx);
        if (!commit) await tx.rollback();
        return result;
      });
    },
  },
];

/** Wraps a driver transaction so every statement sent through it is counted. */
function counting(tx: TransactionLike): { tx: TransactionLike; statements: () => number } {
  let n = 0;
  const target = tx as {
    unsafe?: (text: string, values?: unknown[]) => PromiseLike<unknown[]>;
    query?: (text: string, values?: unknown[]) => Promise<{ rows: unknown[] }>;
  };
  const wrapped: TransactionLike = target.unsafe
    ? {
        unsafe: (text: string, values?: unknown[]) => {
          n++;
          return (target.unsafe as NonNullable<typeof target.unsafe>).call(tx, text, values);
        },
      }
    : {
        query: (text: string, values?: unknown[]) => {
          n++;
          return (target.query as NonNullable<typeof target.query>).call(tx, text, values);
        },
      };
  return { tx: wrapped, statements: () => n };
}

interface StoredRow {
  seq: string;
  id: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: string;
  headers: Record<string, string>;
  partition: number;
  expected_partition: number;
  occurred_at: string;
  attempts: number;
  last_error: string | null;
  available: boolean;
}

async function storedRows(inspect: Executor, schema: string): Promise<StoredRow[]> {
  const { rows } = await inspect.query<StoredRow>(
    `SELECT seq::text AS seq, id::text AS id, aggregate_type, aggregate_id, event_type,
       payload::text AS payload, headers, partition,
       (hashtextextended(aggregate_id, 0) & 63)::int AS expected_partition,
       to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
       attempts, last_error, available_at <= now() AS available
     FROM "${schema}".outbox o ORDER BY o.seq`,
  );
  return rows;
}

const lessonPayload = (lessonId = randomUUID()) => ({
  lesson_id: lessonId,
  author_id: randomUUID(),
  title: 'Photosynthesis',
  published_at: '2024-05-01T09:30:00Z',
});

const quizPayload = () => ({
  quiz_id: randomUUID(),
  student_id: randomUUID(),
  score: 12.5,
  submitted_at: '2024-05-01T10:00:00Z',
});

beforeEach(async () => {
  await pool.query(`TRUNCATE "${pgSchema.schema}".outbox`);
  await pgliteSchema.db.query(`TRUNCATE "${pgliteSchema.schema}".outbox`);
});

describe.each(drivers)('enqueue through $name', (driver) => {
  it('commit: the rows are there, with every column right', async () => {
    const { schema, inspect } = driver.target();
    const outbox = createOutbox({ schema });
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const lessonId = randomUUID();
    const events: OutboxEvent[] = [
      LessonPublished.create(lessonPayload(lessonId), { headers: { traceparent } }),
      QuizSubmitted.create(quizPayload(), { occurredAt: new Date('2024-05-01T10:00:00.123Z') }),
      LessonPublished.create(lessonPayload(lessonId), { occurredAt: '2024-05-01T12:00:00+02:00' }),
    ];
    const { ids, txNow } = await driver.inTransaction(async (tx) => {
      const ids = await outbox.enqueue(tx, events);
      // A second call in the same transaction comes after the first one.
      ids.push(...(await outbox.enqueue(tx, LessonCompleted.create(completed()))));
      const { rows } = await outbox_now(tx);
      return { ids, txNow: rows };
    }, true);

    expect(ids.slice(0, 3)).toEqual(events.map((e) => e.id));
    const rows = await storedRows(inspect, schema);
    // seq follows the call order.
    expect(rows.map((r) => r.id)).toEqual(ids);
    const seqs = rows.map((r) => BigInt(r.seq));
    expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(new Set(seqs).size).toBe(4);

    const [first, second, third, fourth] = rows as [StoredRow, StoredRow, StoredRow, StoredRow];
    expect(first).toMatchObject({
      aggregate_type: 'lesson',
      aggregate_id: lessonId,
      event_type: 'lesson-published',
      payload: JSON.stringify(events[0]?.payload),
      headers: { traceparent },
      attempts: 0,
      last_error: null,
      available: true,
    });
    expect(second).toMatchObject({
      aggregate_type: 'quiz',
      event_type: 'quiz-submitted',
      headers: {},
      occurred_at: '2024-05-01T10:00:00.123000Z',
    });
    expect(third?.occurred_at).toBe('2024-05-01T10:00:00.000000Z');
    // Without occurredAt: the enqueuing transaction's start.
    expect(first?.occurred_at).toBe(txNow);
    expect(fourth?.occurred_at).toBe(txNow);
    expect(fourth?.event_type).toBe('lesson-completed');

    // The partition is hash(aggregate_id) mod 64; one aggregate, one partition.
    for (const row of rows) {
      expect(row.partition).toBe(row.expected_partition);
      expect(row.partition).toBeGreaterThanOrEqual(0);
      expect(row.partition).toBeLessThan(64);
    }
    expect(third?.partition).toBe(first?.partition);
  });

  it('rollback: no rows', async () => {
    const { schema, inspect } = driver.target();
    const outbox = createOutbox({ schema });
    const ids = await driver.inTransaction(
      (tx) =>
        outbox.enqueue(tx, [
          LessonPublished.create(lessonPayload()),
          QuizSubmitted.create(quizPayload()),
        ]),
      false,
    );
    expect(ids).toHaveLength(2);
    expect(await storedRows(inspect, schema)).toEqual([]);
  });

  it('many events in one call are one INSERT statement', async () => {
    const { schema, inspect } = driver.target();
    const outbox = createOutbox({ schema });
    const events = Array.from({ length: 250 }, (_, i) =>
      i % 2 ? LessonPublished.create(lessonPayload()) : QuizSubmitted.create(quizPayload()),
    );
    const sent = await driver.inTransaction(async (tx) => {
      const counted = counting(tx);
      await outbox.enqueue(counted.tx, events);
      return counted.statements();
    }, true);
    expect(sent).toBe(1);
    const rows = await storedRows(inspect, schema);
    expect(rows.map((r) => r.id)).toEqual(events.map((e) => e.id));
  });

  it('a payload with text that only looks like an escape, or a whole surrogate pair, is written', async () => {
    const { schema, inspect } = driver.target();
    const outbox = createOutbox({ schema });
    const payload = { note: 'a backslash and u0000: \\u0000, a pair: 😀' };
    const event = () => ({
      type: 'note-written',
      aggregateType: 'note',
      aggregateId: 'n-1',
      payload,
    });
    await driver.inTransaction((tx) => outbox.enqueue(tx, [event(), event()]), true);
    const rows = await storedRows(inspect, schema);
    expect(rows.map((r) => JSON.parse(r.payload))).toEqual([payload, payload]);
  });

  it('an id twice in one call, or already in the outbox, is a ValidationError naming the event', async () => {
    const { schema, inspect } = driver.target();
    const outbox = createOutbox({ schema });
    const first = { ...LessonPublished.create(lessonPayload()), id: randomUUID() };
    const again = { ...LessonPublished.create(lessonPayload()), id: first.id.toUpperCase() };
    const twice = await driver
      .inTransaction((tx) => outbox.enqueue(tx, [first, again]), true)
      .catch((e: unknown) => e);
    expect(twice).toBeInstanceOf(ValidationError);
    expect((twice as ValidationError).message).toBe('events[1].id: repeats events[0].id');
    const [id] = await driver.inTransaction((tx) => outbox.enqueue(tx, again), true);
    expect(id).toBe(first.id); // as PostgreSQL writes it, and the broker gets it
    const taken = await driver
      .inTransaction(
        (tx) => outbox.enqueue(tx, [LessonPublished.create(lessonPayload()), first]),
        true,
      )
      .catch((e: unknown) => e);
    expect(taken).toBeInstanceOf(ValidationError);
    expect((taken as ValidationError).path).toBe('events[1].id');
    expect((taken as Error).message).toMatch(/^events\[1\]\.id: is already in the outbox/);
    expect((await storedRows(inspect, schema)).map((r) => r.id)).toEqual([first.id]);
  });

  it('serialises each payload once, and stores it as that text', async () => {
    const { schema, inspect } = driver.target();
    const outbox = createOutbox({ schema });
    let serialised = 0;
    const payload = (n: number) => ({
      n,
      toJSON() {
        serialised++;
        return { n, note: 'as written' };
      },
    });
    const event = (n: number) => ({
      type: 'note-written',
      aggregateType: 'note',
      aggregateId: `note-${n}`,
      payload: payload(n),
    });
    await driver.inTransaction(async (tx) => {
      await outbox.enqueue(tx, event(1));
      await outbox.enqueue(tx, [event(2), event(3)]);
    }, true);
    expect(serialised).toBe(3);
    const rows = await storedRows(inspect, schema);
    expect(rows.map((r) => JSON.parse(r.payload))).toEqual([
      { n: 1, note: 'as written' },
      { n: 2, note: 'as written' },
      { n: 3, note: 'as written' },
    ]);
  });

  it('an invalid event in a list refuses the whole call, naming events[i], and writes nothing', async () => {
    const { schema, inspect } = driver.target();
    const outbox = createOutbox({ schema });
    const valid = () => LessonPublished.create(lessonPayload());
    const cases: [OutboxEvent, string][] = [
      [{ ...valid(), aggregateId: '' }, 'events[1].aggregateId'],
      [{ ...valid(), type: 'LessonPublished' }, 'events[1].type'],
      [{ ...valid(), id: 'not-a-uuid' }, 'events[1].id'],
      [{ ...valid(), headers: { traceparent: 1 as never } }, 'events[1].headers.traceparent'],
      // Values JSON would not carry as they are, named where they are.
      [{ ...valid(), payload: { big: 1n } }, 'events[1].payload.big'],
      [{ ...valid(), payload: { scores: [1, Number.NaN] } }, 'events[1].payload.scores.1'],
      [{ ...valid(), payload: { at: { x: Number.POSITIVE_INFINITY } } }, 'events[1].payload.at.x'],
      [{ ...valid(), payload: { tags: new Set(['a']) } }, 'events[1].payload.tags'],
      [{ ...valid(), payload: { byId: new Map([['a', 1]]) } }, 'events[1].payload.byId'],
      [{ ...valid(), payload: { bytes: new Uint8Array(2) } }, 'events[1].payload.bytes'],
      [{ ...valid(), payload: { fn: () => 1 } }, 'events[1].payload.fn'],
      [{ ...valid(), payload: cyclic() }, 'events[1].payload.a.back'],
      // A misspelt field of a hand-built event would be lost without a word.
      [{ ...valid(), header: { tenant: 'a' } } as OutboxEvent, 'events[1].header'],
      // What the claim would dead-letter, or PostgreSQL refuse, is refused before it.
      [{ ...valid(), aggregateId: 'line1\nline2' }, 'events[1].aggregateId'],
      [{ ...valid(), aggregateId: 'nul\u0000' }, 'events[1].aggregateId'],
      [{ ...valid(), aggregateId: 'half \ud800 a pair' }, 'events[1].aggregateId'],
      [{ ...valid(), headers: { traceparent: '00-abc\n' } }, 'events[1].headers.traceparent'],
      // A traceparent the consumer's tracing must ignore would cut the trace unnoticed.
      ...[
        'not-a-traceparent',
        '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01',
        '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
        '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
        'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more',
      ].map((traceparent): [OutboxEvent, string] => [
        { ...valid(), headers: { traceparent } },
        'events[1].headers.traceparent',
      ]),
      // A header name jsonb cannot store failed the insert with PostgreSQL's error.
      [{ ...valid(), headers: { 'a\u0000b': 'v' } }, 'events[1].headers'],
      [{ ...valid(), headers: { 'half \udc00': 'v' } }, 'events[1].headers'],
      [{ ...valid(), occurredAt: new Date('+010000-01-01T00:00:00Z') }, 'events[1].occurredAt'],
      [{ ...valid(), occurredAt: new Date('0000-06-01T00:00:00Z') }, 'events[1].occurredAt'],
      // PostgreSQL rounds to the microsecond, into the year 10000; Date.parse cuts.
      [{ ...valid(), occurredAt: '9999-12-31T23:59:59.9999996Z' }, 'events[1].occurredAt'],
      // Read as a double and rounded half to even: this one too.
      [
        { ...valid(), occurredAt: '9999-12-31T23:59:59.99999949999999999Z' },
        'events[1].occurredAt',
      ],
      // Year 0000, which PostgreSQL refuses, though the rounding lands in 0001.
      [{ ...valid(), occurredAt: '0000-12-31T23:59:59.9999996Z' }, 'events[1].occurredAt'],
      // A noncharacter past the first plane is as unsendable as U+FFFE.
      [{ ...valid(), aggregateId: 'a\u{1FFFE}' }, 'events[1].aggregateId'],
      // JSON.parse makes __proto__ a key; the parse would drop the header without a word.
      [
        { ...valid(), headers: JSON.parse('{"__proto__":"x","tenant":"a"}') },
        'events[1].headers.__proto__',
      ],
      [{ ...valid(), payload: { note: 'nul \u0000' } }, 'events[1].payload.note'],
      [
        { ...valid(), payload: { at: { note: 'half \ud800 a pair' } } },
        'events[1].payload.at.note',
      ],
      [{ ...valid(), payload: { at: { 'k\u0000': 1 } } }, 'events[1].payload.at'],
      // What JSON.stringify would change without a word.
      [{ ...valid(), payload: { at: new Date('garbage') } }, 'events[1].payload.at'],
      [{ ...valid(), payload: { scores: [1, undefined] } }, 'events[1].payload.scores.1'],
      // biome-ignore lint/suspicious/noSparseArray: an empty slot is the case
      [{ ...valid(), payload: { scores: [1, , 3] } }, 'events[1].payload.scores.1'],
      [{ ...valid(), payload: { match: /a/ } }, 'events[1].payload.match'],
      [{ ...valid(), payload: { cause: new Error('x') } }, 'events[1].payload.cause'],
      [
        { ...valid(), payload: { at: { toJSON: () => ({ n: Number.NaN }) } } },
        'events[1].payload.at.n',
      ],
      [{ ...valid(), payload: { at: { toJSON: () => undefined } } }, 'events[1].payload.at'],
      [
        {
          ...valid(),
          payload: {
            at: {
              toJSON: () => {
                throw new Error('no');
              },
            },
          },
        },
        'events[1].payload.at',
      ],
    ];
    for (const [bad, path] of cases) {
      const outcome = await driver.inTransaction(async (tx) => {
        const counted = counting(tx);
        const error = await outbox.enqueue(counted.tx, [valid(), bad, valid()]).catch((e) => e);
        return { error, statements: counted.statements() };
      }, true);
      expect(outcome.error).toBeInstanceOf(ValidationError);
      expect((outcome.error as ValidationError).path).toBe(path);
      expect(outcome.statements).toBe(0);
    }
    // A hole in the list is an event missing, refused as one, not a driver's error.
    const holed = await driver.inTransaction(async (tx) => {
      const counted = counting(tx);
      // biome-ignore lint/suspicious/noSparseArray: an empty slot is the case
      const holey = [valid(), , valid()] as OutboxEvent[];
      const error = await outbox.enqueue(counted.tx, holey).catch((e) => e);
      return { error, statements: counted.statements() };
    }, true);
    expect(holed.error).toBeInstanceOf(ValidationError);
    expect((holed.error as ValidationError).path).toBe('events[1]');
    expect(holed.statements).toBe(0);
    // Committed, and still nothing: the valid events of the refused calls were not written.
    expect(await storedRows(inspect, schema)).toEqual([]);
  });

  it('a payload of null is stored as JSON null, alone and in a list', async () => {
    const { schema, inspect } = driver.target();
    const outbox = createOutbox({ schema });
    const empty = () => ({ ...LessonPublished.create(lessonPayload()), payload: null });
    const [alone] = await driver.inTransaction((tx) => outbox.enqueue(tx, empty()), true);
    const listed = await driver.inTransaction((tx) => outbox.enqueue(tx, [empty(), empty()]), true);
    const { rows } = await inspect.query<{ id: string; payload: string }>(
      `SELECT id, payload::text AS payload FROM "${schema}".outbox ORDER BY seq`,
    );
    expect(rows).toEqual([alone, ...listed].map((id) => ({ id, payload: 'null' })));
  });
});

/** A payload that holds itself: `{ a: { back: <the payload> } }`. */
function cyclic(): Record<string, unknown> {
  const payload: Record<string, unknown> = {};
  payload.a = { back: payload };
  return payload;
}

function completed() {
  return {
    lesson_id: randomUUID(),
    student_id: randomUUID(),
    completed_at: '2024-05-01T11:00:00Z',
    duration_seconds: 600,
  };
}

/** `now()` of the transaction, in the form storedRows() shows timestamps. */
async function outbox_now(tx: TransactionLike): Promise<{ rows: string }> {
  const text = `SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`;
  const target = tx as {
    unsafe?: (text: string) => PromiseLike<{ now: string }[]>;
    query?: (text: string) => Promise<{ rows: { now: string }[] }>;
  };
  const rows = target.unsafe ? await target.unsafe(text) : (await target.query?.(text))?.rows;
  return { rows: rows?.[0]?.now ?? '' };
}

describe.each([
  ['PostgreSQL', onPg],
  ['PGlite', onPglite],
] as const)('plain SQL producers on %s', (_, target) => {
  it('the four-column INSERT from DESIGN.md works and gets every default', async () => {
    const { schema, inspect } = target();
    const lessonId = randomUUID();
    const payload = `{"lesson_id": "${lessonId}", "title": "Raw"}`;
    const { rows: inserted } = await inspect.query<{ now: string }>(
      `WITH i AS (
         INSERT INTO "${schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         VALUES ('lesson', $1, 'lesson-published', $2)
       )
       SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`,
      [lessonId, payload],
    );
    const rows = await storedRows(inspect, schema);
    expect(rows).toHaveLength(1);
    const row = rows[0] as StoredRow;
    expect(row.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(BigInt(row.seq)).toBeGreaterThan(0n);
    expect(row).toMatchObject({
      aggregate_type: 'lesson',
      aggregate_id: lessonId,
      event_type: 'lesson-published',
      payload, // json keeps the producer's text byte for byte
      headers: {},
      attempts: 0,
      last_error: null,
      available: true,
      occurred_at: inserted[0]?.now,
    });
    expect(row.partition).toBe(row.expected_partition);

    // A raw insert and an enqueue of the same aggregate land in the same partition, in order.
    const outbox = createOutbox({ schema });
    const [id] = await outbox.enqueue(
      autocommit(inspect),
      LessonPublished.create(lessonPayload(lessonId)),
    );
    const after = await storedRows(inspect, schema);
    expect(after.map((r) => r.id)).toEqual([row.id, id]);
    expect(after[1]?.partition).toBe(row.partition);
  });
});

describe('enqueue edge cases', () => {
  it('an empty list writes nothing and sends no statement', async () => {
    const counted = counting(client);
    expect(await createOutbox({ schema: pgSchema.schema }).enqueue(counted.tx, [])).toEqual([]);
    expect(counted.statements()).toBe(0);
  });

  it('a single invalid event names the field without a prefix', async () => {
    const event = { ...LessonPublished.create(lessonPayload()), aggregateType: 'Lesson' };
    const error = await createOutbox({ schema: pgSchema.schema })
      .enqueue(client, event)
      .catch((e) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.path).toBe('aggregateType');
  });

  it('refuses a handle that is not in a transaction, naming it, unless autocommit() says so', async () => {
    const outbox = createOutbox({ schema: pgSchema.schema });
    const stored = async () =>
      (await storedRows(pool as unknown as Executor, pgSchema.schema)).map((r) => r.id);
    const before = await stored();
    const refused = async (handle: unknown) => {
      const error = await outbox
        .enqueue(handle as TransactionLike, LessonPublished.create(lessonPayload()))
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TypeError);
      return (error as Error).message;
    };
    expect(await refused(pool)).toMatch(
      /^enqueue: a pg Pool is not a transaction.*pool\.connect\(\).*autocommit\(\)/,
    );
    expect(await refused(sql)).toMatch(
      /^enqueue: a postgres\.js sql is not a transaction.*sql\.begin/,
    );
    expect(await refused(pgSchema.db)).toMatch(/^enqueue: a handle with its own transaction\(\)/);
    expect(await stored()).toEqual(before);

    // The opt-in writes in autocommit; a postgres.js transaction's sql is accepted as before.
    const [viaPool] = await outbox.enqueue(
      autocommit(pool),
      LessonPublished.create(lessonPayload()),
    );
    const [viaSql] = await outbox.enqueue(autocommit(sql), LessonPublished.create(lessonPayload()));
    const [inTx] = await sql.begin((tx) =>
      outbox.enqueue(tx, LessonPublished.create(lessonPayload())),
    );
    expect(await stored()).toEqual([...before, viaPool, viaSql, inTx]);
  });

  it('refuses a node-postgres client with no transaction open, and takes it once BEGIN has run', async () => {
    const outbox = createOutbox({ schema: pgSchema.schema });
    const stored = async () =>
      (await storedRows(pool as unknown as Executor, pgSchema.schema)).map((r) => r.id);
    const before = await stored();
    const error = await outbox
      .enqueue(client, LessonPublished.create(lessonPayload()))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(
      /^enqueue: a node-postgres client with no transaction open is not a transaction.*await client\.query\('BEGIN'\).*autocommit\(\)/,
    );
    expect(await stored()).toEqual(before);

    // After BEGIN, and with BEGIN sent but not yet answered, the client is a transaction;
    // rolled back, the event is gone with it.
    await client.query('BEGIN');
    const [committed] = await outbox.enqueue(client, LessonPublished.create(lessonPayload()));
    await client.query('COMMIT');
    const begin = client.query('BEGIN');
    const [rolledBack] = await outbox.enqueue(client, LessonPublished.create(lessonPayload()));
    await begin;
    await client.query('ROLLBACK');
    expect(rolledBack).toBeDefined();
    // The opt-in still writes through it on purpose.
    const [own] = await outbox.enqueue(autocommit(client), LessonPublished.create(lessonPayload()));
    expect(await stored()).toEqual([...before, committed, own]);
  });

  it('says in words what is wrong with a cycle, an invalid Date and an empty occurredAt', async () => {
    const outbox = createOutbox({ schema: pgSchema.schema });
    // Refused before any statement: the pool is never asked.
    const refusal = (event: OutboxEvent) =>
      outbox.enqueue(pool, event).then(
        () => 'written',
        (error: unknown) => (error instanceof ValidationError ? error.message : String(error)),
      );
    const event = () => LessonPublished.create(lessonPayload());
    expect(await refusal({ ...event(), payload: cyclic() })).toMatch(
      /^payload\.a\.back: is a reference back to a value that holds it \(a cycle\)/,
    );
    expect(await refusal({ ...event(), occurredAt: new Date('not a time') })).toMatch(
      /^occurredAt: is an invalid Date \(its time is NaN\) \(lesson-published\)$/,
    );
    // Set to '' through create, as on an event built by hand: refused, not left out.
    expect(await refusal(LessonPublished.create(lessonPayload(), { occurredAt: '' }))).toMatch(
      /^occurredAt: /,
    );
  });

  it('refuses events together longer than one string, naming events, before any statement', async () => {
    const outbox = createOutbox({ schema: pgSchema.schema });
    // Each alone is a string; the two make more than V8's longest (about 512 MiB), where
    // the call threw a bare RangeError.
    const body = 'x'.repeat(280 * 1024 * 1024);
    const event = (n: number) => ({
      type: 'note-written',
      aggregateType: 'note',
      aggregateId: `note-${n}`,
      payload: { body },
    });
    // The pool would be refused as no transaction: the size is told first.
    const error = await outbox.enqueue(pool, [event(1), event(2)]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe('events');
    expect((error as Error).message).toMatch(
      /^events: are together more than one call can send \(2 events, .*several calls in the same transaction$/,
    );
  });

  it('refuses a node-postgres client never connected, or one that cannot tell its transaction, at once', async () => {
    const outbox = createOutbox({ schema: pgSchema.schema });
    const stored = async () =>
      (await storedRows(pool as unknown as Executor, pgSchema.schema)).map((r) => r.id);
    const before = await stored();
    // node-postgres holds a statement on a client never connected until connect(): the
    // call waited for good.
    const idle = new pg.Client({ connectionString: PG_URL });
    const waited = outbox.enqueue(idle, LessonPublished.create(lessonPayload()));
    const settled = await Promise.race([
      waited.then(
        () => 'written',
        (error: unknown) => error,
      ),
      new Promise((resolve) => setTimeout(() => resolve('still waiting'), 2000)),
    ]);
    expect(settled).toBeInstanceOf(TypeError);
    expect((settled as Error).message).toMatch(
      /^enqueue: the node-postgres client is not connected: await client\.connect\(\)/,
    );

    // A client of pg before 8.23 has no getTransactionStatus: with no BEGIN the check
    // passed the write, which committed on its own.
    const old = new pg.Client({ connectionString: PG_URL });
    await old.connect();
    try {
      Object.defineProperty(old, 'getTransactionStatus', { value: undefined });
      const error = await outbox
        .enqueue(old, LessonPublished.create(lessonPayload()))
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TypeError);
      expect((error as Error).message).toMatch(
        /^enqueue: this node-postgres client cannot tell whether a transaction is open \(pg before 8\.23\).*autocommit\(\)/,
      );
      expect(await stored()).toEqual(before);
    } finally {
      await old.end();
    }
  });

  it('refuses a PGlite instance outside a transaction block, and takes it once BEGIN has run', async () => {
    const { pglite, schema } = pgliteSchema;
    const outbox = createOutbox({ schema });
    const stored = async () =>
      (await storedRows(pglite as unknown as Executor, schema)).map((r) => r.id);
    const before = await stored();
    const error = await outbox
      .enqueue(pglite, LessonPublished.create(lessonPayload()))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(
      /^enqueue: a PGlite instance with no transaction open is not a transaction.*pglite\.transaction\(.*autocommit\(\)/,
    );
    expect(await stored()).toEqual(before);

    await pglite.exec('BEGIN');
    const [rolledBack] = await outbox.enqueue(pglite, LessonPublished.create(lessonPayload()));
    await pglite.exec('ROLLBACK');
    expect(rolledBack).toBeDefined();
    const [own] = await outbox.enqueue(autocommit(pglite), LessonPublished.create(lessonPayload()));
    expect(await stored()).toEqual([...before, own]);
  });

  it('prepares its insert once per connection (node-postgres, postgres.js), unless the connection says not to', async () => {
    const outbox = createOutbox({ schema: pgSchema.schema });
    const own = new pg.Client({ connectionString: PG_URL });
    await own.connect();
    const js = postgres(PG_URL, { max: 1, onnotice: () => {} });
    // What a postgres.js application behind a pooler in transaction mode sets.
    const unprepared = postgres(PG_URL, { max: 1, prepare: false, onnotice: () => {} });
    const event = () => LessonPublished.create(lessonPayload());
    const runs = `SELECT (generic_plans + custom_plans)::int AS runs FROM pg_prepared_statements
      WHERE statement LIKE 'INSERT INTO %outbox (id,%' ORDER BY runs DESC`;
    try {
      for (let i = 0; i < 3; i++) {
        await withBeginCommit(own, (tx) => outbox.enqueue(tx, event()), true);
        await js.begin((tx) => outbox.enqueue(tx, event()));
        await unprepared.begin((tx) => outbox.enqueue(tx, event()));
      }
      await withBeginCommit(own, (tx) => outbox.enqueue(tx, [event(), event()]), true);
      // One statement for one event, run three times; one for several, run once.
      expect((await own.query(runs)).rows).toEqual([{ runs: 3 }, { runs: 1 }]);
      expect([...(await js.unsafe(runs))]).toEqual([{ runs: 3 }]);
      expect([...(await unprepared.unsafe(runs))]).toEqual([]);

      // A session that lost its prepared statements (DISCARD ALL) fails one enqueue, as
      // node-postgres's own named statements do; the next one prepares it again.
      await own.query('DISCARD ALL');
      const lost = await withBeginCommit(own, (tx) => outbox.enqueue(tx, event()), true).catch(
        (e: unknown) => e,
      );
      expect((lost as { code?: string }).code).toBe('26000');
      const [again] = await withBeginCommit(own, (tx) => outbox.enqueue(tx, event()), true);
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM "${pgSchema.schema}".outbox WHERE id = $1`,
        [again],
      );
      expect(rows).toEqual([{ n: 1 }]);
    } finally {
      await Promise.allSettled([own.end(), js.end(), unprepared.end()]);
    }
  });

  it('postgres.js 4: its transaction and savepoint are taken, its top-level sql refused', async () => {
    // From 4.0 a transaction's sql has begin() too: what tells them apart is savepoint().
    const sql4 = postgres4(PG_URL, { max: 1, onnotice: () => {} });
    try {
      const outbox = createOutbox({ schema: pgSchema.schema });
      const stored = async () =>
        (await storedRows(pool as unknown as Executor, pgSchema.schema)).map((r) => r.id);
      const before = await stored();
      const [inTx] = await sql4.begin((tx) =>
        outbox.enqueue(tx, LessonPublished.create(lessonPayload())),
      );
      const [inSavepoint] = await sql4.begin((tx) =>
        tx.savepoint((sp) => outbox.enqueue(sp, LessonPublished.create(lessonPayload()))),
      );
      const refused = await outbox
        .enqueue(sql4, LessonPublished.create(lessonPayload()))
        .catch((e: unknown) => e);
      expect((refused as Error).message).toMatch(
        /^enqueue: a postgres\.js sql is not a transaction/,
      );
      expect(await stored()).toEqual([...before, inTx, inSavepoint]);
    } finally {
      await sql4.end();
    }
  });

  it('into a schema that was never migrated: a SchemaVersionError that says to run migrate', async () => {
    const outbox = createOutbox({ schema: 'never_migrated' });
    const expected =
      'schema "never_migrated" has no outbox table: run `edupulse-outbox migrate --schema never_migrated` (or migrate(db, \'never_migrated\')) before writing to it';
    const viaPg = await withBeginCommit(
      client,
      (tx) => outbox.enqueue(tx, LessonPublished.create(lessonPayload())),
      false,
    ).catch((e: unknown) => e);
    const viaSql = await sql
      .begin((tx) =>
        outbox.enqueue(tx, [
          LessonPublished.create(lessonPayload()),
          LessonPublished.create(lessonPayload()),
        ]),
      )
      .catch((e: unknown) => e);
    const viaPglite = await pgliteSchema.pglite
      .transaction((tx) => outbox.enqueue(tx, LessonPublished.create(lessonPayload())))
      .catch((e: unknown) => e);
    for (const error of [viaPg, viaSql, viaPglite]) {
      expect(error).toBeInstanceOf(SchemaVersionError);
      expect((error as Error).message).toBe(expected);
    }
  });

  it('says what JSON would do to a value, and which field a misspelt one was meant to be', async () => {
    const outbox = createOutbox({ schema: pgSchema.schema });
    const refusal = (event: OutboxEvent) =>
      outbox.enqueue(autocommit(pgSchema.db), event).then(
        () => 'written',
        (error: unknown) => (error as Error).message,
      );
    const event = LessonPublished.create(lessonPayload());
    expect(await refusal({ ...event, payload: { ...event.payload, views: 10n } })).toBe(
      'payload.views: is a BigInt, which JSON cannot carry: write it as a string or a number (lesson-published)',
    );
    expect(await refusal({ ...event, payload: { ratio: Number.NaN } })).toBe(
      'payload.ratio: is NaN, which JSON writes as null (lesson-published)',
    );
    expect(await refusal({ ...event, payload: { tags: new Set() } })).toBe(
      'payload.tags: is a Set, which JSON writes as {}: use an array ([...set]) (lesson-published)',
    );
    expect(await refusal({ ...event, payload: { at: new Date(Number.NaN) } })).toBe(
      'payload.at: is an invalid Date, which JSON writes as null (lesson-published)',
    );
    expect(await refusal({ ...event, payload: { ids: ['a', undefined] } })).toBe(
      'payload.ids.1: is undefined (or an empty slot) in an array, which JSON writes as null (lesson-published)',
    );
    class Secretive {
      #score = 1;
      score = () => this.#score;
    }
    expect(await refusal({ ...event, payload: { by: new Secretive() } })).toBe(
      'payload.by.score: is a function, which JSON leaves out (or writes as null in an array) (lesson-published)',
    );
    class Computed {
      get score() {
        return 1;
      }
    }
    expect(await refusal({ ...event, payload: { by: new Computed() } })).toBe(
      'payload.by: is an instance of Computed without fields of its own, which JSON writes as {} (lesson-published)',
    );
    const exploding = Object.defineProperty({}, 'score', {
      enumerable: true,
      get: () => {
        throw new Error('not loaded');
      },
    });
    expect(await refusal({ ...event, payload: { by: exploding } })).toBe(
      'payload.by.score: is a value that cannot be read: its getter or toJSON threw Error: not loaded (lesson-published)',
    );
    expect(await refusal({ ...event, payload: { note: 'a\u0000b' } })).toBe(
      'payload.note: is text holding a NUL character (\\u0000), which PostgreSQL cannot read from JSON (lesson-published)',
    );
    // Nesting JSON.stringify would overflow the stack on (a RangeError naming nothing) is
    // refused by depth; 1,000 levels are written.
    const nested = (levels: number) => {
      let value: unknown = {};
      for (let i = 0; i < levels; i++) value = { a: value };
      return value;
    };
    expect(await refusal({ ...event, payload: nested(50_000) })).toBe(
      'payload.a.a.a.a.a.a.….a.a.a.a.a: is nested more than 1000 levels deep, deeper than JSON.stringify can be relied on to write (lesson-published)',
    );
    expect(await refusal({ ...event, id: randomUUID(), payload: nested(1000) })).toBe('written');
    // A type that is itself the problem is named readably: escaped and cut.
    const loud = await refusal({ ...event, type: `\u001b[31m${'x'.repeat(5000)}` });
    expect(loud).toMatch(/^type: .* \(\\u001b\[31mx{90}… \(5010 characters\)\)$/);
    expect(loud.length).toBeLessThan(400);
    expect(await refusal({ ...event, headr: {} } as OutboxEvent)).toBe(
      'headr: is not a field of an event; did you mean "headers"? (lesson-published)',
    );
    // A Date is written as its toJSON gives it, undefined as JSON leaves it out. Each
    // value is read once: what was checked is what is written (a getter giving another
    // value at a second read does not get NaN past the check).
    let reads = 0;
    const changing = Object.defineProperty({}, 'n', {
      enumerable: true,
      get: () => (reads++ === 0 ? 1 : Number.NaN),
    });
    const { rows } = await pgSchema.db.query<{ payload: string }>(
      `SELECT payload::text AS payload FROM "${pgSchema.schema}".outbox WHERE id = $1`,
      await outbox.enqueue(autocommit(pgSchema.db), {
        ...event,
        id: randomUUID(),
        payload: { at: new Date(0), gone: undefined, changing },
      }),
    );
    expect(rows).toEqual([{ payload: '{"at":"1970-01-01T00:00:00.000Z","changing":{"n":1}}' }]);
    expect(reads).toBe(1);
  });

  it('maxPayloadBytes refuses a larger payload before commit, counting UTF-8 bytes', async () => {
    const outbox = createOutbox({ schema: pgSchema.schema, maxPayloadBytes: 200 });
    const event = (title: string) => ({
      ...LessonPublished.create(lessonPayload()),
      payload: { title },
    });
    // {"title":"…"} is 12 bytes around the title; "é" is 2 bytes in UTF-8.
    const [kept] = await outbox.enqueue(autocommit(pgSchema.db), event('x'.repeat(188)));
    const refused = await outbox
      .enqueue(autocommit(pgSchema.db), [event('a'), event('é'.repeat(95))])
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(refused).toBeInstanceOf(ValidationError);
    expect((refused as ValidationError).message).toBe(
      'events[1].payload: 202 bytes exceeds maxPayloadBytes (200 bytes) (lesson-published)',
    );
    const { rows } = await pgSchema.db.query<{ id: string }>(
      `SELECT id::text AS id FROM "${pgSchema.schema}".outbox WHERE payload->>'title' IN ('a', $1)`,
      ['x'.repeat(188)],
    );
    expect(rows).toEqual([{ id: kept }]);
    for (const bad of [0, 1.5, -1, 2 ** 31]) {
      expect(() => createOutbox({ maxPayloadBytes: bad as number })).toThrow(
        /^maxPayloadBytes: .* is not a whole number from 1 to 1073741824$/,
      );
    }
  });

  it('refuses something that is not a transaction, saying what it got and not its value', async () => {
    const outbox = createOutbox({ schema: pgSchema.schema });
    const event = LessonPublished.create(lessonPayload());
    await expect(outbox.enqueue({} as TransactionLike, event)).rejects.toThrow(TypeError);
    // A connection string passed by mistake: named as a string, never printed.
    const url = 'postgres://app:s3cret-pw@db.internal/app';
    const error = await outbox.enqueue(url as never, event).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toMatch(/^enqueue: the transaction must be .*; got a string$/);
    expect((error as Error).message).not.toContain('s3cret');
    await expect(outbox.enqueue(undefined as never, event)).rejects.toThrow(/; got undefined$/);
    await expect(outbox.enqueue({ rows: [] } as never, event)).rejects.toThrow(
      /; got a plain object with keys rows$/,
    );
  });
});
