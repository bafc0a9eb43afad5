-- With onDeadLetter: 'hold' the claim looks for an aggregate's dead letters before
-- publishing its later events; this index keeps that a probe, not a scan.
CREATE INDEX outbox_dead_letter_aggregate_idx
  ON :schema.outbox_dead_letter (aggregate_type, aggregate_id, seq);
