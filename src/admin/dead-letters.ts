import type { Database } from '../db/database.js';
import type { Executor } from '../db/executor.js';
import { quoteSchema } from '../db/identifier.js';
import { seqArray } from '../db/statements.js';
import { ConfigError } from '../errors.js';

/**
 * Which dead letters an operator means. Every field narrows the set; `ids` are CloudEvent
 * ids; `since`/`until` bound when the event was dead-lettered (`dead_at`, until excluded).
 */
export interface DeadLetterFilter {
  ids?: readonly string[];
  eventType?: string;
  aggregateType?: string;
  aggregateId?: string;
  since?: Date;
  until?: Date;
}

export interface DeadLetter {
  seq: string;
  id: string;
  aggregateType: string;
  aggregateId: string;
  eventType: string;
  partition: number;
  occurredAt: string;
  deadAt: string;
  /** Publishes tried before it was parked. */
  attempts: number;
  /** The broker's last reason. */
  lastError: string;
}

/** A dead letter with what it carries, as `dead show` prints it. */
export interface DeadLetterDetail extends DeadLetter {
  /** The payload exactly as the producer wrote it. */
  payload: string;
  headers: Record<string, string>;
}

interface DeadLetterRow {
  seq: string;
  id: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  partition: number;
  occurred_at: string;
  dead_at: string;
  attempts: number;
  last_error: string;
  payload?: string;
  headers?: string;
}

const COLUMNS = `seq::text AS seq, id::text AS id, aggregate_type, aggregate_id, event_type, partition,
  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
  to_char(dead_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS dead_at,
  attempts, last_error`;

// One statement per action whatever the filter: absent fields are NULL and match all.
const WHERE = `($1::text::uuid[] IS NULL OR id = ANY($1::text::uuid[]))
  AND ($2::text IS NULL OR event_type = $2)
  AND ($3::text IS NULL OR aggregate_type = $3)
  AND ($4::text IS NULL OR aggregate_id = $4)
  AND ($5::timestamptz IS NULL OR dead_at >= $5)
  AND ($6::timestamptz IS NULL OR dead_at < $6)`;

function filterValues(filter: DeadLetterFilter): unknown[] {
  return [
    filter.ids ? seqArray(filter.ids) : null,
    filter.eventType ?? null,
    filter.aggregateType ?? null,
    filter.aggregateId ?? null,
    filter.since?.toISOString() ?? null,
    filter.until?.toISOString() ?? null,
  ];
}

function isEmpty(filter: DeadLetterFilter): boolean {
  return (
    filter.ids === undefined &&
    filter.eventType === undefined &&
    filter.aggregateType === undefined &&
    filter.aggregateId === undefined &&
    filter.since === undefined &&
    filter.until === undefined
  );
}

/** Retry and discard act on every dead letter only when asked to in so many words. */
function assertNarrowed(filter: DeadLetterFilter, all: boolean, action: string): void {
  if (all && !isEmpty(filter)) {
    throw new ConfigError('all', `cannot be combined with ids or filters (${action})`);
  }
  if (!all && isEmpty(filter)) {
    throw new ConfigError(
      'filter',
      `${action} needs event ids, a filter, or --all to act on every dead letter`,
    );
  }
}

function toDeadLetter(row: DeadLetterRow): DeadLetter {
  return {
    seq: row.seq,
    id: row.id,
    aggregateType: row.aggregate_type,
    aggregateId: row.aggregate_id,
    eventType: row.event_type,
    partition: Number(row.partition),
    occurredAt: row.occurred_at,
    deadAt: row.dead_at,
    attempts: Number(row.attempts),
    lastError: row.last_error,
  };
}

/** Dead letters matching `filter`, oldest first, at most `limit`. */
export async function listDeadLetters(
  db: Executor,
  schema: string,
  filter: DeadLetterFilter = {},
  limit = 100,
): Promise<DeadLetter[]> {
  const { rows } = await db.query<DeadLetterRow>(
    `SELECT ${COLUMNS} FROM ${quoteSchema(schema)}.outbox_dead_letter WHERE ${WHERE}
     ORDER BY dead_at, seq LIMIT $7`,
    [...filterValues(filter), limit],
  );
  return rows.map(toDeadLetter);
}

/** One dead letter with its payload and headers, or undefined. */
export async function showDeadLetter(
  db: Executor,
  schema: string,
  id: string,
): Promise<DeadLetterDetail | undefined> {
  const { rows } = await db.query<DeadLetterRow>(
    `SELECT ${COLUMNS}, payload::text AS payload, headers::text AS headers
     FROM ${quoteSchema(schema)}.outbox_dead_letter WHERE ${WHERE}`,
    filterValues({ ids: [id] }),
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    ...toDeadLetter(row),
    payload: row.payload ?? 'null',
    headers: JSON.parse(row.headers ?? '{}') as Record<string, string>,
  };
}

/**
 * Moves the matching dead letters back into the outbox, in one transaction, under their
 * original seq and with their attempts reset: they are published again (before the later
 * events of their aggregate that `onDeadLetter: 'hold'` kept back). Returns their ids.
 */
export async function retryDeadLetters(
  db: Database,
  schema: string,
  filter: DeadLetterFilter,
  options: { all?: boolean } = {},
): Promise<string[]> {
  assertNarrowed(filter, options.all === true, 'retry');
  const s = quoteSchema(schema);
  return db.transaction(async (tx) => {
    // Lets the insert trigger keep the seq given here (migration 0005), for this transaction only.
    await tx.query(`SELECT set_config('edupulse_outbox.keep_seq', 'on', true)`);
    const { rows } = await tx.query<{ id: string }>(
      `WITH moved AS (
         DELETE FROM ${s}.outbox_dead_letter WHERE ${WHERE}
         RETURNING seq, id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at
       )
       INSERT INTO ${s}.outbox (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at)
       SELECT seq, id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at
       FROM moved ORDER BY seq
       RETURNING id::text AS id`,
      filterValues(filter),
    );
    return rows.map((row) => row.id);
  });
}

/** Deletes the matching dead letters for good. Returns their ids. */
export async function discardDeadLetters(
  db: Executor,
  schema: string,
  filter: DeadLetterFilter,
  options: { all?: boolean } = {},
): Promise<string[]> {
  assertNarrowed(filter, options.all === true, 'discard');
  const { rows } = await db.query<{ id: string }>(
    `DELETE FROM ${quoteSchema(schema)}.outbox_dead_letter WHERE ${WHERE} RETURNING id::text AS id`,
    filterValues(filter),
  );
  return rows.map((row) => row.id);
}

/**
 * The retained history: published events leave the outbox when the broker acknowledges
 * them, so only dead letters are kept. Deletes those dead-lettered before `before`;
 * returns how many.
 */
export async function purgeDeadLetters(
  db: Executor,
  schema: string,
  before: Date,
): Promise<number> {
  const { rows } = await db.query<{ purged: number }>(
    `WITH purged AS (
       DELETE FROM ${quoteSchema(schema)}.outbox_dead_letter WHERE dead_at < $1::timestamptz RETURNING 1
     ) SELECT count(*)::int AS purged FROM purged`,
    [before.toISOString()],
  );
  return Number(rows[0]?.purged ?? 0);
}
