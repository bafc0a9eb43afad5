import type { Executor } from '../db/executor.js';
import type { Statements } from '../db/sql/index.js';

const MODULUS = 2n ** 31n;

export interface WriteHorizon {
  /** The highest seq drawn so far: nothing above it is claimed. */
  lastSeq: string;
  /** Per partition, the highest seq no open writer can precede: a '{…}' array, NULL where unbounded. */
  bounds: string;
  /** Whether any event waits for a retry right now. */
  retrying: boolean;
  /** The partitions an open writing transaction bounds (their later events wait for it). */
  bounded: ReadonlySet<number>;
}

/**
 * Reads, before the claim's snapshot, how far each partition may be published without
 * overtaking an open transaction (migration 0004 explains the announcements). A bound
 * travels as the seq modulo 2^31 and is restored here next to the sequence's last
 * value, which it can trail by less than 2^31.
 */
export async function readWriteHorizon(
  tx: Executor,
  sql: Statements,
  partitionCount: number,
): Promise<WriteHorizon> {
  const { rows } = await tx.query<{ last_seq: string; writers: string; retrying: boolean }>(
    sql.outboxWriteHorizon,
  );
  const lastSeq = BigInt(rows[0]?.last_seq ?? '0');
  const bounds: (bigint | undefined)[] = new Array(partitionCount).fill(undefined);
  for (const [partition, low] of JSON.parse(rows[0]?.writers ?? '[]') as [number, number][]) {
    if (partition >= partitionCount) continue;
    const bound = lastSeq - ((((lastSeq - BigInt(low)) % MODULUS) + MODULUS) % MODULUS);
    const current = bounds[partition];
    if (current === undefined || bound < current) bounds[partition] = bound;
  }
  return {
    lastSeq: String(lastSeq),
    bounds: `{${bounds.map((bound) => (bound === undefined ? 'NULL' : String(bound))).join(',')}}`,
    retrying: rows[0]?.retrying !== false,
    bounded: new Set(
      bounds.flatMap((bound, partition) => (bound === undefined ? [] : [partition])),
    ),
  };
}
