/**
 * A running dispatcher publishes what `dead retry` puts back as soon as the retry has
 * committed: the retry moves the write sequence after its commit, so the write probe
 * wakes the dispatcher for rows it can see. (Moved before the commit, the probe sent it
 * to claim rows not yet visible, and only its full look every 30 s found them.)
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { retryDeadLetters } from '../src/admin/dead-letters.js';
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
  t = await createPgTestSchema('retry_wake');
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
