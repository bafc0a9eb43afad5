-- An operator finds a dead letter by its id (`dead show|retry|discard <id>`, the console),
-- lists them oldest first, and the retention purge deletes the oldest: without these
-- indexes each of those read every dead letter, seconds per command once a broker had
-- refused a few hundred thousand events.
CREATE INDEX outbox_dead_letter_id_idx ON :schema.outbox_dead_letter (id);
CREATE INDEX outbox_dead_letter_dead_at_idx ON :schema.outbox_dead_letter (dead_at, seq);
