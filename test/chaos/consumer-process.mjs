// A consumer process of the consumer chaos phase (consumer-chaos.ts), on the built package
// (dist/): `consume()` with an inbox applies each `chaos-tick` event in one transaction to
// the effects table (one row per apply, with the producer's per-aggregate index `n` and an
// apply serial) and to the per-aggregate counter (applied = applied + 1); a duplicate the
// inbox recognised is recorded in `suppressed`, in the same transaction (a count that a
// SIGKILL cannot take back, unlike the stats this process prints).
//
// stdout, one JSON object a line: {"ready":true} once consume() resolved, then the
// consumer's stats and state every STATS_EVERY_MS, and {"final":true,…} after a SIGTERM
// stopped it (then it closes the database and exits 0). Settings come from the
// environment: BROKER_URL, DATABASE_URL, SCHEMA, CONSUMER.

import { z } from 'zod';
import { consume, createInbox } from '../../dist/consumer/index.js';
import { defineEvent, pgDatabase } from '../../dist/index.js';

const { BROKER_URL, DATABASE_URL, SCHEMA, CONSUMER } = process.env;
const statsEveryMs = Number(process.env.STATS_EVERY_MS ?? 500);

// The producers' events (producers.ts): aggregate type `chaos`, payload { aggregate, n }.
const ChaosTick = defineEvent({
  type: 'chaos-tick',
  aggregateType: 'chaos',
  schema: z.object({ aggregate: z.string(), n: z.number().int().nonnegative() }),
  aggregateId: (payload) => payload.aggregate,
});

const database = pgDatabase({
  connectionString: DATABASE_URL,
  applicationName: `chaos consumer ${CONSUMER}`,
});
const inbox = createInbox({ schema: SCHEMA, consumer: CONSUMER });
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
// What the consumer logs (reconnects, retries, parks), on stderr for a post-mortem.
const logAt = (level) => (fields, message) =>
  process.stderr.write(`${JSON.stringify({ level, time: Date.now(), message, ...fields })}\n`);
const logger = { debug: () => {}, info: logAt('info'), warn: logAt('warn'), error: logAt('error') };

let consumer;
let stopping = false;
let reporting;

process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    // A SIGTERM before consume() resolved waits for it (or for its failure).
    await started.catch(() => {});
    await consumer?.stop();
    clearInterval(reporting);
    if (consumer) print({ final: true, stats: consumer.stats, pid: process.pid });
    await database.close();
    process.exit(0);
  })();
});

const started = consume({
  broker: BROKER_URL,
  consumer: CONSUMER,
  database,
  schema: SCHEMA,
  events: [ChaosTick],
  leaseRetryMs: 200,
  logger,
  // Long enough for a broker restart with a process started during it.
  startTimeoutMs: 120_000,
  handler: (event) =>
    database.transaction(async (tx) => {
      // The effect: its row and the aggregate's counter, in one statement (one round trip).
      const { outcome } = await inbox.process(tx, event, () =>
        tx.query(
          `WITH effect AS (
             INSERT INTO "${SCHEMA}".effects (consumer, event_id, aggregate_id, n, pid)
             VALUES ($1, $2, $3, $4, $5) RETURNING aggregate_id)
           UPDATE "${SCHEMA}".counters SET applied = applied + 1
            WHERE aggregate_id = (SELECT aggregate_id FROM effect)`,
          [CONSUMER, event.id, event.aggregateId, event.data.n, process.pid],
        ),
      );
      if (outcome === 'duplicate') {
        await tx.query(
          `INSERT INTO "${SCHEMA}".suppressed (consumer, event_id, pid) VALUES ($1, $2, $3)`,
          [CONSUMER, event.id, process.pid],
        );
      }
    }),
});

try {
  consumer = await started;
} catch (error) {
  process.stderr.write(`consume() failed: ${error?.stack ?? error}\n`);
  process.exit(1);
}
print({ ready: true, state: consumer.health().state, pid: process.pid });
consumer.on('state', (state) => print({ state, reason: consumer.health().reason }));
reporting = setInterval(() => {
  if (!stopping) print({ stats: consumer.stats, state: consumer.health().state, pid: process.pid });
}, statsEveryMs);
reporting.unref();
