/**
 * Dead-letter retention against PostgreSQL: the dispatcher's janitor deletes the dead
 * letters past `deadLetterRetentionMs` and no others, a thousand per statement; janitors
 * of several dispatchers take turns, skip what another transaction holds, and count what
 * they delete (stats, the `purged` event, the metric); `run --dead-letter-retention`
 * and `status` as processes. The dead letters are inserted with old `dead_at` times.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { purgeDeadLettersAsJanitor } from '../src/admin/dead-letters.js';
import type { Database, TransactionExecutor } from '../src/db/database.js';
import { deadLetterJanitorLockKey, statements } from '../src/db/sql/index.js';
import { createDispatcher, type Dispatcher, MemoryBroker, type PurgeReport } from '../src/index.js';
import { dispatcherMetrics } from '../src/ops/index.js';
import { killChildren, runCli, spawnCli } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

const DAY_MS = 86_400_000;
let t: TestSchema;
const dispatchers: Dispatcher[] = [];

beforeEach(async () => {
  t = await createPgTestSchema('retention');
});

afterEach(async () => {
  for (const dispatcher of dispatchers.splice(0)) await dispatcher.stop().catch(() => {});
  await killChildren();
  await t.drop();
});

/** `count` dead letters of event type `type`, dead-lettered `daysAgo` days ago. */
async function insertDeadLetters(count: number, daysAgo: number, type: string): Promise<void> {
  await t.db.query(
    `INSERT INTO "${t.schema}".outbox_dead_letter
       (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition,
        occurred_at, attempts, last_error, dead_at)
     SELECT nextval('"${t.schema}".outbox_write_seq'), gen_random_uuid(), 'lesson', 'lesson-' || i,
       $2, '{}', '{}', 0, now() - make_interval(days => $3::int) - interval '1 hour', 10,
       'refused by test', now() - make_interval(days => $3::int)
     FROM generate_series(1, $1::int) AS i`,
    [count, type, daysAgo],
  );
}

async function deadLettersByType(): Promise<Record<string, number>> {
  const { rows } = await t.db.query<{ event_type: string; n: number }>(
    `SELECT event_type, count(*)::int AS n FROM "${t.schema}".outbox_dead_letter GROUP BY 1`,
  );
  return Object.fromEntries(rows.map((row) => [row.event_type, row.n]));
}

/** The test database, recording every statement sent in its transactions. */
function recording(db: Database): { db: Database; sent: string[] } {
  const sent: string[] = [];
  const tracked = (tx: TransactionExecutor): TransactionExecutor => ({
    exec: (sql) => tx.exec(sql),
    query: <R>(text: string, values?: readonly unknown[]) => {
      sent.push(text);
      return tx.query<R>(text, values);
    },
  });
  const wrapped: Database = {
    query: <R>(text: string, values?: readonly unknown[]) => db.query<R>(text, values),
    transaction: (fn) => db.transaction((tx) => fn(tracked(tx))),
    listen: (channel, onNotify, onError) => db.listen(channel, onNotify, onError),
    close: () => db.close(),
  };
  return { db: wrapped, sent };
}

/** A connection of its own, for holding locks while a janitor runs. */
async function client(): Promise<pg.Client> {
  const connection = new pg.Client({ connectionString: PG_URL });
  await connection.connect();
  return connection;
}

