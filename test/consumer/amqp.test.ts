/**
 * consume() on RabbitMQ: the consumer conformance suite. Each target has its own exchange
 * on the machine's RabbitMQ; its queues and the exchange are deleted afterwards. The
 * outage target reaches RabbitMQ through a TCP proxy the test cuts.
 */
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConsumedEventOf, type Consumer, consume } from '../../src/consumer/index.js';
import { brokerFromUrl, QuizSubmitted } from '../../src/index.js';
import { AMQP_URL, testExchange, withAmqpChannel } from '../helpers/amqp.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';
import { type ConsumerHarness, consumerConformance } from './conformance.js';

const proxies: TcpProxy[] = [];
afterAll(async () => {
  for (const proxy of proxies) await proxy.stop();
});

const harness: ConsumerHarness = {
  name: 'amqp',
  deliversUnknownTypes: false,
  deliversOtherAggregateTypes: false,
  async target(options) {
    const exchange = testExchange();
    const shared = new URL(AMQP_URL);
    let server = AMQP_URL;
    let outage: { stop(): Promise<void>; start(): Promise<void> } | undefined;
    if (options?.outage) {
      const proxy = await startTcpProxy({
        host: shared.hostname,
        port: Number(shared.port || 5672),
      });
      proxies.push(proxy);
      const through = new URL(AMQP_URL);
      through.port = String(proxy.port);
      server = through.href.replace(/\/$/, '');
      outage = { stop: () => proxy.stop(), start: () => proxy.start() };
    }
    return {
      // accept_unroutable: an event type no queue is bound for is dropped, as RabbitMQ does.
      url: `${server}?exchange=${exchange}&accept_unroutable=true`,
      name: exchange,
      outage,
      async publishRaw(message) {
        // A confirm channel: closing right after a plain publish may drop it unsent.
        const connection = await amqp.connect(AMQP_URL);
        try {
          const channel = await connection.createConfirmChannel();
          channel.publish(
            exchange,
            `${message.aggregateType}.${message.eventType}`,
            Buffer.from(message.body),
            { contentType: message.contentType, headers: message.headers, persistent: true },
          );
          await channel.waitForConfirms();
        } finally {
          await connection.close();
        }
      },
      consumerName: (base) => base,
      cleanup: (consumers) =>
        withAmqpChannel(async (channel) => {
          for (const consumer of consumers) await channel.deleteQueue(`${exchange}.${consumer}`);
          await channel.deleteExchange(exchange);
        }),
    };
  },
};

consumerConformance(harness);

