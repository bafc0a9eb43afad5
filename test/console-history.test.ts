/**
 * The console's history sampler against a real PostgreSQL: how often it asks, when each
 * sample takes long (a count over a long backlog).
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
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
