-- Where a NATS consumer resumes when its durable JetStream consumer is gone. Each start
-- re-creates the durable from its ack floor (so that what was not acked comes again, in
-- stream order); the floor is kept here before the durable is deleted, so that a start
-- that ends between the two (the process killed, the server refusing the new durable)
-- leaves the next start, in any process, resuming from the floor rather than from the
-- `deliver` policy. The row goes once the durable is made again.
CREATE TABLE :schema.consumer_resume (
  consumer  text NOT NULL,
  stream    text NOT NULL,
  after_seq bigint NOT NULL,
  kept_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, stream)
);
