/**
 * The operator's commands on real dead letters: `dead list | show | retry | discard`,
 * `purge`, and `status --json`, run as processes against PostgreSQL. The dead letters are
 * made the way production makes them: a dispatcher whose broker refuses some events.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { outboxStatus } from '../src/admin/status.js';
import { notifyChannel } from '../src/db/identifier.js';
import { statements } from '../src/db/sql/index.js';
import {
  createDispatcher,
  createOutbox,
  type DispatcherOptions,
  defineEvent,
  LessonPublished,
  MemoryBroker,
  type OutboxEvent,
  pgDatabase,
  QuizSubmitted,
  retryDeadLetters,
} from '../src/index.js';
import { killChildren, runCli } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;
const QUIZ_7 = randomUUID();

beforeEach(async () => {
  t = await createPgTestSchema('admin');
});

afterEach(async () => {
  await killChildren();
  await t.drop();
});

const lesson = (lessonId: string, title: string) =>
  LessonPublished.create({
    lesson_id: lessonId,
    author_id: randomUUID(),
    title,
    published_at: '2026-11-27T09:30:00Z',
  });
const quiz = (quizId: string) =>
  QuizSubmitted.create({
    quiz_id: quizId,
    student_id: randomUUID(),
    score: 7,
    submitted_at: '2026-11-27T10:00:00Z',
  });

async function enqueue(events: OutboxEvent[]): Promise<string[]> {
  const outbox = createOutbox({ schema: t.schema });
  return t.db.transaction(async (tx) => outbox.enqueue(tx, events));
}

/** Drains once with a broker that refuses the events `refuse` picks; one attempt each. */
async function drain(
  refuse: (id: string) => boolean,
  options: Partial<DispatcherOptions> = {},
): Promise<MemoryBroker> {
  const broker = new MemoryBroker({
    onPublish: (message) =>
      refuse(message.id) ? { ok: false, error: 'refused by test', permanent: true } : undefined,
  });
  const dispatcher = createDispatcher({
    db: t.db,
    schema: t.schema,
    broker,
    maxAttempts: 1,
    ...options,
  });
  await dispatcher.drain();
  await dispatcher.stop();
  return broker;
}

const cli = (...args: string[]) =>
  runCli([...args, '--schema', t.schema], { env: { DATABASE_URL: PG_URL } });

async function statusJson() {
  const result = await cli('status', '--json');
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as {
    dispatchers: { pid: number; partitions: number[]; silentSeconds: number | null }[];
    pending: number;
    oldestAgeSeconds: number;
    deadLetters: number;
    pendingByEventType: Record<string, { pending: number; oldestAgeSeconds: number }>;
    pendingByPartition: Record<string, { pending: number; oldestAgeSeconds: number }>;
    unownedPartitions: number[];
    producerNotify: boolean;
    deadLettersByEventType: Record<string, number>;
  };
}

