/**
 * What the health and metrics endpoints cost the database, counted in statements: however
 * many requests arrive at once, one check runs, and its answer serves for a second. Real
 * PostgreSQL, a started dispatcher; the executor handed to the checks counts what it is asked.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDispatcher, type Dispatcher, type Executor, MemoryBroker } from '../src/index.js';
import { dispatcherMetrics, readiness } from '../src/ops/index.js';
import { createPgTestSchema, type TestSchema } from './helpers/db.js';

let t: TestSchema;
let dispatcher: Dispatcher;

beforeEach(async () => {
  t = await createPgTestSchema('ops_ready');
  dispatcher = createDispatcher({ db: t.db, schema: t.schema, broker: new MemoryBroker() });
  await dispatcher.start();
});

afterEach(async () => {
  await dispatcher.stop();
  await t.drop();
});

/** `db`, with every statement it is asked to run recorded in `statements`. */
function counting(db: Executor, fail?: Error): { executor: Executor; statements: string[] } {
  const statements: string[] = [];
  return {
    statements,
    executor: {
      query<R>(text: string, values?: readonly unknown[]) {
        statements.push(text);
        return fail ? Promise.reject(fail) : db.query<R>(text, values);
      },
    },
  };
}

const times = <T>(n: number, fn: () => Promise<T>) => Promise.all(Array.from({ length: n }, fn));

describe('readiness', () => {
  it('answers 150 concurrent calls with one query, and again with one once the answer is a second old', async () => {
    const { executor, statements } = counting(t.db);
    // A fresh options object per call, as a service's own probes would build them.
    const check = (now?: number) => readiness({ dispatcher, db: executor, schema: t.schema }, now);

    const first = await times(150, () => check());
    expect(statements).toHaveLength(1);
    expect(new Set(first.map((result) => JSON.stringify(result)))).toEqual(
      new Set([JSON.stringify({ ok: true, reasons: [] })]),
    );

    await times(150, () => check());
    expect(statements).toHaveLength(1);

    // The default cache is 1000 ms: a call that late asks the database again, once.
    const later = Date.now() + 1000;
    const second = await times(150, () => check(later));
    expect(statements).toHaveLength(2);
    expect(second.every((result) => result.ok)).toBe(true);
  });

  it('asks a failing database once for 150 concurrent calls, and every one reports it', async () => {
    const { executor, statements } = counting(t.db, new Error('connection refused'));
    const results = await times(150, () =>
      readiness({ dispatcher, db: executor, schema: t.schema }),
    );
    expect(statements).toHaveLength(1);
    for (const result of results) {
      expect(result).toEqual({
        ok: false,
        reasons: ['database unreachable: connection refused'],
      });
    }
  });

  it('keeps the answer for databaseCacheMs', async () => {
    const { executor, statements } = counting(t.db);
    const options = { dispatcher, db: executor, schema: t.schema, databaseCacheMs: 60_000 };
    await times(150, () => readiness(options));
    await times(150, () => readiness(options, Date.now() + 59_000));
    expect(statements).toHaveLength(1);
    await times(150, () => readiness(options, Date.now() + 61_000));
    expect(statements).toHaveLength(2);
  });
});

