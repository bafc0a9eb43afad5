/**
 * The admin API's answers (docs/console-api.yaml). The shapes are the server's own types,
 * imported for their types only (nothing of src/ is bundled), so a change on one side
 * that the other does not follow fails `npm run typecheck`.
 */
import type { DeadLetter } from '../../src/admin/dead-letters.js';
import type { OutboxStatus } from '../../src/admin/status.js';
import type { Sample } from '../../src/console/history.js';
import type { DispatcherHealth } from '../../src/dispatcher/health.js';

export type { ConsumerDeadLetter } from '../../src/admin/consumer-dead-letters.js';
export type {
  DeadLetter,
  DeadLetterDetail,
  DeadLetterGroup,
} from '../../src/admin/dead-letters.js';
export type { PendingEvent, SearchResult } from '../../src/admin/search.js';
export type { OutboxStatus as Status } from '../../src/admin/status.js';

export interface Overview {
  status: OutboxStatus;
  /** The serving dispatcher's own view (`run --ui-port`); null for `edupulse-outbox ui`. */
  dispatcher: {
    broker: string;
    brokerHealthy: boolean;
    brokerError?: string;
    /** What its loop is doing. */
    state: DispatcherHealth['state'];
    published: number;
    retried: number;
    deadLettered: number;
  } | null;
}

export interface History {
  intervalMs: number;
  samples: Sample[];
}

export interface DeadLetterPage {
  deadLetters: DeadLetter[];
  truncated: boolean;
}

/** The dead-letter filter on the wire: every field narrows; times are ISO 8601 text. */
export interface DeadLetterFilter {
  eventType?: string;
  aggregateType?: string;
  aggregateId?: string;
  error?: string;
  errorContains?: string;
  since?: string;
  until?: string;
}

/** Which dead letters a retry or discard touches: ids, or a filter. */
export type Selection = { ids: string[] } | { filter: DeadLetterFilter };
