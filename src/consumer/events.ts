import type { EventEmitter } from 'node:events';
import type { ConsumedEvent } from './event.js';
import type { Parked } from './park.js';

/** Totals since the consumer started. */
export interface ConsumerStats {
  /** Messages the broker delivered (redeliveries included), and consumer dead letters retried. */
  received: number;
  /**
   * Handlers that completed and were acked: duplicates the inbox recognised included, and
   * stale events the inbox's `onStale` skipped or applied (one it parks counts in `parked`).
   */
  processed: number;
  /** Of those, events the inbox had applied before. */
  duplicates: number;
  /** Events older than their aggregate's last applied one (parked or skipped by the inbox's policy). */
  stale: number;
  /** Handler attempts that threw. */
  failed: number;
  /** Messages parked as consumer dead letters. */
  parked: number;
  /** Messages acked without a handler: unknown types (or invalid ones) under the `skip` policy. */
  skipped: number;
  /** Inbox records the janitor deleted (`inboxRetentionMs`). */
  inboxPurged: number;
}

export interface ConsumerHealth {
  /**
   * `starting` (until it first receives or stands by); `receiving`; `standby` (another
   * process of this consumer name holds the lease); `reconnecting` (the broker or the
   * lease was lost; retrying); `stopping` (stop() was called: the handlers in flight
   * finish and ack); `stopped`.
   */
  state: 'starting' | 'receiving' | 'standby' | 'reconnecting' | 'stopping' | 'stopped';
  /** Why it is not receiving, when it is not. */
  reason: string | undefined;
  /** Messages delivered and not yet acked. */
  inFlight: number;
}

/** Typed events of a consumer, for metrics and logs. */
export interface ConsumerEvents {
  processed: [
    { event: ConsumedEvent; outcome: 'applied' | 'duplicate' | 'stale'; durationMs: number },
  ];
  failed: [{ event: ConsumedEvent; error: unknown; willRetry: boolean }];
  parked: [Parked];
  skipped: [{ origin: string; type: string | undefined; reason: string }];
  /** The broker or the lease was lost; the consumer reconnects by itself. */
  lost: [{ reason: string }];
  /**
   * The consumer stopped by itself, since retrying cannot help (a `ConfigError`); the same
   * error rejects `closed`.
   */
  fatal: [Error];
  state: [ConsumerHealth['state']];
}

export interface Consumer extends EventEmitter<ConsumerEvents> {
  readonly stats: Readonly<ConsumerStats>;
  health(): ConsumerHealth;
  /**
   * Messages the broker holds for this consumer not yet acknowledged, as the broker
   * reports them (JetStream pending + ack-pending; the RabbitMQ queue's ready messages +
   * this process's unacked; Kafka's group lag). Undefined while not receiving; rejects
   * when the broker does not answer.
   */
  backlog(): Promise<number | undefined>;
  /**
   * Stops receiving, lets the handlers already running finish and acks them, leaves the
   * rest to the broker's redelivery, releases the connection and the lease. Handlers
   * still running after `stopTimeoutMs` are left behind: their messages are not acked
   * (delivered again), their `context.signal` aborts, and stop() goes on.
   */
  stop(): Promise<void>;
  /**
   * Settles once the consumer has stopped: resolves after stop(); rejects with the error
   * when it stopped by itself because retrying cannot help, such as a setting the broker
   * refuses on a reconnect, or a Kafka member fenced out by another process of the same
   * `group_instance_id`. A rejection nobody awaits is dropped, never unhandled.
   */
  readonly closed: Promise<void>;
}