describe('dead letters', () => {
  it('shows a dead letter larger than a pipe holds whole through one', async () => {
    // Past what the pipe holds (64 KiB to a shell pipe) the rest waited in the stream when
    // the CLI exited: `| jq` read an unfinished document.
    const Stored = defineEvent({
      type: 'attachment-stored',
      aggregateType: 'attachment',
      schema: z.object({ id: z.string(), body: z.string() }),
      aggregateId: (p) => p.id,
    });
    const [bigId] = await enqueue([
      Stored.create({ id: randomUUID(), body: 'x'.repeat(3_000_000) }),
    ]);
    await drain((id) => id === bigId);
    const big = await cli('dead', 'show', bigId as string);
    expect(big.code, big.stderr).toBe(0);
    expect(big.stdout.length).toBeGreaterThan(3_000_000);
    expect((JSON.parse(big.stdout) as { payload: { body: string } }).payload.body).toHaveLength(
      3_000_000,
    );
  });

  it('lists, shows and filters them', async () => {
    const [lessonId, quizId] = await enqueue([lesson(randomUUID(), 'Fractions'), quiz(QUIZ_7)]);
    await drain(() => true);

    const list = await cli('dead', 'list', '--json');
    expect(list.code, list.stderr).toBe(0);
    const dead = JSON.parse(list.stdout) as { id: string; lastError: string; attempts: number }[];
    expect(dead.map((d) => d.id).sort()).toEqual([lessonId, quizId].sort());
    expect(dead[0]).toMatchObject({ lastError: 'refused by test', attempts: 1 });

    const quizzes = JSON.parse(
      (await cli('dead', 'list', '--json', '--event-type', 'quiz-submitted')).stdout,
    ) as { id: string }[];
    expect(quizzes.map((d) => d.id)).toEqual([quizId]);
    const ofAggregate = JSON.parse(
      (await cli('dead', 'list', '--json', '--aggregate-id', QUIZ_7)).stdout,
    ) as { id: string }[];
    expect(ofAggregate.map((d) => d.id)).toEqual([quizId]);
    const future = JSON.parse(
      (await cli('dead', 'list', '--json', '--since', '2999-01-01')).stdout,
    );
    expect(future).toEqual([]);
    const lastHour = JSON.parse((await cli('dead', 'list', '--json', '--since', '1h')).stdout);
    expect(lastHour).toHaveLength(2);

    const show = await cli('dead', 'show', lessonId as string);
    expect(show.code, show.stderr).toBe(0);
    const detail = JSON.parse(show.stdout) as { payload: unknown; eventType: string };
    expect(detail.eventType).toBe('lesson-published');
    // The payload as the JSON it is, not a string holding it.
    expect(detail.payload).toMatchObject({ title: 'Fractions' });

    const missing = await cli('dead', 'show', randomUUID());
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no dead letter');

    const status = await statusJson();
    expect(status.deadLetters).toBe(2);
    expect(status.deadLettersByEventType).toEqual({ 'lesson-published': 1, 'quiz-submitted': 1 });
  });

  it('groups them by event type and error, and filters by the error (dead groups, --error, --error-contains)', async () => {
    const quizId = randomUUID();
    const ids = await enqueue([quiz(quizId), lesson(randomUUID(), 'a'), quiz(quizId)]);
    await drain(() => true);
    await enqueue([lesson(randomUUID(), 'b')]);
    const other = new MemoryBroker({
      onPublish: () => ({ ok: false, error: 'Topic Not Found: lessons', permanent: true }),
    });
    const dispatcher = createDispatcher({
      db: t.db,
      schema: t.schema,
      broker: other,
      maxAttempts: 1,
    });
    await dispatcher.drain();
    await dispatcher.stop();

    const groups = await cli('dead', 'groups', '--json');
    expect(groups.code, groups.stderr).toBe(0);
    expect(JSON.parse(groups.stdout)).toEqual([
      expect.objectContaining({ eventType: 'quiz-submitted', error: 'refused by test', count: 2 }),
      expect.objectContaining({
        eventType: 'lesson-published',
        error: 'refused by test',
        count: 1,
      }),
      expect.objectContaining({
        eventType: 'lesson-published',
        error: 'Topic Not Found: lessons',
        count: 1,
      }),
    ]);
    const text = await cli('dead', 'groups', '--event-type', 'quiz-submitted');
    expect(text.stdout).toMatch(/^2 {2}quiz-submitted {2}\S+ {2}\S+ {2}refused by test$/m);
    expect(text.stderr).not.toContain('take it from --json');

    const notFound = JSON.parse(
      (await cli('dead', 'list', '--json', '--error-contains', 'topic not')).stdout,
    ) as { eventType: string }[];
    expect(notFound.map((d) => d.eventType)).toEqual(['lesson-published']);
    const retried = await cli(
      'dead',
      'retry',
      '--event-type',
      'quiz-submitted',
      '--error',
      'refused by test',
      '--json',
    );
    expect(retried.code, retried.stderr).toBe(0);
    expect((JSON.parse(retried.stdout) as string[]).sort()).toEqual([ids[0], ids[2]].sort());
    const refused = await cli('dead', 'list', '--consumer', 'c', '--error-contains', 'x');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('error-contains: ');
    // Empty text is contained in every error: refused, not read as a filter on all of them.
    const before = (await statusJson()).deadLetters;
    for (const flag of ['--error-contains', '--error', '--event-type', '--aggregate-id']) {
      const empty = await cli('dead', 'discard', flag, '');
      expect(empty.code, flag).toBe(2);
      expect(empty.stderr).toContain(`${flag.slice(2)}: expected text of 1 to 8000 characters`);
    }
    expect((await statusJson()).deadLetters).toBe(before);
  });

  it('retry republishes the event and status shows it gone from the dead letters', async () => {
    const [id] = await enqueue([lesson(randomUUID(), 'Decimals')]);
    await drain(() => true);
    expect((await statusJson()).deadLetters).toBe(1);

    const retry = await cli('dead', 'retry', id as string);
    expect(retry.code, retry.stderr).toBe(0);
    expect(retry.stdout.trim()).toBe(id);
    const status = await statusJson();
    expect(status.deadLetters).toBe(0);
    expect(status.pending).toBe(1);
    const { rows } = await t.db.query<{ attempts: number; last_error: string | null }>(
      `SELECT attempts, last_error FROM "${t.schema}".outbox`,
    );
    expect(rows).toEqual([{ attempts: 0, last_error: null }]);

    const broker = await drain(() => false);
    expect(broker.messages.map((m) => m.id)).toEqual([id]);
    expect(await statusJson()).toMatchObject({ pending: 0, deadLetters: 0 });
  });

  it('retry of two dead letters of one id moves the earlier and leaves the later', async () => {
    const [twice] = await enqueue([lesson(randomUUID(), 'Ratios')]);
    await drain(() => true);
    // The id written again once the first was dead-lettered, and dead-lettered too: a
    // retry that matched both failed on the outbox's key, and every other with them.
    await enqueue([{ ...lesson(randomUUID(), 'Ratios, again'), id: twice as string }]);
    const [other] = await enqueue([quiz(randomUUID())]);
    await drain(() => true);
    expect((await statusJson()).deadLetters).toBe(3);

    const all = await cli('dead', 'retry', '--all');
    expect(all.code).toBe(1);
    expect(all.stdout.trim().split('\n').sort()).toEqual([twice, other].sort());
    expect(all.stderr).toContain(
      `left as dead letters, another event having the same id, in the outbox or as an earlier dead letter (retry once that one is published, or discard): ${twice}`,
    );
    expect(await statusJson()).toMatchObject({ pending: 2, deadLetters: 1 });
    const { rows } = await t.db.query<{ title: string }>(
      `SELECT payload->>'title' AS title FROM "${t.schema}".outbox WHERE id = $1`,
      [twice],
    );
    expect(rows).toEqual([{ title: 'Ratios' }]);
    await drain(() => false);
    expect((await cli('dead', 'retry', twice as string)).code).toBe(0);
    await drain(() => false);
    expect(await statusJson()).toMatchObject({ pending: 0, deadLetters: 0 });
  });

  it('retry leaves a dead letter whose id is back in the outbox, and retries the others', async () => {
    const [taken, other] = await enqueue([lesson(randomUUID(), 'Ratios'), quiz(randomUUID())]);
    await drain(() => true);
    // A new event written with the dead letter's id: it is not in the outbox, so enqueue
    // takes it. Before, every retry that matched the dead letter failed on the id's key.
    const again = lesson(randomUUID(), 'Ratios, again');
    await enqueue([{ ...again, id: taken as string }]);

    const all = await cli('dead', 'retry', '--all');
    expect(all.code).toBe(1);
    expect(all.stdout.trim()).toBe(other);
    expect(all.stderr).toContain(
      `left as dead letters, another event having the same id, in the outbox or as an earlier dead letter (retry once that one is published, or discard): ${taken}`,
    );
    const byId = await cli('dead', 'retry', taken as string);
    expect(byId.code).toBe(1);
    expect(byId.stderr).toContain(
      `as an earlier dead letter (retry once that one is published, or discard): ${taken}`,
    );
    expect(byId.stderr).not.toContain('not among the dead letters');
    expect(await statusJson()).toMatchObject({ pending: 2, deadLetters: 1 });
    // Once the new event is published, the dead letter retries like any other.
    await drain(() => false);
    expect((await cli('dead', 'retry', taken as string)).code).toBe(0);
    expect(await statusJson()).toMatchObject({ pending: 1, deadLetters: 0 });
    await drain(() => false);
  });

  it("retry under 'hold' publishes the retried event before the later ones it held back", async () => {
    const aggregate = randomUUID();
    const ids = await enqueue([
      lesson(aggregate, 'part 1'),
      lesson(aggregate, 'part 2'),
      lesson(aggregate, 'part 3'),
    ]);
    const first = ids[0] as string;
    await drain((id) => id === first, { onDeadLetter: 'hold' });
    // The two later events wait behind the dead letter.
    expect(await statusJson()).toMatchObject({ pending: 2, deadLetters: 1 });

    expect((await cli('dead', 'retry', first)).code).toBe(0);
    const broker = await drain(() => false, { onDeadLetter: 'hold' });
    expect(broker.messages.map((m) => m.id)).toEqual(ids);
  });

  it('retry moves a selection larger than a batch in batches, lowest seq first, every one', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const ids = await enqueue(
      [1, 2, 3, 4, 5].flatMap((n) => [lesson(a, `a ${n}`), lesson(b, `b ${n}`)]),
    );
    await drain(() => true);
    const batches: number[] = [];
    const counting = {
      ...t.db,
      transaction: <T>(fn: Parameters<typeof t.db.transaction<T>>[0]) =>
        t.db.transaction<T>(async (tx) => {
          batches.push(batches.length);
          return fn(tx);
        }),
    };
    const retried = await retryDeadLetters(counting, t.schema, {}, { all: true, batchSize: 3 });
    expect(retried).toEqual(ids);
    // 10 dead letters, 3 at a time: 3, 3, 3, 1.
    expect(batches).toHaveLength(4);
    const broker = await drain(() => false);
    expect(broker.messages.map((m) => m.id)).toEqual(ids);
  });

  it('retry takes each dead letter once: one dead-lettered again at once is not taken again', async () => {
    const ids = await enqueue([1, 2, 3, 4].map((n) => lesson(randomUUID(), `part ${n}`)));
    await drain(() => true);
    // Each batch is published and refused again before the next (as an event that can
    // never be published, or maxAttempts 1): back among the dead letters, under its seq.
    const again = {
      ...t.db,
      transaction: <T>(fn: Parameters<typeof t.db.transaction<T>>[0]) =>
        t.db.transaction<T>(fn).then(async (result) => {
          await drain(() => true);
          return result;
        }),
    };
    const retried = await retryDeadLetters(again, t.schema, {}, { all: true, batchSize: 2 });
    expect(retried).toEqual(ids);
    expect(await statusJson()).toMatchObject({ pending: 0, deadLetters: 4 });
  });

  it("purge under 'hold' releases the events held behind a purged dead letter at once", async () => {
    const aggregate = randomUUID();
    const ids = await enqueue([lesson(aggregate, 'part 1'), lesson(aggregate, 'part 2')]);
    const first = ids[0] as string;
    const broker = new MemoryBroker({
      onPublish: (message) =>
        message.id === first ? { ok: false, error: 'refused by test', permanent: true } : undefined,
    });
    const dispatcher = createDispatcher({
      db: t.db,
      schema: t.schema,
      broker,
      maxAttempts: 1,
      onDeadLetter: 'hold',
    });
    await dispatcher.start();
    try {
      await waitFor('dead-lettered', async () => (await statusJson()).deadLetters === 1);
      // Idle now: its next full look is 30 s away.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(broker.messages).toEqual([]);
      await t.db.query(
        `UPDATE "${t.schema}".outbox_dead_letter SET dead_at = now() - interval '2 minutes'`,
      );
      const purge = await cli('purge', '--older-than', '1m');
      expect(purge.code, purge.stderr).toBe(0);
      await waitFor('the held event published', () => broker.messages.length === 1, {
        timeoutMs: 5_000,
      });
      expect(broker.messages.map((m) => m.id)).toEqual([ids[1]]);
    } finally {
      await dispatcher.stop();
    }
  });

  it('discard deletes only what the filter names; a bare retry or discard is refused', async () => {
    const [lessonId, quizId] = await enqueue([lesson(randomUUID(), 'Angles'), quiz(randomUUID())]);
    await drain(() => true);

    for (const action of ['retry', 'discard']) {
      const bare = await cli('dead', action);
      expect(bare.code).toBe(2);
      expect(bare.stderr).toContain('--all');
      const both = await cli('dead', action, '--all', '--event-type', 'quiz-submitted');
      expect(both.code).toBe(2);
      expect(both.stderr).toContain('all');
    }
    const badId = await cli('dead', 'retry', 'not-a-uuid');
    expect(badId.code).toBe(2);
    expect(badId.stderr).toContain('not-a-uuid');
    const badTime = await cli('dead', 'list', '--since', 'yesterday');
    expect(badTime.code).toBe(2);
    expect(badTime.stderr).toContain('since');
    expect((await statusJson()).deadLetters).toBe(2);

    // Ids and filters narrow each other: a dead letter the filter leaves out is untouched,
    // and the message does not claim it is no dead letter.
    const narrowed = await cli(
      'dead',
      'discard',
      lessonId as string,
      '--event-type',
      'quiz-submitted',
    );
    expect(narrowed.code).toBe(1);
    expect(narrowed.stderr).toContain(`not among the dead letters the filters select: ${lessonId}`);
    expect((await statusJson()).deadLetters).toBe(2);

    const discard = await cli('dead', 'discard', '--event-type', 'quiz-submitted');
    expect(discard.code, discard.stderr).toBe(0);
    expect(discard.stdout.trim()).toBe(quizId);
    const left = JSON.parse((await cli('dead', 'list', '--json')).stdout) as { id: string }[];
    expect(left.map((d) => d.id)).toEqual([lessonId]);

    // An id that is not a dead letter: the rest is done, and the exit code says so.
    const partly = await cli('dead', 'discard', lessonId as string, quizId as string);
    expect(partly.code).toBe(1);
    expect(partly.stderr).toContain(quizId);
    expect((await statusJson()).deadLetters).toBe(0);
  });

  it('purge deletes the dead letters parked before the given time, and only those', async () => {
    await enqueue([lesson(randomUUID(), 'Old'), lesson(randomUUID(), 'New')]);
    await drain(() => true);
    await t.db.query(
      `UPDATE "${t.schema}".outbox_dead_letter SET dead_at = now() - interval '40 days'
       WHERE payload->>'title' = 'Old'`,
    );

    const none = await cli('purge');
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('older-than');
    const purge = await cli('purge', '--older-than', '30d');
    expect(purge.code, purge.stderr).toBe(0);
    expect(purge.stdout).toContain('1 dead letter purged');
    const left = JSON.parse((await cli('dead', 'list', '--json')).stdout) as { id: string }[];
    expect(left).toHaveLength(1);
  });

  it('acts on a group whose event type and error are as long as a dead letter holds them', async () => {
    const type = `lesson-${'x'.repeat(1500)}`;
    const error = `refused: ${'y'.repeat(1990)}`;
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_dead_letter
         (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
          occurred_at, attempts, last_error)
       VALUES (1, gen_random_uuid(), 'lesson', 'lesson-1', $1, '{}', '{}', 0, now(), 10, $2)`,
      [type, error],
    );
    const discard = await cli('dead', 'discard', '--event-type', type, '--error', error);
    expect(discard.code, discard.stderr).toBe(0);
    expect((await statusJson()).deadLetters).toBe(0);
  });

  it('a writing command on a read-only server says what to change', async () => {
    const discard = await runCli(['dead', 'discard', '--all', '--schema', t.schema], {
      env: { DATABASE_URL: PG_URL, PGOPTIONS: '-c default_transaction_read_only=on' },
    });
    expect(discard.code).toBe(1);
    expect(discard.stderr).toMatch(
      /read-only transaction \(the server takes no writes: a standby, or default_transaction_read_only is on; point the database URL at the primary, or add target_session_attrs=read-write to it\)\n$/,
    );
  });

  it('shows no RFC 3339 time for an occurred_at RFC 3339 cannot carry (a BC date)', async () => {
    // to_char's year alone dropped the era: "0100-06-01T12:00:00.000000Z" for 100 BC.
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_dead_letter
         (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
          occurred_at, attempts, last_error)
       VALUES (1, gen_random_uuid(), 'lesson', 'lesson-bc', 'lesson-published', '{}', '{}', 0,
               '0100-06-01 12:00:00+00 BC', 1, 'occurred_at: outside')`,
    );
    const list = await cli('dead', 'list', '--json');
    expect(list.code, list.stderr).toBe(0);
    const [row] = JSON.parse(list.stdout) as { aggregateId: string; occurredAt: string | null }[];
    expect(row).toMatchObject({ aggregateId: 'lesson-bc', occurredAt: null });
  });

  it('finds one dead letter among many through an index, not by reading them all', async () => {
    // As after a broker refused a stream of events for a while.
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox_dead_letter
         (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
          occurred_at, attempts, last_error, dead_at)
       SELECT i, gen_random_uuid(), 'lesson', 'lesson-' || i % 500, 'lesson-published', '{}',
              '{}', 0, now(), 10, 'unroutable: 312 NO_ROUTE', now() - i * interval '1 s'
       FROM generate_series(1, 20000) AS i`,
    );
    await t.db.query(`ANALYZE "${t.schema}".outbox_dead_letter`);
    const { rows } = await t.db.query<{ id: string }>(
      `SELECT id::text AS id FROM "${t.schema}".outbox_dead_letter WHERE seq = 12345`,
    );
    const id = rows[0]?.id as string;
    // The statements of `dead show <id>` and `dead list`, as the CLI and the console send
    // them: on a pool with the server's planner.
    const sql = statements(t.schema);
    const admin = pgDatabase({ connectionString: PG_URL, maxConnections: 1, planner: 'server' });
    const plan = async (text: string, values: unknown[]) => {
      const { rows } = await admin.query<{ 'QUERY PLAN': unknown }>(
        `EXPLAIN (FORMAT JSON) ${text}`,
        values,
      );
      return JSON.stringify(rows[0]?.['QUERY PLAN']);
    };
    const byId = [`{${id}}`, null, null, null, null, null, null, null];
    expect(await plan(sql.deadLetterShow, byId)).toContain(
      '"Index Name":"outbox_dead_letter_id_idx"',
    );
    expect(await plan(sql.deadLetterRetry, [...byId, 5000, '0', '20000'])).toContain(
      '"Index Name":"outbox_dead_letter_id_idx"',
    );
    const all = [null, null, null, null, null, null, null, null];
    expect(await plan(sql.deadLetterList, [...all, 50])).toContain(
      '"Index Name":"outbox_dead_letter_dead_at_idx"',
    );
    await admin.close();
    const shown = await cli('dead', 'show', id);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id, seq: '12345' });
  });
});

describe('status', () => {
  it('splits the backlog by event type and partition', async () => {
    await enqueue([lesson(randomUUID(), 'a'), lesson(randomUUID(), 'b'), quiz(randomUUID())]);
    const status = await statusJson();
    expect(status.pending).toBe(3);
    expect(status.pendingByEventType).toMatchObject({
      'lesson-published': { pending: 2 },
      'quiz-submitted': { pending: 1 },
    });
    // One reference time for every age: the oldest of all is the oldest of the splits.
    const oldest = (shares: Record<string, { oldestAgeSeconds: number }>) =>
      Math.max(...Object.values(shares).map((share) => share.oldestAgeSeconds));
    expect(status.oldestAgeSeconds).toBeGreaterThan(0);
    expect(oldest(status.pendingByPartition)).toBe(status.oldestAgeSeconds);
    expect(oldest(status.pendingByEventType)).toBe(status.oldestAgeSeconds);
    const text = await cli('status');
    expect(text.stdout).toContain('dispatchers: 0 (sharing 64 partitions)');
    // A DBA's extra_float_digits does not round an age: 5,030.1 s showed as 5000.0.
    await t.db.query(
      `UPDATE "${t.schema}".outbox SET occurred_at = now() - interval '5030.1 seconds'`,
    );
    const rounding = await runCli(['status', '--json', '--schema', t.schema], {
      env: { DATABASE_URL: PG_URL, PGOPTIONS: '-c extra_float_digits=-15' },
    });
    expect(rounding.code, rounding.stderr).toBe(0);
    const age = (JSON.parse(rounding.stdout) as { oldestAgeSeconds: number }).oldestAgeSeconds;
    expect(age).toBeGreaterThanOrEqual(5030.1);
    expect(age).toBeLessThan(5060);
    expect(text.stdout).toContain('pending by event type:');
    // The figures line up under the longest event type.
    const rows = text.stdout
      .split('\n')
      .filter((line) => / {2}(lesson-published|quiz-submitted) /.test(line));
    expect(rows).toEqual([
      expect.stringMatching(/^ {2}lesson-published {2}2 pending/),
      expect.stringMatching(/^ {2}quiz-submitted {4}1 pending/),
    ]);
  });
});

describe('status with an infinite occurred_at waiting to be dead-lettered', () => {
  it('status, readiness, the console and the metrics leave it out of the age, and count it', async () => {
    await enqueue([lesson(randomUUID(), 'a'), lesson(randomUUID(), 'b'), quiz(randomUUID())]);
    // Written with plain SQL, as the table contract allows; refused only when claimed.
    await t.db.query(
      `UPDATE "${t.schema}".outbox SET occurred_at = CASE event_type
         WHEN 'quiz-submitted' THEN now() - interval '90 seconds' ELSE 'infinity' END`,
    );
    await t.db.query(
      `UPDATE "${t.schema}".outbox SET occurred_at = '-infinity'
       WHERE seq = (SELECT min(seq) FROM "${t.schema}".outbox)`,
    );
    const status = await statusJson();
    expect(status.pending).toBe(3);
    expect(status.oldestAgeSeconds).toBeGreaterThanOrEqual(90);
    expect(status.oldestAgeSeconds).toBeLessThan(120);
    const sql = statements(t.schema);
    const [readiness] = (await t.db.query<{ oldest_age_s: string }>(sql.outboxOldestAge)).rows;
    expect(Number(readiness?.oldest_age_s)).toBeGreaterThanOrEqual(90);
    const [activity] = (await t.db.query<{ pending: number }>(sql.outboxActivity)).rows;
    expect(activity?.pending).toBe(3);
    const byPartition = (await t.db.query<{ pending: number }>(sql.outboxBacklogByPartition)).rows;
    expect(byPartition.reduce((sum, row) => sum + row.pending, 0)).toBe(3);
  });
});

describe('status while events are written and partitions move', () => {
  it('gives one snapshot of the backlog (its splits add up) and no negative age', async () => {
    let writing = true;
    const writer = (async () => {
      while (writing) await enqueue([lesson(randomUUID(), 'w'), quiz(randomUUID())]);
    })();
    try {
      for (let i = 0; i < 20; i++) {
        const snapshot = await outboxStatus(t.db, t.schema);
        const sum = (shares: Record<string, { pending: number }>) =>
          Object.values(shares).reduce((total, share) => total + share.pending, 0);
        expect(sum(snapshot.pendingByEventType), `round ${i}`).toBe(snapshot.pending);
        expect(sum(snapshot.pendingByPartition), `round ${i}`).toBe(snapshot.pending);
        const ages = [
          ...Object.values(snapshot.pendingByEventType),
          ...Object.values(snapshot.pendingByPartition),
        ].map((share) => share.oldestAgeSeconds);
        expect(Math.min(...ages), `round ${i}`).toBeGreaterThanOrEqual(0);
      }
    } finally {
      writing = false;
      await writer;
    }
  });

  it('names the partitions no running dispatcher owns', async () => {
    // A member of the schema's dispatchers that owns nothing yet (as one that just joined).
    const sql = statements(t.schema);
    // A client of its own: a pool's idle connection (and its locks) would go after 10 s.
    const session = new pg.Client({ connectionString: PG_URL });
    await session.connect();
    try {
      const { rows } = await session.query<{ members: number }>(sql.ownershipKeys, [t.schema]);
      await session.query(sql.ownershipLock, [rows[0]?.members, 4242]);
      const status = await statusJson();
      expect(status.unownedPartitions).toEqual(Array.from({ length: 64 }, (_, p) => p));
      const text = await cli('status');
      expect(text.stdout).toContain('dispatchers: 1 (sharing 64 partitions)');
      expect(text.stdout).toContain('  unowned: 64 partitions: 0-63 (a rebalance takes');
    } finally {
      await session.end();
    }
    // No dispatcher: none is said to be unowned.
    expect((await statusJson()).unownedPartitions).toEqual([]);
  });
});

describe('status with a dispatcher stopped or hung', () => {
  it('flags the member whose session has run nothing for seconds, and not a running one', async () => {
    // A member that owns partitions and then runs nothing, as a SIGSTOPped dispatcher's
    // session does; a running dispatcher shares the rest.
    const sql = statements(t.schema);
    // A client of its own, which keeps its session (and locks) however long the CLI
    // takes to answer under load: a pool would close it after 10 s idle.
    const stopped = new pg.Client({
      connectionString: PG_URL,
      application_name: 'edupulse-outbox dispatcher stopped:1',
    });
    await stopped.connect();
    const running = createDispatcher({ db: t.db, schema: t.schema, broker: new MemoryBroker() });
    try {
      const { rows: pids } = await stopped.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const { rows } = await stopped.query<{ members: number; partitions: number }>(
        sql.ownershipKeys,
        [t.schema],
      );
      const keys = {
        ...(rows[0] as { members: number; partitions: number }),
        pid: Number(pids[0]?.pid),
      };
      await stopped.query(sql.ownershipLock, [keys.members, 4242]);
      await stopped.query(sql.ownershipLock, [keys.partitions, 0]);
      await running.start();
      await waitFor('the running dispatcher to own partitions', async () =>
        (await statusJson()).dispatchers.some((d) => d.pid !== keys.pid && d.partitions.length > 0),
      );
      await new Promise((resolve) => setTimeout(resolve, 5500));
      const status = await statusJson();
      const silent = (pid: number) => status.dispatchers.find((d) => d.pid === pid)?.silentSeconds;
      expect(silent(keys.pid)).toBeGreaterThanOrEqual(5);
      const others = status.dispatchers.filter((d) => d.pid !== keys.pid);
      expect(others).toHaveLength(1);
      expect(others[0]?.silentSeconds).toBeLessThan(2);
      const text = (await cli('status')).stdout;
      expect(text.match(/silent for/g)).toHaveLength(1);
      expect(text).toMatch(
        new RegExp(
          `stopped:1 {2}\\(backend pid ${keys.pid}\\) {2}1 partitions: 0\\n {4}silent for \\d+\\.\\d s: .*stopped or hung.*pg_terminate_backend\\(${keys.pid}\\)`,
        ),
      );
    } finally {
      await running.stop();
      await stopped.end();
    }
  });
});

describe('producer notify', () => {
  it('migrate --producer-notify off stops the NOTIFY; status shows it; dispatchers still poll', async () => {
    const off = await cli('migrate', '--producer-notify', 'off');
    expect(off.code, off.stderr).toBe(0);
    expect((await statusJson()).producerNotify).toBe(false);

    let notified = 0;
    const unlisten = await t.db.listen(notifyChannel(t.schema), () => notified++);
    try {
      await enqueue([lesson(randomUUID(), 'quiet')]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(notified).toBe(0);
      const dispatcher = createDispatcher({
        db: t.db,
        schema: t.schema,
        broker: new MemoryBroker(),
        pollIntervalMs: 50,
      });
      await dispatcher.start();
      await waitFor('the event to be found by polling', () => dispatcher.stats.published === 1);
      await dispatcher.stop();

      expect((await cli('migrate', '--producer-notify', 'on')).code).toBe(0);
      expect((await statusJson()).producerNotify).toBe(true);
      await enqueue([lesson(randomUUID(), 'loud')]);
      await waitFor('the NOTIFY', () => notified > 0);
    } finally {
      await unlisten();
    }
    expect((await cli('migrate', '--producer-notify', 'maybe')).code).toBe(2);
  });
});
