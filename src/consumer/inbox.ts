import { purgeInbox } from '../admin/consumer-dead-letters.js';
import { ConfigError, OutboxError } from '../common/errors.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import type { Executor } from '../db/executor.js';
import { type TransactionLike, toExecutor } from '../db/executor.js';
import { quoteSchema } from '../db/identifier.js';
import { missingTableError } from '../db/missing-table.js';
import { refusedPrivilege } from '../db/privileges.js';
import { statements } from '../db/sql/index.js';
import type { ConsumedEvent } from './event.js';

/**
 * What to do with an event older than one already applied for its aggregate (its
 * `sequence` is lower): a dead letter the producer's operator retried late, or an event
 * from another producer that resent history.
 * - `park` (default): the consumer parks it as a consumer dead letter with the reason,
 *   for a person to decide; nothing is applied. `dead retry --consumer` of it applies it
 *   after all; a retried dead letter parked for another reason meets this policy again.
 * - `skip`: recorded as seen and not applied.
 * - `apply`: applied like any new event.
 */
export type StalePolicy = 'park' | 'skip' | 'apply';

export interface InboxOptions {
  /** The consumer's name: one inbox per consumer; the same event applies once per consumer. */
  consumer: string;
  /** Schema holding the inbox tables (migration 0007). Default `public`. */
  schema?: string;
  /** Default `park`. */
  onStale?: StalePolicy;
}

/** `applied`: `fn` ran; `duplicate`: the event was applied before; `stale`: older than the aggregate's last, not applied. */
export type InboxOutcome = 'applied' | 'duplicate' | 'stale';

/**
 * What `process` did: `applied`, with what `fn` returned; or `duplicate` / `stale`, when
 * `fn` did not run. Narrow on `outcome` and `result` is typed.
 */
export type InboxResult<R> =
  | { outcome: 'applied' /** What `fn` returned. */; result: R }
  | { outcome: Exclude<InboxOutcome, 'applied'>; result?: undefined };

/**
 * The fields of an event the inbox keys on. An event is recorded by its `source` and `id`
 * (CloudEvents makes only the two together unique), and its order is kept per aggregate,
 * that is per `source` (the producer, whose outbox numbers the `sequence`),
 * `aggregateType` and `aggregateId`. The consumer's events carry them all; an event built
 * by hand without `source` or `aggregateType` has them empty.
 */
export type InboxEvent = Pick<ConsumedEvent, 'id' | 'type' | 'aggregateId' | 'sequence'> &
  Partial<Pick<ConsumedEvent, 'source' | 'aggregateType'>>;

export interface Inbox {
  readonly consumer: string;
  /**
   * Inside the caller's transaction: records the event's id, then runs `fn` only if the
   * id is new (and the event is not older than the aggregate's last, see `onStale`).
   * Commit and both the record and `fn`'s effect are there; roll back and neither is, and
   * the broker redelivers the event. Two transactions recording the same id at once: the
   * second waits for the first and, if it committed, finds a duplicate.
   */
  process<R>(
    tx: TransactionLike,
    event: InboxEvent,
    fn: () => Promise<R> | R,
  ): Promise<InboxResult<R>>;
  /** Deletes this consumer's inbox records older than `olderThan`, in batches; how many. */
  purge(db: Executor, olderThan: Date, batchSize?: number): Promise<number>;
}

/** Thrown by `process` under `onStale: 'park'`: the consumer parks the event with this reason. */
export class StaleEventError extends OutboxError {
  constructor(message: string) {
    super('STALE_EVENT', message);
  }
}

// What `process` decided for each event object, read by `consume` after the handler's
// transaction committed (metrics count duplicates and stale events apart).
const outcomes = new WeakMap<object, InboxOutcome>();

// Events an operator retried after they were parked as stale: applied even when stale.
const acceptedStale = new WeakSet<object>();

/** Marks an event `consume` hands to its handler as an operator's retry of a stale one. */
export function acceptStale(event: object): void {
  acceptedStale.add(event);
}

/** The inbox's verdict on an event `consume` handed to a handler, if the handler used one. */
export function inboxOutcome(event: object): InboxOutcome | undefined {
  return outcomes.get(event);
}

const CONSUMER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/** Checks a consumer name: it names a JetStream consumer, a RabbitMQ queue and a Kafka group. */
export function assertConsumerName(name: unknown, setting: string): asserts name is string {
  if (typeof name !== 'string' || !CONSUMER_NAME.test(name)) {
    throw new ConfigError(
      setting,
      `${typeof name === 'string' ? `"${name.slice(0, 100)}"` : String(name)} is not a consumer name (1-100 letters, digits, "_", "-", ".", starting with a letter or digit)`,
    );
  }
}

