/**
 * The claim stays cheap under churn: with 200,000 pending rows over 10,000 aggregates it
 * touches a bounded number of rows and buffers per claimed row, whether some aggregates
 * wait for retries or 100,000 deleted rows lie at the head of the scan. Counted from
 * EXPLAIN (ANALYZE, BUFFERS), never timed.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { pgArray, type Statements, statements } from '../src/db/sql/index.js';
import { createPgTestSchema, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

const BATCH = 500;
const ALL = pgArray(Array.from({ length: 64 }, (_, p) => p));

interface PlanNode {
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Join Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  'Shared Hit Blocks': number;
  'Shared Read Blocks': number;
  Plans?: PlanNode[];
}

/** Rows every node produced or looked at and threw away, over all its loops. */
function rowsTouched(node: PlanNode): number {
  const loops = node['Actual Loops'] || 1;
  const own =
    (node['Actual Rows'] +
      (node['Rows Removed by Filter'] ?? 0) +
      (node['Rows Removed by Join Filter'] ?? 0) +
      (node['Rows Removed by Index Recheck'] ?? 0)) *
    loops;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + rowsTouched(child), 0);
}

let t: TestSchema;
let sql: Statements;

beforeAll(async () => {
  // A database of its own: other files' snapshots in the shared one would keep the rows
  // deleted below visible to someone, and the claims would pay for them each time.
  t = await createPgTestSchema('claim_cost', { ownDatabase: true });
  sql = statements(t.schema);
  // Vacuum would tidy the dead rows away in the middle of the measurement.
  await t.db.query(`ALTER TABLE "${t.schema}".outbox SET (autovacuum_enabled = false)`);
  await t.db.query(
    `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
     SELECT 'lesson', 'a-' || (i % 10000), 'lesson-published', json_build_object('n', i)
     FROM generate_series(1, 200000) AS i`,
  );
  await t.db.query(`ANALYZE "${t.schema}".outbox`);
}, 120_000);

afterAll(async () => {
  await t?.drop();
});

async function measure(from = '0') {
  return t.db.transaction(async (tx) => {
    // The horizon as the dispatcher reads it first: no writer open.
    await tx.query(sql.outboxWriteLastSeq);
    await tx.query(sql.outboxWriteBounds);
    const { rows } = await tx.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql.outboxClaim}`,
      [BATCH, ALL, from, '0', '0'],
    );
    const plan = (rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0].Plan;
    // EXPLAIN ANALYZE really locked the rows; the transaction ends and releases them.
    return {
      claimed: plan['Actual Rows'],
      rows: rowsTouched(plan),
      buffers: plan['Shared Hit Blocks'] + plan['Shared Read Blocks'],
    };
  });
}

const bounded = (cost: { claimed: number; rows: number; buffers: number }) => {
  expect(cost.claimed).toBe(BATCH);
  expect(cost.rows, `rows touched: ${cost.rows}`).toBeLessThanOrEqual(20 * BATCH);
  expect(cost.buffers, `buffers: ${cost.buffers}`).toBeLessThanOrEqual(10 * BATCH);
};

it('claims 500 of 200,000 pending rows touching a bounded number of rows and buffers', async () => {
  bounded(await measure());
});

it('stays bounded while 1,000 aggregates wait for a retry', async () => {
  await t.db.query(
    `UPDATE "${t.schema}".outbox SET attempts = 1, available_at = now() + interval '1 hour'
     WHERE seq % 200 = 0`,
  );
  bounded(await measure());
});

it('starts past 100,000 dead rows from its cursor instead of walking them', {
  timeout: 180_000,
}, async () => {
  const deleted = await t.db.transaction(async (tx) => {
    const { rows } = await tx.query<{ n: number; xid: string }>(
      `WITH gone AS (DELETE FROM "${t.schema}".outbox WHERE seq <= 100000 RETURNING 1)
       SELECT count(*)::int AS n, pg_current_xact_id()::text AS xid FROM gone`,
    );
    return rows[0];
  });
  expect(deleted?.n).toBe(100_000);
  // A claim marks index entries dead only once no transaction that could still see the
  // rows runs: one begun before the delete with an id of its own, in any database, or a
  // snapshot taken before it in this one (hence a database of its own). Until then every
  // claim pays for them, as in production beside a long transaction.
  await waitFor(
    'every transaction older than the delete to end',
    async () => {
      const { rows } = await t.db.query<{ past: boolean }>(
        'SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8 AS past',
        [deleted?.xid],
      );
      return rows[0]?.past === true;
    },
    { timeoutMs: 150_000 },
  );
  // The first claim after the delete also steps over the dead earlier events of its
  // candidates' aggregates once, marking them dead in the index; every dead entry is
  // paid for once, not by every claim.
  await measure('100001');
  const fromCursor = await measure('100001');
  bounded(fromCursor);
  // The same claim from the start pays for the dead entries it has to step over.
  const fromStart = await measure('0');
  expect(fromStart.buffers).toBeGreaterThan(2 * fromCursor.buffers);
});
