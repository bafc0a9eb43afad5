import { rfc3339 } from './fragments.js';

/**
 * The dead letters: counts for status and metrics, and the operator's actions. The actions
 * take one filter whatever the operator gave: $1 ids ('{…}' uuid array), $2 event type,
 * $3 aggregate type, $4 aggregate id, $5 dead at or after, $6 dead before, $7 last error
 * (exactly), $8 text the last error contains (any case); a NULL matches all
 * (admin/dead-letters.ts binds them).
 */
export interface DeadLetterStatements {
  /** Number of dead letters, and how long ago the oldest was dead-lettered (0 when none). */
  deadLetterCount: string;
  /** Dead letters per event type. */
  deadLetterCountByEventType: string;
  /** The filter, $9 limit: dead letters oldest first, without payload and headers. */
  deadLetterList: string;
  /**
   * The filter: dead letters grouped by event type and last error, with their count and
   * the first and last time one was dead-lettered; the largest groups first, at most 500.
   */
  deadLetterGroups: string;
  /** The filter: the same with the payload and headers as text. */
  deadLetterShow: string;
  /** The filter: the distinct last errors of the matching dead letters, at most 1,000. */
  deadLetterErrors: string;
  /**
   * Lets the insert trigger keep the seq a retried dead letter brings back (migration
   * 0005), for this transaction only. Sent before deadLetterRetry.
   */
  deadLetterKeepSeq: string;
  /**
   * Draws one seq so that the write sequence moves and the dispatchers' write probes wake
   * them for what a retry put back. Sent after the retry has committed: a move they see
   * earlier sends them to claim rows not yet visible, and nothing would wake them again
   * (a retried row keeps its seq: it draws none that the probe could see).
   */
  deadLetterWake: string;
  /**
   * The filter, $9 limit, $10 after, $11 up to: moves up to $9 of the dead letters with a
   * seq above $10 and at most $11 back into the outbox under their seq, the lowest first,
   * all but those whose id another event has; their ids and seqs.
   */
  deadLetterRetry: string;
  /** The highest seq among the dead letters (`last`, as text; 0 with none). */
  deadLetterLastSeq: string;
  /** The filter: the ids of the dead letters an outbox row shares its id with. */
  deadLetterIdTaken: string;
  /** The filter: deletes them; their ids. */
  deadLetterDiscard: string;
  /**
   * $1 time, $2 limit: deletes up to $2 of the dead letters dead-lettered before $1, a row
   * per deleted one. Rows another transaction holds (a retry, another purge) are skipped,
   * not waited for, so a batch's time stays bounded whoever else is at work.
   */
  deadLetterPurge: string;
  /**
   * $1 lock key (deadLetterJanitorLockKey): true when this transaction is the one janitor
   * of the schema at work (the lock ends with the transaction).
   */
  deadLetterJanitorLock: string;
}

const COLUMNS = `seq::text AS seq, id::text AS id, aggregate_type, aggregate_id, event_type, partition,
  ${rfc3339('occurred_at')} AS occurred_at,
  ${rfc3339('dead_at')} AS dead_at,
  attempts, last_error`;

// One statement per action whatever the filter: absent fields are NULL and match all. A
// custom plan folds the absent ones away, so the ids and the others can use their indexes
// ($1 typed uuid[] itself: through text, its cast would be made again for every row).
const WHERE = `($1::uuid[] IS NULL OR id = ANY($1::uuid[]))
  AND ($2::text IS NULL OR event_type = $2)
  AND ($3::text IS NULL OR aggregate_type = $3)
  AND ($4::text IS NULL OR aggregate_id = $4)
  AND ($5::timestamptz IS NULL OR dead_at >= $5)
  AND ($6::timestamptz IS NULL OR dead_at < $6)
  AND ($7::text IS NULL OR last_error = $7)
  AND ($8::text IS NULL OR strpos(lower(last_error), lower($8)) > 0)`;

