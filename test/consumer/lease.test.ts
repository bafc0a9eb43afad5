/**
 * The lease that lets one process of a NATS consumer receive at a time lives on a
 * database session. Two processes of one consumer: one receives, the other stands by.
 * When the first one's connections go silent (no error, no close: a network cut off, a
 * failover to another address), the lease must not stay held by a session nobody
 * answers for: the first stops receiving once its session does not answer, the server
 * ends that session, and the other process takes over. The first reaches PostgreSQL
 * through a TCP proxy the test strands; the second connects directly.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { silentLogger } from '../../src/common/logger.js';
import { type Consumer, consume } from '../../src/consumer/index.js';
import { type Database, QuizSubmitted } from '../../src/index.js';
import { createPgTestSchema, proxiedPgDatabase, type TestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { deleteStream } from '../helpers/nats-consumer.js';
import type { TcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';

const SERVER = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const id = randomBytes(5).toString('hex');
const stream = `L_${id}`;
const url = `${SERVER}?stream=${stream}&subject_prefix=l${id}`;
let schema: TestSchema;
let proxy: TcpProxy;
let viaProxy: Database;
const consumers: Consumer[] = [];
/** Server processes behind stranded connections, ended after the test. */
let strandedPorts: number[] = [];

beforeAll(async () => {
  schema = await createPgTestSchema('consumer_lease');
  ({ proxy, db: viaProxy } = await proxiedPgDatabase({ connectTimeoutMs: 1000 }));
});

afterAll(async () => {
  await Promise.all(consumers.map((consumer) => consumer.stop().catch(() => {})));
  await schema?.db.query(
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = ANY($1::int[])',
    [strandedPorts],
  );
  await viaProxy?.close();
  await proxy?.stop();
  await deleteStream(SERVER, stream).catch(() => {});
  await schema?.drop();
});

/** The lease sessions of this test's consumer among the server processes at `ports`. */
async function leaseSessions(ports: number[]): Promise<number> {
  const { rows } = await schema.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
     WHERE client_port = ANY($1::int[]) AND application_name = 'edupulse-outbox consumer leased'`,
    [ports],
  );
  return rows[0]?.n ?? 0;
}

it('passes the lease on when the process holding it is cut off from the database', async () => {
  const handled = new Map<string, string[]>();
  const said: string[] = [];
  const logger = {
    ...silentLogger,
    info: (_fields: object, message: string) => said.push(message),
  };
  const start = async (name: string, database: Database) => {
    handled.set(name, []);
    const consumer = await consume({
      logger,
      broker: url,
      consumer: 'leased',
      database,
      schema: schema.schema,
      events: [QuizSubmitted],
      leaseRetryMs: 200,
      databaseTimeoutMs: 1000,
      handler: (event) => {
        handled.get(name)?.push(event.id);
      },
    });
    consumers.push(consumer);
    return consumer;
  };
  const cutOff = await start('cut off', viaProxy);
  await waitFor('the first process receiving', () => cutOff.health().state === 'receiving');
  const other = await start('other', schema.db);
  expect(other.health().state).toBe('standby');
  // Said, once: a process standing by looks like a running one otherwise.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  expect(said.filter((message) => message.startsWith('consumer standing by'))).toEqual([
    expect.stringContaining(
      `another process of consumer "leased" (inbox schema "${schema.schema}")`,
    ),
  ]);

  const broker = brokerFromUrl(url, { source: 'test' });
  await broker.connect();
  try {
    const before = quizMessage(randomUUID());
    await broker.publish([before]);
    await waitFor('the event before', () => handled.get('cut off')?.includes(before.id) ?? false);

    strandedPorts = proxy.strand();
    expect(await leaseSessions(strandedPorts)).toBe(1);
    await waitFor(
      'the first process to stop receiving',
      () => cutOff.health().state !== 'receiving',
      {
        timeoutMs: 10_000,
      },
    );
    // idle_session_timeout: 2 × (200 + 1000) ms.
    await waitFor(
      'the server ending the stranded lease session',
      async () => (await leaseSessions(strandedPorts)) === 0,
      {
        timeoutMs: 15_000,
      },
    );
    // Either process may take the lease now, never both. The cut-off one may take it and
    // fail to start (its pool still holds stranded connections), then stands by.
    const states = () => [cutOff, other].map((consumer) => consumer.health().state).sort();
    let bothReceiving = false;
    await waitFor(
      'one process receiving again, the other standing by',
      () => {
        const now = states();
        if (now.every((state) => state === 'receiving')) bothReceiving = true;
        return now[0] === 'receiving' && now[1] === 'standby';
      },
      { timeoutMs: 20_000, intervalMs: 10 },
    );
    expect(bothReceiving).toBe(false);

    const after = quizMessage(randomUUID());
    await broker.publish([after]);
    await waitFor('the event after', () =>
      [...handled.values()].some((ids) => ids.includes(after.id)),
    );
    expect([...handled.values()].flat().filter((eventId) => eventId === after.id)).toHaveLength(1);
  } finally {
    await broker.close();
  }
}, 60_000);
