/**
 * How the claim keeps an aggregate's order without probing every candidate's aggregate:
 * from a cursor below which no row lies, an earlier event of a candidate's aggregate is
 * either a candidate or a row the claim passed over. What can put a row below the cursor
 * unseen (another claim's lock, a restore by `dead retry`, an open writer) makes it check
 * every aggregate again and report that rows may lie behind. Counted from EXPLAIN and
 * read from the claim's rows, never timed.
 */
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest';
import { retryDeadLetters } from '../src/admin/dead-letters.js';
import type { TransactionExecutor } from '../src/db/database.js';
import { pgArray, type Statements, statements } from '../src/db/sql/index.js';
import { createPgTestSchema, type TestSchema, testClients } from './helpers/db.js';

const ALL = pgArray(Array.from({ length: 64 }, (_, p) => p));

interface PlanNode {
  'Index Name'?: string;
  'Actual Loops': number;
  Plans?: PlanNode[];
}

interface Claimed {
  seq: string;
  aggregate_id: string;
  held: boolean;
  passed_over: boolean;
  restores: string;
}

let t: TestSchema;
let sql: Statements;
const { client, endAll } = testClients();

beforeAll(async () => {
  t = await createPgTestSchema('claim_order');
  sql = statements(t.schema);
});
beforeEach(async () => {
  await t.db.query(`TRUNCATE "${t.schema}".outbox, "${t.schema}".outbox_dead_letter`);
});
afterEach(async () => {
  await endAll();
});
afterAll(async () => {
  await t?.drop();
});

/** `count` events over `aggregates` aggregates (a-0 …), in seq order; their seqs. */
async function write(count: number, aggregates: number): Promise<string[]> {
  const { rows } = await t.db.query<{ seq: string }>(
    `INSERT INTO "${t.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
     SELECT 'lesson', 'a-' || (i % $2), 'lesson-published', '{}' FROM generate_series(0, $1 - 1) AS i
     RETURNING seq::text`,
    [count, aggregates],
  );
  return rows.map((row) => row.seq);
}

async function horizon(tx: TransactionExecutor): Promise<void> {
  await tx.query(sql.outboxWriteLastSeq);
  await tx.query(sql.outboxWriteBounds);
}

/** One claim, rolled back: its rows. `trusted`: the caller knows no row below `from`. */
async function claim(
  batch: number,
  from: string,
  trusted: boolean,
  restores: string,
): Promise<Claimed[]> {
  return t.db
    .transaction(async (tx) => {
      await horizon(tx);
      const { rows } = await tx.query<Claimed>(sql.outboxClaim, [
        batch,
        ALL,
        from,
        trusted ? '1' : '0',
        restores,
      ]);
      throw Object.assign(new Error('roll back'), { rows });
    })
    .catch((error: { rows?: Claimed[] }) => {
      if (!error.rows) throw error;
      return error.rows;
    });
}

