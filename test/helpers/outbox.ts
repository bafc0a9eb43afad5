/**
 * Events and outbox rows as the tests use them: payloads the catalogue accepts, with fresh
 * ids; one event enqueued in a transaction of its own; the ids the outbox holds.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { createOutbox, defineEvent, LessonPublished } from '../../src/index.js';
import type { TestSchema } from './db.js';

/** A lesson-published payload with fresh ids. */
export const lesson = (title = 'Photosynthesis') => ({
  lesson_id: randomUUID(),
  author_id: randomUUID(),
  title,
  published_at: '2024-05-01T09:30:00Z',
});

/** A quiz-submitted payload with fresh ids. */
export const quiz = (score = 12.5) => ({
  quiz_id: randomUUID(),
  student_id: randomUUID(),
  score,
  submitted_at: '2024-05-01T10:00:00Z',
});

/** Enqueues one lesson-published event in a transaction of its own. */
export async function enqueueLesson(t: TestSchema): Promise<void> {
  const outbox = createOutbox({ schema: t.schema });
  await t.db.transaction((tx) => outbox.enqueue(tx, LessonPublished.create(lesson())));
}

/** The ids of the events in the outbox, in the order they were written. */
export async function outboxIds(t: TestSchema): Promise<string[]> {
  const { rows } = await t.db.query<{ id: string }>(
    `SELECT id::text AS id FROM "${t.schema}".outbox ORDER BY seq`,
  );
  return rows.map((row) => row.id);
}

/** A test event whose payload says which aggregate (`walk`) and which step (`n`) it is. */
export const StepTaken = defineEvent({
  type: 'step-taken',
  aggregateType: 'walk',
  schema: z.object({ walk: z.string(), n: z.number().int() }),
  aggregateId: (payload) => payload.walk,
});

/**
 * Lesson events numbered `from` … `to - 1` (payload `{ n }`), for aggregates
 * `<prefix>-<n mod aggregates>`, written in `n` order by one statement: a reader can then
 * check each aggregate's events arrived complete and in order.
 */
export async function enqueueNumbered(
  t: TestSchema,
  prefix: string,
  from: number,
  to: number,
  aggregates = 3,
): Promise<void> {
  const ns = Array.from({ length: to - from }, (_, i) => from + i);
  await t.db.query(
    `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
     SELECT 'lesson', $1 || '-' || (n % $2), 'lesson-published', json_build_object('n', n)
     FROM unnest($3::int[]) AS n ORDER BY n`,
    [prefix, aggregates, ns],
  );
}
