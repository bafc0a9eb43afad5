/**
 * PgBouncer (a private one, in front of the shared server) between the services and
 * PostgreSQL. Producers enqueue through it in transaction mode, as they would in
 * production. The dispatcher holds its partitions with session advisory locks, which a
 * pooler in transaction mode would scatter over server connections other clients then
 * use: it refuses such a URL at start (exit 2, saying what to give it instead), so two
 * dispatchers behind it publish nothing rather than one aggregate out of order; behind a
 * pooler in session mode, declared with `pooler=session`, two dispatchers share the
 * partitions and every aggregate reaches NATS in order.
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { statements } from '../../src/db/sql/index.js';
import { createOutbox } from '../../src/index.js';
import { killChildren, runCli, spawnCli } from '../helpers/cli.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import { consumeStream, deleteStream } from '../helpers/nats-consumer.js';
import { StepTaken } from '../helpers/outbox.js';
import { type PgBouncer, startPgBouncer } from '../helpers/pgbouncer.js';
import { waitFor } from '../helpers/wait.js';

afterEach(killChildren);

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const AGGREGATES = 40;
const PER_AGGREGATE = 25;

let transactionPooler: PgBouncer;
let sessionPooler: PgBouncer;
let t: TestSchema;

beforeAll(async () => {
  [transactionPooler, sessionPooler, t] = await Promise.all([
    startPgBouncer({ poolMode: 'transaction', poolSize: 4 }),
    startPgBouncer({ poolMode: 'session' }),
    createPgTestSchema('pooler'),
  ]);
});

afterAll(async () => {
  await killChildren();
  await Promise.all([transactionPooler?.stop(), sessionPooler?.stop()]);
  await t?.drop();
});

/**
 * Enqueues events `from`…`from + PER_AGGREGATE - 1` of every aggregate, in order, through
 * the pooler in transaction mode: one producer per aggregate, all at once.
 */
async function enqueueThroughPooler(from: number): Promise<string[]> {
  const pool = new pg.Pool({ connectionString: transactionPooler.url('test'), max: 16 });
  try {
    return await enqueueThrough(pool, from);
  } finally {
    await pool.end();
  }
}

/** Enqueues through `pool`; returns the statement names its connections had parsed. */
async function enqueueThrough(pool: pg.Pool, from: number): Promise<string[]> {
  const outbox = createOutbox({ schema: t.schema });
  const named = new Set<string>();
  await Promise.all(
    Array.from({ length: AGGREGATES }, async (_, a) => {
      for (let n = from; n < from + PER_AGGREGATE; n++) {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await outbox.enqueue(client, StepTaken.create({ walk: `walk-${a}`, n }));
          await client.query('COMMIT');
          const { parsedStatements } = (
            client as unknown as { connection: { parsedStatements: Record<string, string> } }
          ).connection;
          for (const name of Object.keys(parsedStatements)) named.add(name);
        } finally {
          client.release();
        }
      }
    }),
  );
  return [...named];
}

