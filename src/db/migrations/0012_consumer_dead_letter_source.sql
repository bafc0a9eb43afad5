-- A consumer dead letter is an event's, and an event is its source and its id (see
-- 0011): keyed by id alone, the second producer's event parked under an id the first
-- had used updated the first's dead letter, whose headers and body stayed, so a retry
-- handed the first event to the handler again and the second was gone. Dead letters
-- parked before this migration, and those of messages that could not be decoded, have
-- the source ''. Consumers of the earlier release park by the old key: from this
-- migration until they are replaced, one that has an event to park logs "cannot park a
-- message; retrying" and holds that aggregate's later events (nothing is acked unparked).
ALTER TABLE :schema.consumer_dead_letter ADD COLUMN source text NOT NULL DEFAULT '';
-- The id before the source: dead letters are looked up by consumer and event id.
CREATE UNIQUE INDEX consumer_dead_letter_event_source_idx
  ON :schema.consumer_dead_letter (consumer, event_id, source);
DROP INDEX :schema.consumer_dead_letter_event_idx;