describe('consume() on RabbitMQ: attributes another producer sends as AMQP types', () => {
  const consumers: Consumer[] = [];
  let pg: TestSchema;
  let exchange: string;
  beforeAll(async () => {
    pg = await createPgTestSchema('consumer_amqp_typed');
    exchange = testExchange();
  });
  afterAll(async () => {
    for (const consumer of consumers) await consumer.stop();
    await withAmqpChannel(async (channel) => {
      await channel.deleteQueue(`${exchange}.typed`);
      await channel.deleteExchange(exchange);
    }).catch(() => {});
    await pg?.drop();
  });

  it('reads a timestamp as RFC 3339 and binary as base64, as the AMQP binding has them', async () => {
    const received: ConsumedEventOf<typeof QuizSubmitted>[] = [];
    consumers.push(
      await consume({
        broker: `${AMQP_URL}?exchange=${exchange}&accept_unroutable=true`,
        consumer: 'typed',
        database: pg.db,
        schema: pg.schema,
        events: [QuizSubmitted],
        handler: (event) => {
          received.push(event);
        },
      }),
    );
    const data = {
      quiz_id: randomUUID(),
      student_id: randomUUID(),
      score: 3,
      submitted_at: '2026-12-01T10:00:00Z',
    };
    const connection = await amqp.connect(AMQP_URL);
    try {
      const channel = await connection.createConfirmChannel();
      channel.publish(exchange, 'quiz.quiz-submitted', Buffer.from(JSON.stringify(data)), {
        contentType: 'application/json',
        headers: {
          cloudEvents_specversion: '1.0',
          cloudEvents_id: 'typed-1',
          cloudEvents_source: 'urn:other',
          cloudEvents_type: 'quiz-submitted',
          cloudEvents_subject: data.quiz_id,
          // AMQP 0-9-1 timestamps are seconds since the epoch.
          cloudEvents_time: { '!': 'timestamp', value: 1704164645 },
          cloudEvents_blob: Buffer.from([1, 2, 3]),
        },
      });
      await channel.waitForConfirms();
    } finally {
      await connection.close();
    }
    await waitFor('the event', () => received.length === 1, { timeoutMs: 20_000 });
    // Before: time "1704164645", blob "\u0001\u0002\u0003".
    expect(received[0]?.time).toBe('2024-01-02T03:04:05.000Z');
    expect(received[0]?.extensions).toEqual({ blob: 'AQID' });
  });

  it('parks unreadable data under the id its headers give, once however often it comes; a batch as a batch', async () => {
    const id = randomUUID();
    const connection = await amqp.connect(AMQP_URL);
    try {
      const channel = await connection.createConfirmChannel();
      const headers = {
        'cloudEvents:specversion': '1.0',
        'cloudEvents:id': id,
        'cloudEvents:source': 'urn:other',
        'cloudEvents:type': 'quiz-submitted',
        'cloudEvents:subject': 'quiz-9',
      };
      // The same message twice, as a redelivery or a producer's retry would bring it.
      for (const _ of [1, 2]) {
        channel.publish(exchange, 'quiz.quiz-submitted', Buffer.from('{bad'), {
          contentType: 'application/json',
          headers,
        });
      }
      // A batch with an AMQP message id, as producers usually set one.
      const batch = [{ specversion: '1.0', id: randomUUID(), type: 'quiz-submitted', source: 's' }];
      channel.publish(exchange, 'quiz.quiz-submitted', Buffer.from(JSON.stringify(batch)), {
        contentType: 'application/cloudevents-batch+json',
        messageId: randomUUID(),
      });
      await channel.waitForConfirms();
    } finally {
      await connection.close();
    }
    const parked = async () =>
      (
        await pg.db.query<{
          event_id: string | null;
          event_type: string | null;
          last_error: string;
        }>(
          `SELECT event_id, event_type, last_error FROM "${pg.schema}".consumer_dead_letter
           WHERE consumer = 'typed' ORDER BY dead_at`,
        )
      ).rows;
    await waitFor('both parked', async () => (await parked()).length >= 2, { timeoutMs: 20_000 });
    // The second copy of the undecodable message meets its dead letter, not a new one.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const rows = await parked();
    expect(rows).toHaveLength(2);
    expect(rows).toContainEqual({
      event_id: id,
      event_type: 'quiz-submitted',
      last_error: expect.stringMatching(/^body is not valid JSON/),
    });
    // Before: "CloudEvent attribute "specversion" is missing".
    expect(rows).toContainEqual({
      event_id: null,
      event_type: null,
      last_error: expect.stringMatching(/^a CloudEvents batch/),
    });
  });
});

