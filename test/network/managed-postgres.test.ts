/**
 * Managed PostgreSQL services set timeouts server-wide that a dispatcher must live with: a
 * short `statement_timeout`, and an `idle_in_transaction_session_timeout` shorter than a
 * slow broker takes to confirm a batch — while the claim transaction stays open. A private
 * server with both set; a broker that takes 1.2 s per batch; every event is published once,
 * in order, at its first attempt, with nothing dead-lettered.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type LogicalPostgres, startLogicalPostgres } from '../../scripts/pg/logical-postgres.mjs';
import {
  createDispatcher,
  createOutbox,
  type Database,
  MemoryBroker,
  migrate,
  pgDatabase,
} from '../../src/index.js';
import { StepTaken } from '../helpers/outbox.js';
import { waitFor } from '../helpers/wait.js';

const SCHEMA = 'managed';

let server: LogicalPostgres;
let db: Database;

beforeAll(async () => {
  server = await startLogicalPostgres({
    settings: { statement_timeout: '2s', idle_in_transaction_session_timeout: '500ms' },
  });
  db = pgDatabase({ connectionString: server.url });
  await migrate(db, SCHEMA);
});

afterAll(async () => {
  await db?.close();
  await server?.stop();
});

it('publishes through a broker slower than the server lets a transaction idle', async () => {
  const { rows } = await db.query<{ server: string }>(
    "SELECT reset_val AS server FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'",
  );
  // The server's own value, what a session that does not set its own gets.
  expect(rows[0]?.server).toBe('500');

  const outbox = createOutbox({ schema: SCHEMA });
  for (let n = 0; n < 10; n++) {
    await db.transaction((tx) =>
      outbox.enqueue(
        tx,
        ['a', 'b', 'c'].map((walk) => StepTaken.create({ walk, n })),
      ),
    );
  }
  const broker = new MemoryBroker({ latencyMs: 1200 });
  const dispatcher = createDispatcher({
    db,
    broker,
    schema: SCHEMA,
    logger: false,
    batchSize: 10,
  });
  await dispatcher.start();
  try {
    await waitFor('30 events published', () => broker.messages.length >= 30, {
      timeoutMs: 30_000,
    });
  } finally {
    await dispatcher.stop();
  }
  for (const walk of ['a', 'b', 'c']) {
    const ns = broker.messages
      .filter((message) => message.aggregateId === walk)
      .map((message) => (JSON.parse(message.payload) as { n: number }).n);
    expect({ walk, ns }).toEqual({ walk, ns: [...Array(10).keys()] });
  }
  // Each once (a claim ended by the server would have been published again), at its first
  // attempt.
  expect(broker.messages).toHaveLength(30);
  expect(broker.messages.every((message) => message.attempts === 0)).toBe(true);
  const left = await db.query<{ outbox: number; dead: number }>(
    `SELECT (SELECT count(*)::int FROM ${SCHEMA}.outbox) AS outbox,
            (SELECT count(*)::int FROM ${SCHEMA}.outbox_dead_letter) AS dead`,
  );
  expect(left.rows[0]).toEqual({ outbox: 0, dead: 0 });
});
