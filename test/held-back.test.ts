/**
 * An aggregate whose earlier event another claim holds (another dispatcher's, frozen
 * mid-batch, or during a handover) holds back its own later events and no other
 * aggregate's, however many of them wait: a batch filled with them goes on after
 * itself instead of claiming the same rows again until that claim ends.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import {
  createDispatcher,
  createOutbox,
  type Database,
  type Dispatcher,
  LessonPublished,
  MemoryBroker,
} from '../src/index.js';
import { createPgTestSchema, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;
let dispatcher: Dispatcher | undefined;
/** Ends the other claim (also after a failed assertion, so the schema can be dropped). */
let releaseHeld: (() => Promise<void>) | undefined;

beforeEach(async () => {
  t = await createPgTestSchema('held');
});

afterEach(async () => {
  await releaseHeld?.();
  releaseHeld = undefined;
  await dispatcher?.stop();
  await t.drop();
});

const lesson = (lessonId: string, n: number) =>
  LessonPublished.create({
    lesson_id: lessonId,
    author_id: randomUUID(),
    title: `part ${n}`,
    published_at: '2026-12-05T09:30:00Z',
  });

/**
 * 30 events of one lesson, then one event each of 40 others; the first lesson's first
 * event locked by another transaction (as another dispatcher's claim holds it) until
 * `release()`, which then deletes it, as that claim's commit would.
 */
async function heldLesson() {
  const outbox = createOutbox({ schema: t.schema });
  const held = randomUUID();
  const heldIds = await t.db.transaction((tx) =>
    outbox.enqueue(
      tx,
      Array.from({ length: 30 }, (_, n) => lesson(held, n)),
    ),
  );
  const otherIds = await t.db.transaction((tx) =>
    outbox.enqueue(
      tx,
      Array.from({ length: 40 }, (_, n) => lesson(randomUUID(), n)),
    ),
  );
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let locked!: () => void;
  const lockTaken = new Promise<void>((resolve) => {
    locked = resolve;
  });
  const otherClaim = t.db.transaction(async (tx) => {
    await tx.query(`SELECT seq FROM "${t.schema}".outbox WHERE id = $1::uuid FOR UPDATE`, [
      heldIds[0],
    ]);
    locked();
    await released;
    await tx.query(`DELETE FROM "${t.schema}".outbox WHERE id = $1::uuid`, [heldIds[0]]);
  });
  await lockTaken;
  releaseHeld = async () => {
    release();
    await otherClaim;
  };
  return { heldIds, otherIds, release: releaseHeld };
}

it('a running dispatcher publishes the other aggregates while a batch’s worth of one waits behind another claim, and does not spin', async () => {
  const { heldIds, otherIds, release } = await heldLesson();
  const broker = new MemoryBroker();
  let transactions = 0;
  const db: Database = {
    ...t.db,
    transaction(fn, options) {
      transactions++;
      return t.db.transaction(fn, options);
    },
  };
  // Batches of 5: the 29 held-back events fill the first five batches from the start.
  dispatcher = createDispatcher({ db, schema: t.schema, broker, batchSize: 5, logger: false });
  await dispatcher.start();
  await waitFor('the other lessons’ events', () => broker.messages.length === otherIds.length, {
    timeoutMs: 10_000,
  });
  expect(new Set(broker.messages.map((m) => m.id))).toEqual(new Set(otherIds));
  // Nothing more to do while the other claim lasts: the dispatcher looks again now and
  // then (its looks slow to the 1 s poll interval), not in a loop.
  const before = transactions;
  await new Promise((resolve) => setTimeout(resolve, 2000));
  // (About 65 here; in a loop, about 1,900.)
  expect(transactions - before).toBeLessThan(200);
  expect(broker.messages).toHaveLength(otherIds.length);
  await release();
  await waitFor(
    'the held lesson’s later events',
    () => broker.messages.length === otherIds.length + heldIds.length - 1,
    { timeoutMs: 10_000 },
  );
  // In order, after the other claim's end.
  expect(broker.messages.slice(otherIds.length).map((m) => m.id)).toEqual(heldIds.slice(1));
});

it('drain() publishes the other aggregates while a batch’s worth of one waits behind another claim', async () => {
  const { heldIds, otherIds, release } = await heldLesson();
  const broker = new MemoryBroker();
  dispatcher = createDispatcher({
    db: t.db,
    schema: t.schema,
    broker,
    batchSize: 5,
    logger: false,
  });
  expect(await dispatcher.drain()).toBe(otherIds.length);
  expect(new Set(broker.messages.map((m) => m.id))).toEqual(new Set(otherIds));
  await release();
  expect(await dispatcher.drain()).toBe(heldIds.length - 1);
  expect(broker.messages.slice(otherIds.length).map((m) => m.id)).toEqual(heldIds.slice(1));
});