/** `s`: the quoted schema. */
export function deadLetterStatements(s: string): DeadLetterStatements {
  return {
    deadLetterCount: `SELECT count(*)::int AS dead,
  coalesce(extract(epoch FROM now() - min(dead_at)), 0)::numeric(20, 3) AS oldest_age_s
FROM ${s}.outbox_dead_letter`,

    deadLetterCountByEventType: `SELECT event_type AS key, count(*)::int AS dead
FROM ${s}.outbox_dead_letter GROUP BY event_type ORDER BY event_type`,

    // Ordered by the table's columns (d.): the output's dead_at and seq are text.
    deadLetterList: `SELECT ${COLUMNS} FROM ${s}.outbox_dead_letter d WHERE ${WHERE}
ORDER BY d.dead_at, d.seq LIMIT $9`,

    deadLetterGroups: `SELECT event_type, last_error AS error, count(*)::int AS count,
  ${rfc3339('min(dead_at)')} AS first_dead_at,
  ${rfc3339('max(dead_at)')} AS last_dead_at
FROM ${s}.outbox_dead_letter WHERE ${WHERE}
GROUP BY event_type, last_error ORDER BY count(*) DESC, min(dead_at), event_type, last_error LIMIT 500`,

    deadLetterShow: `SELECT ${COLUMNS}, payload::text AS payload, headers::text AS headers
FROM ${s}.outbox_dead_letter WHERE ${WHERE}`,

    deadLetterErrors: `SELECT DISTINCT last_error AS error FROM ${s}.outbox_dead_letter WHERE ${WHERE} LIMIT 1000`,

    deadLetterKeepSeq: `SELECT set_config('edupulse_outbox.keep_seq', 'on', true)`,

    deadLetterWake: `SELECT nextval('${s}.outbox_write_seq'::regclass)`,

    // A dead letter whose id is back in the outbox (a new event given the same id) stays:
    // moving it would fail the statement on the id's unique key, and every retry with it.
    // So does one whose id an earlier dead letter has (an id written again, dead-lettered
    // twice): the earlier goes first, and the later is left as its id is then taken.
    // In batches by seq, each its own transaction: an aggregate's dead letters go back in
    // its order, and no batch holds back the partitions it writes to for long. The seqs
    // between batches move up only: one retried and dead-lettered again at once (it keeps
    // its seq) is not taken again, nor one dead-lettered after the retry began.
    deadLetterRetry: `WITH picked AS (
  SELECT seq FROM ${s}.outbox_dead_letter d WHERE ${WHERE}
    AND d.seq > $10::text::bigint AND d.seq <= $11::text::bigint
    AND NOT EXISTS (SELECT 1 FROM ${s}.outbox o WHERE o.id = d.id)
    AND NOT EXISTS (SELECT 1 FROM ${s}.outbox_dead_letter e WHERE e.id = d.id AND e.seq < d.seq)
  ORDER BY seq LIMIT $9 FOR UPDATE
), moved AS (
  DELETE FROM ${s}.outbox_dead_letter d USING picked WHERE d.seq = picked.seq
  RETURNING d.seq, d.id, d.aggregate_type, d.aggregate_id, d.event_type, d.payload, d.headers, d.occurred_at
)
INSERT INTO ${s}.outbox (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at)
SELECT seq, id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at
FROM moved ORDER BY seq
RETURNING id::text AS id, seq::text AS seq`,

    deadLetterLastSeq: `SELECT coalesce(max(seq), 0)::text AS last FROM ${s}.outbox_dead_letter`,

    deadLetterIdTaken: `SELECT d.id::text AS id FROM ${s}.outbox_dead_letter d WHERE ${WHERE}
  AND (EXISTS (SELECT 1 FROM ${s}.outbox o WHERE o.id = d.id)
    OR EXISTS (SELECT 1 FROM ${s}.outbox_dead_letter e WHERE e.id = d.id AND e.seq < d.seq))
ORDER BY d.seq`,

    deadLetterDiscard: `DELETE FROM ${s}.outbox_dead_letter WHERE ${WHERE} RETURNING id::text AS id`,

    // No index leads with dead_at: a batch's scan stops once it has found its rows, which
    // come first in a table filled in dead_at order.
    deadLetterPurge: `WITH doomed AS (
  SELECT seq FROM ${s}.outbox_dead_letter WHERE dead_at < $1::timestamptz
  LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM ${s}.outbox_dead_letter d USING doomed WHERE d.seq = doomed.seq
RETURNING 1`,

    deadLetterJanitorLock: 'SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked',
  };
}