describe('the janitor', () => {
  it('deletes only the dead letters past the retention, a thousand per statement', async () => {
    await insertDeadLetters(2500, 40, 'old');
    await insertDeadLetters(7, 29, 'kept');
    await insertDeadLetters(3, 0, 'new');
    const { db, sent } = recording(t.db);
    const purged = await purgeDeadLettersAsJanitor(
      db,
      t.schema,
      new Date(Date.now() - 30 * DAY_MS),
    );
    expect(purged).toBe(2500);
    expect(await deadLettersByType()).toEqual({ kept: 7, new: 3 });
    // 1000, 1000, then 500 (fewer than a batch: done), each after taking the lock.
    const sql = statements(t.schema);
    expect(sent.filter((text) => text === sql.deadLetterPurge)).toHaveLength(3);
    expect(sent.filter((text) => text === sql.deadLetterJanitorLock)).toHaveLength(3);
  });

  it('waits for its next round while another janitor holds the lock', async () => {
    await insertDeadLetters(5, 40, 'old');
    const other = await client();
    try {
      await other.query('BEGIN');
      await other.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
        deadLetterJanitorLockKey(t.schema),
      ]);
      const before = new Date(Date.now() - DAY_MS);
      expect(await purgeDeadLettersAsJanitor(t.db, t.schema, before)).toBe(0);
      expect(await deadLettersByType()).toEqual({ old: 5 });
      await other.query('COMMIT');
      expect(await purgeDeadLettersAsJanitor(t.db, t.schema, before)).toBe(5);
    } finally {
      await other.end();
    }
  });

  it('skips a dead letter another transaction holds instead of waiting for it', async () => {
    await insertDeadLetters(3, 40, 'old');
    const other = await client();
    try {
      await other.query('BEGIN');
      // What `dead retry` holds while it moves a dead letter back.
      const { rows } = await other.query<{ seq: string }>(
        `SELECT seq::text FROM "${t.schema}".outbox_dead_letter ORDER BY seq LIMIT 1 FOR UPDATE`,
      );
      const before = new Date(Date.now() - DAY_MS);
      expect(await purgeDeadLettersAsJanitor(t.db, t.schema, before)).toBe(2);
      await other.query('ROLLBACK');
      const left = await t.db.query<{ seq: string }>(
        `SELECT seq::text FROM "${t.schema}".outbox_dead_letter`,
      );
      expect(left.rows).toEqual(rows);
    } finally {
      await other.end();
    }
  });

  it('several at once delete each dead letter once, and all of them', async () => {
    await insertDeadLetters(5000, 40, 'old');
    const before = new Date(Date.now() - DAY_MS);
    const sweep = async () => {
      let total = 0;
      // A janitor that finds the lock taken tries again, as its next round would.
      while ((await deadLettersByType()).old) {
        const deleted = await purgeDeadLettersAsJanitor(t.db, t.schema, before);
        if (deleted === 0) await new Promise((resolve) => setTimeout(resolve, 5));
        total += deleted;
      }
      return total;
    };
    const counts = await Promise.all([sweep(), sweep(), sweep()]);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(5000);
    expect(await deadLettersByType()).toEqual({});
  });
});

