-- A dispatcher's claim starts from a cursor, after the last event it claimed, and checks
-- an event's order against the rows it passed over instead of probing every event's
-- aggregate, as long as nothing can lie below its cursor unseen. Two writers can put a
-- row there: a producer whose transaction commits late (it announces its write bound
-- first, which the claim reads), and `dead retry`, which puts a dead letter back under
-- its original seq. A restore now announces itself the same way while its transaction is
-- open, and counts itself in outbox_restore_seq, which the claim reads: a dispatcher that
-- sees the count move checks every event's aggregate again until a look from the start.
CREATE SEQUENCE :schema.outbox_restore_seq AS bigint;
ALTER SEQUENCE :schema.outbox_restore_seq OWNED BY :schema.outbox.seq;

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
  IF NEW.seq IS NOT NULL AND current_setting('edupulse_outbox.keep_seq', true) = 'on' THEN
    PERFORM nextval(':schema.outbox_restore_seq');
    RETURN NEW;
  END IF;
  NEW.seq := nextval(':schema.outbox_write_seq');
  RETURN NEW;
END
$$;
