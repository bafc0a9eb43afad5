-- The aggregate type the broker routed a parked message by, where it says one (the NATS
-- subject's, the RabbitMQ routing key's, the Kafka topic's): a retry hands it to the
-- consumer again with the message, which so tells another aggregate type's event of a
-- declared type's name from the declared one's, as at its first delivery, instead of
-- applying it as the declared one. NULL in dead letters parked before this migration, or
-- by consumers of the earlier release, whose retries are matched by type name alone.
ALTER TABLE :schema.consumer_dead_letter ADD COLUMN routed_aggregate_type text;
