/**
 * consume() that cannot start: it rejects with the error a person can act on (a setting
 * the broker refuses, or a broker it cannot reach in time) and leaves nothing running
 * behind: no timer, no socket, and nothing that keeps the failed consumer in memory (a
 * service that retries its start must not grow with each attempt).
 */
import { createServer } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import {
  BrokerUnavailableError,
  ConfigError,
  SchemaVersionError,
} from '../../src/common/errors.js';
import { consume } from '../../src/consumer/index.js';
import { defineEvent, pgDatabase, QuizSubmitted } from '../../src/index.js';
import { AMQP_URL, testExchange, withAmqpChannel } from '../helpers/amqp.js';
import { createPgTestSchema, databaseUrl, type TestSchema } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

let pg: TestSchema;

beforeAll(async () => {
  pg = await createPgTestSchema('start');
});

afterAll(async () => {
  await pg.drop();
});

/** Timers and sockets this process holds, by kind. */
function held(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) {
    if (kind === 'Timeout' || kind.endsWith('Wrap')) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts;
}

/** Waits until this process holds no more timers or sockets of any kind than `before`. */
async function backTo(before: Map<string, number>): Promise<void> {
  let now = held();
  await waitFor(
    'timers and sockets released',
    () => {
      now = held();
      return [...now].every(([kind, n]) => n <= (before.get(kind) ?? 0));
    },
    { timeoutMs: 5000 },
  ).catch(() => {
    throw new Error(
      `still held: ${JSON.stringify(Object.fromEntries(now))}, before: ${JSON.stringify(Object.fromEntries(before))}`,
    );
  });
}

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Consumers (by name) whose handler was collected after they failed to start. */
const collected = new Set<string>();
const handlers = new FinalizationRegistry<string>((consumer) => {
  collected.add(consumer);
});

/** A failed consumer's handler is collected once nothing holds the consumer. */
async function released(consumer: string): Promise<void> {
  await waitFor(
    'the failed consumer collected',
    () => {
      gc();
      return collected.has(consumer);
    },
    { timeoutMs: 5000 },
  ).catch(() => {
    throw new Error(`the failed consumer ${consumer} is still in memory`);
  });
}

const options = (broker: string, consumer: string) => {
  const handler = function leakProbeHandler() {};
  handlers.register(handler, consumer);
  return {
    broker,
    consumer,
    database: pg.db,
    schema: pg.schema,
    events: [QuizSubmitted],
    handler,
  };
};

it('rejects a queue RabbitMQ refuses with a ConfigError naming the setting, and keeps nothing running', async () => {
  const exchange = testExchange();
  const consumer = 'start-refused';
  // Someone declared the queue as a quorum queue; the consumer declares a classic one.
  await withAmqpChannel(async (channel) => {
    await channel.assertExchange(exchange, 'topic', { durable: true });
    await channel.assertQueue(`${exchange}.${consumer}`, {
      durable: true,
      arguments: { 'x-queue-type': 'quorum' },
    });
  });
  try {
    await pg.db.query('SELECT 1');
    const before = held();
    const error = await consume(options(`${AMQP_URL}?exchange=${exchange}`, consumer)).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe('broker');
    expect((error as Error).message).toContain('RabbitMQ refused to declare queue');
    expect((error as Error).message).not.toContain('guest:guest');
    // As a log line would: formatted, a stack no longer holds its frames' objects.
    expect((error as Error).stack).toContain('ConfigError');
    await backTo(before);
    await released(consumer);
  } finally {
    await withAmqpChannel(async (channel) => {
      await channel.deleteQueue(`${exchange}.${consumer}`);
      await channel.deleteExchange(exchange);
    });
  }
});

