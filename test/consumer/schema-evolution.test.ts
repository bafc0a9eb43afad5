/**
 * Changing an event's schema while producers and consumers are deployed at different
 * times, as README "Evolving an event's schema" describes it: what an old consumer makes
 * of a new event and a new consumer of an old one, and how a parked event is recovered
 * with `dead retry --consumer` once the consumer reads it. Through the real dispatcher,
 * RabbitMQ and PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { brokerFromUrl } from '../../src/brokers/index.js';
import {
  type AnyEventDefinition,
  type Consumer,
  consume,
  createInbox,
} from '../../src/consumer/index.js';
import {
  createDispatcher,
  createOutbox,
  type Dispatcher,
  defineEvent,
  LessonCompleted,
  LessonPublished,
  type OutboxEvent,
} from '../../src/index.js';
import { AMQP_URL, deleteConsumerQueues, testExchange } from '../helpers/amqp.js';
import { runCli } from '../helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

const exchange = testExchange();
const url = `${AMQP_URL}?exchange=${exchange}&accept_unroutable=true`;
const NAME = 'catalogue';
let pg: TestSchema;
let dispatcher: Dispatcher;
let consumer: Consumer | undefined;
/** What the handler applied, in order, and what was parked, as the consumer saw it. */
let applied: { id: string; data: Record<string, unknown> }[] = [];

const timestamp = z.iso.datetime({ offset: true });
/** The producer's next version of lesson-published: `title` renamed to `name`. */
const Renamed = defineEvent({
  type: 'lesson-published',
  aggregateType: 'lesson',
  schema: z.object({
    lesson_id: z.uuid(),
    author_id: z.uuid(),
    name: z.string().min(1),
    published_at: timestamp,
  }),
  aggregateId: (p) => p.lesson_id,
});
/** lesson-published with an optional field added. */
const WithSummary = defineEvent({
  type: 'lesson-published',
  aggregateType: 'lesson',
  schema: LessonPublished.schema.extend({ summary: z.string().optional() }),
  aggregateId: (p) => p.lesson_id,
});
/** lesson-published without `author_id`. */
const WithoutAuthor = defineEvent({
  type: 'lesson-published',
  aggregateType: 'lesson',
  schema: LessonPublished.schema.omit({ author_id: true }),
  aggregateId: (p) => p.lesson_id,
});
/** lesson-completed with `duration_seconds` as text. */
const DurationAsText = defineEvent({
  type: 'lesson-completed',
  aggregateType: 'student',
  schema: LessonCompleted.schema.extend({ duration_seconds: z.string() }),
  aggregateId: (p) => p.student_id,
});
/** The fixed consumer's definition: reads either name, and gives the handler `title`. */
const EitherName = defineEvent({
  type: 'lesson-published',
  aggregateType: 'lesson',
  schema: z
    .object({
      lesson_id: z.uuid(),
      author_id: z.uuid(),
      title: z.string().min(1).optional(),
      name: z.string().min(1).optional(),
      published_at: timestamp,
    })
    .transform(({ name, ...rest }) => ({ ...rest, title: rest.title ?? name })),
  aggregateId: (p) => p.lesson_id,
});

const cli = (...args: string[]) =>
  runCli([...args, '--database-url', PG_URL, '--schema', pg.schema]);

/** The projection the handler keeps: each lesson's title, as its events last set it. */
async function titleOf(lessonId: string): Promise<string | undefined> {
  const { rows } = await pg.db.query<{ title: string }>(
    `SELECT title FROM "${pg.schema}".lesson_title WHERE lesson_id = $1`,
    [lessonId],
  );
  return rows[0]?.title;
}

interface DeadLetter {
  eventId: string;
  lastError: string;
  retrying: boolean;
}

/** The consumer's dead letters, as `dead list --consumer` shows them (read directly: polled). */
async function deadLetters(): Promise<DeadLetter[]> {
  const { rows } = await pg.db.query<DeadLetter>(
    `SELECT event_id AS "eventId", last_error AS "lastError",
       retry_requested_at IS NOT NULL OR retry_taken_at IS NOT NULL AS retrying
     FROM "${pg.schema}".consumer_dead_letter WHERE consumer = $1 ORDER BY dead_at, id`,
    [NAME],
  );
  return rows;
}

