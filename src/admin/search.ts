import type { Executor } from '../db/executor.js';
import { statements } from '../db/sql/index.js';
import { type ConsumerDeadLetter, listConsumerDeadLetters } from './consumer-dead-letters.js';
import { type DeadLetter, listDeadLetters } from './dead-letters.js';

/** An event still in the outbox: waiting to be published, or waiting for a retry. */
export interface PendingEvent {
  seq: string;
  id: string;
  aggregateType: string;
  aggregateId: string;
  eventType: string;
  partition: number;
  /** RFC 3339; null for a time RFC 3339 cannot carry (`infinity`), which the dispatcher dead-letters when it claims the row. */
  occurredAt: string | null;
  /** Failed publishes so far. */
  attempts: number;
  /** The broker's last reason, when a publish failed. */
  lastError: string | null;
}

/** Where an event, or an aggregate's events, are now. */
export interface SearchResult {
  pending: PendingEvent[];
  deadLetters: DeadLetter[];
  consumerDeadLetters: ConsumerDeadLetter[];
}

/** At most this many of each kind. */
export const SEARCH_LIMIT = 100;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Finds `query` as an event id (the CloudEvent id) or as an aggregate id, in the outbox,
 * among its dead letters and among the consumers' dead letters: each oldest first, at
 * most SEARCH_LIMIT.
 */
export async function searchEvents(
  db: Executor,
  schema: string,
  query: string,
): Promise<SearchResult> {
  const id = UUID.test(query) ? query.toLowerCase() : null;
  type Row = {
    seq: string;
    id: string;
    aggregate_type: string;
    aggregate_id: string;
    event_type: string;
    partition: number;
    occurred_at: string;
    attempts: number;
    last_error: string | null;
  };
  const [{ rows }, deadById, deadByAggregate, consumerById, consumerByAggregate] =
    await Promise.all([
      db.query<Row>(statements(schema).outboxSearch, [id, query]),
      id ? listDeadLetters(db, schema, { ids: [id] }, SEARCH_LIMIT) : [],
      listDeadLetters(db, schema, { aggregateId: query }, SEARCH_LIMIT),
      listConsumerDeadLetters(db, schema, { ids: [query] }, SEARCH_LIMIT),
      listConsumerDeadLetters(db, schema, { aggregateId: query }, SEARCH_LIMIT),
    ]);
  return {
    pending: rows.map((row) => ({
      seq: row.seq,
      id: row.id,
      aggregateType: row.aggregate_type,
      aggregateId: row.aggregate_id,
      eventType: row.event_type,
      partition: Number(row.partition),
      occurredAt: row.occurred_at,
      attempts: Number(row.attempts),
      lastError: row.last_error,
    })),
    deadLetters: merge(deadById, deadByAggregate, (d) => d.id),
    consumerDeadLetters: merge(consumerById, consumerByAggregate, (d) => d.id),
  };
}

/** Both lists without repeats, in their order, at most SEARCH_LIMIT. */
function merge<T>(first: readonly T[], second: readonly T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  const merged: T[] = [];
  for (const item of [...first, ...second]) {
    if (seen.has(key(item))) continue;
    seen.add(key(item));
    merged.push(item);
  }
  return merged.slice(0, SEARCH_LIMIT);
}
