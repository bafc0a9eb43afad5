/**
 * The operator's filters take ids as text: a consumer's event id is any text, and a
 * search is whatever was typed. Each id is one value, whatever it holds (a comma, a
 * brace, a quote), on the real server.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  listConsumerDeadLetters,
  retryConsumerDeadLetters,
  showConsumerDeadLetters,
} from '../src/admin/consumer-dead-letters.js';
import { listDeadLetters } from '../src/admin/dead-letters.js';
import { searchEvents } from '../src/admin/search.js';
import { createPgTestSchema, type TestSchema } from './helpers/db.js';

let t: TestSchema;
beforeAll(async () => {
  t = await createPgTestSchema('admin_filters');
  for (const eventId of ['inv-7,line-2', 'line-2', 'inv-7', 'quote"d', 'brace}']) {
    await t.db.query(
      `INSERT INTO "${t.schema}".consumer_dead_letter
         (consumer, event_id, event_type, aggregate_id, origin, headers, body, attempts, last_error)
       VALUES ('grades', $1, 'quiz-submitted', 'quiz-1', 'test', '{}', '{}', 5, 'handler failed')`,
      [eventId],
    );
  }
});
afterAll(async () => {
  await t?.drop();
});

const ids = (rows: readonly { eventId: string | null }[]) => rows.map((row) => row.eventId).sort();

it('finds an event id holding a comma, a quote or a brace as itself, and nothing else', async () => {
  for (const eventId of ['inv-7,line-2', 'quote"d', 'brace}']) {
    expect(ids(await listConsumerDeadLetters(t.db, t.schema, { ids: [eventId] }))).toEqual([
      eventId,
    ]);
    expect(ids(await showConsumerDeadLetters(t.db, t.schema, eventId))).toEqual([eventId]);
    const found = await searchEvents(t.db, t.schema, eventId);
    expect(ids(found.consumerDeadLetters)).toEqual([eventId]);
  }
  // Typed into the search box: no malformed array literal, and no outbox dead letter
  // by an id that is none.
  for (const typed of ['a"b', '}', '{', 'a\\b', 'not-a-uuid,{}']) {
    const found = await searchEvents(t.db, t.schema, typed);
    expect(found.consumerDeadLetters).toEqual([]);
    expect(await listDeadLetters(t.db, t.schema, { aggregateId: typed })).toEqual([]);
  }
});

it('a retry of "nothing,<id>" retries no dead letter: it is one id, which none has', async () => {
  const retried = await retryConsumerDeadLetters(t.db, t.schema, {
    consumer: 'grades',
    ids: ['nothing,line-2'],
  });
  expect(retried).toEqual([]);
  const { rows } = await t.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM "${t.schema}".consumer_dead_letter WHERE retry_requested_at IS NOT NULL`,
  );
  expect(rows[0]?.n).toBe(0);
});
