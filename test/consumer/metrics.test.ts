import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { silentLogger } from '../../src/common/logger.js';
import type { ConsumerHealth } from '../../src/consumer/events.js';
import { type Consumer, consume, createInbox } from '../../src/consumer/index.js';
import { QuizSubmitted } from '../../src/index.js';
import { consumerMetrics, consumerReadiness } from '../../src/ops/index.js';
import { AMQP_URL, testExchange, withAmqpChannel } from '../helpers/amqp.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { waitFor } from '../helpers/wait.js';

// RabbitMQ: it keeps no dedup window, so publishing an event twice redelivers it.
const exchange = testExchange();
const url = `${AMQP_URL}?exchange=${exchange}&accept_unroutable=true`;
let pg: TestSchema;
let consumer: Consumer | undefined;

beforeAll(async () => {
  pg = await createPgTestSchema('consumer_metrics');
});
afterAll(async () => {
  await consumer?.stop();
  await withAmqpChannel(async (channel) => {
    await channel.deleteQueue(`${exchange}.metered`);
    await channel.deleteExchange(exchange);
  }).catch(() => {});
  await pg?.drop();
});

const quiz = quizMessage;

it('counts processed, duplicate, failed, parked and skipped events, and reports readiness', async () => {
  const inbox = createInbox({ schema: pg.schema, consumer: 'metered' });
  const good = quiz(randomUUID());
  const failing = quiz(randomUUID());
  const invalid = quiz(randomUUID(), { payload: '{"score":"high"}' });
  const unknown = { ...quiz(randomUUID()), eventType: 'quiz-archived' };
  consumer = await consume({
    broker: url,
    consumer: 'metered',
    database: pg.db,
    schema: pg.schema,
    events: [QuizSubmitted],
    maxAttempts: 2,
    retryDelayMs: 5,
    onInvalid: 'skip',
    handler: async (event) => {
      if (event.id === failing.id) throw new Error('no');
      await pg.db.transaction((tx) => inbox.process(tx, event, () => undefined));
    },
  });
  const registry = consumerMetrics({ consumer, name: 'metered' });
  expect(consumerReadiness(consumer)).toEqual({ ok: true, reasons: [] });
  // Every label there from 0, before anything counts: an alert on increase() sees the first.
  const before = await registry.metrics();
  for (const eventType of ['quiz-submitted', 'other', 'unknown']) {
    expect(before).toContain(
      `consumer_events_parked_total{consumer="metered",event_type="${eventType}"} 0`,
    );
  }
  const broker = brokerFromUrl(url, { source: 'test' });
  await broker.connect();
  // The good event twice: the second is a redelivery the inbox recognises. The unknown
  // type is never routed to the queue (RabbitMQ binds by type).
  await broker.publish([good, failing, invalid, unknown]);
  await broker.publish([good]);
  await waitFor(
    'all settled',
    () => consumer?.stats.received === 4 && consumer.health().inFlight === 0,
    {
      timeoutMs: 20_000,
    },
  );
  await broker.close();
  const text = await registry.metrics();
  const value = (line: string) => Number(new RegExp(`^${line} (\\S+)$`, 'm').exec(text)?.[1]);
  expect(
    value('consumer_events_processed_total\\{consumer="metered",event_type="quiz-submitted"\\}'),
  ).toBe(2);
  expect(value('inbox_duplicates_total\\{consumer="metered",event_type="quiz-submitted"\\}')).toBe(
    1,
  );
  expect(
    value('consumer_handler_failures_total\\{consumer="metered",event_type="quiz-submitted"\\}'),
  ).toBe(2);
  expect(
    value('consumer_events_parked_total\\{consumer="metered",event_type="quiz-submitted"\\}'),
  ).toBe(1);
  expect(
    value('consumer_events_skipped_total\\{consumer="metered",event_type="quiz-submitted"\\}'),
  ).toBe(1);
  expect(value('consumer_state\\{consumer="metered",state="receiving"\\}')).toBe(1);
  expect(value('consumer_handler_duration_seconds_count\\{consumer="metered"\\}')).toBe(2);
  await consumer.stop();
  expect(consumerReadiness(consumer)).toEqual({ ok: false, reasons: ['consumer stopped'] });
  // Stopped by stop(), not by itself.
  await expect(consumer.closed).resolves.toBeUndefined();
});

it("counts from the consumer's start though attached later, as consumer.stats does", async () => {
  const inbox = createInbox({ schema: pg.schema, consumer: 'late' });
  const late = await consume({
    broker: url,
    consumer: 'late',
    database: pg.db,
    schema: pg.schema,
    events: [QuizSubmitted],
    logger: silentLogger,
    handler: (event) => pg.db.transaction((tx) => inbox.process(tx, event, () => undefined)),
  });
  try {
    const broker = brokerFromUrl(url, { source: 'test' });
    await broker.connect();
    const first = quiz(randomUUID());
    try {
      // Handled before the metrics exist (their module still loading, say).
      await broker.publish([first]);
      await broker.publish([first]);
      await waitFor('two handled', () => late.stats.processed === 2, { timeoutMs: 20_000 });
      const registry = consumerMetrics({ consumer: late, name: 'late' });
      await broker.publish([quiz(randomUUID())]);
      await waitFor('three handled', () => late.stats.processed === 3, { timeoutMs: 20_000 });
      const text = await registry.metrics();
      const value = (line: string) => Number(new RegExp(`^${line} (\\S+)$`, 'm').exec(text)?.[1]);
      // Before: 1 and 0, what came after the call only.
      expect(
        value('consumer_events_processed_total\\{consumer="late",event_type="quiz-submitted"\\}'),
      ).toBe(late.stats.processed);
      expect(value('inbox_duplicates_total\\{consumer="late",event_type="quiz-submitted"\\}')).toBe(
        late.stats.duplicates,
      );
      expect(late.stats.duplicates).toBe(1);
    } finally {
      await broker.close();
    }
  } finally {
    await late.stop();
    await withAmqpChannel((channel) => channel.deleteQueue(`${exchange}.late`)).catch(() => {});
  }
});

