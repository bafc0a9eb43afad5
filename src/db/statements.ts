import { quoteSchema } from './identifier.js';

/**
 * Every statement the runtime sends, named entity-first, built once per schema. Values
 * are always bound parameters; the schema is a validated, quoted identifier.
 */
export interface Statements {
  /** $1: JSON array of {id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at}. */
  outboxInsert: string;
  /** $1: batch size. Claims the oldest available rows, skipping rows other dispatchers hold. */
  outboxClaim: string;
  /** $1: published seqs; $2: JSON [{seq, error, delay_ms}] to retry; $3: JSON [{seq, error}] to dead-letter. */
  outboxSettle: string;
  /** Pending rows and the age of the oldest, in seconds. */
  outboxBacklog: string;
  /** Number of dead letters. */
  deadLetterCount: string;
}

export function statements(schema: string): Statements {
  const s = quoteSchema(schema);
  return {
    // ROWS FROM … WITH ORDINALITY keeps the caller's order, so seq follows it.
    outboxInsert: `INSERT INTO ${s}.outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at)
SELECT e.id, e.aggregate_type, e.aggregate_id, e.event_type, e.payload, coalesce(e.headers, '{}'::jsonb), coalesce(e.occurred_at, now())
FROM ROWS FROM (json_to_recordset($1::text::json) AS (id uuid, aggregate_type text, aggregate_id text, event_type text, payload json, headers jsonb, occurred_at timestamptz))
  WITH ORDINALITY AS e(id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at, n)
ORDER BY e.n`,

    // An aggregate whose earlier event waits for a retry is held back, so its events keep
    // their order; other aggregates flow on. Text casts give every driver the same values.
    outboxClaim: `SELECT o.seq::text AS seq, o.id::text AS id, o.aggregate_type, o.aggregate_id, o.event_type,
  o.payload::text AS payload, o.headers::text AS headers, o.partition,
  to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
  o.attempts
FROM ${s}.outbox o
WHERE o.available_at <= now()
  AND NOT EXISTS (
    SELECT 1 FROM ${s}.outbox w
    WHERE w.aggregate_type = o.aggregate_type AND w.aggregate_id = o.aggregate_id
      AND w.seq < o.seq AND w.available_at > now())
ORDER BY o.seq
LIMIT $1
FOR UPDATE OF o SKIP LOCKED`,

    outboxSettle: `WITH published AS (
  DELETE FROM ${s}.outbox WHERE seq = ANY($1::text::bigint[])
), retried AS (
  UPDATE ${s}.outbox o
  SET attempts = o.attempts + 1,
      available_at = clock_timestamp() + r.delay_ms * interval '1 millisecond',
      last_error = r.error
  FROM json_to_recordset($2::text::json) AS r(seq bigint, error text, delay_ms bigint)
  WHERE o.seq = r.seq
), dead AS (
  DELETE FROM ${s}.outbox o
  USING json_to_recordset($3::text::json) AS d(seq bigint, error text)
  WHERE o.seq = d.seq
  RETURNING o.*, d.error
)
INSERT INTO ${s}.outbox_dead_letter
  (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition, occurred_at, attempts, last_error)
SELECT seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition, occurred_at, attempts + 1, error
FROM dead`,

    outboxBacklog: `SELECT count(*)::int AS pending,
  coalesce(extract(epoch FROM now() - min(occurred_at)), 0)::float8 AS oldest_age_s
FROM ${s}.outbox`,

    deadLetterCount: `SELECT count(*)::int AS dead FROM ${s}.outbox_dead_letter`,
  };
}

/** A PostgreSQL array literal of bigint seqs, bound as text: every driver passes it unchanged. */
export function seqArray(seqs: readonly string[]): string {
  return `{${seqs.join(',')}}`;
}
