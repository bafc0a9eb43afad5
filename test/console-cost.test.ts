/**
 * What the console asks of a real PostgreSQL: its history sampler, and the status the
 * open pages share, when each answer takes long (a count over a long backlog).
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { SharedStatus } from '../src/console/api.js';
import { History } from '../src/console/history.js';
import type { Executor } from '../src/index.js';
import { createPgTestSchema, type TestSchema } from './helpers/db.js';

let t: TestSchema;

beforeEach(async () => {
  t = await createPgTestSchema('console_history');
});

afterEach(async () => {
  await t.drop();
});

/** `db` answering each statement `delayMs` late, as under a long backlog; counts them. */
function slow(db: Executor, delayMs: number): { executor: Executor; asked: () => number } {
  let asked = 0;
  return {
    asked: () => asked,
    executor: {
      async query<R>(text: string, values?: readonly unknown[]) {
        asked++;
        const result = await db.query<R>(text, values);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        return result;
      },
    },
  };
}

/** A history over `db` answering `delayMs` late, sampling every `intervalMs` for `forMs`, stopped. */
async function sampled(delayMs: number, intervalMs: number, forMs: number) {
  const { executor, asked } = slow(t.db, delayMs);
  const history = new History({ db: executor, schema: t.schema, intervalMs });
  history.start();
  await new Promise((resolve) => setTimeout(resolve, forMs));
  await history.stop();
  return { history, asked };
}

it('holds the database at most a tenth of the time, spacing its samples when each takes long', async () => {
  const { history, asked } = await sampled(150, 20, 2000);
  // 150 ms each, then 1,350 ms apart: two in 2 s (one sample after another: 13).
  expect(asked()).toBeGreaterThanOrEqual(1);
  expect(asked()).toBeLessThanOrEqual(2);
  expect(history.list().length).toBe(asked());
});

it('samples every interval when a sample is quick, and not after stop()', async () => {
  const { asked } = await sampled(0, 100, 1050);
  // At 0, 100, … 1000 ms: 11, give or take a late timer.
  expect(asked()).toBeGreaterThanOrEqual(6);
  expect(asked()).toBeLessThanOrEqual(11);
  const count = asked();
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(asked()).toBe(count);
});

/** A dead letter, written as the dispatcher writes one. */
async function deadLetter(seq: number): Promise<void> {
  await t.db.query(
    `INSERT INTO "${t.schema}".outbox_dead_letter
       (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition, occurred_at, attempts, last_error)
     VALUES ($1, gen_random_uuid(), 'quiz', 'q-1', 'quiz-submitted', '{}', '{}', 0, now(), 5, 'refused')`,
    [seq],
  );
}

it('computes the status once for the pages asking at once, and keeps it nine times as long as it took', async () => {
  const once = slow(t.db, 0);
  await new SharedStatus(once.executor, t.schema).get();
  const perStatus = once.asked();

  const { executor, asked } = slow(t.db, 150);
  const status = new SharedStatus(executor, t.schema);
  const answers = await Promise.all(Array.from({ length: 20 }, () => status.get()));
  expect(asked()).toBe(perStatus);
  expect(new Set(answers).size).toBe(1);
  // It took 300 ms or so (two rounds of statements, each answered 150 ms late): kept for
  // about 2.7 s rather than the second a quick one is kept.
  await status.get(Date.now() + 2000);
  expect(asked()).toBe(perStatus);
  await status.get(Date.now() + 6000);
  expect(asked()).toBe(2 * perStatus);
});

it('computes the status anew after an action, even over one still being computed', async () => {
  const { executor } = slow(t.db, 100);
  const status = new SharedStatus(executor, t.schema);
  expect((await status.get()).deadLetters).toBe(0);
  await deadLetter(1);
  // Within its second the page sees the kept answer; an action forgets it.
  expect((await status.get()).deadLetters).toBe(0);
  status.forget();
  const before = status.get(Date.now() + 5000);
  await deadLetter(2);
  status.forget();
  expect((await status.get()).deadLetters).toBe(2);
  await before;
  expect((await status.get()).deadLetters).toBe(2);
});

it('started again while a sample runs, goes on as one sampler', async () => {
  const { executor, asked } = slow(t.db, 100);
  const history = new History({ db: executor, schema: t.schema, intervalMs: 1000 });
  history.start();
  void history.stop();
  history.start();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await history.stop();
  // At 0 and 1,000 ms (two samplers side by side asked three times here).
  expect(asked()).toBe(2);
});
