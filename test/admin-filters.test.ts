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
import {
  discardDeadLetters,
  groupDeadLetters,
  listDeadLetters,
} from '../src/admin/dead-letters.js';
import { searchEvents } from '../src/admin/search.js';
import { registerSecret, scrubSecrets } from '../src/common/secrets.js';
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

it('a group whose error holds a secret, given back as shown (masked), is that group', async () => {
  // The broker's password, as this process knows it, appears in the error it returned.
  const secret = 'Group-Secret-8d1f';
  registerSecret(secret);
  const error = `ACCESS_REFUSED - login refused for password ${secret}`;
  await t.db.query(
    `INSERT INTO "${t.schema}".outbox_dead_letter
       (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
        occurred_at, attempts, last_error)
     SELECT i, gen_random_uuid(), 'lesson', 'lesson-' || i, 'lesson-published', '{}', '{}', 0,
            now(), 10, CASE WHEN i <= 3 THEN $1 ELSE 'unroutable' END
     FROM generate_series(1, 5) AS i`,
    [error],
  );
  const shown = scrubSecrets(error);
  expect(shown).not.toContain(secret);
  const groups = await groupDeadLetters(t.db, t.schema, { eventType: 'lesson-published' });
  expect(groups.map((group) => group.count).sort()).toEqual([2, 3]);
  // What the console and the CLI print, then send back for the group.
  const group = { eventType: 'lesson-published', error: shown };
  expect(await listDeadLetters(t.db, t.schema, group)).toHaveLength(3);
  expect(await discardDeadLetters(t.db, t.schema, group)).toHaveLength(3);
  expect(await listDeadLetters(t.db, t.schema, {})).toHaveLength(2);
});
