import type { OutboxMessage } from '../brokers/broker.js';
import { backoffDelayMs } from '../common/backoff.js';
import type { Logger } from '../common/logger.js';
import { clip } from '../common/text.js';
import type { TransactionExecutor } from '../db/database.js';
import { pgArray, type Statements } from '../db/sql/index.js';
import type { BatchReport, SettledBatch } from './events.js';
import type { BatchOutcome } from './rounds.js';

/** Longest `last_error` stored: a reason quoting a whole payload or id would bury the point. */
const MAX_ERROR_CHARS = 2000;

export interface SettlePolicy {
  maxAttempts: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  logger: Logger;
}

/** What a batch's settle statement did, once it commits. */
export interface Settlement {
  report: BatchReport;
  events: Omit<SettledBatch, 'acknowledgedAt'>;
}

/**
 * Settles a batch in its transaction, with one statement (which also commits it when the
 * adapter can and everything was published): deletes what was published,
 * schedules each failure's retry (exponential backoff with jitter), and moves to the dead
 * letters what failed its last attempt or can never be published (attempts unchanged:
 * it was never sent).
 */
export async function settle(
  tx: Pick<TransactionExecutor, 'query' | 'commitWith'>,
  sql: Statements,
  claimed: number,
  outcome: BatchOutcome,
  policy: SettlePolicy,
): Promise<Settlement> {
  const { maxAttempts, retryBaseDelayMs, retryMaxDelayMs, logger } = policy;
  const retry: { seq: string; error: string; delay_ms: number }[] = [];
  const dead: { seq: string; error: string; attempts: number }[] = [];
  const deadLettered: SettledBatch['deadLettered'][number][] = [];
  const retried: SettledBatch['retried'][number][] = [];
  for (const failure of outcome.failed) {
    const { message, permanent, invalid } = failure;
    const error = clip(failure.error, MAX_ERROR_CHARS);
    if (invalid || message.attempts + 1 >= maxAttempts) {
      const attempts = invalid ? message.attempts : message.attempts + 1;
      dead.push({ seq: message.seq, error, attempts });
      deadLettered.push({ message, error, attempts });
    } else {
      retried.push({ message, error });
      retry.push({
        seq: message.seq,
        error,
        delay_ms: backoffDelayMs(message.attempts, retryBaseDelayMs, retryMaxDelayMs),
      });
      if (permanent) {
        logger.debug({ id: message.id, err: clip(error) }, 'broker refused event; will retry');
      }
    }
  }
  if (retry.length > 0) {
    logger.warn(
      { failed: retry.length, err: clip(retry[0]?.error ?? '') },
      'publish failed; events will be retried',
    );
  }
  const published = outcome.published.map((m: OutboxMessage) => m.seq);
  if (retry.length === 0 && dead.length === 0 && published.length > 0 && tx.commitWith) {
    // The usual batch, everything published: the delete goes out with the COMMIT.
    await tx.commitWith(sql.outboxSettlePublished(published));
  } else {
    await tx.query(sql.outboxSettle, [
      pgArray(published),
      JSON.stringify(retry),
      JSON.stringify(dead),
    ]);
  }
  return {
    report: {
      claimed,
      published: outcome.published.length,
      retried: retry.length,
      deadLettered: dead.length,
      held: outcome.held.length,
    },
    events: { published: outcome.published, retried, deadLettered },
  };
}
