import { isoWithMicros } from '../common/admin-input.js';
import type { Executor } from '../db/executor.js';
import { pgTextArray, statements } from '../db/sql/index.js';
import { deleteInBatches } from './batches.js';
import { assertNarrowed } from './dead-letters.js';

/**
 * Which consumer dead letters an operator means: those of `consumer` (all consumers when
 * absent, for listing), narrowed by event ids, type, aggregate and when they were parked.
 */
export interface ConsumerDeadLetterFilter {
  consumer?: string;
  /** CloudEvent ids (text: other producers' ids need not be uuids). */
  ids?: readonly string[];
  eventType?: string;
  aggregateId?: string;
  since?: Date;
  until?: Date;
}

export interface ConsumerDeadLetter {
  /** The dead letter's own id (a message that could not be decoded has no event id). */
  id: string;
  consumer: string;
  /**
   * The CloudEvent source of the event: with its id, what makes it one ('' for a message
   * that could not be decoded, and for dead letters parked before migration 0012).
   */
  source: string;
  eventId: string | null;
  eventType: string | null;
  aggregateId: string | null;
  sequence: string | null;
  /** Where the broker delivered it from. */
  origin: string;
  /** Handler attempts before it was parked (0: parked without a handler). */
  attempts: number;
  lastError: string;
  deadAt: string;
  /** A retry was asked for and the consumer has not finished it. */
  retrying: boolean;
}

export interface ConsumerDeadLetterDetail extends ConsumerDeadLetter {
  headers: Record<string, string>;
  /** The body as received, as text. */
  body: string;
}

interface Row {
  id: string;
  consumer: string;
  source: string;
  event_id: string | null;
  event_type: string | null;
  aggregate_id: string | null;
  sequence: string | null;
  origin: string;
  attempts: number;
  last_error: string;
  dead_at: string;
  retrying: boolean;
  headers?: string;
  body?: string;
}

function filterValues(filter: ConsumerDeadLetterFilter): unknown[] {
  return [
    filter.consumer ?? null,
    filter.ids ? pgTextArray(filter.ids) : null,
    filter.eventType ?? null,
    filter.aggregateId ?? null,
    filter.since ? isoWithMicros(filter.since) : null,
    filter.until ? isoWithMicros(filter.until) : null,
  ];
}

function toDeadLetter(row: Row): ConsumerDeadLetter {
  return {
    id: row.id,
    consumer: row.consumer,
    source: row.source,
    eventId: row.event_id,
    eventType: row.event_type,
    aggregateId: row.aggregate_id,
    sequence: row.sequence,
    origin: row.origin,
    attempts: Number(row.attempts),
    lastError: row.last_error,
    deadAt: row.dead_at,
    retrying: row.retrying,
  };
}

/** Whether `consumer` recorded anything in the schema: an inbox record or mark, or a dead letter. */
export async function consumerKnown(
  db: Executor,
  schema: string,
  consumer: string,
): Promise<boolean> {
  const { rows } = await db.query<{ known: boolean }>(statements(schema).consumerKnown, [consumer]);
  return rows[0]?.known === true;
}

/** Consumer dead letters matching `filter`, oldest first, at most `limit`. */
export async function listConsumerDeadLetters(
  db: Executor,
  schema: string,
  filter: ConsumerDeadLetterFilter = {},
  limit = 100,
): Promise<ConsumerDeadLetter[]> {
  const { rows } = await db.query<Row>(statements(schema).consumerDeadLetterList, [
    ...filterValues(filter),
    limit,
  ]);
  return rows.map(toDeadLetter);
}

/**
 * The dead letters of one event id (one per consumer that parked it, and per producer that
 * used the id), with headers and body.
 */
export async function showConsumerDeadLetters(
  db: Executor,
  schema: string,
  eventId: string,
  consumer?: string,
): Promise<ConsumerDeadLetterDetail[]> {
  const { rows } = await db.query<Row>(
    statements(schema).consumerDeadLetterShow,
    filterValues({ ids: [eventId], ...(consumer !== undefined ? { consumer } : {}) }),
  );
  return rows.map((row) => ({
    ...toDeadLetter(row),
    headers: JSON.parse(row.headers ?? '{}') as Record<string, string>,
    body: row.body ?? '',
  }));
}

/** Runs a retry or discard statement on the filter, refusing an unnarrowed one without `all`. */
async function act(
  db: Executor,
  statement: string,
  action: 'retry' | 'discard',
  filter: ConsumerDeadLetterFilter & { consumer: string },
  all: boolean,
): Promise<string[]> {
  const { consumer: _consumer, ...narrowing } = filter;
  assertNarrowed(narrowing, all, action);
  const { rows } = await db.query<{ id: string }>(statement, filterValues(filter));
  return rows.map((row) => row.id);
}

/**
 * Asks the running consumer to hand the matching dead letters to its handler again (it
 * looks every few seconds); each is deleted once handled, or parked anew with the new
 * reason; one being handled already is left to that. An event parked as stale skips the
 * inbox's stale check when retried: the operator chose to apply it. Returns their event
 * ids (the dead letter's id for a message without one).
 */
export function retryConsumerDeadLetters(
  db: Executor,
  schema: string,
  filter: ConsumerDeadLetterFilter & { consumer: string },
  options: { all?: boolean } = {},
): Promise<string[]> {
  const statement = statements(schema).consumerDeadLetterRetry;
  return act(db, statement, 'retry', filter, options.all === true);
}

/** Deletes the matching consumer dead letters for good. Returns their event ids. */
export function discardConsumerDeadLetters(
  db: Executor,
  schema: string,
  filter: ConsumerDeadLetterFilter & { consumer: string },
  options: { all?: boolean } = {},
): Promise<string[]> {
  const statement = statements(schema).consumerDeadLetterDiscard;
  return act(db, statement, 'discard', filter, options.all === true);
}

/** Deletes the consumer dead letters parked before `before` (of one consumer, or all); how many. */
export async function purgeConsumerDeadLetters(
  db: Executor,
  schema: string,
  before: Date,
  consumer?: string,
): Promise<number> {
  const { rows } = await db.query<{ purged: number }>(statements(schema).consumerDeadLetterPurge, [
    isoWithMicros(before),
    consumer ?? null,
  ]);
  return Number(rows[0]?.purged ?? 0);
}

/** Deletes inbox records older than `before` (of one consumer, or all), in batches; how many. */
export async function purgeInbox(
  db: Executor,
  schema: string,
  before: Date,
  consumer?: string,
  batchSize = 5000,
): Promise<number> {
  const sql = statements(schema);
  return deleteInBatches(batchSize, async (limit) => {
    const { rows } = await db.query(sql.inboxPurge, [
      isoWithMicros(before),
      consumer ?? null,
      limit,
    ]);
    return rows.length;
  });
}
