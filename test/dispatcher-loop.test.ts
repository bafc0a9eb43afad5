import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MemoryBroker } from '../src/brokers/memory.js';
import { BrokerUnavailableError, ConfigError } from '../src/common/errors.js';
import { createDispatcher, createOutbox, LessonPublished } from '../src/index.js';
import { createPgTestSchema, type TestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let t: TestSchema;
beforeAll(async () => {
  t = await createPgTestSchema('fatal');
});
afterAll(async () => {
  await t?.drop();
});

it('stops with a fatal event when the broker refuses its configuration, instead of retrying forever', async () => {
  const broker = new MemoryBroker();
  let connects = 0;
  broker.connect = async () => {
    connects++;
    throw new ConfigError('broker', 'stream "S" exists but does not capture "p.*.*"');
  };
  const d = createDispatcher({
    db: t.db,
    broker,
    schema: t.schema,
    retryBaseDelayMs: 10,
    waitForBroker: false,
  });
  const fatal = new Promise<Error>((resolve) => d.once('fatal', resolve));
  await d.start();
  const error = await fatal;
  expect(error).toBeInstanceOf(ConfigError);
  expect(error.message).toContain('does not capture');
  await d.stop();
  expect(connects).toBe(1);
});

it('waits out its backoff after an outage even when NOTIFYs arrive meanwhile', async () => {
  const broker = new MemoryBroker();
  let connects = 0;
  broker.connect = async () => {
    connects++;
    throw new BrokerUnavailableError('connection refused');
  };
  // Backoff after the first failure is at least half of 5 s.
  const d = createDispatcher({
    db: t.db,
    broker,
    schema: t.schema,
    retryBaseDelayMs: 5000,
    waitForBroker: false,
  });
  const unavailable = new Promise((resolve) => d.once('unavailable', resolve));
  await d.start();
  await unavailable;
  const outbox = createOutbox({ schema: t.schema });
  for (let i = 0; i < 5; i++) {
    await t.db.transaction((tx) => outbox.enqueue(tx, LessonPublished.create(lesson())));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(connects).toBe(1);
  await d.stop();
});

it('logs each step of an outage once, however many lanes wait it out', async () => {
  const broker = new MemoryBroker();
  const connect = broker.connect.bind(broker);
  broker.connect = async () => {
    throw new BrokerUnavailableError('connection refused');
  };
  const lines: { message: string; attempt?: unknown }[] = [];
  const log = (fields: Record<string, unknown>, message: string) =>
    lines.push({ message, attempt: fields.attempt });
  const d = createDispatcher({
    db: t.db,
    broker,
    schema: t.schema,
    batchesInFlight: 4,
    retryBaseDelayMs: 20,
    retryMaxDelayMs: 80,
    waitForBroker: false,
    logger: { debug: log, info: log, warn: log, error: log },
  });
  const outage = () => lines.filter((line) => line.message === 'broker unavailable; retrying');
  const failed: unknown[] = [];
  d.on('unavailable', (event) => failed.push(event));
  await d.start();
  await waitFor('six steps of the outage', () => outage().length >= 6, { timeoutMs: 10_000 });
  broker.connect = connect;
  await waitFor(
    'dispatching again',
    () => lines.some((line) => line.message === 'dispatching again'),
    { timeoutMs: 10_000 },
  );
  await d.stop();
  // More lanes failed than lines were logged (each failure is an event), one per step.
  const attempts = outage().map((line) => line.attempt as number);
  expect(failed.length).toBeGreaterThan(attempts.length);
  expect(attempts.slice(0, 6)).toEqual([1, 2, 3, 4, 5, 6]);
  expect(new Set(attempts).size).toBe(attempts.length);
  expect(lines.filter((line) => line.message === 'dispatching again')).toHaveLength(1);
});

it('an outage that connecting does not end (a topic gone) is one info line per step, not two', async () => {
  let down = true;
  const broker = new MemoryBroker({
    onCheck: () => {
      if (down) throw new BrokerUnavailableError('topic "t" is gone (create_topics=false)');
    },
  });
  const lines: { level: string; message: string }[] = [];
  const at =
    (level: string) =>
    (_fields: Record<string, unknown>, message: string): void => {
      lines.push({ level, message });
    };
  const d = createDispatcher({
    db: t.db,
    broker,
    schema: t.schema,
    retryBaseDelayMs: 20,
    retryMaxDelayMs: 80,
    pollIntervalMs: 20,
    logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
  });
  await d.start();
  const said = (message: string, level?: string) =>
    lines.filter((line) => line.message === message && (!level || line.level === level));
  await waitFor('five steps', () => said('broker unavailable; retrying').length >= 5, {
    timeoutMs: 10_000,
  });
  down = false;
  await waitFor('dispatching again', () => said('dispatching again').length > 0, {
    timeoutMs: 10_000,
  });
  await d.stop();
  // Connected at start (info); each step's reconnect at debug only.
  expect(said('broker connected', 'info')).toHaveLength(1);
  expect(said('broker connected', 'debug').length).toBeGreaterThanOrEqual(4);
});

it("start() rejects with the broker's error, and leaves nothing running", async () => {
  for (const refusal of [
    new ConfigError('broker', 'stream "S" exists but does not capture "p.*.*"'),
    new BrokerUnavailableError('cannot connect to NATS at nats://127.0.0.1:1'),
  ]) {
    const broker = new MemoryBroker();
    let connects = 0;
    broker.connect = async () => {
      connects++;
      throw refusal;
    };
    const d = createDispatcher({ db: t.db, broker, schema: t.schema });
    await expect(d.start()).rejects.toBe(refusal);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(connects).toBe(1); // no loop retrying in the background
    expect(d.ownedPartitions()).toEqual([]);
    await d.stop();
  }
});

it('start() resolves once the broker is connected', async () => {
  const broker = new MemoryBroker();
  let connected = false;
  const connect = broker.connect.bind(broker);
  broker.connect = async () => {
    await new Promise((resolve) => setTimeout(resolve, 200));
    await connect();
    connected = true;
  };
  const d = createDispatcher({ db: t.db, broker, schema: t.schema });
  await d.start();
  expect(connected).toBe(true);
  await d.stop();
});

function lesson() {
  return {
    lesson_id: randomUUID(),
    author_id: randomUUID(),
    title: 'Fractions',
    published_at: new Date().toISOString(),
  };
}