describe('readiness under a backlog', () => {
  it('measures the lag from the first event waiting, reading a few pages however long the backlog', async () => {
    // A backlog the dispatcher does not drain (stopped), its first event written a
    // minute and a half ago.
    await dispatcher.stop();
    const outbox = `"${t.schema}".outbox`;
    await t.db.query(
      `INSERT INTO ${outbox} (aggregate_type, aggregate_id, event_type, payload, occurred_at)
       SELECT 'lesson', 'lesson-' || (i % 1000), 'lesson-published', '{}',
              now() - interval '90 seconds' + i * interval '1 millisecond'
       FROM generate_series(1, 100000) AS i`,
    );
    await t.db.query(`ANALYZE ${outbox}`);
    const { executor, statements } = counting(t.db);
    const result = await readiness({ dispatcher, db: executor, schema: t.schema });
    expect(result.reasons).toContainEqual(
      expect.stringMatching(
        /^lagging: the oldest pending event is (8\d|9\d)\.\d s old \(limit 60 s\)$/,
      ),
    );
    // What the check reads, counted by the server: counting this backlog read 1,640 pages
    // (a million rows took 200 ms, growing with the backlog towards the check's 2 s).
    expect(statements).toHaveLength(1);
    const { rows } = await t.db.query<{
      'QUERY PLAN': { Plan: { 'Shared Hit Blocks': number; 'Shared Read Blocks': number } }[];
    }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${statements[0]}`);
    const plan = rows[0]?.['QUERY PLAN'][0]?.Plan;
    expect((plan?.['Shared Hit Blocks'] ?? 0) + (plan?.['Shared Read Blocks'] ?? 0)).toBeLessThan(
      20,
    );
  });
});

describe('dispatcherMetrics', () => {
  it('counts the backlog once for 150 concurrent scrapes, and not again within a second', async () => {
    const { executor, statements } = counting(t.db);
    const registry = dispatcherMetrics({
      dispatcher,
      db: executor,
      schema: t.schema,
      broker: 'memory',
      databaseCacheMs: 60_000,
    });
    const scrapes = await times(150, () => registry.metrics());
    // The backlog per partition and the dead letters: one statement each.
    expect(statements).toHaveLength(2);
    for (const text of scrapes) expect(text).toMatch(/^outbox_pending_events 0$/m);
    // A later scrape, within databaseCacheMs, is answered from the same counts.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await times(150, () => registry.metrics());
    expect(statements).toHaveLength(2);
  });

  it('spaces its counts when they take long: nine times as long as a count took', async () => {
    const { executor, statements } = counting(t.db);
    // Each statement answered 300 ms late, as counting a long backlog is.
    const late: Executor = {
      async query<R>(text: string, values?: readonly unknown[]) {
        const result = await executor.query<R>(text, values);
        await new Promise((resolve) => setTimeout(resolve, 300));
        return result;
      },
    };
    const registry = dispatcherMetrics({
      dispatcher,
      db: late,
      schema: t.schema,
      broker: 'memory',
      databaseCacheMs: 200,
    });
    const began = Date.now();
    await registry.metrics();
    const firstDone = Date.now();
    // What the round took, as this scrape saw it: 300 ms at least, longer on a busy machine.
    const took = firstDone - began;
    expect(statements).toHaveLength(2);
    // Scraped every 100 ms: with a 200 ms cache alone, a round of counts every half
    // second; a round that took 300 ms or more serves nine times as long, 2.7 s at least.
    while (statements.length === 2 && Date.now() - firstDone < 9 * took + 5000) {
      await registry.metrics();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const recountedAfter = Date.now() - firstDone;
    expect(statements).toHaveLength(4);
    expect(recountedAfter).toBeGreaterThanOrEqual(9 * 300);
    expect(recountedAfter).toBeLessThan(9 * took + 5000);
  });

  it('reads NaN for the database totals until the database has answered, then keeps the last answer', async () => {
    let down = true;
    const executor: Executor = {
      query<R>(text: string, values?: readonly unknown[]) {
        return down ? Promise.reject(new Error('connection refused')) : t.db.query<R>(text, values);
      },
    };
    const registry = dispatcherMetrics({
      dispatcher,
      db: executor,
      schema: t.schema,
      broker: 'memory',
      databaseCacheMs: 0,
    });
    const totals = /^outbox_(pending_events|dead_letters|oldest_dead_letter_age_seconds) (\S+)$/gm;
    const read = async () =>
      Object.fromEntries([...(await registry.metrics()).matchAll(totals)].map((m) => [m[1], m[2]]));
    // An outage from before the first scrape: not an empty backlog. (prom-client writes
    // NaN as "Nan"; Prometheus reads it in any case.)
    const nan = expect.stringMatching(/^nan$/i);
    expect(await read()).toEqual({
      pending_events: nan,
      dead_letters: nan,
      oldest_dead_letter_age_seconds: nan,
    });
    // An event nobody publishes: the dispatcher stopped first.
    await dispatcher.stop();
    await t.db.query(
      `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
       VALUES ('lesson', 'l-1', 'lesson-published', '{}')`,
    );
    down = false;
    // A failed count serves nine times as long as it took (SCAN_DUTY), a few ms under a
    // loaded machine: the next scrapes may still read it, then the database's answer.
    await expect.poll(read, { timeout: 2000, interval: 20 }).toEqual({
      pending_events: '1',
      dead_letters: '0',
      oldest_dead_letter_age_seconds: '0',
    });
    down = true;
    expect((await read()).pending_events).toBe('1');
  });
});

describe('dispatcherMetrics on a registry that has them', () => {
  it("refuses a second dispatcher's, naming the setting, and leaves the first's counting", async () => {
    const registry = dispatcherMetrics({
      dispatcher,
      db: t.db,
      schema: t.schema,
      broker: 'memory',
    });
    const second = createDispatcher({ db: t.db, schema: t.schema, broker: new MemoryBroker() });
    // Before: prom-client's "A metric with the name … has already been registered".
    expect(() =>
      dispatcherMetrics({
        dispatcher: second,
        db: t.db,
        schema: t.schema,
        broker: 'memory',
        registry,
      }),
    ).toThrow(expect.objectContaining({ setting: 'dispatcherMetrics.registry' }));
    expect(await registry.metrics()).toMatch(/^outbox_pending_events \d+$/m);
  });
});

describe('readiness while stopping', () => {
  it('is not ready from stop() on, while the batch in flight finishes', async () => {
    await dispatcher.stop();
    const broker = new MemoryBroker({ latencyMs: 1500 });
    const slow = createDispatcher({ db: t.db, schema: t.schema, broker });
    await slow.start();
    try {
      await t.db.query(
        `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         VALUES ('lesson', 'l-1', 'lesson-published', '{}')`,
      );
      // The batch in flight: published, the broker's answer not back yet (the state says
      // dispatching already during the empty claim at start, before the row is there).
      const started = Date.now();
      while (broker.calls === 0 && Date.now() - started < 10_000) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const stopped = slow.stop();
      // Before: `dispatching` and ready until the batch was done, then `stopped`.
      expect(slow.health().state).toBe('stopping');
      const check = await readiness({ dispatcher: slow, db: t.db, schema: t.schema });
      expect(check).toEqual({
        ok: false,
        reasons: ['dispatcher stopping: finishing the batches in flight'],
      });
      await stopped;
      expect(slow.health().state).toBe('stopped');
      expect(slow.stats.published).toBe(1);
    } finally {
      await slow.stop();
    }
  });
});