it('rejects at once an event type whose routing key RabbitMQ cannot carry, naming it', async () => {
  // defineEvent takes a type of 200 characters and an aggregate type of 100: 301 bytes.
  const long = defineEvent({
    type: `e${'x'.repeat(199)}`,
    aggregateType: `a${'y'.repeat(99)}`,
    schema: z.object({ id: z.string() }),
    aggregateId: (p) => p.id,
  });
  const started = Date.now();
  const error = await consume({
    ...options(`${AMQP_URL}?exchange=${testExchange()}`, 'start-long-key'),
    events: [QuizSubmitted, long],
  }).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as ConfigError).setting).toBe('events');
  expect((error as Error).message).toContain(`${long.type}: aggregate_type and event_type`);
  expect((error as Error).message).toContain("is 301 bytes, over AMQP's limit of 255 bytes");
  expect(Date.now() - started).toBeLessThan(10_000);
});

it('rejects a schema without the consumer tables before it receives anything', async () => {
  const exchange = testExchange();
  const consumer = 'start-unmigrated';
  try {
    const error = await consume({
      ...options(`${AMQP_URL}?exchange=${exchange}`, consumer),
      schema: `${pg.schema}_missing`,
    }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(SchemaVersionError);
    expect((error as Error).message).toContain(
      `schema "${pg.schema}_missing" holds no outbox tables`,
    );
    expect((error as Error).message).toContain('edupulse-outbox migrate');
    // Refused before the broker was asked for anything: no queue was declared.
    await withAmqpChannel(async (channel) => {
      await expect(channel.checkQueue(`${exchange}.${consumer}`)).rejects.toThrow('404');
    });
  } finally {
    await withAmqpChannel((channel) => channel.deleteExchange(exchange)).catch(() => {});
  }
});

it('rejects a broker that does not answer within startTimeoutMs, and keeps nothing running', async () => {
  // A port that accepts connections and never says a word: no broker behind it.
  const sockets = new Set<import('node:net').Socket>();
  const silent = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as { port: number }).port;
  try {
    await pg.db.query('SELECT 1');
    const before = held();
    const error = await consume({
      ...options(`nats://127.0.0.1:${port}?stream=START_SILENT`, 'start-silent'),
      startTimeoutMs: 1500,
    }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect((error as Error).message).toContain('consumer start-silent: not started within 1500 ms');
    expect((error as Error).stack).toContain('BrokerUnavailableError');
    // The lease's session closes at once (not when the broker's connect times out): a
    // process started again takes the lease.
    await waitFor(
      'the lease session closed',
      async () => {
        const { rows } = await pg.db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
          ['edupulse-outbox consumer start-silent'],
        );
        return rows[0]?.n === 0;
      },
      { timeoutMs: 2000 },
    );
    for (const socket of sockets) socket.destroy();
    await backTo(before);
    await released('start-silent');
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

it('says the database is what it could not reach, and rejects a login the server refuses at once', async () => {
  const exchange = testExchange();
  const unreachable = pgDatabase({
    connectionString: 'postgres://app:S3cretPw@127.0.0.1:1/test',
    connectTimeoutMs: 500,
  });
  const missing = pgDatabase({
    connectionString: databaseUrl('no_such_database_here'),
  });
  try {
    // Before: BrokerUnavailableError, the operator sent to look at the broker.
    const away = await consume({
      ...options(`${AMQP_URL}?exchange=${exchange}`, 'start-db-away'),
      database: unreachable,
      startTimeoutMs: 1500,
    }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(away).not.toBeInstanceOf(BrokerUnavailableError);
    expect(away).toMatchObject({ code: 'DATABASE_UNAVAILABLE' });
    expect((away as Error).message).toMatch(
      /^consumer start-db-away: not started within 1500 ms: the database cannot be reached: .*ECONNREFUSED/,
    );
    expect((away as Error).message).not.toContain('S3cretPw');
    // A database that does not exist: no retry helps, so no waiting for startTimeoutMs.
    const started = Date.now();
    const refused = await consume({
      ...options(`${AMQP_URL}?exchange=${exchange}`, 'start-db-missing'),
      database: missing,
      startTimeoutMs: 20_000,
    }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(refused).toMatchObject({ code: '3D000' });
    expect(Date.now() - started).toBeLessThan(10_000);
  } finally {
    await Promise.allSettled([unreachable.close(), missing.close()]);
    await withAmqpChannel((channel) => channel.deleteExchange(exchange)).catch(() => {});
  }
});
