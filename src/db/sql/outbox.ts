import {
  isoText,
  ORDER_LOCK_TAG,
  ORDER_PARTITION_MASK,
  ORDER_TAG_MASK,
  rfc3339,
} from './fragments.js';

/** Where outboxWriteHorizon leaves the claim its limits, for this transaction only. */
const CLAIM_LAST_SEQ = 'edupulse_outbox.claim_last_seq';
const CLAIM_BOUNDS = 'edupulse_outbox.claim_bounds';
/** The fewest candidates a claim counts its range for instead of probing each aggregate. */
const COUNT_FROM = 100;
/** Announced bounds are seqs modulo 2^31 (an advisory lock key is an int4). */
const SEQ_MODULUS = 2147483648;

/** The statements of the outbox table itself: enqueue, the claim, settling, the backlog. */
export interface OutboxStatements {
  /**
   * One event: $1 id, $2 aggregate type, $3 aggregate id, $4 event type, $5 the payload's
   * JSON text, $6 the headers' JSON text or NULL, $7 the time or NULL (now()). Plain
   * VALUES: the cheapest statement for the common one-event transaction.
   */
  outboxInsertOne: string;
  /** Several events: $1 a JSON array of {id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at}. */
  outboxInsert: string;
  /**
   * $1: batch size, $2: the partitions to claim from ('{0,1,…}'), $3: the lowest seq
   * to look at (a cursor; '0' for all), $4: '1' when no row of these partitions lies
   * below the cursor (else '0'; moot from '0'), $5: the count of restores the caller last
   * saw. The highest seq to look at, overall and per partition, it reads from what
   * outboxWriteHorizon set in this transaction. Claims the oldest available rows, skipping
   * rows other dispatchers hold, and returns those whose aggregate has no earlier event
   * left outside the claim. On every row: `passed_over`, whether rows of these partitions
   * may now lie below the last one returned (passed over, or restored meanwhile), and
   * `restores`, the count of restores now.
   */
  outboxClaim: string;
  /** The same, also holding back every event after one of its aggregate's dead letters. */
  outboxClaimHoldingDeadLetters: string;
  /**
   * $1: published seqs; $2: JSON [{seq, error, delay_ms}] to retry; $3: JSON [{seq, error,
   * attempts}] to dead-letter, with the attempts to record.
   */
  outboxSettle: string;
  /**
   * The usual settle, when every event of the batch was published: deletes these seqs
   * (digits only, checked, written in), so that it can go out with the COMMIT.
   */
  outboxSettlePublished(seqs: readonly string[]): string;
  /**
   * How far the claim may go (migration 0004 explains the announcements), in two
   * statements run in this order before it, each in a snapshot of its own: this one reads
   * the write sequence's last value; outboxWriteBounds then reads the bounds that open
   * writing transactions announced (advisory locks), restores them next to that value and
   * keeps the lowest per partition. A writer that draws a seq at or below the last value
   * read took its lock before it, so the second read sees it while it is open; read the
   * other way round (or in one statement, which reads the locks first), a writer could
   * lock and draw between the two reads unseen. Both leave their result in
   * transaction-local settings for the claim, so the three can go out in one message.
   * This one also sets the batch's synchronous_commit. No parameters: the schema name, a
   * validated identifier, is written in.
   */
  outboxWriteLastSeq: string;
  /** See outboxWriteLastSeq; returns the bounded partitions (JSON) and whether any event waits for a retry. */
  outboxWriteBounds: string;
  /** The write sequence's oid, for outboxWriteProbe (resolved once, not at every look). */
  outboxWriteSeqOid: string;
  /**
   * $1 the write sequence's oid (from outboxWriteSeqOid): its last value. It moves when
   * any producer draws a seq, so an idle dispatcher repeats this every few milliseconds
   * to learn, without touching a table or an index, that something was written
   * (migration 0006 explains why not NOTIFY). Prepared on the probe's session, so a look
   * is not parsed and planned again.
   */
  outboxWriteProbe: string;
  /**
   * The age in seconds (0 when none) of the event waiting longest: the first written of
   * the pending rows, by seq. One index lookup, however long the backlog: `/readyz` asks
   * every second, and a count or min() over the rows scanned them all (200 ms for a
   * million, growing with the backlog towards the check's 2 s).
   */
  outboxOldestAge: string;
  /**
   * The backlog (and the age of the event waiting longest, as `outboxOldestAge` reads
   * it), the dead letters, and the outbox's running totals from the statistics:
   * rows deleted from the outbox (each published or dead-lettered event leaves it) and rows
   * inserted into the dead letters. Two samples of it give the schema's publish rate,
   * whichever dispatchers publish (the console's history).
   */
  outboxActivity: string;
  /**
   * $1 event id (uuid text, or NULL), $2 aggregate id: the pending events with that id or
   * of that aggregate, oldest first, at most 100 (an operator's search).
   */
  outboxSearch: string;
  /** Pending rows and the age of the oldest, per partition that has any. */
  outboxBacklogByPartition: string;
  /**
   * Pending rows and the age of the oldest, per partition (`by_partition`, key its number
   * as text) and per event type, from one snapshot.
   */
  outboxBacklogShares: string;
}

