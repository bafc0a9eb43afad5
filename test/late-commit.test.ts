/**
 * Late commits: a transaction that drew its seq early and commits late is neither
 * skipped nor overtaken by a later event of its aggregate, while a transaction is held
 * open and later ones commit around it.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { MemoryBroker } from '../src/brokers/memory.js';
import { createDispatcher, createOutbox, type Dispatcher, LessonPublished } from '../src/index.js';
import { createPgTestSchema, type TestSchema, testClients } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;
const { client, endAll } = testClients();
const dispatchers: Dispatcher[] = [];

beforeAll(async () => {
  t = await createPgTestSchema('late_commit');
});
afterEach(async () => {
  for (const d of dispatchers.splice(0)) await d.stop();
  await endAll();
});
afterAll(async () => {
  await t?.drop();
});

const lesson = (lessonId: string) =>
  LessonPublished.create({
    lesson_id: lessonId,
    author_id: randomUUID(),
    title: 'Fractions',
    published_at: new Date().toISOString(),
  });

async function partitionOf(aggregateId: string): Promise<number> {
  const { rows } = await t.db.query<{ p: number }>(
    'SELECT ((hashtextextended($1, 0) & 2147483647) % 64)::int AS p',
    [aggregateId],
  );
  return rows[0]?.p ?? -1;
}

/** A lesson id whose partition is (or is not) `partition`. */
async function lessonIn(partition: number, same: boolean): Promise<string> {
  for (;;) {
    const id = randomUUID();
    if (((await partitionOf(id)) === partition) === same) return id;
  }
}

it('holds a later event of the aggregate behind an open transaction, then publishes both in order', async () => {
  const outbox = createOutbox({ schema: t.schema });
  const x = randomUUID();
  const xPartition = await partitionOf(x);
  const y = await lessonIn(xPartition, false);

  const early = await client();
  await early.query('BEGIN');
  const [x1] = await outbox.enqueue(early, lesson(x)); // drawn first, committed last

  const late = await client();
  await late.query('BEGIN');
  const [x2] = await outbox.enqueue(late, lesson(x));
  await late.query('COMMIT');
  const [y1] = await t.db.transaction((tx) => outbox.enqueue(tx, lesson(y)));

  const broker = new MemoryBroker();
  const d = createDispatcher({ db: t.db, schema: t.schema, broker, pollIntervalMs: 50 });
  dispatchers.push(d);
  await d.start();
  // Another partition flows while the transaction is open …
  await waitFor('the other aggregate', () => broker.messages.some((m) => m.id === y1));
  // … and with the event that came after it published, x2 is still held back.
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(broker.messages.map((m) => m.id)).toEqual([y1]);

  await early.query('COMMIT');
  await waitFor('both events of x', () => broker.messages.length === 3);
  expect(broker.messages.filter((m) => m.aggregateId === x).map((m) => m.id)).toEqual([x1, x2]);
});

it('an open transaction that rolls back releases what it held back, and skips nothing', async () => {
  const outbox = createOutbox({ schema: t.schema });
  const x = randomUUID();
  const open = await client();
  await open.query('BEGIN');
  await outbox.enqueue(open, lesson(x));
  const [x2] = await t.db.transaction((tx) => outbox.enqueue(tx, lesson(x)));

  const broker = new MemoryBroker();
  const d = createDispatcher({ db: t.db, schema: t.schema, broker });
  dispatchers.push(d);
  expect(await d.drain()).toBe(0);
  await open.query('ROLLBACK');
  expect(await d.drain()).toBe(1);
  expect(broker.messages.map((m) => m.id)).toEqual([x2]);
});

it('writers are never blocked by each other: two open transactions write the same aggregate', async () => {
  const outbox = createOutbox({ schema: t.schema });
  const x = randomUUID();
  const a = await client();
  const b = await client();
  await a.query('BEGIN');
  await b.query('BEGIN');
  await a.query("SET LOCAL lock_timeout = '2s'");
  await b.query("SET LOCAL lock_timeout = '2s'");
  const [first] = await outbox.enqueue(a, lesson(x));
  const [second] = await outbox.enqueue(b, lesson(x));
  await b.query('COMMIT');
  await a.query('COMMIT');
  const broker = new MemoryBroker();
  const d = createDispatcher({ db: t.db, schema: t.schema, broker });
  dispatchers.push(d);
  expect(await d.drain()).toBe(2);
  expect(broker.messages.map((m) => m.id)).toEqual([first, second]);
});