/** The consumer as deployed with `events`, applying through the inbox into lesson_title. */
async function deploy(...events: AnyEventDefinition[]): Promise<void> {
  await consumer?.stop();
  const inbox = createInbox({ schema: pg.schema, consumer: NAME });
  consumer = await consume({
    broker: url,
    consumer: NAME,
    events,
    database: pg.db,
    schema: pg.schema,
    maxAttempts: 1,
    deadLetterRetryPollMs: 100,
    handler: (event) =>
      pg.db.transaction((tx) =>
        inbox.process(tx, event, async () => {
          const data = event.data as Record<string, unknown>;
          if (event.type === 'lesson-published') {
            await tx.query(
              `INSERT INTO "${pg.schema}".lesson_title VALUES ($1, $2)
               ON CONFLICT (lesson_id) DO UPDATE SET title = excluded.title`,
              [data.lesson_id, data.title],
            );
          }
          applied.push({ id: event.id, data });
        }),
      ),
  });
}

/** Enqueues the events in one transaction and publishes them. */
async function produce(...events: OutboxEvent[]): Promise<void> {
  const outbox = createOutbox({ schema: pg.schema });
  await pg.db.transaction((tx) => outbox.enqueue(tx, events));
  await dispatcher.drain();
}

/** A lesson's ids and time, without its title (or name). */
const lesson = () => ({
  lesson_id: randomUUID(),
  author_id: randomUUID(),
  published_at: '2026-12-01T09:30:00Z',
});

beforeAll(async () => {
  pg = await createPgTestSchema('schema_evolution');
  await pg.db.query(
    `CREATE TABLE "${pg.schema}".lesson_title (lesson_id uuid PRIMARY KEY, title text)`,
  );
  dispatcher = createDispatcher({
    db: pg.db,
    schema: pg.schema,
    broker: brokerFromUrl(url, { source: '/schema-evolution' }),
    logger: false,
  });
});

afterEach(async () => {
  await consumer?.stop();
  consumer = undefined;
  applied = [];
  await pg.db.query(`DELETE FROM "${pg.schema}".consumer_dead_letter`);
});

afterAll(async () => {
  await consumer?.stop();
  await dispatcher?.stop();
  await deleteConsumerQueues(exchange, NAME);
  await pg?.drop();
});

