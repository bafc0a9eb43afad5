#!/usr/bin/env node
// A complete consumer: receives the demo's quiz-submitted and lesson-published events from
// NATS JetStream, RabbitMQ or Kafka with `consume()`, and applies each one exactly once
// through the inbox to two tables (the best score per quiz and student, the lessons
// published per author), printing one line per event.
//
//   node examples/consume.mjs <broker-url>
//
//   node examples/consume.mjs nats://127.0.0.1:4222
//   node examples/consume.mjs amqp://guest:guest@127.0.0.1:5672
//   node examples/consume.mjs kafka://127.0.0.1:9092
//
// The broker URL is the one given to `edupulse-outbox run --broker` (same stream, exchange
// or topic template). The tables live in DATABASE_URL's PostgreSQL (schema `public`,
// migrated here), or in an in-memory PGlite when DATABASE_URL is unset. In another
// terminal:
//
//   ./bin/edupulse-outbox demo --events 200 --broker nats://127.0.0.1:4222
//
// Start it before the demo on RabbitMQ: its queue must exist for the exchange to route
// events to it. The demo also publishes event types this consumer does not bind its queue
// for (enrollment-created, lesson-completed), which RabbitMQ returns to the dispatcher as
// unroutable; let the demo accept that, or it retries them until they are dead letters:
//
//   ./bin/edupulse-outbox demo --events 200 \
//     --broker 'amqp://guest:guest@127.0.0.1:5672?accept_unroutable=true'
//
// Ctrl-C stops it after the events being applied are committed and acked.
// Outside this repository it needs the broker's client (README, Install) and, without
// DATABASE_URL, @electric-sql/pglite.
import {
  LessonPublished,
  migrate,
  pgDatabase,
  pgliteDatabase,
  QuizSubmitted,
} from 'edupulse-outbox';
import { consume, createInbox } from 'edupulse-outbox/consumer';

const broker = process.argv[2];
if (!broker) {
  process.stderr.write('usage: node examples/consume.mjs <broker-url>\n');
  process.exit(2);
}
// pgliteDatabase leaves the instance it is given open: closed below, with the database.
const pglite = process.env.DATABASE_URL
  ? undefined
  : await (await import('@electric-sql/pglite')).PGlite.create();
const database = pglite
  ? pgliteDatabase(pglite)
  : pgDatabase({ connectionString: process.env.DATABASE_URL, maxConnections: 20 });
const closeDatabase = async () => {
  await database.close();
  await pglite?.close();
};
await migrate(database, 'public');
await database.query(`CREATE TABLE IF NOT EXISTS best_score (
  quiz_id uuid, student_id uuid, score numeric NOT NULL, PRIMARY KEY (quiz_id, student_id))`);
await database.query(`CREATE TABLE IF NOT EXISTS lessons_by_author (
  author_id uuid PRIMARY KEY, lessons integer NOT NULL)`);

const inbox = createInbox({ consumer: 'example' });

const consumer = await consume({
  broker,
  consumer: 'example',
  database,
  events: [QuizSubmitted, LessonPublished],
  // The inbox records the event id in the same transaction as the effect: a redelivered
  // event finds its id there and changes nothing. The message is acked after the commit.
  handler: (event) =>
    database.transaction((tx) =>
      inbox.process(tx, event, async () => {
        if (event.type === 'quiz-submitted') {
          const { quiz_id, student_id, score } = event.data;
          await tx.query(
            `INSERT INTO best_score VALUES ($1, $2, $3)
             ON CONFLICT (quiz_id, student_id) DO UPDATE SET score = greatest(best_score.score, excluded.score)`,
            [quiz_id, student_id, score],
          );
          process.stdout.write(
            `${event.sequence} quiz ${quiz_id}: ${student_id} scored ${score}\n`,
          );
        } else {
          const { author_id, title } = event.data;
          await tx.query(
            `INSERT INTO lessons_by_author VALUES ($1, 1)
             ON CONFLICT (author_id) DO UPDATE SET lessons = lessons_by_author.lessons + 1`,
            [author_id],
          );
          process.stdout.write(`${event.sequence} lesson "${title}" by ${author_id}\n`);
        }
      }),
    ),
});
process.stderr.write(`consume: ${consumer.health().state}, waiting for events\n`);

const stop = async () => {
  await consumer.stop();
  const { rows } = await database.query('SELECT count(*)::int AS n FROM best_score');
  process.stderr.write(`consume: ${JSON.stringify(consumer.stats)}; ${rows[0].n} best scores\n`);
  await closeDatabase();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
// Stopped by itself, since retrying cannot help (a setting the broker refuses on a
// reconnect): say why and end with exit 2. Outages are not fatal: it reconnects.
consumer.closed.catch(async (error) => {
  process.stderr.write(`consume: stopped: ${error.message}\n`);
  await closeDatabase();
  process.exitCode = 2;
});
