-- The claim holds back an aggregate whose earlier event waits for a retry. Only rows
-- that failed at least once can be waiting, so a partial index over those keeps the
-- check a probe into a tiny index instead of a scan of the whole outbox.
CREATE INDEX outbox_retrying_idx ON :schema.outbox (aggregate_type, aggregate_id, seq)
  WHERE attempts > 0;

-- Every published row is deleted, so the table churns constantly: vacuum it after a
-- fixed number of dead rows (not a fraction of a table that may be huge or empty),
-- without the cost-based pauses, so dead index entries at the head of the claim's
-- scan are reclaimed quickly.
ALTER TABLE :schema.outbox SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 10000,
  autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 10000,
  autovacuum_analyze_scale_factor = 0,
  autovacuum_analyze_threshold = 10000,
  autovacuum_vacuum_cost_delay = 0
);