describe('evolving an event schema', () => {
  it('an old consumer drops a field it does not declare, and parks an event that lacks or retypes one it requires, naming the field', async () => {
    await deploy(LessonPublished, LessonCompleted);
    const added = WithSummary.create({ ...lesson(), title: 'Ratios', summary: 'parts of a whole' });
    const removed = WithoutAuthor.create({
      lesson_id: randomUUID(),
      title: 'Angles',
      published_at: '2026-12-01T09:30:00Z',
    });
    const renamed = Renamed.create({ ...lesson(), name: 'Volumes' });
    const retyped = DurationAsText.create({
      lesson_id: randomUUID(),
      student_id: randomUUID(),
      completed_at: '2026-12-01T09:30:00Z',
      duration_seconds: '90',
    });
    await produce(added, removed, renamed, retyped);
    await waitFor('one applied, three parked', async () => {
      return applied.length === 1 && (await deadLetters()).length === 3;
    });
    expect(applied[0]).toEqual({ id: added.id, data: LessonPublished.parse(added.payload) });
    expect(applied[0]?.data).not.toHaveProperty('summary');
    const reasons = Object.fromEntries(
      (await deadLetters()).map((row) => [row.eventId, row.lastError]),
    );
    expect(reasons).toEqual({
      [String(removed.id)]:
        'payload.author_id: Invalid input: expected string, received undefined (lesson-published)',
      [String(renamed.id)]:
        'payload.title: Invalid input: expected string, received undefined (lesson-published)',
      [String(retyped.id)]:
        'payload.duration_seconds: Invalid input: expected number, received string (lesson-completed)',
    });
  });

  it('a new consumer reads an old event without the optional field it added', async () => {
    await deploy(WithSummary);
    const old = LessonPublished.create({ ...lesson(), title: 'Ratios' });
    await produce(old);
    await waitFor('applied', () => applied.length === 1);
    expect(applied[0]).toEqual({ id: old.id, data: old.payload });
    expect(applied[0]?.data.summary).toBeUndefined();
  });

  it('a parked event retried after its aggregate moved on is parked as stale, not applied over the newer one; a second retry applies it', async () => {
    await deploy(LessonPublished);
    // The producer ships the rename first: the old consumer parks the event, naming the field.
    const first = Renamed.create({ ...lesson(), name: 'Fractions' });
    const lessonId = first.aggregateId;
    await produce(first);
    await waitFor('parked', async () => (await deadLetters()).length === 1, { timeoutMs: 20_000 });
    expect((await deadLetters())[0]?.lastError).toBe(
      'payload.title: Invalid input: expected string, received undefined (lesson-published)',
    );
    // The producer rolls back; the lesson's next event is applied.
    const { name: _, ...ids } = first.payload;
    const second = LessonPublished.create({ ...ids, title: 'Fractions, revised' });
    await produce(second);
    await waitFor('the newer event applied', () => applied.some((a) => a.id === second.id), {
      timeoutMs: 20_000,
    });

    // The consumer is fixed, and the operator retries what it parked.
    await deploy(EitherName);
    expect((await cli('dead', 'retry', '--consumer', NAME, '--all')).code).toBe(0);
    await waitFor(
      'parked again as stale',
      async () => {
        const [row] = await deadLetters();
        return row !== undefined && !row.retrying && row.lastError.includes('is older than');
      },
      { timeoutMs: 20_000 },
    );
    const [stale] = await deadLetters();
    expect(stale?.eventId).toBe(first.id);
    expect(stale?.lastError).toMatch(
      /^event \S+ \(lesson-published, sequence \d+\) is older than the last event applied for lesson "/,
    );
    expect(await titleOf(lessonId)).toBe('Fractions, revised');
    expect(applied.map((a) => a.id)).toEqual([second.id]);

    // Told so, the operator retries it again: it applies, as stale dead letters' retries do.
    expect((await cli('dead', 'retry', String(first.id), '--consumer', NAME)).code).toBe(0);
    await waitFor('applied', () => applied.some((a) => a.id === first.id), { timeoutMs: 20_000 });
    expect(await titleOf(lessonId)).toBe('Fractions');
    await waitFor('no dead letter left', async () => (await deadLetters()).length === 0);
  });

  it("retried dead letters reach the handler in their aggregate's order, whatever order they were parked in", async () => {
    await deploy(LessonPublished);
    const ids = lesson();
    const first = Renamed.create({ ...ids, name: 'Decimals' });
    const second = Renamed.create({ ...ids, name: 'Decimals, revised' });
    await produce(first, second);
    await waitFor('both parked', async () => (await deadLetters()).length === 2, {
      timeoutMs: 20_000,
    });
    // Retried too early, the first is parked again: now it was parked after the second.
    expect((await cli('dead', 'retry', String(first.id), '--consumer', NAME)).code).toBe(0);
    await waitFor('parked again', async () => {
      const rows = await deadLetters();
      return rows.length === 2 && rows.every((row) => !row.retrying);
    });
    expect((await deadLetters()).map((row) => row.eventId)).toEqual([second.id, first.id]);

    await deploy(EitherName);
    expect((await cli('dead', 'retry', '--consumer', NAME, '--all')).code).toBe(0);
    await waitFor('no dead letter left', async () => (await deadLetters()).length === 0, {
      timeoutMs: 20_000,
    });
    expect(applied.map((a) => a.id)).toEqual([first.id, second.id]);
    expect(await titleOf(ids.lesson_id)).toBe('Decimals, revised');
  });
});
