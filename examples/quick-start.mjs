// Producer, embedded dispatcher and consumer in one process: an event enqueued in a
// transaction, published to NATS JetStream, and applied once through the inbox.
//
//   npm install edupulse-outbox zod pg @nats-io/transport-node @nats-io/jetstream
//   node quick-start.mjs

import {
  brokerFromUrl,
  createDispatcher,
  createOutbox,
  LessonPublished,
  migrate,
  pgDatabase,
} from 'edupulse-outbox';
import { consume, createInbox } from 'edupulse-outbox/consumer';
import pg from 'pg';

const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const brokerUrl = process.env.BROKER_URL ?? 'nats://127.0.0.1:4222';
const schema = process.env.OUTBOX_SCHEMA ?? 'public';

// The tables: outbox, dead letters, inbox (or `npx edupulse-outbox migrate`).
const db = pgDatabase({ connectionString: databaseUrl });
await migrate(db, schema);

// The dispatcher, embedded: start() resolves once the database and the broker answer.
const dispatcher = createDispatcher({
  db,
  schema,
  broker: brokerFromUrl(brokerUrl, { source: '/quick-start' }),
  logger: false,
});
await dispatcher.start();

// A consumer that applies each event once, in its own transaction.
const inbox = createInbox({ schema, consumer: 'quick-start' });
/** @type {(id: string) => void} */
let done = () => {};
const applied = new Promise((resolve) => {
  done = resolve;
});
const consumer = await consume({
  broker: brokerUrl,
  consumer: 'quick-start',
  database: db,
  schema,
  events: [LessonPublished],
  handler: (event) =>
    db.transaction((tx) =>
      inbox.process(tx, event, async () => {
        console.log(`applied ${event.type} ${event.id}: "${event.data.title}"`);
        done(event.id);
      }),
    ),
});

// The producer: the event is written in the same transaction as the change it describes.
const outbox = createOutbox({ schema });
const client = new pg.Client({ connectionString: databaseUrl });
await client.connect();
await client.query('BEGIN');
const [id] = await outbox.enqueue(
  client,
  LessonPublished.create({
    lesson_id: crypto.randomUUID(),
    author_id: crypto.randomUUID(),
    title: 'Fractions without fear',
    published_at: new Date().toISOString(),
  }),
);
await client.query('COMMIT');
console.log(`enqueued ${id}`);

await applied;
await consumer.stop();
await dispatcher.stop();
await client.end();
await db.close();