describe('a dispatcher with deadLetterRetentionMs', () => {
  it('purges when started and on its interval, and counts it in stats, events and metrics', async () => {
    await insertDeadLetters(1200, 40, 'old');
    await insertDeadLetters(2, 1, 'recent');
    const dispatcher = createDispatcher({
      db: t.db,
      schema: t.schema,
      broker: new MemoryBroker(),
      logger: false,
      deadLetterRetentionMs: 30 * DAY_MS,
      deadLetterPurgeIntervalMs: 100,
    });
    dispatchers.push(dispatcher);
    const registry = dispatcherMetrics({
      dispatcher,
      db: t.db,
      schema: t.schema,
      broker: 'memory',
    });
    const reports: PurgeReport[] = [];
    dispatcher.on('purged', (report) => reports.push(report));
    await dispatcher.start();
    await waitFor('the first round', () => dispatcher.stats.deadLettersPurged === 1200);
    expect(reports).toHaveLength(1);
    expect(reports[0]?.deadLetters).toBe(1200);
    expect(Date.now() - (reports[0]?.before.getTime() ?? 0)).toBeGreaterThanOrEqual(30 * DAY_MS);

    // Dead letters that come due later go in a later round.
    await insertDeadLetters(5, 31, 'late');
    await waitFor('a later round', () => dispatcher.stats.deadLettersPurged === 1205);
    expect(await deadLettersByType()).toEqual({ recent: 2 });

    const metrics = await registry.metrics();
    expect(metrics).toMatch(/^outbox_dead_letters_purged_total 1205$/m);
    expect(metrics).toMatch(/^outbox_dead_letters 2$/m);
    const oldest = Number(/^outbox_oldest_dead_letter_age_seconds (\S+)$/m.exec(metrics)?.[1]);
    expect(oldest).toBeGreaterThan(DAY_MS / 1000 - 60);
    expect(oldest).toBeLessThan(DAY_MS / 1000 + 60);
    await dispatcher.stop();
    expect(dispatcher.stats.deadLettersPurged).toBe(1205);
  });

  it('keeps every dead letter without one (the default)', async () => {
    await insertDeadLetters(3, 4000, 'ancient');
    const dispatcher = createDispatcher({
      db: t.db,
      schema: t.schema,
      broker: new MemoryBroker(),
      logger: false,
      deadLetterPurgeIntervalMs: 10,
    });
    dispatchers.push(dispatcher);
    await dispatcher.start();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await dispatcher.stop();
    expect(dispatcher.stats.deadLettersPurged).toBe(0);
    expect(await deadLettersByType()).toEqual({ ancient: 3 });
  });

  it('refuses a retention under a minute, naming the option', () => {
    const options = {
      db: t.db,
      schema: t.schema,
      broker: new MemoryBroker(),
      logger: false as const,
    };
    expect(() => createDispatcher({ ...options, deadLetterRetentionMs: 59_999 })).toThrow(
      /deadLetterRetentionMs/,
    );
    expect(() =>
      createDispatcher({ ...options, deadLetterRetentionMs: 1.5 * DAY_MS }),
    ).not.toThrow();
  });
});

describe('run --dead-letter-retention and status', () => {
  const cli = (...args: string[]) =>
    runCli([...args, '--schema', t.schema], { env: { DATABASE_URL: PG_URL } });

  it('a bad retention exits 2 with one line naming it', async () => {
    for (const value of ['30x', '30s', '3651d', '']) {
      const result = await cli('run', '--dead-letter-retention', value);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr.trim().split('\n'), result.stderr).toHaveLength(1);
      expect(result.stderr).toContain('dead-letter-retention');
    }
  });

  it('run purges the old dead letters; status shows the oldest age before and after', async () => {
    await insertDeadLetters(3, 40, 'old');
    await insertDeadLetters(1, 2, 'recent');
    const before = await cli('status', '--json');
    expect(before.code, before.stderr).toBe(0);
    const statusBefore = JSON.parse(before.stdout) as { oldestDeadLetterAgeSeconds: number };
    expect(statusBefore.oldestDeadLetterAgeSeconds).toBeGreaterThan(40 * 86_400 - 60);
    expect((await cli('status')).stdout).toMatch(/oldest dead letter: dead-lettered 40\.0 d ago/);

    const run = spawnCli(
      ['run', '--schema', t.schema, '--broker', 'log:', '--dead-letter-retention', '30d'],
      { env: { DATABASE_URL: PG_URL } },
    );
    await run.waitFor('the janitor', () => run.stderr.includes('dead letters purged'));
    const purgedLine = run.stderr.split('\n').find((line) => line.includes('dead letters purged'));
    expect(JSON.parse(purgedLine ?? '{}')).toMatchObject({ deleted: 3 });
    const started = run.stderr.split('\n').find((line) => line.includes('dispatcher started'));
    expect(JSON.parse(started ?? '{}')).toMatchObject({ deadLetterRetentionMs: 30 * DAY_MS });
    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);

    const after = JSON.parse((await cli('status', '--json')).stdout) as {
      deadLetters: number;
      oldestDeadLetterAgeSeconds: number;
    };
    expect(after.deadLetters).toBe(1);
    expect(after.oldestDeadLetterAgeSeconds).toBeLessThan(2 * 86_400 + 60);
    expect(after.oldestDeadLetterAgeSeconds).toBeGreaterThan(2 * 86_400 - 60);
  });
});
