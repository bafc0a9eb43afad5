import { rfc3339 } from './fragments.js';

/**
 * Consumer dead letters: what `consume()` parked, and the operator's actions on them. The
 * actions take one filter: $1 consumer, $2 event ids ('{…}' text array; a message parked
 * without one, as it could not be decoded, goes by its dead letter's id), $3 event type,
 * $4 aggregate id, $5 dead at or after, $6 dead before; a NULL matches all.
 */
export interface ConsumerDeadLetterStatements {
  /**
   * $1 consumer, $2 event id, $3 event type, $4 aggregate id, $5 sequence, $6 origin,
   * $7 headers (JSON text), $8 body, $9 attempts, $10 reason, $11 stale (older than its
   * aggregate's last applied event), $12 source ('' when unknown), $13 the aggregate type
   * the broker routed it by (or NULL), $14 whether it comes from a retry of its dead
   * letter: parks a message; a second park of the same event (source and id) updates the
   * first, and ends its retry if $14 (a redelivery by the broker leaves a retry asked for).
   */
  consumerDeadLetterPark: string;
  /** Parked messages per consumer, by name. */
  consumerDeadLetterCountByConsumer: string;
  /** The filter, $7 limit: oldest first, without headers and body. */
  consumerDeadLetterList: string;
  /** The filter: the same with headers and body. */
  consumerDeadLetterShow: string;
  /** The filter: asks the running consumer to hand them to its handler again; their ids. */
  consumerDeadLetterRetry: string;
  /** The filter: deletes them; their ids. */
  consumerDeadLetterDiscard: string;
  /** $1 time, $2 consumer or NULL: deletes those parked before it; how many. */
  consumerDeadLetterPurge: string;
  /**
   * $1 consumer, $2 limit: takes the dead letters whose retry was asked for (no other
   * process takes them too), in sequence order, with what the handler needs and whether
   * each was parked as stale.
   */
  consumerDeadLetterTakeRetries: string;
  /** $1 dead letter id: deletes a taken dead letter its retry handled (not one parked anew). */
  consumerDeadLetterResolve: string;
  /** $1 dead letter id: gives back a taken retry the consumer did not finish (it stopped). */
  consumerDeadLetterRelease: string;
  /** $1 dead letter ids ('{…}'): the retries a running consumer still works on, kept its own. */
  consumerDeadLetterTouch: string;
}

/**
 * A retry taken this long ago, and not kept since, is taken again: its consumer died
 * (SIGKILL, a lost node) or was of a release that gives none back. A running consumer
 * keeps its retries in flight every minute (RETRY_KEEP_MS in consume.ts).
 */
const RETRY_ABANDONED = "interval '15 minutes'";

/** A retry not kept for this long, five times RETRY_KEEP_MS: its consumer is gone. */
const RETRY_UNKEPT = "interval '5 minutes'";

const COLUMNS = `id::text AS id, consumer, source, event_id, event_type, aggregate_id, sequence::text AS sequence,
  origin, attempts, last_error, ${rfc3339('dead_at')} AS dead_at,
  retry_requested_at IS NOT NULL OR retry_taken_at IS NOT NULL AS retrying`;

const WHERE = `($1::text IS NULL OR consumer = $1)
  AND ($2::text::text[] IS NULL OR event_id = ANY($2::text::text[])
    OR (event_id IS NULL AND id::text = ANY($2::text::text[])))
  AND ($3::text IS NULL OR event_type = $3)
  AND ($4::text IS NULL OR aggregate_id = $4)
  AND ($5::timestamptz IS NULL OR dead_at >= $5)
  AND ($6::timestamptz IS NULL OR dead_at < $6)`;

