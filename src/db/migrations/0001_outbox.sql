-- The outbox: one row per event not yet published. A producer in any language needs only
--   INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload) VALUES (...);
-- every other column has a default.
CREATE TABLE :schema.outbox (
  -- Commit order is not known at insert time; seq is the order events were written in,
  -- and the order the dispatcher publishes one aggregate's events in.
  seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- The event id: CloudEvents `id` and the broker's dedup id.
  id             uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
  aggregate_type text NOT NULL CHECK (aggregate_type <> ''),
  aggregate_id   text NOT NULL CHECK (aggregate_id <> ''),
  event_type     text NOT NULL CHECK (event_type <> ''),
  -- json, not jsonb: the payload is published byte for byte as the producer wrote it
  -- (key order included), and json costs nothing to convert on insert or on read.
  payload        json NOT NULL,
  headers        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(headers) = 'object'),
  -- The unit of dispatcher ownership; computed here so raw-SQL producers get it too.
  partition      smallint NOT NULL
                 GENERATED ALWAYS AS (((hashtextextended(aggregate_id, 0) & 2147483647) % :partitions)::smallint) STORED,
  occurred_at    timestamptz NOT NULL DEFAULT now(),
  -- Retry state: a failed event waits until available_at; attempts counts failed publishes.
  available_at   timestamptz NOT NULL DEFAULT now(),
  attempts       integer NOT NULL DEFAULT 0,
  last_error     text
);

-- Settings fixed when the schema is created; dispatchers read them at start.
CREATE TABLE :schema.outbox_settings (
  singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  partitions smallint NOT NULL CHECK (partitions BETWEEN 1 AND 1024)
);
INSERT INTO :schema.outbox_settings (partitions) VALUES (:partitions);

-- Finds the earlier events of an aggregate, so a failing event holds back only its own aggregate.
CREATE INDEX outbox_aggregate_idx ON :schema.outbox (aggregate_type, aggregate_id, seq);

-- Events that failed too often, parked with their last error until an operator retries or
-- discards them. Kept apart so the outbox indexes hold only pending work.
CREATE TABLE :schema.outbox_dead_letter (
  seq            bigint PRIMARY KEY,
  id             uuid NOT NULL,
  aggregate_type text NOT NULL,
  aggregate_id   text NOT NULL,
  event_type     text NOT NULL,
  payload        json NOT NULL,
  headers        jsonb NOT NULL,
  partition      smallint NOT NULL,
  occurred_at    timestamptz NOT NULL,
  attempts       integer NOT NULL,
  last_error     text NOT NULL,
  dead_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_dead_letter_event_type_idx ON :schema.outbox_dead_letter (event_type, dead_at);

-- Wakes dispatchers once per inserting statement (not per row); PostgreSQL folds
-- identical notifications of one transaction into one.
CREATE OR REPLACE FUNCTION :schema.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], '');
  RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON :schema.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION :schema.outbox_notify(':channel');
