// A consumer in a process of its own, on the built package: consume() of lesson-published
// events from BROKER_URL as CONSUMER (its tables in DATABASE_URL, SCHEMA), writing each
// event's id on a line of its own as it is handled; stops cleanly on SIGTERM.
import { consume } from '../../dist/consumer/index.js';
import { LessonPublished, pgDatabase } from '../../dist/index.js';

const { BROKER_URL, DATABASE_URL, SCHEMA, CONSUMER } = process.env;
const database = pgDatabase({ connectionString: DATABASE_URL });
const consumer = await consume({
  broker: BROKER_URL,
  consumer: CONSUMER,
  database,
  schema: SCHEMA,
  events: [LessonPublished],
  handler: (event) => {
    process.stdout.write(`${event.id}\n`);
  },
});
process.once('SIGTERM', async () => {
  await consumer.stop();
  await database.close();
});
