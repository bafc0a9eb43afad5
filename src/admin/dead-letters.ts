import { isoWithMicros } from '../common/admin-input.js';
import { ConfigError } from '../common/errors.js';
import { MASK, scrubSecrets } from '../common/secrets.js';
import type { Database } from '../db/database.js';
import type { Executor } from '../db/executor.js';
import { deadLetterJanitorLockKey, pgTextArray, statements } from '../db/sql/index.js';
import { deleteInBatches } from './batches.js';

/**
 * Which dead letters an operator means. Every field narrows the set; `ids` are CloudEvent
 * ids; `since`/`until` bound when the event was dead-lettered (`dead_at`, until excluded);
 * `error` is a last error exactly (a group's), `errorContains` text in it, in any case.
 */
export interface DeadLetterFilter {
  ids?: readonly string[];
  eventType?: string;
  aggregateType?: string;
  aggregateId?: string;
  since?: Date;
  until?: Date;
  error?: string;
  errorContains?: string;
}

/** Dead letters of one event type that failed with one error. */
export interface DeadLetterGroup {
  eventType: string;
  error: string;
  count: number;
  firstDeadAt: string;
  lastDeadAt: string;
}

export interface DeadLetter {
  seq: string;
  id: string;
  aggregateType: string;
  aggregateId: string;
  eventType: string;
  partition: number;
  /** RFC 3339; null for a time RFC 3339 cannot carry (`infinity`), which the dispatcher dead-letters when it claims the row. */
  occurredAt: string | null;
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

function filterValues(filter: DeadLetterFilter): unknown[] {
  return [
    filter.ids ? pgTextArray(filter.ids) : null,
    filter.eventType ?? null,
    filter.aggregateType ?? null,
    filter.aggregateId ?? null,
    filter.since ? isoWithMicros(filter.since) : null,
    filter.until ? isoWithMicros(filter.until) : null,
    filter.error ?? null,
    filter.errorContains ?? null,
  ];
}

/**
 * `filter` with its `error` as stored. Errors are shown with this process's secrets
 * masked (`***`), and a group's error is given back as shown: where exactly one stored
 * error among the matching dead letters shows as the one given, the filter takes it (two
 * that show alike, or none, leave the filter as given).
 */
async function withStoredError(
  db: Executor,
  schema: string,
  filter: DeadLetterFilter,
): Promise<DeadLetterFilter> {
  const shown = filter.error;
  if (shown === undefined || !shown.includes(MASK)) return filter;
  const { error: _shown, ...others } = filter;
  const { rows } = await db.query<{ error: string }>(
    statements(schema).deadLetterErrors,
    filterValues(others),
  );
  const stored = rows.map((row) => row.error).filter((error) => scrubSecrets(error) === shown);
  const [only] = stored;
  return stored.length === 1 && only !== undefined ? { ...filter, error: only } : filter;
}

/** Retry and discard act on every dead letter only when asked to in so many words. */
export function assertNarrowed(filter: object, all: boolean, action: string): void {
  const empty = Object.values(filter).every((value) => value === undefined);
  if (all && !empty) {
    throw new ConfigError('all', `cannot be combined with ids or filters (${action})`);
  }
  if (!all && empty) {
    throw new ConfigError(
      'filter',
      `${action} needs event ids, a filter, or all (--all in the CLI, "all": true in the console's API) to act on every dead letter`,
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
  const stored = await withStoredError(db, schema, filter);
  const { rows } = await db.query<DeadLetterRow>(statements(schema).deadLetterList, [
    ...filterValues(stored),
    limit,
  ]);
  return rows.map(toDeadLetter);
}

/**
 * The matching dead letters by event type and last error, the largest groups first (at
 * most 500): what failed, how often, since when. A group's `{ eventType, error }` is the
 * filter that retries or discards it.
 */
export async function groupDeadLetters(
  db: Executor,
  schema: string,
  filter: DeadLetterFilter = {},
): Promise<DeadLetterGroup[]> {
  const { rows } = await db.query<{
    event_type: string;
    error: string;
    count: number;
    first_dead_at: string;
    last_dead_at: string;
  }>(statements(schema).deadLetterGroups, filterValues(await withStoredError(db, schema, filter)));
  return rows.map((row) => ({
    eventType: row.event_type,
    error: row.error,
    count: Number(row.count),
    firstDeadAt: row.first_dead_at,
    lastDeadAt: row.last_dead_at,
  }));
}

/** One dead letter with its payload and headers, or undefined. */
export async function showDeadLetter(
  db: Executor,
  schema: string,
  id: string,
): Promise<DeadLetterDetail | undefined> {
  const { rows } = await db.query<DeadLetterRow>(
    statements(schema).deadLetterShow,
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

/** Dead letters moved back per transaction by `retryDeadLetters`. */
export const DEAD_LETTER_RETRY_BATCH = 5000;

/**
 * Moves the matching dead letters back into the outbox under their original seq and with
 * their attempts reset: they are published again (before the later events of their
 * aggregate that `onDeadLetter: 'hold'` kept back). In transactions of `batchSize`, the
 * lowest seq first, so each aggregate's go back in order and a large retry neither runs
 * one long statement nor holds back publishing meanwhile; the dispatchers are woken after
 * each. Returns their ids. One whose id an outbox row or an earlier dead letter has
 * stays a dead letter (deadLettersWithIdTaken).
 */
export async function retryDeadLetters(
  db: Database,
  schema: string,
  filter: DeadLetterFilter,
  options: { all?: boolean; batchSize?: number } = {},
): Promise<string[]> {
  assertNarrowed(filter, options.all === true, 'retry');
  const sql = statements(schema);
  const stored = filterValues(await withStoredError(db, schema, filter));
  const limit = options.batchSize ?? DEAD_LETTER_RETRY_BATCH;
  // What is a dead letter now; the batches walk up to it, each from where the last ended.
  const { rows: top } = await db.query<{ last: string }>(sql.deadLetterLastSeq);
  const upTo = top[0]?.last ?? '0';
  let after = '0';
  const ids: string[] = [];
  for (;;) {
    const moved = await db.transaction(async (tx) => {
      await tx.query(sql.deadLetterKeepSeq);
      const { rows } = await tx.query<{ id: string; seq: string }>(sql.deadLetterRetry, [
        ...stored,
        limit,
        after,
        upTo,
      ]);
      return rows;
    });
    ids.push(...moved.map((row) => row.id));
    for (const row of moved) if (BigInt(row.seq) > BigInt(after)) after = row.seq;
    // Committed: now wake the dispatchers.
    if (moved.length > 0) await wake(db, schema);
    if (moved.length < limit) return ids;
  }
}

/**
 * The matching dead letters `retryDeadLetters` leaves where they are: another event has
 * the same id (written with it after the first was dead-lettered), in the outbox or as an
 * earlier dead letter. Retry them once that one is published, or discard them.
 */
export async function deadLettersWithIdTaken(
  db: Executor,
  schema: string,
  filter: DeadLetterFilter,
): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    statements(schema).deadLetterIdTaken,
    filterValues(await withStoredError(db, schema, filter)),
  );
  return rows.map((row) => row.id);
}

/** Deletes the matching dead letters for good. Returns their ids. */
export async function discardDeadLetters(
  db: Executor,
  schema: string,
  filter: DeadLetterFilter,
  options: { all?: boolean } = {},
): Promise<string[]> {
  assertNarrowed(filter, options.all === true, 'discard');
  const sql = statements(schema);
  const stored = await withStoredError(db, schema, filter);
  const { rows } = await db.query<{ id: string }>(sql.deadLetterDiscard, filterValues(stored));
  // Under `hold` the later events of these aggregates wait for them. With `db` in
  // autocommit the delete has committed by now.
  if (rows.length > 0) await wake(db, schema);
  return rows.map((row) => row.id);
}

/** Dead letters deleted per statement by `purgeDeadLetters` and the dispatcher's janitor. */
export const DEAD_LETTER_PURGE_BATCH = 1000;

/**
 * The retained history: published events leave the outbox when the broker acknowledges
 * them, so only dead letters are kept. Deletes those dead-lettered before `before`, in
 * batches of `batchSize` (each its own statement); returns how many.
 */
export async function purgeDeadLetters(
  db: Executor,
  schema: string,
  before: Date,
  batchSize = DEAD_LETTER_PURGE_BATCH,
): Promise<number> {
  const sql = statements(schema);
  const purged = await deleteInBatches(batchSize, async (limit) => {
    const { rows } = await db.query(sql.deadLetterPurge, [isoWithMicros(before), limit]);
    return rows.length;
  });
  // A purge discards: under `hold` the later events of these aggregates go out now.
  if (purged > 0) await wake(db, schema);
  return purged;
}

/**
 * Wakes the dispatchers after dead letters left (a retry, a discard, a purge): the later
 * events `hold` kept back go out at once, not at the next full look (30 s at most). A
 * failure here only delays them until then.
 */
async function wake(db: Executor, schema: string): Promise<void> {
  await db.query(statements(schema).deadLetterWake).catch(() => {});
}

/**
 * The dispatcher's janitor: `purgeDeadLetters`, where each batch is a transaction that
 * first takes the schema's janitor lock. Several dispatchers may run janitors; one deletes
 * at a time, and another that finds the lock taken ends its round (the one holding it
 * carries on). `shouldStop` is asked before each batch. Returns how many it deleted.
 */
export async function purgeDeadLettersAsJanitor(
  db: Database,
  schema: string,
  before: Date,
  shouldStop: () => boolean = () => false,
): Promise<number> {
  const sql = statements(schema);
  const key = deadLetterJanitorLockKey(schema);
  const purged = await deleteInBatches(DEAD_LETTER_PURGE_BATCH, (limit) =>
    shouldStop()
      ? Promise.resolve(undefined)
      : db.transaction(async (tx) => {
          const { rows: lock } = await tx.query<{ locked: boolean }>(sql.deadLetterJanitorLock, [
            key,
          ]);
          if (lock[0]?.locked !== true) return undefined;
          const { rows } = await tx.query(sql.deadLetterPurge, [isoWithMicros(before), limit]);
          return rows.length;
        }),
  );
  if (purged > 0) await wake(db, schema);
  return purged;
}