/** `s`: the quoted schema. */
export function consumerDeadLetterStatements(s: string): ConsumerDeadLetterStatements {
  const table = `${s}.consumer_dead_letter`;
  return {
    consumerDeadLetterPark: `INSERT INTO ${table} AS d
  (consumer, event_id, event_type, aggregate_id, sequence, origin, headers, body, attempts, last_error, stale, source, routed_aggregate_type)
VALUES ($1, $2, $3, $4, $5::text::bigint, $6, $7::text::jsonb, $8, $9, $10, $11, $12, $13)
ON CONFLICT (consumer, event_id, source) DO UPDATE
  SET attempts = excluded.attempts, last_error = excluded.last_error, origin = excluded.origin,
      stale = excluded.stale, dead_at = now(),
      retry_requested_at = CASE WHEN $14::boolean THEN NULL ELSE d.retry_requested_at END,
      retry_taken_at = CASE WHEN $14::boolean THEN NULL ELSE d.retry_taken_at END,
      routed_aggregate_type = coalesce(excluded.routed_aggregate_type, d.routed_aggregate_type)`,

    consumerDeadLetterCountByConsumer: `SELECT consumer, count(*)::int AS dead FROM ${table}
GROUP BY consumer ORDER BY consumer`,

    // Ordered by the table's columns (c.): the output's dead_at and id are text.
    consumerDeadLetterList: `SELECT ${COLUMNS} FROM ${table} c WHERE ${WHERE}
ORDER BY c.dead_at, c.id LIMIT $7`,

    consumerDeadLetterShow: `SELECT ${COLUMNS}, headers::text AS headers, body FROM ${table} c WHERE ${WHERE}
ORDER BY c.dead_at, c.id`,

    // One the consumer has taken and is handling stays as it is: asked for again, it
    // would be taken again and handed to the handler a second time. One taken and not
    // kept for five minutes (a consumer keeps its retries every minute: it died) is.
    consumerDeadLetterRetry: `UPDATE ${table}
SET retry_requested_at = CASE WHEN retry_taken_at IS NULL OR retry_taken_at < now() - ${RETRY_UNKEPT}
  THEN now() ELSE retry_requested_at END
WHERE ${WHERE}
RETURNING coalesce(event_id, id::text) AS id`,

    consumerDeadLetterDiscard: `DELETE FROM ${table} WHERE ${WHERE}
RETURNING coalesce(event_id, id::text) AS id`,

    consumerDeadLetterPurge: `WITH purged AS (
  DELETE FROM ${table} WHERE dead_at < $1::timestamptz AND ($2::text IS NULL OR consumer = $2)
  RETURNING 1)
SELECT count(*)::int AS purged FROM purged`,

    // In sequence order, not the order they were parked in: a dead letter parked again
    // (a retry that failed) is parked later than its aggregate's next one, and handed to
    // the handler after it, it would be stale. RETURNING keeps no order: hence the SELECT.
    consumerDeadLetterTakeRetries: `WITH taken AS (
  UPDATE ${table} d SET retry_requested_at = NULL, retry_taken_at = now()
  FROM (SELECT id FROM ${table}
    WHERE consumer = $1
      AND (retry_requested_at IS NOT NULL OR retry_taken_at < now() - ${RETRY_ABANDONED})
    ORDER BY sequence NULLS LAST, dead_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) AS picked
  WHERE d.id = picked.id
  RETURNING d.id, d.origin, d.headers, d.body, d.attempts, d.dead_at, d.stale, d.sequence,
    d.routed_aggregate_type
)
SELECT id::text AS id, origin, headers::text AS headers, body, attempts, dead_at, stale,
  routed_aggregate_type
FROM taken ORDER BY sequence NULLS LAST, dead_at, id`,

    consumerDeadLetterResolve: `DELETE FROM ${table} WHERE id = $1::text::uuid AND retry_taken_at IS NOT NULL`,

    consumerDeadLetterRelease: `UPDATE ${table}
SET retry_requested_at = coalesce(retry_requested_at, now()), retry_taken_at = NULL
WHERE id = $1::text::uuid AND retry_taken_at IS NOT NULL`,

    consumerDeadLetterTouch: `UPDATE ${table} SET retry_taken_at = now()
WHERE id = ANY($1::text::uuid[]) AND retry_taken_at IS NOT NULL`,
  };
}