describe('consume() on RabbitMQ: a queue bound to another aggregate type of the same event type', () => {
  let pg: TestSchema;
  let exchange: string;
  let consumer: Consumer | undefined;
  beforeAll(async () => {
    pg = await createPgTestSchema('consumer_amqp_other_type');
    exchange = testExchange();
  });
  afterAll(async () => {
    await consumer?.stop();
    await withAmqpChannel(async (channel) => {
      await channel.deleteQueue(`${exchange}.grades`);
      await channel.deleteExchange(exchange);
    }).catch(() => {});
    await pg?.drop();
  });

  it("parks the other type's event as unknown instead of handing it over as its own", async () => {
    const url = `${AMQP_URL}?exchange=${exchange}`;
    const handled: string[] = [];
    consumer = await consume({
      broker: url,
      consumer: 'grades',
      database: pg.db,
      schema: pg.schema,
      events: [QuizSubmitted],
      onUnknownType: 'park',
      handler: (event) => {
        handled.push(`${event.aggregateType} ${event.id}`);
      },
    });
    // An operator's binding (or one left by an earlier release that handled pupils).
    await withAmqpChannel((channel) =>
      channel.bindQueue(`${exchange}.grades`, exchange, 'pupil.quiz-submitted'),
    );
    const pupils = { ...quizMessage(randomUUID()), aggregateType: 'pupil' };
    const own = quizMessage(randomUUID());
    const broker = brokerFromUrl(url, { source: '/edupulse/consumer-test' });
    await broker.connect();
    try {
      for (const message of [pupils, own]) {
        const [result] = await broker.publish([message]);
        expect(result?.ok).toBe(true);
      }
    } finally {
      await broker.close();
    }
    await waitFor(
      'one handled, one parked',
      () => handled.length === 1 && consumer?.stats.parked === 1,
      {
        timeoutMs: 20_000,
      },
    );
    expect(handled).toEqual([`quiz ${own.id}`]);
    const { rows } = await pg.db.query<{ event_id: string; last_error: string }>(
      `SELECT event_id, last_error FROM "${pg.schema}".consumer_dead_letter WHERE consumer = 'grades'`,
    );
    expect(rows).toEqual([
      {
        event_id: pupils.id,
        last_error:
          'event type "quiz-submitted" of aggregate type "pupil" is not one this consumer handles (it handles "quiz-submitted" of "quiz")',
      },
    ]);
  });
});

describe('consume() on RabbitMQ: a connection gone silent', () => {
  let pg: TestSchema;
  beforeAll(async () => {
    pg = await createPgTestSchema('consume_amqp_silent');
    return () => pg.drop();
  });

  it('is given up after two to three heartbeats of 10 s by default, and the consumer goes on over a new one', async () => {
    // A host cut off, a NAT entry dropped: no close, no reset, nothing more on the socket.
    // Only heartbeats tell; at the server's 60 s a consumer said `receiving` and applied
    // nothing for 158 s and was still stuck.
    const shared = new URL(AMQP_URL);
    const proxy = await startTcpProxy({ host: shared.hostname, port: Number(shared.port || 5672) });
    proxies.push(proxy);
    const through = new URL(AMQP_URL);
    through.port = String(proxy.port);
    const exchange = testExchange();
    const query = `exchange=${exchange}`;
    const applied: number[] = [];
    let consumer: Consumer | undefined;
    const broker = brokerFromUrl(`${AMQP_URL}?${query}`, { source: '/edupulse/consumer-test' });
    try {
      consumer = await consume({
        broker: `${through.href.replace(/\/$/, '')}?${query}`,
        consumer: 'silent',
        database: pg.db,
        schema: pg.schema,
        events: [QuizSubmitted],
        handler: (event) => {
          applied.push(event.data.score);
        },
      });
      await broker.connect();
      const quiz = randomUUID();
      const publish = async (score: number) => {
        const [result] = await broker.publish([quizMessage(quiz, { score })]);
        expect(result?.ok).toBe(true);
      };
      await publish(1);
      await waitFor('the first applied', () => applied.length === 1, { timeoutMs: 10_000 });
      proxy.strand();
      const strandedAt = Date.now();
      await publish(2);
      await waitFor('the second applied', () => applied.includes(2), {
        timeoutMs: 50_000,
        intervalMs: 100,
      });
      // 20-30 s of heartbeats, then a new connection and the message again.
      expect(Date.now() - strandedAt).toBeLessThan(40_000);
      // The first again too when its ack was still on its way (no inbox here).
      expect(applied.at(-1)).toBe(2);
      expect(applied.filter((score) => score !== 1)).toEqual([2]);
    } finally {
      await consumer?.stop();
      await broker.close();
      await withAmqpChannel(async (channel) => {
        await channel.deleteQueue(`${exchange}.silent`);
        await channel.deleteExchange(exchange);
      });
    }
  }, 75_000);
});
