-- Whether a consumer dead letter was parked for being older than its aggregate's last
-- applied event. An operator's retry applies such a one after all: its reason said so.
-- A retry of one parked for another reason (a payload the schema refused, a handler
-- that failed) meets the inbox's stale policy like any late event, so that a fixed
-- consumer does not apply it over what its aggregate's later events wrote meanwhile.
ALTER TABLE :schema.consumer_dead_letter ADD COLUMN stale boolean NOT NULL DEFAULT false;

-- Dead letters an earlier release parked as stale keep that meaning: their reason is the
-- inbox's own (StaleEventError), which no other reason starts with.
UPDATE :schema.consumer_dead_letter SET stale = true
WHERE last_error LIKE 'event % is older than the last event applied for aggregate %';