/** `s`: the quoted schema; `name`: the schema's name (a validated identifier). */
export function outboxStatements(s: string, name: string): OutboxStatements {
  return {
    outboxInsertOne: `INSERT INTO ${s}.outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at)
VALUES ($1::text::uuid, $2, $3, $4, $5::text::json, coalesce($6::text::jsonb, '{}'::jsonb), coalesce($7::text::timestamptz, now()))`,

    // ROWS FROM … WITH ORDINALITY keeps the caller's order, so seq follows it. A payload
    // of JSON null comes out of json_to_recordset as SQL NULL: stored as null, as one alone is.
    outboxInsert: `INSERT INTO ${s}.outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at)
SELECT e.id, e.aggregate_type, e.aggregate_id, e.event_type, coalesce(e.payload, 'null'::json), coalesce(e.headers, '{}'::jsonb), coalesce(e.occurred_at, now())
FROM ROWS FROM (json_to_recordset($1::text::json) AS (id uuid, aggregate_type text, aggregate_id text, event_type text, payload json, headers jsonb, occurred_at timestamptz))
  WITH ORDINALITY AS e(id, aggregate_type, aggregate_id, event_type, payload, headers, occurred_at, n)
ORDER BY e.n`,

    // The batch's commit need not wait for its WAL flush (synchronous_commit off, for this
    // transaction only): a settle lost in a server crash leaves its rows in the outbox, and
    // they are published again under the same id, which at-least-once delivery allows.
    outboxWriteLastSeq: `SELECT set_config('synchronous_commit', 'off', true) AS commit_mode,
  set_config('${CLAIM_LAST_SEQ}',
    coalesce(pg_sequence_last_value('${s}.outbox_write_seq'::regclass), 0)::text, true) AS last_seq`,

    // A bound travels as the seq modulo 2^31 and is restored next to the last value, which
    // it trails by less than 2^31.
    outboxWriteBounds: `WITH bound AS (
  SELECT (l.classid::bigint & ${ORDER_PARTITION_MASK})::int AS partition,
    min(h.last_seq - ((h.last_seq - l.objid::bigint) % ${SEQ_MODULUS} + ${SEQ_MODULUS}) % ${SEQ_MODULUS}) AS seq
  FROM (SELECT current_setting('${CLAIM_LAST_SEQ}')::bigint AS last_seq) AS h, pg_locks l
  WHERE l.locktype = 'advisory' AND l.objsubid = 2
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND (l.classid::bigint & ${ORDER_TAG_MASK}) = ${ORDER_LOCK_TAG(`'${name}'`)}
  GROUP BY 1
)
SELECT set_config('${CLAIM_BOUNDS}', coalesce((
    SELECT array_agg(b.seq ORDER BY g.p)
    FROM generate_series(0, (SELECT max(partition) FROM bound)) AS g(p)
    LEFT JOIN bound b ON b.partition = g.p)::text, '{}'), true) AS bounds,
  coalesce((SELECT json_agg(partition) FROM bound), '[]')::text AS bounded,
  EXISTS (SELECT 1 FROM ${s}.outbox WHERE attempts > 0 AND available_at > now()) AS retrying`,

    outboxClaim: claim(s, { deadLetterHold: false }),
    outboxClaimHoldingDeadLetters: claim(s, { deadLetterHold: true }),

    outboxSettlePublished: (seqs) => {
      for (const seq of seqs) if (!/^\d+$/.test(seq)) throw new Error(`not a seq: ${seq}`);
      return `DELETE FROM ${s}.outbox WHERE seq = ANY('{${seqs.join(',')}}'::bigint[])`;
    },

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
  USING json_to_recordset($3::text::json) AS d(seq bigint, error text, attempts integer)
  WHERE o.seq = d.seq
  RETURNING o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.headers,
    o.partition, o.occurred_at, d.attempts, d.error
)
INSERT INTO ${s}.outbox_dead_letter
  (seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition, occurred_at, attempts, last_error)
SELECT seq, id, aggregate_type, aggregate_id, event_type, payload, headers, partition, occurred_at, attempts, error
FROM dead`,

    outboxWriteSeqOid: `SELECT '${s}.outbox_write_seq'::regclass::oid::text AS oid`,

    outboxWriteProbe: 'SELECT coalesce(pg_sequence_last_value($1::text::oid), 0)::text AS last_seq',

    outboxOldestAge: `SELECT coalesce(extract(epoch FROM now() -
  (SELECT occurred_at FROM ${s}.outbox WHERE isfinite(occurred_at) ORDER BY seq LIMIT 1)), 0)::numeric(20, 3) AS oldest_age_s`,

    outboxActivity: `SELECT (SELECT count(*) FROM ${s}.outbox)::int AS pending,
  coalesce(extract(epoch FROM now() -
    (SELECT occurred_at FROM ${s}.outbox WHERE isfinite(occurred_at) ORDER BY seq LIMIT 1)), 0)::numeric(20, 3) AS oldest_age_s,
  (SELECT count(*) FROM ${s}.outbox_dead_letter)::int AS dead,
  coalesce((SELECT n_tup_del FROM pg_stat_user_tables
    WHERE relid = '${s}.outbox'::regclass), 0)::text AS outbox_deleted,
  coalesce((SELECT n_tup_ins FROM pg_stat_user_tables
    WHERE relid = '${s}.outbox_dead_letter'::regclass), 0)::text AS dead_inserted`,

    outboxSearch: `SELECT seq::text AS seq, id::text AS id, aggregate_type, aggregate_id, event_type,
  partition, ${rfc3339('occurred_at')} AS occurred_at, attempts, last_error
FROM ${s}.outbox o WHERE id = $1::uuid OR aggregate_id = $2 ORDER BY o.seq LIMIT 100`,

    // Ages from now, never below 0 (an occurred_at a producer gave may lie ahead); an
    // infinite one (dead-lettered when claimed) is left out, as PostgreSQL cannot subtract it.
    outboxBacklogByPartition: `SELECT partition::int AS key, count(*)::int AS pending,
  greatest(0, extract(epoch FROM now() - min(occurred_at) FILTER (WHERE isfinite(occurred_at))))::numeric(20, 3) AS oldest_age_s
FROM ${s}.outbox GROUP BY partition ORDER BY partition`,

    // Both groupings in one scan, so one snapshot: their totals agree.
    outboxBacklogShares: `SELECT (grouping(event_type) = 1) AS by_partition,
  coalesce(partition::text, event_type) AS key, count(*)::int AS pending,
  greatest(0, extract(epoch FROM now() - min(occurred_at) FILTER (WHERE isfinite(occurred_at))))::numeric(20, 3) AS oldest_age_s
FROM ${s}.outbox GROUP BY GROUPING SETS ((partition), (event_type))
ORDER BY by_partition, partition, event_type`,
  };
}

/**
 * The claim. Candidates are the oldest available rows nobody else has locked, skipping
 * the aggregates whose earlier event waits for a retry (or, with `hold`, sits in the dead
 * letters), so those never take a place in the batch. A candidate is then published only
 * if every earlier event of its aggregate still in the outbox is a candidate too: an
 * earlier event claimed by another dispatcher (even one that will not publish it) holds
 * back the later ones of that aggregate, and only those. Rows held back come back marked
 * `held`, so the dispatcher knows to look again soon; they stay locked until this
 * transaction ends, untouched.
 *
 * Whether an earlier event is outside the claim is looked up in the aggregate's index,
 * one probe per candidate, unless the claim can tell without: from the start of the
 * table, or from a cursor below which the caller knows no row lies, every earlier event
 * of a candidate's aggregate lies between the cursor and the candidate, so it is either a
 * candidate or a row the claim passed over; if it passed none, no candidate is held back.
 * A restore counted since the caller last looked (a dead letter put back under its old
 * seq, perhaps below the cursor) makes it probe.
 */
function claim(s: string, checks: { deadLetterHold: boolean }): string {
  const sameAggregateBefore = (alias: string, row: string) =>
    `${alias}.aggregate_type = ${row}.aggregate_type AND ${alias}.aggregate_id = ${row}.aggregate_id AND ${alias}.seq < ${row}.seq`;
  // Skips the aggregates whose earlier event waits for a retry, so they take no place in
  // the batch. Only while some event waits at all: the first operand is computed once per
  // claim, and OR stops there. (The look is for the batch's sake only: the order check
  // alone already holds those aggregates back.) A scalar subquery, not NOT EXISTS: the
  // planner keeps it a probe per row into the partial index of retrying rows instead of
  // joining against all of them.
  const retryCheck = `
      AND ((SELECT NOT EXISTS (SELECT 1 FROM ${s}.outbox WHERE attempts > 0 AND available_at > now()))
        OR (SELECT 1 FROM ${s}.outbox w
            WHERE ${sameAggregateBefore('w', 'o')} AND w.attempts > 0 AND w.available_at > now()
            LIMIT 1) IS NULL)`;
  const deadLetterHold = checks.deadLetterHold
    ? `
      AND (SELECT 1 FROM ${s}.outbox_dead_letter d WHERE ${sameAggregateBefore('d', 'o')} LIMIT 1) IS NULL`
    : '';
  // Text casts give every driver the same values. The partitions' array is read once, in
  // a subquery: written as a cast of the parameter, PostgreSQL parses the array's text
  // again for every row the scan filters (1.5 ms of a claim of 1,000 from 64 partitions).
  const partitions = '(SELECT $2::text::int[])::int[]';
  const withinBounds = (
    row: string,
  ) => `${row}.seq <= coalesce(((SELECT current_setting('${CLAIM_BOUNDS}')::bigint[]))[${row}.partition + 1],
        (SELECT current_setting('${CLAIM_LAST_SEQ}')::bigint))`;
  return `WITH candidates AS MATERIALIZED (
  SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.headers,
    o.partition, o.occurred_at, o.attempts,
    row_number() OVER (PARTITION BY o.aggregate_type, o.aggregate_id ORDER BY o.seq) - 1 AS earlier_claimed
  FROM (
    SELECT * FROM ${s}.outbox o
    WHERE o.partition = ANY(${partitions})
      AND o.seq >= $3::text::bigint
      AND ${withinBounds('o')}
      AND o.available_at <= now()${retryCheck}${deadLetterHold}
    ORDER BY o.seq
    LIMIT $1
    FOR UPDATE OF o SKIP LOCKED
  ) o
), passed AS MATERIALIZED (
  -- Whether the claim passed rows over between the cursor and its last candidate (locked
  -- by another claim, waiting for a retry, held back behind one): more rows there than
  -- candidates. Counted, not joined: the plan holds for any batch size. A claim of a few
  -- rows probes them instead (taken as having passed rows over): from the start of the
  -- table the count would walk what the claim's scan walked, dead index entries included,
  -- once more for a handful of probes saved.
  SELECT m.n < ${COUNT_FROM} OR (SELECT count(*) FROM ${s}.outbox w
      WHERE w.partition = ANY(${partitions})
        AND w.seq >= $3::text::bigint
        AND w.seq <= m.last
        AND ${withinBounds('w')}) > m.n AS more
  FROM (SELECT max(seq) AS last, count(*) AS n FROM candidates) m
), restores AS (
  -- Read while the claim runs, after its snapshot: a restored row the claim sees has
  -- counted itself by then.
  SELECT coalesce(pg_sequence_last_value('${s}.outbox_restore_seq'::regclass), 0) AS n
), checked AS MATERIALIZED (
  SELECT NOT (($3::text::bigint = 0 OR ($4::text = '1' AND r.n = $5::text::bigint))
      AND NOT (SELECT more FROM passed)) AS probe,
    r.n::text AS restores, r.n <> $5::text::bigint AS restored
  FROM restores r
)
SELECT c.seq::text AS seq, c.id::text AS id, c.aggregate_type, c.aggregate_id, c.event_type,
  c.payload::text AS payload, c.headers::text AS headers, c.partition,
  -- RFC 3339 where a CloudEvent can carry the time; PostgreSQL's ISO text in UTC
  -- (infinity, a BC date, year 10000) where it cannot, so the check at claim time can say why.
  coalesce(${rfc3339('c.occurred_at')}, ${isoText('c.occurred_at')}) AS occurred_at,
  c.attempts,
  -- Only where an earlier event of the aggregate may be outside the claim: one probe of
  -- the aggregate's index per candidate, counting its earlier events still in the outbox.
  CASE WHEN k.probe
    THEN (SELECT count(*) FROM ${s}.outbox w WHERE ${sameAggregateBefore('w', 'c')}) <> c.earlier_claimed
    ELSE false END AS held,
  k.probe OR k.restored AS passed_over, k.restores
FROM candidates c, checked k
ORDER BY c.seq`;
}
