import type { OutboxMessage } from '../events/cloudevents.js';

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
  connect(): Promise<void>;
  publish(batch: readonly OutboxMessage[]): Promise<PublishResult[]>;
  /**
   * Optional: one round trip to the broker, rejecting with BrokerUnavailableError when
   * it does not answer. An idle dispatcher calls it every poll interval, so an outage
   * shows (in readiness, in the logs) and is recovered from before the next event.
   */
  check?(): Promise<void>;
  /** Flushes what was accepted and releases the connection. */
  close(): Promise<void>;
}

export const published: PublishResult = Object.freeze({ ok: true });
