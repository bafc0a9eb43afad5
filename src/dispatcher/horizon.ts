import type { TransactionExecutor } from '../db/database.js';
import type { Statements } from '../db/sql/index.js';

export interface WriteHorizon {
  /** Whether any event waits for a retry right now. */
  retrying: boolean;
  /** The partitions an open writing transaction bounds (their later events wait for it). */
  bounded: ReadonlySet<number>;
}

/**
 * The claim's parameters: the batch size, the partitions ('{…}'), the cursor, whether no
 * row lies below it ('1' or '0'), the count of restores last seen.
 */
export type ClaimValues = [number, string, string, string, string];

/**
 * The write horizon (see outboxWriteLastSeq), then the claim it limits, in this order
 * and in one message where the executor can send several (the horizon's statements
 * take no parameters); else one by one. Returns the horizon and the claimed rows.
 */
export async function claimWithinHorizon<R>(
  tx: TransactionExecutor,
  sql: Statements,
  claim: string,
  values: ClaimValues,
): Promise<{ horizon: WriteHorizon; rows: R[] }> {
  type Bounds = { bounded: string; retrying: boolean };
  let bounds: Bounds | undefined;
  let rows: R[];
  if (tx.queryAfter) {
    const result = await tx.queryAfter<Bounds, R>(
      `${sql.outboxWriteLastSeq};\n${sql.outboxWriteBounds}`,
      claim,
      values,
    );
    bounds = result.before[0];
    rows = result.rows;
  } else {
    await tx.query(sql.outboxWriteLastSeq);
    bounds = (await tx.query<Bounds>(sql.outboxWriteBounds)).rows[0];
    rows = (await tx.query<R>(claim, values)).rows;
  }
  return {
    horizon: {
      retrying: bounds?.retrying !== false,
      bounded: new Set(JSON.parse(bounds?.bounded ?? '[]') as number[]),
    },
    rows,
  };
}
