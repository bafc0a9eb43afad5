/**
 * The two places a row's partition is computed must agree: the generated `partition`
 * column and the insert trigger that announces the write bound (migration 0004), or late
 * commits are held back in the wrong partition.
 */
import pg from 'pg';
import {
  ORDER_LOCK_TAG,
  ORDER_PARTITION_MASK,
  ORDER_TAG_MASK,
} from '../../src/db/sql/fragments.js';
import { PG_URL } from './db.js';

/**
 * For 48 aggregates, the partition the insert trigger announced its write bound in (the
 * low 10 bits of the first key of its shared advisory lock) and the row's `partition`
 * column. Each row is inserted in a transaction of its own and rolled back.
 */
export async function triggerAndColumnPartitions(
  schema: string,
): Promise<{ trigger: number[]; column: number[] }> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  const trigger: number[] = [];
  const column: number[] = [];
  try {
    for (let i = 0; i < 48; i++) {
      // One transaction per row: the trigger announces each partition once per transaction.
      await client.query('BEGIN');
      const inserted = await client.query<{ partition: number }>(
        `INSERT INTO "${schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         VALUES ('lesson', $1, 'lesson-published', '{}') RETURNING partition`,
        [`aggregate-${i}`],
      );
      const locks = await client.query<{ partition: number }>(
        `SELECT (classid::bigint & ${ORDER_PARTITION_MASK})::int AS partition FROM pg_locks
         WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND objsubid = 2
           AND (classid::bigint & ${ORDER_TAG_MASK}) = ${ORDER_LOCK_TAG('$1')}`,
        [schema],
      );
      await client.query('ROLLBACK');
      if (locks.rows.length !== 1) {
        throw new Error(`expected one write-bound lock, found ${locks.rows.length}`);
      }
      trigger.push(locks.rows[0]?.partition as number);
      column.push(inserted.rows[0]?.partition as number);
    }
  } finally {
    await client.end();
  }
  return { trigger, column };
}
