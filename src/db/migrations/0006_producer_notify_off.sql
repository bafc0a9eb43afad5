-- Producers no longer NOTIFY. PostgreSQL commits notifying transactions one at a time,
-- holding a database-wide lock until each commit record is flushed, so the insert
-- trigger's NOTIFY capped every outbox-writing transaction of the database at about one
-- commit per WAL flush (measured: 40-45 % of a plain INSERT's commit rate). Dispatchers
-- find new events by probing the write sequence every few milliseconds instead, which
-- costs producers nothing. `migrate --producer-notify on` brings the NOTIFY back for
-- deployments that prefer it (it wakes a dispatcher at once, at that price).
ALTER TABLE :schema.outbox DISABLE TRIGGER outbox_notify;
