import { ConfigError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { bytesOverLimit, clip, describeValue, escapeControl } from '../common/text.js';

/** A claimed outbox row as brokers receive it. */
export interface OutboxMessage {
  /** Event id (uuid): CloudEvents `id`, broker dedup id. */
  id: string;
  /** Outbox sequence number, as a decimal string (bigint). */
  seq: string;
  aggregateType: string;
  aggregateId: string;
  eventType: string;
  /** The payload JSON exactly as stored. */
  payload: string;
  headers: Record<string, string>;
  partition: number;
  /** RFC 3339, UTC. */
  occurredAt: string;
  /** Failed publishes so far. */
  attempts: number;
}

/** What happened to one message of a batch. */
export type PublishResult =
  | { ok: true }
  | {
      ok: false;
      /** The broker's reason, stored as the event's `last_error`. */
      error: string;
      /**
       * True when the broker refused this message itself (too large, unroutable, invalid):
       * retrying unchanged is unlikely to help, so it is logged as a warning. Both kinds
       * are retried with backoff and dead-lettered after `maxAttempts`.
       */
      permanent: boolean;
    };

/** What the caller of `connect` hands the broker. */
export interface ConnectOptions {
  /**
   * Where the broker reports what it finds on connecting that works but falls short of
   * its settings (a NATS stream made elsewhere with a shorter duplicate window, say).
   * The dispatcher passes its own.
   */
  logger?: Logger;
}

/**
 * A publish target. The dispatcher calls `connect` once, then `publish` with batches,
 * then `close`.
 *
 * `publish` returns one result per message, in the batch's order. Messages of one batch
 * may go out in any order or in parallel: the dispatcher never puts two events of one
 * aggregate in the same call. When the broker as a whole is unreachable, `publish`
 * rejects with `BrokerUnavailableError` instead; the batch is then retried without
 * counting an attempt against any event.
 */
export interface EventBroker {
  /** `log`, `memory`, `nats`, … for logs and metrics. */
  readonly name: string;
  connect(options?: ConnectOptions): Promise<void>;
  publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]>;
  /**
   * Optional: one round trip to the broker, rejecting with BrokerUnavailableError when
   * it does not answer. An idle dispatcher calls it every poll interval, so an outage
   * shows (in readiness, in the logs) and is recovered from before the next event.
   */
  check?(): Promise<void>;
  /**
   * Optional: why this broker can never take `message` as it is (a name its addressing
   * cannot carry, a payload over a limit it knows), naming the field: `aggregate_type:
   * "room.*" is not allowed in a NATS subject token`. Called when the row is claimed; a
   * message it refuses is dead-lettered at once, since no retry can change the row.
   */
  validate?(message: OutboxMessage): string | undefined;
  /** Flushes what was accepted and releases the connection. */
  close(): Promise<void>;
}

/**
 * Refuses, naming `setting`, what is not an `EventBroker`: a broker URL given where the
 * broker built from it belongs, or an object without `name`, `connect`, `publish`, `close`.
 */
export function assertBroker(broker: unknown, setting: string): asserts broker is EventBroker {
  const fromUrl = 'brokerFromUrl(url, { source })';
  const wanted = `${fromUrl} or an EventBroker`;
  if (typeof broker === 'string') {
    throw new ConfigError(setting, `is a string; a URL goes through ${fromUrl}`);
  }
  if (broker === undefined || broker === null) {
    throw new ConfigError(setting, `is required: ${wanted}`);
  }
  const shape = broker as Partial<Record<keyof EventBroker, unknown>>;
  const missing = (['name', 'connect', 'publish', 'close'] as const).filter((key) =>
    key === 'name' ? typeof shape.name !== 'string' : typeof shape[key] !== 'function',
  );
  if (missing.length > 0) {
    throw new ConfigError(
      setting,
      `must be ${wanted}; ${describeValue(broker)} has no ${missing.join(', ')}`,
    );
  }
}

export const published: PublishResult = Object.freeze({ ok: true });

/** `payload: 2.0 MiB exceeds the server's max_payload (1.0 MiB)`. */
export function payloadTooLarge(bytes: number, limit: number, limitName: string): string {
  return `payload: ${bytesOverLimit(bytes, limit, limitName)}`;
}

/**
 * The first of `aggregate_type` / `event_type` that holds a character `forbidden` matches,
 * as a refusal naming it: `aggregate_type: "room.*>" is not allowed in a NATS subject
 * token (no ".", "*", ">" or white space)`; undefined when both are fine.
 */
export function nameRefusal(
  message: OutboxMessage,
  forbidden: RegExp,
  where: string,
): string | undefined {
  const names = { aggregate_type: message.aggregateType, event_type: message.eventType };
  for (const [field, value] of Object.entries(names)) {
    if (forbidden.test(value)) {
      return `${field}: "${clip(escapeControl(value), 80)}" is not allowed in ${where}`;
    }
  }
  return undefined;
}
