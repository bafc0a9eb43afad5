-- The id of the event whose sequence is an aggregate's mark. A sequence names one outbox
-- row, so an event with the mark's sequence was taken for the one applied (its inbox
-- record purged, the broker delivering it again): a duplicate. After the producer's
-- database is restored from a backup its outbox numbers events again from the backup's
-- sequence, and a new event with the mark's sequence was silently dropped as such a
-- duplicate. With the id kept, another id is a sequence gone back, not a duplicate.
-- Marks written before, or by consumers of the earlier release, leave it NULL or stale:
-- an id that does not match counts only when the mark's sequence is the one it was
-- written with (last_event_sequence).
ALTER TABLE :schema.inbox_mark ADD COLUMN last_event_id text;
ALTER TABLE :schema.inbox_mark ADD COLUMN last_event_sequence bigint;
