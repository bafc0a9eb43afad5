import type { MessageSource } from '../brokers/source.js';
import { parseBrokerUrl } from '../brokers/url-params.js';
import { ConfigError } from '../common/errors.js';
import { assertLogger, type Logger, silentLogger } from '../common/logger.js';
import { wholeNumber } from '../common/numbers.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import { assertDatabase, type Database } from '../db/database.js';
import { quoteSchema } from '../db/identifier.js';
import { withTimeouts } from '../db/with-timeouts.js';
import type { AnyEventDefinition, ConsumedEventOf } from './event.js';
import { assertConsumerName } from './inbox.js';

export interface ConsumeOptions<Defs extends readonly AnyEventDefinition[]> {
  /**
   * The broker URL, as the dispatcher's (`nats://…?stream=…`, `amqp://…?exchange=…`,
   * `kafka://…?topic=…`), plus the consumer's own parameters: NATS `ack_wait_s`,
   * `deliver`; RabbitMQ `queue`, `queue_type`; Kafka `from`, `session_timeout_ms`,
   * `group_instance_id`.
   */
  broker: string;
  /** The consumer's name: its durable JetStream consumer, RabbitMQ queue, Kafka group and inbox key. */
  consumer: string;
  /**
   * Where consumer dead letters are parked, and the lease is held (NATS): the consumer's
   * own statements, not the handler's.
   */
  database: Database;
  /** Schema holding the consumer tables (migration 0007). Default `public`. */
  schema?: string;
  /** The events to handle: `[QuizSubmitted, LessonPublished]`. */
  events: Defs;
  /**
   * Applies one event; the message is acked when it resolves (after its transaction
   * committed). Use an inbox inside it (`inbox.process(tx, event, …)`) to apply each
   * event once. Throwing retries it, then parks it. `context.signal` aborts when stop()
   * gives up waiting for the handler (`stopTimeoutMs`): pass it on to work that can be
   * cut short (`fetch(url, { signal })`).
   */
  handler: (event: ConsumedEventOf<Defs[number]>, context: HandlerContext) => unknown;
  /** Aggregates handled at once. Default 16. */
  concurrency?: number;
  /** Messages delivered and not yet acked, at most. Default 256. */
  maxInFlight?: number;
  /** Handler attempts before the message is parked. Default 5. */
  maxAttempts?: number;
  /** Delay before the first retry; doubles each time, with jitter. Default 200. */
  retryDelayMs?: number;
  /** Longest delay between retries. Default 10000. */
  retryMaxDelayMs?: number;
  /** An event type none of `events` declares: `skip` (ack, count) or `park`. Default `skip`. */
  onUnknownType?: 'skip' | 'park';
  /** Not a CloudEvent, or data its schema refuses: `park` or `skip`. Default `park`. */
  onInvalid?: 'park' | 'skip';
  /** `consume()` rejects when it cannot receive (or stand by) within this. Default 30000. */
  startTimeoutMs?: number;
  /**
   * How long stop() waits for the handlers in flight to finish and ack. Past it, stop()
   * lets go of the broker and the lease anyway: what was not acked is delivered again
   * (to the next run or another process), the handlers still running see
   * `context.signal` abort, and with an inbox a late commit of theirs is recognised as a
   * duplicate. Default 30000; 0 does not wait.
   */
  stopTimeoutMs?: number;
  /**
   * How often a standby process asks for the lease, and a receiving one makes sure the
   * session holding it still answers (NATS). Default 1000.
   */
  leaseRetryMs?: number;
  /**
   * One of the consumer's own statements (the lease, parking, dead-letter retries, the
   * janitor; not the handler's) unanswered this long — a network gone silent, a failover
   * to another address — drops its connection and fails as a lost connection does; the
   * lease's session lost, the consumer stops receiving until it holds the lease again.
   * The server is asked to end the lease's session once idle for 2 × (`leaseRetryMs` +
   * this), so that a process cut off leaves the lease to another. Default 30000.
   */
  databaseTimeoutMs?: number;
  /** How often the consumer looks for dead letters an operator asked to retry. Default 5000. */
  deadLetterRetryPollMs?: number;
  /**
   * The inbox janitor: while receiving, deletes this consumer's inbox records older than
   * this (in batches), every `inboxPurgeIntervalMs`. Keep it well beyond the longest
   * outage a duplicate could follow (see the README). Default: no janitor (purge by hand).
   */
  inboxRetentionMs?: number;
  /** How often the janitor runs. Default 600000 (10 minutes). */
  inboxPurgeIntervalMs?: number;
  /** pino-shaped logger. Default: silent. */
  logger?: Logger;
}

/** What a handler gets beside the event. */
export interface HandlerContext {
  /** Aborted when stop() stops waiting for the handlers in flight (`stopTimeoutMs`). */
  readonly signal: AbortSignal;
}

export interface ConsumerSettings {
  broker: string;
  binding: MessageSource['binding'];
  consumer: string;
  database: Database;
  schema: string;
  events: readonly AnyEventDefinition[];
  concurrency: number;
  maxInFlight: number;
  maxAttempts: number;
  retryDelayMs: number;
  retryMaxDelayMs: number;
  onUnknownType: 'skip' | 'park';
  onInvalid: 'park' | 'skip';
  startTimeoutMs: number;
  stopTimeoutMs: number;
  leaseRetryMs: number;
  databaseTimeoutMs: number;
  deadLetterRetryPollMs: number;
  inboxRetentionMs: number | undefined;
  inboxPurgeIntervalMs: number;
  logger: Logger;
}

