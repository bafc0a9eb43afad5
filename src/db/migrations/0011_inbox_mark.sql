-- An aggregate is its type and its id, and a `sequence` is the write order of one
-- producer's outbox: a course 42's events do not compare with a student 42's (on Kafka,
-- in topics of their own, they arrive in any order between them), nor one producer's
-- sequences with another's. `inbox_aggregate` kept the last applied sequence by id
-- alone; this table keeps it per source, aggregate type and id, and takes its place.
-- Consumers of the earlier release, still running during a rollout, go on with
-- `inbox_aggregate`, which this release no longer reads (its marks cannot be told apart
-- by type): until an aggregate's next event, one late behind an event applied before the
-- upgrade is applied rather than parked. The inbox's records still keep every event from
-- being applied twice.
CREATE TABLE :schema.inbox_mark (
  consumer       text NOT NULL,
  source         text NOT NULL,
  aggregate_type text NOT NULL,
  aggregate_id   text NOT NULL,
  last_sequence  bigint NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, source, aggregate_type, aggregate_id)
);

-- Likewise an event is its source and its id: CloudEvents makes only the two together
-- unique, and a producer that numbers its events (1, 2, ...) shares ids with another.
-- Keyed by id alone, the second producer's event 1 was taken for a duplicate of the
-- first's and never applied. Records of the earlier release have the source '': this
-- release takes such a record of the same id as the event's own, so an event applied by
-- a consumer of the earlier release is not applied again by one of this release during
-- a rollout. Rebuilding the key blocks the inbox's writes while it runs: purge old
-- records first (`inbox purge --older-than`), or migrate at a quiet time.
ALTER TABLE :schema.inbox ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE :schema.inbox
  DROP CONSTRAINT inbox_pkey,
  ADD PRIMARY KEY (consumer, source, event_id);
