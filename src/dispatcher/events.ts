import type { OutboxMessage } from '../brokers/broker.js';

/** What one batch did (the `batch` event). */
export interface BatchReport {
  claimed: number;
  published: number;
  retried: number;
  deadLettered: number;
  /**
   * Left in the outbox for a later batch: later events of an aggregate whose earlier
   * event failed in the batch, and those a batch past its time for rounds left.
   */
  held: number;
}

/** Totals since the dispatcher was created. */
export interface DispatcherStats {
  published: number;
  retried: number;
  deadLettered: number;
  batches: number;
  /** Dead letters its janitor deleted (`deadLetterRetentionMs`). */
  deadLettersPurged: number;
}

/** One round of the dead-letter janitor that deleted something (the `purged` event). */
export interface PurgeReport {
  deadLetters: number;
  /** The dead letters dead-lettered before this time were due. */
  before: Date;
}

/** The events of one committed batch, for metrics: what was published, retried, parked. */
export interface SettledBatch {
  published: readonly OutboxMessage[];
  retried: readonly { message: OutboxMessage; error: string }[];
  deadLettered: readonly { message: OutboxMessage; error: string; attempts: number }[];
  /** When the broker had answered the whole batch (ms since the epoch). */
  acknowledgedAt: number;
}

/** What a failed round of the loop is put down to. */
export type ProblemTarget = 'broker' | 'database' | 'configuration' | 'internal';

export interface DeadLetterEvent {
  id: string;
  eventType: string;
  error: string;
}

export interface UnavailableEvent {
  /** `internal`: an unexpected error of the dispatcher itself (a bug), retried like an outage. */
  target: Exclude<ProblemTarget, 'configuration'>;
  error: unknown;
  retryInMs: number;
  /** Which of the `batchesInFlight` lanes backs off (each meets the outage on its own). */
  lane: number;
}

/**
 * The events a dispatcher emits, typed, so metrics, health and the console subscribe
 * without declaring the payloads again:
 * - `batch`: every committed batch's counts;
 * - `settled`: the same batch's events, after the commit;
 * - `deadLetter`: one per event parked as a dead letter;
 * - `unavailable`: before each backoff after a failed round;
 * - `purged`: the dead-letter janitor deleted dead letters past the retention;
 * - `fatal`: the loop stopped because retrying cannot help (a broker refusing its
 *   configuration, a schema that changed); the dispatcher then releases the broker and
 *   its database sessions by itself, and `closed` rejects with the same error.
 */
export interface DispatcherEvents {
  batch: [BatchReport];
  settled: [SettledBatch];
  deadLetter: [DeadLetterEvent];
  unavailable: [UnavailableEvent];
  purged: [PurgeReport];
  fatal: [Error];
}