export const inboxOptions = optionNames<InboxOptions>({
  consumer: true,
  schema: true,
  onStale: true,
});

/** Whether two sequences (decimal text, as the database took them) are one number. */
function sameSequence(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  try {
    return BigInt(a) === BigInt(b);
  } catch {
    return false;
  }
}

/** Where docs/operations.md says what to do when a producer's sequence went back. */
const RESTORED_PRODUCER = 'docs/operations.md#restoring-a-database-from-a-backup';

/** Why an event is parked as stale: older than the aggregate's mark, or of its sequence under another id. */
function staleReason(
  event: InboxEvent,
  lastSequence: string | undefined,
  lastId: string | undefined,
  reused: boolean,
): string {
  const what = `event ${event.id} (${event.type}, sequence ${event.sequence})`;
  const aggregate = `${event.aggregateType ? `${event.aggregateType} ` : 'aggregate '}"${event.aggregateId}"`;
  if (reused) {
    return `${what} has the sequence of event ${lastId}, the last applied for ${aggregate}: the producer numbered events again from an earlier sequence, as after its database was restored from a backup; advance its sequence (${RESTORED_PRODUCER}), then retry this event`;
  }
  const applied = lastSequence === undefined ? '' : ` (sequence ${lastSequence})`;
  return `${what} is older than the last event applied for ${aggregate}${applied}; one applied before and delivered again after its inbox record was purged looks the same: retry it only if it was not applied (after a restore of the producer's database, see ${RESTORED_PRODUCER})`;
}

export function createInbox(options: InboxOptions): Inbox {
  assertKnownOptions('createInbox', options, inboxOptions, 'inbox.');
  assertConsumerName(options.consumer, 'inbox.consumer');
  const schema = options.schema ?? 'public';
  quoteSchema(schema);
  const onStale = options.onStale ?? 'park';
  if (!['park', 'skip', 'apply'].includes(onStale)) {
    throw new ConfigError('inbox.onStale', `"${onStale}" is not park, skip or apply`);
  }
  const sql = statements(schema);
  const consumer = options.consumer;
  return {
    consumer,
    async process(tx, event, fn) {
      const executor = toExecutor(tx, 'inbox.process');
      const { rows } = await executor
        .query<{ fresh: number; in_order: number }>(sql.inboxRecord, [
          consumer,
          event.id,
          event.type,
          event.aggregateId,
          event.sequence ?? null,
          event.source ?? '',
          event.aggregateType ?? '',
        ])
        .catch((error: unknown) => {
          throw (
            missingTableError(error, schema, 'inbox') ??
            refusedPrivilege(error, schema, 'inbox') ??
            error
          );
        });
      const row = rows[0];
      let outcome: InboxOutcome = 'applied';
      if (!row || row.fresh === 0) outcome = 'duplicate';
      else if (row.in_order === 0) {
        // Rare: asked only now. The aggregate's last applied event has this sequence: it is
        // this event, its inbox record purged before the broker delivered it again (a
        // sequence is one outbox row's), unless the mark names another event: then the
        // producer's sequence went back. Otherwise it is older, and the reason says than what.
        const { rows: last } = await executor.query<{ last: string; last_id: string | null }>(
          sql.inboxLastSequence,
          [consumer, event.source ?? '', event.aggregateType ?? '', event.aggregateId],
        );
        const lastSequence = last[0]?.last;
        const lastId = last[0]?.last_id ?? undefined;
        const reused =
          sameSequence(lastSequence, event.sequence) && lastId !== undefined && lastId !== event.id;
        if (sameSequence(lastSequence, event.sequence) && !reused) outcome = 'duplicate';
        else if (onStale !== 'apply' && !acceptedStale.has(event)) {
          if (onStale === 'park')
            throw new StaleEventError(staleReason(event, lastSequence, lastId, reused));
          outcome = 'stale';
        }
      }
      // A handler that records one event twice (the second finds the first's record)
      // applied it all the same: what consume() counts stays 'applied'.
      if (outcomes.get(event) !== 'applied') outcomes.set(event, outcome);
      if (outcome !== 'applied') return { outcome };
      return { outcome, result: await fn() };
    },
    purge: (db, olderThan, batchSize) => purgeInbox(db, schema, olderThan, consumer, batchSize),
  };
}