const bindings: Record<string, MessageSource['binding']> = {
  'nats:': 'nats',
  'amqp:': 'amqp',
  'amqps:': 'amqp',
  'kafka:': 'kafka',
};

function oneOf<T extends string>(
  setting: string,
  value: T | undefined,
  allowed: readonly T[],
  fallback: T,
): T {
  const chosen = value ?? fallback;
  if (!allowed.includes(chosen)) {
    throw new ConfigError(setting, `"${String(chosen)}" is not ${allowed.join(' or ')}`);
  }
  return chosen;
}

export const consumeOptions = optionNames<ConsumeOptions<readonly AnyEventDefinition[]>>({
  broker: true,
  consumer: true,
  database: true,
  schema: true,
  events: true,
  handler: true,
  concurrency: true,
  maxInFlight: true,
  maxAttempts: true,
  retryDelayMs: true,
  retryMaxDelayMs: true,
  onUnknownType: true,
  onInvalid: true,
  startTimeoutMs: true,
  stopTimeoutMs: true,
  leaseRetryMs: true,
  databaseTimeoutMs: true,
  deadLetterRetryPollMs: true,
  inboxRetentionMs: true,
  inboxPurgeIntervalMs: true,
  logger: true,
});

/** Checks every option, naming the first bad one in a ConfigError. */
export function resolveConsumeOptions<Defs extends readonly AnyEventDefinition[]>(
  options: ConsumeOptions<Defs>,
): ConsumerSettings {
  assertKnownOptions('consume', options, consumeOptions);
  if (typeof options.broker !== 'string')
    throw new ConfigError('broker', 'is required (a broker URL)');
  const binding = bindings[parseBrokerUrl(options.broker, 'broker', 'a broker URL').protocol];
  if (!binding)
    throw new ConfigError('broker', 'must be a nats://, amqp://, amqps:// or kafka:// URL');
  assertConsumerName(options.consumer, 'consumer');
  if (binding === 'nats' && options.consumer.includes('.')) {
    // JetStream refuses it as a durable name, which would show only once start timed out.
    throw new ConfigError(
      'consumer',
      `"${options.consumer}" cannot name a JetStream consumer: its durable name may not contain "."`,
    );
  }
  assertDatabase(options.database, 'database');
  const schema = options.schema ?? 'public';
  quoteSchema(schema);
  if (!Array.isArray(options.events) || options.events.length === 0) {
    throw new ConfigError('events', 'must list at least one event definition (defineEvent(…))');
  }
  const types = new Set<string>();
  for (const definition of options.events) {
    if (typeof definition?.parse !== 'function') {
      throw new ConfigError('events', 'must hold event definitions made with defineEvent(…)');
    }
    if (types.has(definition.type)) {
      throw new ConfigError('events', `"${definition.type}" is listed twice`);
    }
    types.add(definition.type);
  }
  if (typeof options.handler !== 'function') throw new ConfigError('handler', 'must be a function');
  assertLogger(options.logger, 'logger');
  const leaseRetryMs = wholeNumber('leaseRetryMs', options.leaseRetryMs ?? 1000, 10, 600_000);
  const databaseTimeoutMs = wholeNumber(
    'databaseTimeoutMs',
    options.databaseTimeoutMs ?? 30_000,
    100,
    600_000,
  );
  return {
    broker: options.broker,
    binding,
    consumer: options.consumer,
    // Its own statements answered within databaseTimeoutMs; the lease's session, used
    // every leaseRetryMs, ended by the server once idle for twice that gap.
    database: withTimeouts(options.database, {
      answerMs: databaseTimeoutMs,
      idleSessionMs: 2 * (leaseRetryMs + databaseTimeoutMs),
    }),
    schema,
    events: options.events,
    concurrency: wholeNumber('concurrency', options.concurrency ?? 16, 1, 10_000),
    maxInFlight: wholeNumber('maxInFlight', options.maxInFlight ?? 256, 1, 65_535),
    maxAttempts: wholeNumber('maxAttempts', options.maxAttempts ?? 5, 1, 1000),
    retryDelayMs: wholeNumber('retryDelayMs', options.retryDelayMs ?? 200, 1, 3_600_000),
    retryMaxDelayMs: wholeNumber(
      'retryMaxDelayMs',
      options.retryMaxDelayMs ?? 10_000,
      1,
      3_600_000,
    ),
    onUnknownType: oneOf('onUnknownType', options.onUnknownType, ['skip', 'park'], 'skip'),
    onInvalid: oneOf('onInvalid', options.onInvalid, ['park', 'skip'], 'park'),
    startTimeoutMs: wholeNumber('startTimeoutMs', options.startTimeoutMs ?? 30_000, 100, 3_600_000),
    stopTimeoutMs: wholeNumber('stopTimeoutMs', options.stopTimeoutMs ?? 30_000, 0, 3_600_000),
    leaseRetryMs,
    databaseTimeoutMs,
    deadLetterRetryPollMs: wholeNumber(
      'deadLetterRetryPollMs',
      options.deadLetterRetryPollMs ?? 5000,
      10,
      3_600_000,
    ),
    inboxRetentionMs:
      options.inboxRetentionMs === undefined
        ? undefined
        : wholeNumber('inboxRetentionMs', options.inboxRetentionMs, 60_000, 3_650 * 86_400_000),
    inboxPurgeIntervalMs: wholeNumber(
      'inboxPurgeIntervalMs',
      options.inboxPurgeIntervalMs ?? 600_000,
      10,
      86_400_000,
    ),
    logger: options.logger ?? silentLogger,
  };
}