it('is not ready from stop() on, while a handler in flight finishes', async () => {
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const waiting = await consume({
    broker: url,
    consumer: 'stopping',
    database: pg.db,
    schema: pg.schema,
    events: [QuizSubmitted],
    handler: () => held,
  });
  try {
    const broker = brokerFromUrl(url, { source: 'test' });
    await broker.connect();
    await broker.publish([quiz(randomUUID())]);
    await broker.close();
    await waitFor('the handler running', () => waiting.health().inFlight === 1);
    const stopped = waiting.stop();
    // Before: `receiving` (ready) for as long as the handler took, forever if it hung.
    await waitFor('stopping', () => waiting.health().state === 'stopping');
    expect(consumerReadiness(waiting)).toEqual({
      ok: false,
      reasons: ['consumer stopping: stop() was called: finishing the handlers in flight'],
    });
    release();
    await stopped;
    expect(waiting.health().state).toBe('stopped');
  } finally {
    release();
    await waiting.stop();
    await withAmqpChannel((channel) => channel.deleteQueue(`${exchange}.stopping`)).catch(() => {});
  }
});

it('serves several consumers of one process from one registry, each under its name', async () => {
  // The consumers as the registry sees them: their events and their health.
  const fake = (inFlight: number) => {
    const emitter = new EventEmitter() as Consumer;
    const health: ConsumerHealth = { state: 'receiving', reason: undefined, inFlight };
    return Object.assign(emitter, {
      health: () => health,
      backlog: async () => inFlight * 10,
      state: health,
    });
  };
  const processed = (consumer: Consumer) =>
    consumer.emit('processed', {
      event: { type: 'quiz-submitted', time: new Date().toISOString() } as never,
      outcome: 'applied',
      durationMs: 2,
    });
  const registry = new Registry();
  const grades = fake(1);
  const badges = fake(2);
  expect(consumerMetrics({ consumer: grades, name: 'grades', registry })).toBe(registry);
  // Before: prom-client's "A metric with the name … has already been registered".
  expect(consumerMetrics({ consumer: badges, name: 'badges', registry })).toBe(registry);
  processed(grades);
  processed(badges);
  processed(badges);
  const value = async (line: string) =>
    Number(new RegExp(`^${line} (\\S+)$`, 'm').exec(await registry.metrics())?.[1]);
  const events = (name: string) =>
    value(`consumer_events_processed_total\\{consumer="${name}",event_type="quiz-submitted"\\}`);
  expect(await events('grades')).toBe(1);
  expect(await events('badges')).toBe(2);
  expect(await value('consumer_messages_in_flight\\{consumer="badges"\\}')).toBe(2);
  expect(await value('consumer_backlog_messages\\{consumer="grades"\\}')).toBe(10);

  // A name counted for a consumer still running is refused; one that stopped hands over.
  const again = fake(0);
  expect(() => consumerMetrics({ consumer: again, name: 'grades', registry })).toThrow(
    expect.objectContaining({ setting: 'consumerMetrics.name' }),
  );
  grades.state.state = 'stopped';
  consumerMetrics({ consumer: again, name: 'grades', registry });
  processed(grades);
  processed(again);
  expect(await events('grades')).toBe(2);
  expect(await value('consumer_messages_in_flight\\{consumer="grades"\\}')).toBe(0);
});

it("goes on when a listener of the consumer's events throws: the message is retried and acked", async () => {
  let attempts = 0;
  const lines: string[] = [];
  const listening = await consume({
    broker: url,
    consumer: 'listened',
    database: pg.db,
    schema: pg.schema,
    events: [QuizSubmitted],
    retryDelayMs: 5,
    logger: { ...silentLogger, error: (_fields, message) => lines.push(message) },
    handler: () => {
      attempts++;
      if (attempts === 1) throw undefined;
    },
  });
  // An application's listener with a bug: it reads error.message of an `undefined` error.
  listening.on('failed', ({ error }) => {
    (error as Error).message.length;
  });
  listening.on('processed', () => {
    throw new Error('a metrics bug');
  });
  try {
    const broker = brokerFromUrl(url, { source: 'test' });
    await broker.connect();
    await broker.publish([quiz(randomUUID())]);
    await broker.close();
    // Before: the listener's error escaped the handling; the message stayed in flight,
    // never retried, acked or parked.
    await waitFor(
      'retried and acked',
      () => listening.stats.processed === 1 && listening.health().inFlight === 0,
      { timeoutMs: 20_000 },
    );
    expect(attempts).toBe(2);
    expect(lines).toContain(
      "a listener of 'failed' threw; ignored, the work it was told of goes on",
    );
    expect(lines).toContain(
      "a listener of 'processed' threw; ignored, the work it was told of goes on",
    );
  } finally {
    await listening.stop();
    await withAmqpChannel((channel) => channel.deleteQueue(`${exchange}.listened`)).catch(() => {});
  }
});
