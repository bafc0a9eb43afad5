-- The consuming half. A consumer that applies events through the inbox records each
-- event id here in the same transaction as the event's effect, so a redelivered event
-- (at-least-once delivery) finds its id and is not applied twice. Ids are text: events
-- from other producers need not carry uuids.
CREATE TABLE :schema.inbox (
  consumer     text NOT NULL CHECK (consumer <> ''),
  event_id     text NOT NULL,
  event_type   text NOT NULL,
  aggregate_id text NOT NULL,
  sequence     bigint,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);

-- `inbox purge --older-than` and the janitor delete by age.
CREATE INDEX inbox_processed_at_idx ON :schema.inbox (processed_at);

-- The highest `sequence` applied per aggregate: an event older than it is a late one (a
-- dead letter retried on the producer's side, say), handled by the inbox's policy. The
-- row is also locked while an event of its aggregate is applied, so two processes never
-- apply one aggregate's events at once.
CREATE TABLE :schema.inbox_aggregate (
  consumer      text NOT NULL,
  aggregate_id  text NOT NULL,
  last_sequence bigint NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, aggregate_id)
);

-- Messages a consumer could not use: undecodable, an invalid payload, an unknown type
-- (when so configured), a late event, or a handler that failed every attempt. Parked
-- here with the reason, then acknowledged, so they never block other aggregates.
CREATE TABLE :schema.consumer_dead_letter (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  consumer     text NOT NULL,
  -- The CloudEvent id; NULL when the message could not be decoded.
  event_id     text,
  event_type   text,
  aggregate_id text,
  sequence     bigint,
  -- Where the broker delivered it from: `kafka edupulse.quiz/2@17`.
  origin       text NOT NULL,
  headers      jsonb NOT NULL,
  -- The body as received, as text (invalid UTF-8 replaced).
  body         text NOT NULL,
  attempts     integer NOT NULL,
  last_error   text NOT NULL,
  dead_at      timestamptz NOT NULL DEFAULT now(),
  -- Set by `dead retry --consumer`: the running consumer takes the row (retry_taken_at),
  -- hands it to its handler again, and deletes it once handled (or parks it anew).
  retry_requested_at timestamptz,
  retry_taken_at     timestamptz
);

-- A message parked twice (redelivered before its ack arrived) stays one dead letter.
CREATE UNIQUE INDEX consumer_dead_letter_event_idx ON :schema.consumer_dead_letter (consumer, event_id);
CREATE INDEX consumer_dead_letter_dead_at_idx ON :schema.consumer_dead_letter (consumer, dead_at);
CREATE INDEX consumer_dead_letter_retry_idx ON :schema.consumer_dead_letter (consumer, dead_at)
  WHERE retry_requested_at IS NOT NULL;
