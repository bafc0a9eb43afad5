// A consumer process for the conformance suite's crash test: applies quiz-submitted events
// through the inbox into the effects table, prints "ready" once receiving, and after its
// HANG_AFTER-th effect has committed it prints "hanging" and never returns from the
// handler, so that event is never acked; the test then SIGKILLs it.
import { consume, createInbox } from '../../dist/consumer/index.js';
import { pgDatabase, QuizSubmitted } from '../../dist/index.js';

const { BROKER_URL, DATABASE_URL, SCHEMA, CONSUMER } = process.env;
const hangAfter = Number(process.env.HANG_AFTER);
const database = pgDatabase({ connectionString: DATABASE_URL });
const inbox = createInbox({ schema: SCHEMA, consumer: CONSUMER });
let applied = 0;

await consume({
  broker: BROKER_URL,
  consumer: CONSUMER,
  database,
  schema: SCHEMA,
  events: [QuizSubmitted],
  leaseRetryMs: 100,
  handler: async (event) => {
    await database.transaction((tx) =>
      inbox.process(tx, event, () =>
        tx.query(
          `INSERT INTO "${SCHEMA}".effects (consumer, event_id, aggregate_id, sequence) VALUES ($1, $2, $3, $4)`,
          [CONSUMER, event.id, event.aggregateId, event.sequence],
        ),
      ),
    );
    applied++;
    if (applied === hangAfter) {
      process.stdout.write('hanging\n');
      await new Promise(() => {});
    }
  },
});
process.stdout.write('ready\n');
