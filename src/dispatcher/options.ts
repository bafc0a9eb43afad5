import type { EventBroker } from '../brokers/broker.js';
import type { Database } from '../db/database.js';
import { quoteSchema } from '../db/identifier.js';
import { ConfigError } from '../errors.js';
import { type Logger, silentLogger } from '../observability/logger.js';

export interface DispatcherOptions {
  /** Where the outbox lives: `pgDatabase(…)` or `pgliteDatabase(…)`. The caller closes it. */
  db: Database;
  /** Where events go. The dispatcher connects it on `start()` and closes it on `stop()`. */
  broker: EventBroker;
  /** Schema of the outbox tables. Default `public`. */
  schema?: string;
  /** Most rows claimed, published and settled per transaction. Default 500. */
  batchSize?: number;
  /**
   * Batches in flight at once, each in its own transaction: the dispatcher runs this many
   * loops (lanes), lane i claiming from its owned partitions p with p mod n = i. Lanes
   * never share an aggregate, so order is kept as with one; one lane claims while another
   * publishes, and their claims use more than one database core. Needs at least as many
   * partitions as lanes to keep every lane busy. 1: one batch at a time. Default 2.
   */
  batchesInFlight?: number;
  /** How often to look for work when no NOTIFY arrives (and for retries coming due). Default 1000. */
  pollIntervalMs?: number;
  /** Wake up on the outbox trigger's NOTIFY. `false`: polling only. Default true. */
  notify?: boolean;
  /** Publishes an event gets before it becomes a dead letter. Default 10. */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt, with jitter. Default 1000. */
  retryBaseDelayMs?: number;
  /** Longest retry delay (events and reconnects). Default 300000. */
  retryMaxDelayMs?: number;
  /**
   * A batch the broker has not answered within this is rolled back and tried again.
   * Default 30000, at most 120000 (the claim transaction must not outlive it by much).
   */
  publishTimeoutMs?: number;
  /**
   * How often dispatchers sharing a database recount each other and move partitions
   * towards a fair share; a joining, leaving or crashed dispatcher is balanced out within
   * about two rounds. Default 1000.
   */
  rebalanceIntervalMs?: number;
  /**
   * What happens to the later events of an aggregate once one of its events is
   * dead-lettered. `continue` (default): they are published; the aggregate's consumers
   * see a gap but the aggregate keeps flowing. `hold`: they wait in the outbox until an
   * operator retries or discards the dead letter; no gap, but that aggregate stops.
   */
  onDeadLetter?: 'continue' | 'hold';
  logger?: Logger;
}

export type ResolvedDispatcherOptions = Required<Omit<DispatcherOptions, 'logger'>> & {
  logger: Logger;
};

function integer(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  const resolved = value ?? fallback;
  if (!Number.isInteger(resolved) || resolved < min || resolved > max) {
    throw new ConfigError(
      name,
      `must be a whole number from ${min} to ${max}, got ${String(value)}`,
    );
  }
  return resolved;
}

/** Fills in defaults and checks every field; a bad one throws ConfigError naming it. */
export function resolveDispatcherOptions(options: DispatcherOptions): ResolvedDispatcherOptions {
  if (!options.db) throw new ConfigError('db', 'is required');
  if (!options.broker) throw new ConfigError('broker', 'is required');
  const schema = options.schema ?? 'public';
  quoteSchema(schema);
  const retryBaseDelayMs = integer(
    'retryBaseDelayMs',
    options.retryBaseDelayMs,
    1000,
    1,
    86_400_000,
  );
  return {
    db: options.db,
    broker: options.broker,
    schema,
    batchSize: integer('batchSize', options.batchSize, 500, 1, 10_000),
    batchesInFlight: integer('batchesInFlight', options.batchesInFlight, 2, 1, 16),
    pollIntervalMs: integer('pollIntervalMs', options.pollIntervalMs, 1000, 10, 3_600_000),
    notify: options.notify ?? true,
    maxAttempts: integer('maxAttempts', options.maxAttempts, 10, 1, 1000),
    retryBaseDelayMs,
    retryMaxDelayMs: integer(
      'retryMaxDelayMs',
      options.retryMaxDelayMs,
      300_000,
      retryBaseDelayMs,
      86_400_000,
    ),
    publishTimeoutMs: integer('publishTimeoutMs', options.publishTimeoutMs, 30_000, 100, 120_000),
    onDeadLetter: deadLetterPolicy(options.onDeadLetter),
    rebalanceIntervalMs: integer(
      'rebalanceIntervalMs',
      options.rebalanceIntervalMs,
      1000,
      50,
      60_000,
    ),
    logger: options.logger ?? silentLogger,
  };
}

function deadLetterPolicy(value: DispatcherOptions['onDeadLetter']): 'continue' | 'hold' {
  const resolved = value ?? 'continue';
  if (resolved !== 'continue' && resolved !== 'hold') {
    throw new ConfigError('onDeadLetter', `must be "continue" or "hold", got ${String(value)}`);
  }
  return resolved;
}