/** Index scans of the aggregate index the claim ran: one per candidate when it probes. */
async function probes(from: string, trusted: boolean, batch = 100): Promise<number> {
  const loops = (node: PlanNode): number =>
    (node['Index Name'] === 'outbox_aggregate_idx' ? node['Actual Loops'] : 0) +
    (node.Plans ?? []).reduce((sum, child) => sum + loops(child), 0);
  return t.db.transaction(async (tx) => {
    await horizon(tx);
    const { rows } = await tx.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) ${sql.outboxClaim}`,
      [batch, ALL, from, trusted ? '1' : '0', '0'],
    );
    return loops((rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0].Plan);
  });
}

it('from a cursor with no row below it, probes no aggregate; otherwise one per candidate', async () => {
  const seqs = await write(600, 300);
  const cursor = seqs[200] as string;
  expect(await probes('0', false)).toBe(0);
  expect(await probes(cursor, true)).toBe(0);
  expect(await probes(cursor, false)).toBe(100);
  const rows = await claim(100, cursor, true, '0');
  expect(rows).toHaveLength(100);
  expect(rows.every((row) => !row.held && !row.passed_over && row.restores === '0')).toBe(true);
  // A claim of a few rows probes them: cheaper than counting its range from the start.
  expect(await probes(cursor, true, 10)).toBe(10);
  expect((await claim(10, cursor, true, '0')).every((row) => row.passed_over)).toBe(true);
});

it('holds back an aggregate whose earlier event another claim holds, and says it passed rows over', async () => {
  const seqs = await write(400, 100);
  // a-3's first event (seq index 3), locked by another transaction as a claim would.
  const other = await client();
  await other.query('BEGIN');
  await other.query(`SELECT 1 FROM "${t.schema}".outbox WHERE seq = $1 FOR UPDATE`, [seqs[3]]);
  for (const trusted of [true, false]) {
    const rows = await claim(200, seqs[0] as string, trusted, '0');
    const held = rows.filter((row) => row.held).map((row) => row.aggregate_id);
    expect(held).toEqual(['a-3']);
    expect(rows.every((row) => row.passed_over)).toBe(true);
  }
  await other.query('ROLLBACK');
  const rows = await claim(200, seqs[0] as string, true, '0');
  expect(rows.filter((row) => row.held)).toEqual([]);
  expect(rows.every((row) => !row.passed_over)).toBe(true);
});

it('a dead letter put back below the cursor: its aggregate is held back and the count moves', async () => {
  const seqs = await write(300, 100);
  // The first 100 were published but a-2's, which was dead-lettered; the cursor is past them.
  await t.db.query(`DELETE FROM "${t.schema}".outbox WHERE seq < $1 AND seq <> $2`, [
    seqs[100],
    seqs[2],
  ]);
  await t.db.query(
    `WITH gone AS (DELETE FROM "${t.schema}".outbox WHERE seq = $1 RETURNING *)
     INSERT INTO "${t.schema}".outbox_dead_letter
       (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition, occurred_at, attempts, last_error)
     SELECT seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition, occurred_at, 3, 'refused'
     FROM gone`,
    [seqs[2]],
  );
  const cursor = seqs[100] as string;
  const before = await claim(100, cursor, true, '0');
  expect(before.find((row) => row.aggregate_id === 'a-2')?.held).toBe(false);
  expect(before.every((row) => !row.passed_over)).toBe(true);
  const seen = before[0]?.restores as string;

  expect(await retryDeadLetters(t.db, t.schema, { aggregateId: 'a-2' })).toHaveLength(1);
  const after = await claim(100, cursor, true, seen);
  expect(after.find((row) => row.aggregate_id === 'a-2')?.held).toBe(true);
  expect(after.every((row) => row.passed_over)).toBe(true);
  expect(BigInt(after[0]?.restores as string)).toBe(BigInt(seen) + 1n);
  // The restored event itself is claimed from the start, before its aggregate's later ones.
  const fromStart = await claim(300, '0', true, after[0]?.restores as string);
  const a2 = fromStart.filter((row) => row.aggregate_id === 'a-2');
  expect(a2.map((row) => [row.seq, row.held])).toEqual([
    [seqs[2], false],
    [seqs[102], false],
    [seqs[202], false],
  ]);
});

it('an open restore announces its partition as bounded, as an open writer does', async () => {
  const [seq] = await write(1, 1);
  const { rows: moved } = await t.db.query<{ id: string; partition: number }>(
    `WITH gone AS (DELETE FROM "${t.schema}".outbox WHERE seq = $1 RETURNING *)
     INSERT INTO "${t.schema}".outbox_dead_letter
       (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition, occurred_at, attempts, last_error)
     SELECT seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition, occurred_at, 3, 'refused'
     FROM gone RETURNING id::text, partition`,
    [seq],
  );
  const { id, partition } = moved[0] as { id: string; partition: number };
  const restorer = await client();
  await restorer.query('BEGIN');
  await restorer.query(sql.deadLetterKeepSeq);
  await restorer.query(sql.deadLetterRetry, [
    `{${id}}`,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    1,
    '0',
    String(seq),
  ]);
  const bounded = await t.db.transaction(async (tx) => {
    await tx.query(sql.outboxWriteLastSeq);
    const { rows } = await tx.query<{ bounded: string }>(sql.outboxWriteBounds);
    return JSON.parse(rows[0]?.bounded ?? '[]') as number[];
  });
  expect(bounded).toEqual([partition]);
  await restorer.query('COMMIT');
});