describe('behind PgBouncer', () => {
  it('producers enqueue through a pooler in transaction mode, with no named statement', async () => {
    // A named statement lives in one server session, which the pooler does not keep for a
    // client: enqueue, which prepares its insert on a direct connection, sends it unnamed.
    expect(await enqueueThroughPooler(0)).toEqual([]);
    const { rows } = await t.db.query<{ count: number }>(
      `SELECT count(*)::int AS count FROM "${t.schema}".outbox`,
    );
    expect(rows[0]?.count).toBe(AGGREGATES * PER_AGGREGATE);
  });

  it('two dispatchers behind a pooler in transaction mode both refuse to start, and publish nothing', async () => {
    const stream = `POOLER_TX_${t.schema.toUpperCase()}`;
    const args = [
      'run',
      '--database-url',
      transactionPooler.url('test'),
      '--schema',
      t.schema,
      '--broker',
      `${NATS_URL}?stream=${stream}&subject_prefix=ptx${t.schema}`,
    ];
    try {
      const results = await Promise.all([runCli(args), runCli(args)]);
      for (const result of results) {
        expect(result.code).toBe(2);
        expect(result.stderr).toMatch(
          /^edupulse-outbox: database-url: reaches PostgreSQL through a connection pooler .*direct URL.*pooler=session/,
        );
        expect(result.stdout).toBe('');
      }
      const { rows } = await t.db.query<{ count: number }>(
        `SELECT count(*)::int AS count FROM "${t.schema}".outbox`,
      );
      expect(rows[0]?.count).toBe(AGGREGATES * PER_AGGREGATE);
    } finally {
      await deleteStream(NATS_URL, stream);
    }
  });

  /** `edupulse-outbox <command> --database-url <url> --schema <the test's> <more>`. */
  const cli = (command: string, url: string, ...more: string[]) =>
    runCli([command, '--database-url', url, '--schema', t.schema, ...more]);

  it('admin commands work through it, and leave no session setting behind for the applications', async () => {
    const status = await cli('status', transactionPooler.url('test'), '--json');
    expect(status.stderr).toBe('');
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ pending: AGGREGATES * PER_AGGREGATE });

    // Every server connection of the pool (4), held at once so each is a different one:
    // none carries the dispatchers' planner settings.
    const pool = new pg.Pool({ connectionString: transactionPooler.url('test'), max: 4 });
    try {
      const clients = await Promise.all(Array.from({ length: 4 }, () => pool.connect()));
      try {
        // Each transaction stays open until all four have read: four server connections.
        const seen = await Promise.all(
          clients.map(async (client) => {
            await client.query('BEGIN');
            const { rows } = await client.query<{ seqscan: string; plans: string; pid: number }>(
              `SELECT current_setting('enable_seqscan') AS seqscan,
                      current_setting('plan_cache_mode') AS plans, pg_backend_pid() AS pid`,
            );
            return rows[0];
          }),
        );
        await Promise.all(clients.map((client) => client.query('COMMIT')));
        expect(new Set(seen.map((row) => row?.pid)).size).toBe(4);
        for (const row of seen) expect(row).toMatchObject({ seqscan: 'on', plans: 'auto' });
      } finally {
        for (const client of clients) client.release();
      }
    } finally {
      await pool.end();
    }
  });

  it('behind a pooler in session mode, refused unless the URL says pooler=session', async () => {
    const result = await cli('run', sessionPooler.url('test'), '--broker', 'memory:');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/through a connection pooler/);
  });

  it('a pooler in transaction mode declared as pooler=session is refused, and leaves no lock behind', async () => {
    const url = `${transactionPooler.url('test')}?pooler=session`;
    const result = await cli('run', url, '--broker', 'memory:');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^edupulse-outbox: database-url: says pooler=session, but the pooler does not keep this connection on one server session .*direct URL.*pool_mode = session/m,
    );
    // Refused before it took a session lock: none of the schema's is left on the pooler's
    // server connections (where it would hold partitions from every other dispatcher).
    const sql = statements(t.schema);
    const { rows: keys } = await t.db.query<{ members: number; partitions: number }>(
      sql.ownershipKeys,
      [t.schema],
    );
    const { rows } = await t.db.query(sql.ownershipLocks, [keys[0]?.members, keys[0]?.partitions]);
    expect(rows).toEqual([]);
  });

  it('two dispatchers behind a pooler in session mode publish every aggregate in order', async () => {
    const stream = `POOLER_S_${t.schema.toUpperCase()}`;
    const args = [
      'run',
      '--database-url',
      `${sessionPooler.url('test')}?pooler=session`,
      '--schema',
      t.schema,
      '--broker',
      `${NATS_URL}?stream=${stream}&subject_prefix=ps${t.schema}`,
    ];
    const first = spawnCli(args);
    await first.waitFor('the first dispatching', () => first.stderr.includes('dispatching'));
    // The second joins while the first drains, and more events arrive while both run: the
    // partitions move between them with events in flight.
    const second = spawnCli(args);
    const total = AGGREGATES * PER_AGGREGATE * 2;
    try {
      // On a loaded machine the second may still be starting when a short drain ends.
      await second.waitFor('the second dispatching', () => second.stderr.includes('dispatching'));
      await enqueueThroughPooler(PER_AGGREGATE);
      await waitFor(
        'the outbox drained',
        async () => {
          const { rows } = await t.db.query<{ count: number }>(
            `SELECT count(*)::int AS count FROM "${t.schema}".outbox`,
          );
          return rows[0]?.count === 0;
        },
        { timeoutMs: 60_000 },
      );
      const consumer = await consumeStream(NATS_URL, stream);
      try {
        await waitFor(
          'every event read back from the stream',
          () => consumer.received.length >= total,
          {
            timeoutMs: 30_000,
          },
        );
      } finally {
        await consumer.close();
      }
      const byWalk = new Map<string, number[]>();
      for (const message of consumer.received) {
        const { walk, n } = JSON.parse(message.body) as { walk: string; n: number };
        byWalk.set(walk, [...(byWalk.get(walk) ?? []), n]);
      }
      expect(byWalk.size).toBe(AGGREGATES);
      const inOrder = Array.from({ length: PER_AGGREGATE * 2 }, (_, n) => n);
      for (const [walk, ns] of byWalk) {
        // JetStream drops a republished id within its window: what is read is each event once.
        expect({ walk, ns }).toEqual({ walk, ns: inOrder });
      }
      // Both take part: each holds partitions through the pooler (a rebalance round is 1 s).
      for (const run of [first, second]) {
        await run.waitFor('partitions shared through the pooler', () =>
          run.stderr.includes('partitions rebalanced'),
        );
      }
    } finally {
      first.child.kill('SIGTERM');
      second.child.kill('SIGTERM');
      const results = await Promise.all([first.exited, second.exited]);
      for (const result of results) expect(result.code).toBe(0);
      await deleteStream(NATS_URL, stream);
    }
  });
});
