-- Retrying a dead letter puts it back under its original seq, so it is published before
-- the later events of its aggregate that `onDeadLetter: 'hold'` kept waiting behind it.
-- Only a transaction that sets edupulse_outbox.keep_seq (the `dead retry` command) may
-- give a seq; every other insert still draws one after announcing its write bound. A
-- restored seq lies below every bound, so it needs no announcement.
CREATE OR REPLACE FUNCTION :schema.outbox_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  part int;
  setting text;
  announced text;
BEGIN
  IF NEW.seq IS NOT NULL AND current_setting('edupulse_outbox.keep_seq', true) = 'on' THEN
    RETURN NEW;
  END IF;
  part := ((hashtextextended(NEW.aggregate_id, 0) & 2147483647) % :partitions)::int;
  setting := 'edupulse_outbox.announced_' || TG_TABLE_SCHEMA;
  announced := coalesce(current_setting(setting, true), '');
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
