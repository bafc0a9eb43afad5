-- Late commits. seq is drawn when a row is written, but transactions commit in their
-- own order: while a transaction that wrote seq 5 of an aggregate is still open, seq 6
-- of the same aggregate may already be committed, and publishing it would put it ahead
-- of 5. So every writing transaction announces, per partition it writes to, a lower
-- bound of the seqs it may draw there: a shared transaction-level advisory lock keyed
-- (this schema's tag | partition, the sequence's last value), taken before its first
-- seq in that partition is drawn and released when it ends. Shared locks never wait
-- for each other, so writers are never blocked and cannot deadlock on them. Before a
-- claim the dispatcher reads the sequence's last value and these locks, and publishes
-- in a partition only rows below every bound announced there; an open writer holds
-- back the later events of its partitions until it commits or rolls back, and skips
-- nothing. That is why seq is drawn here, after the lock, from a sequence of its own
-- instead of the identity default (which would be drawn before any trigger runs).
CREATE SEQUENCE :schema.outbox_write_seq AS bigint;
SELECT CASE WHEN pg_sequence_last_value(':schema.outbox_seq_seq') IS NULL
  THEN setval(':schema.outbox_write_seq', 1, false)
  ELSE setval(':schema.outbox_write_seq', pg_sequence_last_value(':schema.outbox_seq_seq'), true)
END;
ALTER TABLE :schema.outbox ALTER COLUMN seq DROP IDENTITY;
ALTER SEQUENCE :schema.outbox_write_seq OWNED BY :schema.outbox.seq;

CREATE OR REPLACE FUNCTION :schema.outbox_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  part int := ((hashtextextended(NEW.aggregate_id, 0) & 2147483647) % :partitions)::int;
  setting text := 'edupulse_outbox.announced_' || TG_TABLE_SCHEMA;
  announced text := coalesce(current_setting(setting, true), '');
BEGIN
  IF position(',' || part || ',' IN announced) = 0 THEN
    PERFORM pg_advisory_xact_lock_shared(
      (hashtext('edupulse-outbox:order:' || TG_TABLE_SCHEMA) & 2147482624) | part,
      (coalesce(pg_sequence_last_value(':schema.outbox_write_seq'), 0) % 2147483648)::int);
    PERFORM set_config(setting, CASE WHEN announced = '' THEN ',' ELSE announced END || part || ',', true);
  END IF;
  NEW.seq := nextval(':schema.outbox_write_seq');
  RETURN NEW;
END
$$;

CREATE TRIGGER outbox_before_insert BEFORE INSERT ON :schema.outbox
  FOR EACH ROW EXECUTE FUNCTION :schema.outbox_before_insert();
