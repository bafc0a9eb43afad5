/**
 * A running dispatcher publishes what becomes claimable without a new event within
 * seconds, not at its full look every 30 s:
 * - what `dead retry` puts back, as soon as the retry has committed: the retry moves the
 *   write sequence after its commit, so the write probe wakes the dispatcher for rows it
 *   can see. (Moved before the commit, the probe sent it to claim rows not yet visible.)
 * - an aggregate's later events held back while its earlier event was in another claim
 *   (another dispatcher's, during a handover): that claim's end moves no sequence, so the
 *   dispatcher looks again by itself soon.
 * - an event an open writing transaction held back, once it commits: the looks for it
 *   start again from the shortest after each claim that found events, whatever length
 *   they grew to while an earlier writer stayed open.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { retryDeadLetters } from '../src/admin/dead-letters.js';
import { readPartitionCount } from '../src/db/migrate.js';
import {
  createDispatcher,
  createOutbox,
  type Dispatcher,
  LessonPublished,
  MemoryBroker,
} from '../src/index.js';
import { createPgTestSchema, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;
let dispatcher: Dispatcher | undefined;

beforeEach(async () => {
  t = await createPgTestSchema('wake');
});

afterEach(async () => {
  await dispatcher?.stop();
  await t.drop();
});

it('publishes retried dead letters within seconds, not at the 30 s full look', async () => {
  let refuse = true;
  const broker = new MemoryBroker({
    onPublish: () => (refuse ? { ok: false, error: 'refused', permanent: true } : undefined),
  });
  dispatcher = createDispatcher({
    db: t.db,
    schema: t.schema,
    broker,
    maxAttempts: 1,
    logger: false,
  });
  await dispatcher.start();
  const outbox = createOutbox({ schema: t.schema });
  const lessonId = randomUUID();
  const ids = await t.db.transaction((tx) =>
    outbox.enqueue(
      tx,
      Array.from({ length: 20 }, (_, n) =>
        LessonPublished.create({
          lesson_id: lessonId,
          author_id: randomUUID(),
          title: `part ${n}`,
          published_at: '2026-11-27T09:30:00Z',
        }),
      ),
    ),
  );
  await waitFor('20 dead letters', async () => {
    const { rows } = await t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${t.schema}".outbox_dead_letter`,
    );
    return rows[0]?.n === 20;
  });
  refuse = false;
  // Idle long enough for the write probe to slow to its longest interval.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  expect((await retryDeadLetters(t.db, t.schema, { ids })).sort()).toEqual([...ids].sort());
  await waitFor('the retried events at the broker', () => broker.messages.length === 20, {
    timeoutMs: 10_000,
  });
  expect(broker.messages.map((m) => m.id)).toEqual(ids);
});

it("publishes an aggregate's later events within seconds of another claim on its first ending", async () => {
  const outbox = createOutbox({ schema: t.schema });
  const lessonId = randomUUID();
  const ids = await t.db.transaction((tx) =>
    outbox.enqueue(
      tx,
      [1, 2, 3].map((n) =>
        LessonPublished.create({
          lesson_id: lessonId,
          author_id: randomUUID(),
          title: `part ${n}`,
          published_at: '2026-12-03T09:30:00Z',
        }),
      ),
    ),
  );
  const broker = new MemoryBroker();
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let locked!: () => void;
  const lockTaken = new Promise<void>((resolve) => {
    locked = resolve;
  });
  // Another dispatcher's claim of the first event: it holds the row, publishes it
  // elsewhere, and deletes it when it commits.
  const otherClaim = t.db.transaction(async (tx) => {
    await tx.query(`SELECT seq FROM "${t.schema}".outbox WHERE id = $1::uuid FOR UPDATE`, [ids[0]]);
    locked();
    await released;
    await tx.query(`DELETE FROM "${t.schema}".outbox WHERE id = $1::uuid`, [ids[0]]);
  });
  await lockTaken;
  dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker, logger: false });
  await dispatcher.start();
  // The dispatcher has looked, found the first event claimed and held back the rest.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  expect(broker.messages).toEqual([]);
  release();
  await otherClaim;
  const endedAt = Date.now();
  await waitFor('the later events at the broker', () => broker.messages.length === 2, {
    timeoutMs: 20_000,
  });
  expect(broker.messages.map((m) => m.id)).toEqual(ids.slice(1));
  // At most the poll interval (1 s by default) after the other claim ended, and some slack.
  expect(Date.now() - endedAt).toBeLessThan(3000);
});

it('looks again soon for an open writer after a claim found events, however long an earlier writer stayed open', async () => {
  const partitions = await readPartitionCount(t.db, t.schema);
  const partitionOf = async (aggregateId: string) => {
    const { rows } = await t.db.query<{ p: number }>(
      'SELECT ((hashtextextended($1, 0) & 2147483647) % $2)::int AS p',
      [aggregateId, partitions],
    );
    return rows[0]?.p;
  };
  const lesson = (lessonId: string) =>
    LessonPublished.create({
      lesson_id: lessonId,
      author_id: randomUUID(),
      title: 'part 1',
      published_at: '2026-12-03T09:30:00Z',
    });
  const broker = new MemoryBroker();
  // A long poll interval lets the quick looks for an open writer grow long.
  dispatcher = createDispatcher({
    db: t.db,
    schema: t.schema,
    broker,
    pollIntervalMs: 10_000,
    logger: false,
  });
  await dispatcher.start();
  const outbox = createOutbox({ schema: t.schema });
  const slowLesson = randomUUID();
  let quickLesson = randomUUID();
  while ((await partitionOf(quickLesson)) === (await partitionOf(slowLesson))) {
    quickLesson = randomUUID();
  }
  const write = async (lessonId: string, open?: Promise<void>) =>
    t.db.transaction(async (tx) => {
      const ids = await outbox.enqueue(tx, [lesson(lessonId)]);
      await open;
      return ids;
    });
  let commitSlow!: () => void;
  const slowOpen = new Promise<void>((resolve) => {
    commitSlow = resolve;
  });
  // A writer that stays open 3 s: the looks for it have grown to seconds apart.
  const slow = write(slowLesson, slowOpen);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  // Another partition's event: the dispatcher publishes it while the writer is still open.
  const [quickId] = await write(quickLesson);
  await waitFor('the other partition’s event', () => broker.messages.length === 1, {
    timeoutMs: 5000,
  });
  expect(broker.messages[0]?.id).toBe(quickId);
  await new Promise((resolve) => setTimeout(resolve, 200));
  commitSlow();
  const [slowId] = await slow;
  const committedAt = Date.now();
  await waitFor('the long writer’s event', () => broker.messages.length === 2, {
    timeoutMs: 15_000,
  });
  expect(broker.messages[1]?.id).toBe(slowId);
  // The looks started again from the shortest after the claim that found an event: about
  // 0.5 s after the commit at most, not the seconds they had grown to before it.
  expect(Date.now() - committedAt).toBeLessThan(2000);
});
