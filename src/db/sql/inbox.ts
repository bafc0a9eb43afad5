/** The consuming half: the inbox, its per-aggregate high-water marks, and the consumer's lease. */
export interface InboxStatements {
  /**
   * $1 consumer, $2 event id, $3 event type, $4 aggregate id, $5 sequence (text or NULL),
   * $6 source, $7 aggregate type: records the event in the caller's transaction. `fresh`
   * is 0 when its source and id were recorded before, or its id without a source (by a
   * release before migration 0011): a duplicate (a concurrent recorder of the same key
   * is waited for on it);
   * `in_order` is 0 when an event with a higher sequence was already applied for the
   * aggregate (its source, type and id), whose mark row stays locked until the
   * transaction ends.
   */
  inboxRecord: string;
  /**
   * $1 consumer, $2 source, $3 aggregate type, $4 aggregate id: the sequence of the
   * aggregate's last applied event.
   */
  inboxLastSequence: string;
  /** $1 time, $2 consumer or NULL for all, $3 limit: deletes up to $3 inbox rows older than $1, a row per deleted one. */
  inboxPurge: string;
  /** $1 consumer: whether it has an inbox record, an aggregate's mark or a dead letter (`known`), by the keys. */
  consumerKnown: string;
  /**
   * $1 consumer name: takes the consumer's lease on this session if free (true/false).
   * One process per consumer name receives from a broker that cannot keep an aggregate on
   * one process itself (NATS); the lease goes with the session.
   */
  consumerLeaseTry: string;
  /** The database the consumer's inbox is in, which with the schema tells one inbox from another. */
  consumerDatabase: string;
  /** $1 consumer, $2 stream, $3 stream sequence: keeps where a NATS consumer resumes (migration 0015). */
  consumerResumeKeep: string;
  /** $1 consumer, $2 stream: the stream sequence kept, if any (`after_seq`, as text). */
  consumerResumeFind: string;
  /** $1 consumer, $2 stream: forgets it, the durable being made again. */
  consumerResumeDrop: string;
}

/** `s`: the quoted schema; `schema`: its name (a validated identifier), for the lease key. */
export function inboxStatements(s: string, schema: string): InboxStatements {
  return {
    inboxRecord: `WITH fresh AS (
  INSERT INTO ${s}.inbox (consumer, source, event_id, event_type, aggregate_id, sequence)
  VALUES ($1, $6, $2, $3, $4, $5::text::bigint)
  ON CONFLICT DO NOTHING
  RETURNING sequence
), legacy AS (
  SELECT 1 FROM ${s}.inbox WHERE consumer = $1 AND source = '' AND event_id = $2 AND $6 <> ''
), mark AS (
  INSERT INTO ${s}.inbox_mark AS a
    (consumer, source, aggregate_type, aggregate_id, last_sequence, last_event_id, last_event_sequence)
  SELECT $1, $6, $7, $4, sequence, $2, sequence FROM fresh WHERE sequence IS NOT NULL
  ON CONFLICT (consumer, source, aggregate_type, aggregate_id) DO UPDATE
    SET last_sequence = excluded.last_sequence, last_event_id = excluded.last_event_id,
      last_event_sequence = excluded.last_event_sequence, updated_at = now()
    WHERE a.last_sequence < excluded.last_sequence
  RETURNING 1
)
SELECT ((SELECT count(*) FROM fresh) > 0 AND NOT EXISTS (SELECT 1 FROM legacy))::int AS fresh,
  ((SELECT count(*) FROM mark) > 0 OR $5::text IS NULL)::int AS in_order`,

    inboxLastSequence: `SELECT last_sequence::text AS last,
  CASE WHEN last_event_sequence = last_sequence THEN last_event_id END AS last_id
FROM ${s}.inbox_mark
WHERE consumer = $1 AND source = $2 AND aggregate_type = $3 AND aggregate_id = $4`,

    consumerKnown: `SELECT EXISTS (SELECT 1 FROM ${s}.inbox WHERE consumer = $1)
  OR EXISTS (SELECT 1 FROM ${s}.inbox_mark WHERE consumer = $1)
  OR EXISTS (SELECT 1 FROM ${s}.consumer_dead_letter WHERE consumer = $1) AS known`,
    inboxPurge: `WITH doomed AS (
  SELECT consumer, source, event_id FROM ${s}.inbox
  WHERE processed_at < $1::timestamptz AND ($2::text IS NULL OR consumer = $2)
  LIMIT $3
)
DELETE FROM ${s}.inbox i USING doomed
WHERE i.consumer = doomed.consumer AND i.source = doomed.source AND i.event_id = doomed.event_id
RETURNING 1`,

    consumerDatabase: 'SELECT current_database() AS database',

    consumerResumeKeep: `INSERT INTO ${s}.consumer_resume AS r (consumer, stream, after_seq)
VALUES ($1, $2, $3::text::bigint)
ON CONFLICT (consumer, stream) DO UPDATE SET after_seq = excluded.after_seq, kept_at = now()`,

    consumerResumeFind: `SELECT after_seq::text AS after_seq FROM ${s}.consumer_resume
WHERE consumer = $1 AND stream = $2`,

    consumerResumeDrop: `DELETE FROM ${s}.consumer_resume WHERE consumer = $1 AND stream = $2`,

    consumerLeaseTry: `SELECT pg_try_advisory_lock(
  hashtext('edupulse-outbox:consumer:' || '${schema}') & 2147483647,
  hashtext($1::text)) AS leased`,
  };
}
