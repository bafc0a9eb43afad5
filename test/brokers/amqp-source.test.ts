import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { readAmqpSourceSettings } from '../../src/brokers/amqp/settings.js';
import { createAmqpSource } from '../../src/brokers/amqp/source.js';
import type { OutboxMessage } from '../../src/brokers/broker.js';
import { brokerFromUrl } from '../../src/brokers/index.js';
import type { Delivery, MessageSource } from '../../src/brokers/source.js';
import { BrokerUrlParams } from '../../src/brokers/url-params.js';
import { BrokerUnavailableError, ConfigError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { AMQP_URL, deleteExchange, testExchange, withAmqpChannel } from '../helpers/amqp.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';

const SOURCE = '/edupulse/test';
const CONSUMER = 'grades';
const events = [{ aggregateType: 'lesson', type: 'lesson-published' }];
const server = new URL(AMQP_URL);
const serverAddress = { host: server.hostname, port: Number(server.port || 5672) };
const wait = { timeoutMs: 30_000, intervalMs: 20 };
const noop = () => {};
const settle = (ms = 700) => new Promise((resolve) => setTimeout(resolve, ms));

function url(exchange: string, query: Record<string, string> = {}, port = serverAddress.port) {
  const u = new URL(AMQP_URL);
  u.port = String(port);
  u.searchParams.set('exchange', exchange);
  for (const [name, value] of Object.entries(query)) u.searchParams.set(name, value);
  return u.href;
}

function message(n: number, aggregateId = 'lesson-1'): OutboxMessage {
  return {
    id: randomUUID(),
    seq: String(n),
    aggregateType: 'lesson',
    aggregateId,
    eventType: 'lesson-published',
    // Non-ASCII text: the body must arrive as the same bytes.
    payload: JSON.stringify({ n, title: `Leçon ✓ ${n}` }),
    headers: {},
    partition: 0,
    occurredAt: '2025-03-04T05:06:07.089Z',
    attempts: 0,
  };
}

/** A started source and what it received. */
interface Running {
  source: MessageSource;
  deliveries: Delivery[];
  lost: Error[];
  ids(): string[];
}

describe('amqp source', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });

  /** A fresh exchange and a queue name (the default `<exchange>.grades`), deleted after. */
  const target = (queueOf = (exchange: string) => `${exchange}.${CONSUMER}`) => {
    const exchange = testExchange();
    const queue = queueOf(exchange);
    cleanups.push(async () => {
      await withAmqpChannel((ch) => ch.deleteQueue(queue)).catch(() => {});
      await deleteExchange(exchange);
    });
    return { exchange, queue };
  };

  const build = (sourceUrl: string, maxInFlight = 100, handled = events) => {
    const params = new BrokerUrlParams(new URL(sourceUrl), 'broker');
    const source = createAmqpSource(readAmqpSourceSettings(params, CONSUMER), {
      consumer: CONSUMER,
      maxInFlight,
      events: handled,
      logger: silentLogger,
    });
    params.assertNoneUnknown();
    cleanups.push(() => source.close());
    return source;
  };

  const start = async (
    sourceUrl: string,
    options: { maxInFlight?: number; autoAck?: boolean; events?: typeof events } = {},
  ): Promise<Running> => {
    const source = build(sourceUrl, options.maxInFlight, options.events);
    const deliveries: Delivery[] = [];
    const lost: Error[] = [];
    await source.start(
      (delivery) => {
        deliveries.push(delivery);
        if (options.autoAck) void delivery.ack();
      },
      (error) => lost.push(error),
    );
    const ids = () => deliveries.map((d) => d.headers['cloudEvents:id'] ?? '?');
    return { source, deliveries, lost, ids };
  };

  const publish = async (exchange: string, messages: OutboxMessage[]) => {
    const broker = brokerFromUrl(url(exchange), { source: SOURCE });
    await broker.connect();
    try {
      // One at a time: a batch may go out in any order, these must keep theirs.
      for (const m of messages) expect(await broker.publish([m])).toEqual([{ ok: true }]);
    } finally {
      await broker.close();
    }
  };

  it('delivers CloudEvents headers, content type and body bytes intact, in publish order', async () => {
    const { exchange, queue } = target();
    const running = await start(url(exchange));
    expect(running.source).toMatchObject({ binding: 'amqp', needsLease: false });
    expect(running.source.location).not.toContain(':guest@');
    const sent = Array.from({ length: 20 }, (_, i) => message(i + 1));
    await publish(exchange, sent);
    await waitFor('20 deliveries', () => running.deliveries.length === 20, wait);
    expect(running.ids()).toEqual(sent.map((m) => m.id));
    const [first] = running.deliveries;
    expect(first?.origin).toMatch(new RegExp(`^amqp ${queue}#\\d+$`));
    expect(first?.contentType).toBe('application/json');
    expect(first?.headers).toMatchObject({
      'cloudEvents:specversion': '1.0',
      'cloudEvents:id': sent[0]?.id,
      'cloudEvents:source': SOURCE,
      'cloudEvents:type': 'lesson-published',
      'cloudEvents:subject': 'lesson-1',
      'cloudEvents:sequence': '0000000000000000001',
    });
    expect(Buffer.from(first?.body ?? []).equals(Buffer.from(sent[0]?.payload ?? ''))).toBe(true);
    await Promise.all(running.deliveries.map((d) => d.ack()));
    await running.source.check();
  });

  it('leaves the binding of a type it does not handle: a newer process of the consumer still gets its events', async () => {
    const { exchange } = target();
    const archived = { aggregateType: 'lesson', type: 'lesson-archived' };
    const archive = (n: number) => ({ ...message(n), eventType: 'lesson-archived' });
    // A rolling deploy: the running release handles one type; the next, started beside it
    // (standby: one active consumer per queue), binds a second to the shared queue.
    const older = await start(url(exchange), { autoAck: true });
    const newer = await start(url(exchange), { events: [...events, archived], autoAck: true });
    const first = archive(1);
    await publish(exchange, [first]);
    // The older one, active, receives it (and meets its unknown-type policy).
    await waitFor('the older one has it', () => older.ids().includes(first.id), wait);
    await settle();
    await older.source.close();
    const next = archive(2);
    await publish(exchange, [next]);
    await waitFor('the newer one has the next', () => newer.ids().includes(next.id), wait);
    expect(newer.ids()).not.toContain(first.id);
  });

  it('gives header values as text and, in binary mode, the message id as cloudEvents:id when absent', async () => {
    const { exchange } = target();
    const running = await start(url(exchange));
    await withAmqpChannel(async (ch) => {
      ch.publish(exchange, 'lesson.lesson-published', Buffer.from([0, 255]), {
        messageId: 'm-1',
        headers: {
          'cloudEvents:type': 'lesson-published',
          n: 5,
          yes: true,
          bytes: Buffer.from('raw'),
          none: null,
        },
      });
      // An event type the consumer does not handle is not bound: it never arrives.
      ch.publish(exchange, 'lesson.lesson-archived', Buffer.from('x'), { messageId: 'm-2' });
      // Not binary mode (structured, a batch, not a CloudEvent): the id is not made up.
      ch.publish(exchange, 'lesson.lesson-published', Buffer.from('{}'), { messageId: 'm-3' });
      await ch.checkExchange(exchange);
    });
    await waitFor('two deliveries', () => running.deliveries.length === 2, wait);
    await settle();
    expect(running.deliveries).toHaveLength(2);
    const [delivery, plain] = running.deliveries;
    expect(delivery?.headers).toEqual({
      'cloudEvents:type': 'lesson-published',
      n: '5',
      yes: 'true',
      // A byte array is the AMQP binding's Binary: its canonical text is base64.
      bytes: Buffer.from('raw').toString('base64'),
      'cloudEvents:id': 'm-1',
    });
    expect(delivery?.contentType).toBeUndefined();
    expect([...(delivery?.body ?? [])]).toEqual([0, 255]);
    expect(plain?.headers).toEqual({});
  });

  it('redelivers messages not acked to the next source, in order', async () => {
    const { exchange } = target();
    const first = await start(url(exchange));
    const sent = Array.from({ length: 10 }, (_, i) => message(i + 1));
    await publish(exchange, sent);
    await waitFor('10 deliveries', () => first.deliveries.length === 10, wait);
    await first.source.close();
    await first.source.close();
    // Acking after close is quiet: the message is redelivered anyway.
    await expect(first.deliveries[0]?.ack()).resolves.toBeUndefined();
    expect(first.lost).toEqual([]);
    await expect(first.source.check()).rejects.toThrow(BrokerUnavailableError);
    const second = await start(url(exchange));
    await waitFor('10 redeliveries', () => second.deliveries.length === 10, wait);
    expect(second.ids()).toEqual(sent.map((m) => m.id));
  });

  for (const queueType of ['classic', 'quorum'] as const) {
    it(`${queueType} queue: one active consumer; the standby takes over in original order`, async () => {
      const { exchange } = target();
      const sourceUrl = url(exchange, { queue_type: queueType });
      const active = await start(sourceUrl, { maxInFlight: 3 });
      const standby = await start(sourceUrl, { maxInFlight: 3, autoAck: true });
      const sent = Array.from({ length: 8 }, (_, i) => message(i + 1));
      await publish(exchange, sent);
      await waitFor('3 deliveries', () => active.deliveries.length === 3, wait);
      // Acking the first lets a 4th in: the active one holds 2, 3, 4; 5 to 8 are ready.
      await active.deliveries[0]?.ack();
      await waitFor('a 4th delivery', () => active.deliveries.length === 4, wait);
      await settle();
      expect(standby.deliveries).toHaveLength(0);
      await active.source.close();
      await waitFor('7 at the standby', () => standby.deliveries.length === 7, wait);
      expect(standby.ids()).toEqual(sent.slice(1).map((m) => m.id));
      expect(active.lost).toEqual([]);
    });
  }

  it('refuses a queue declared with other arguments with a ConfigError naming it', async () => {
    const { exchange, queue } = target();
    await withAmqpChannel((ch) =>
      ch.assertQueue(queue, {
        durable: true,
        arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true },
      }),
    );
    const source = build(url(exchange));
    const error = await source.start(noop, noop).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe('broker');
    expect(String(error)).toContain(`queue "${queue}"`);
    expect(String(error)).toContain("inequivalent arg 'x-queue-type'");
    expect(String(error)).not.toContain(':guest@');
  });

  it('delivers at most maxInFlight messages not acked', async () => {
    const { exchange } = target();
    const running = await start(url(exchange), { maxInFlight: 3 });
    await publish(
      exchange,
      Array.from({ length: 6 }, (_, i) => message(i + 1)),
    );
    await waitFor('3 deliveries', () => running.deliveries.length === 3, wait);
    await settle();
    expect(running.deliveries).toHaveLength(3);
    await running.deliveries[0]?.ack();
    await waitFor('a 4th delivery', () => running.deliveries.length === 4, wait);
    await settle();
    expect(running.deliveries).toHaveLength(4);
  });

  it('pause stops deliveries; acks still work; the rest comes back after close', async () => {
    const { exchange } = target();
    const running = await start(url(exchange), { maxInFlight: 2 });
    const sent = Array.from({ length: 5 }, (_, i) => message(i + 1));
    await publish(exchange, sent);
    await waitFor('2 deliveries', () => running.deliveries.length === 2, wait);
    await running.source.pause();
    await running.deliveries[0]?.ack();
    await running.deliveries[1]?.ack();
    await settle();
    expect(running.deliveries).toHaveLength(2);
    await running.source.close();
    const next = await start(url(exchange));
    await waitFor('3 deliveries', () => next.deliveries.length === 3, wait);
    expect(next.ids()).toEqual(sent.slice(2).map((m) => m.id));
  });

  it('reports a lost connection once; an unreachable or silent server rejects start', async () => {
    const { exchange } = target();
    const proxy = await startTcpProxy(serverAddress);
    cleanups.push(() => proxy.stop());
    const running = await start(url(exchange, { timeout_ms: '1000' }, proxy.port));
    await publish(exchange, [message(1)]);
    await waitFor('a delivery', () => running.deliveries.length === 1, wait);
    await proxy.stop();
    await waitFor('onLost', () => running.lost.length > 0, wait);
    await settle();
    expect(running.lost).toHaveLength(1);
    expect(running.lost[0]).toBeInstanceOf(BrokerUnavailableError);
    // Acking on the lost channel is quiet: the message is redelivered.
    await expect(running.deliveries[0]?.ack()).resolves.toBeUndefined();
    await expect(running.source.check()).rejects.toThrow(BrokerUnavailableError);
    await running.source.close();

    const refused = build(url(exchange, { timeout_ms: '1000' }, proxy.port));
    await expect(refused.start(noop, noop)).rejects.toThrow(BrokerUnavailableError);
    await proxy.start();
    proxy.freeze();
    const silent = build(url(exchange, { timeout_ms: '1000' }, proxy.port));
    const began = Date.now();
    await expect(silent.start(noop, noop)).rejects.toThrow(BrokerUnavailableError);
    expect(Date.now() - began).toBeLessThan(10_000);
    proxy.thaw();
  });

  it('reports a queue deleted under it as lost, once', async () => {
    const { exchange, queue } = target();
    const running = await start(url(exchange));
    await running.source.check();
    await withAmqpChannel((ch) => ch.deleteQueue(queue));
    await waitFor('onLost', () => running.lost.length > 0, wait);
    await settle();
    expect(running.lost).toHaveLength(1);
    expect(String(running.lost[0])).toContain(`queue "${queue}"`);
    await expect(running.source.check()).rejects.toThrow(BrokerUnavailableError);
  });

  it('reads queue and queue_type from the URL', async () => {
    const { exchange, queue } = target((e) => `${e}:custom`);
    const running = await start(url(exchange, { queue }));
    await publish(exchange, [message(1)]);
    await waitFor('a delivery', () => running.deliveries.length === 1, wait);
    expect(running.deliveries[0]?.origin).toMatch(new RegExp(`^amqp ${queue}#\\d+$`));
    for (const query of ['queue_type=stream', 'queue=amq.q', 'queue=a%20b']) {
      expect(() => build(`${AMQP_URL}?${query}`), query).toThrow(ConfigError);
    }
    // The default name too long: said to be made of the exchange and the consumer name.
    const long = `x${'e'.repeat(250)}`;
    const params = (query: string) =>
      new BrokerUrlParams(new URL(`${AMQP_URL}?${query}`), 'broker');
    expect(() => readAmqpSourceSettings(params(`exchange=${long}`), CONSUMER)).toThrow(
      `the queue's name "${`${long}.${CONSUMER}`.slice(0, 60)}…" (<exchange>.<consumer>) is ${long.length + 1 + CONSUMER.length} characters long, over RabbitMQ's 255: give the consumer a shorter name, or the queue one of its own with queue=`,
    );
    expect(readAmqpSourceSettings(params(`exchange=${long}&queue=q1`), CONSUMER).queue).toBe('q1');
  });
});
