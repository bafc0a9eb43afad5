import { randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { amqpSettings } from '../../src/brokers/amqp/settings.js';
import type { EventBroker, OutboxMessage } from '../../src/brokers/broker.js';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { BrokerUnavailableError, ConfigError } from '../../src/common/errors.js';
import {
  AMQP_URL,
  type AmqpConsumer,
  consumeExchange,
  deleteExchange,
  testExchange,
  withAmqpChannel,
} from '../helpers/amqp.js';
import { scratchDir } from '../helpers/scratch.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { waitFor } from '../helpers/wait.js';
import { badInputSuite } from './bad-input.js';
import { type BrokerHarness, brokerConformance } from './conformance.js';

const SOURCE = '/edupulse/test';
const server = new URL(AMQP_URL);
const serverAddress = { host: server.hostname, port: Number(server.port || 5672) };

/** A broker URL for `exchange`, through `port` (a proxy) or straight to the server. */
function brokerUrl(query: Record<string, string>, port = serverAddress.port): string {
  const url = new URL(AMQP_URL);
  url.port = String(port);
  for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
  return url.href;
}

const amqpBroker = (url: string): EventBroker => brokerFromUrl(url, { source: SOURCE });

// Every target: its own exchange; a queue bound to `lesson.#` only, so the refused event
// (aggregate type `unrouted`) has no route; the broker connects through a proxy that the
// outage cuts, while the consumer connects directly.
const harness: BrokerHarness = {
  name: 'amqp',
  async target() {
    const exchange = testExchange();
    const proxy = await startTcpProxy(serverAddress);
    return {
      broker: () => amqpBroker(brokerUrl({ exchange }, proxy.port)),
      consume: () => consumeExchange(exchange, 'lesson.#'),
      refused: { aggregateType: 'unrouted', payload: '{"n": 0}', reason: /unroutable|NO_ROUTE/ },
      outage: { stop: () => proxy.stop(), start: () => proxy.start() },
      async cleanup() {
        await proxy.stop();
        await deleteExchange(exchange);
      },
    };
  },
};

brokerConformance(harness);
badInputSuite(harness);

function outboxMessage(overrides: Partial<OutboxMessage> = {}): OutboxMessage {
  const id = randomUUID();
  return {
    id,
    seq: '1',
    aggregateType: 'lesson',
    aggregateId: `agg-${id}`,
    eventType: 'lesson-published',
    payload: JSON.stringify({ lesson_id: id }),
    headers: {},
    partition: 0,
    occurredAt: '2025-03-04T05:06:07.089Z',
    attempts: 0,
    ...overrides,
  };
}

describe('amqp broker', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A fresh exchange, deleted after the test. */
  const exchangeForTest = () => {
    const exchange = testExchange();
    cleanups.push(() => deleteExchange(exchange));
    return exchange;
  };
  const connected = async (url: string) => {
    const broker = amqpBroker(url);
    cleanups.push(() => broker.close());
    await broker.connect();
    return broker;
  };
  const consumer = async (exchange: string, pattern: string): Promise<AmqpConsumer> => {
    const c = await consumeExchange(exchange, pattern);
    cleanups.push(() => c.close());
    return c;
  };
  const proxy = async (): Promise<TcpProxy> => {
    const p = await startTcpProxy(serverAddress);
    cleanups.push(() => p.stop());
    return p;
  };

  it('checks its URL parameters when built, naming the setting', () => {
    expect(amqpBroker(AMQP_URL).name).toBe('amqp');
    expect(amqpBroker('amqps://user:pw@rabbit.example:5671/edupulse').name).toBe('amqp');
    for (const [query, text] of [
      ['max_in_flight=0', /max_in_flight="0" is not a whole number from 1 to 65535/],
      ['max_in_flight=many', /max_in_flight="many"/],
      ['timeout_ms=5', /timeout_ms="5"/],
      ['accept_unroutable=yes', /accept_unroutable="yes" must be true or false/],
      ['exchange=amq.topic', /exchange="amq.topic" is not valid/],
      ['exchange=a%20b', /exchange="a b" is not valid/],
      ['heartbeat=0', /heartbeat="0" is not a whole number from 1 to 3600/],
      ['frame_max=1024', /frame_max="1024" is not a whole number from 4096 to 1048576/],
      ['ca_file=/ca.pem', /ca_file given with amqp:\/\/, which is plain text: use amqps:\/\//],
      ['heartbeats=5', /unknown parameter "heartbeats"; did you mean "heartbeat"\?/],
      ['no_such_thing=1', /unknown parameter "no_such_thing" \(this broker takes: /],
      ['exchange=a&exchange=b', /exchange is given more than once: give it once/],
    ] as const) {
      const build = () => amqpBroker(`${AMQP_URL}?${query}`);
      expect(build, query).toThrow(ConfigError);
      expect(build, query).toThrow(/^broker: /);
      expect(build, query).toThrow(text);
    }
  });

  it('reads the servers, the virtual host, password_file and TLS from the URL', () => {
    const scratch = scratchDir('amqp-settings');
    try {
      const password = scratch.file('password', 'pa55-from-file\n');
      const several = amqpSettings(
        `amqp://outbox@a.internal:5673,b.internal,10.0.0.3:5674/edu%2Fpulse?password_file=${password}&heartbeat=15&frame_max=8192`,
      );
      expect(several.servers).toEqual([
        { host: 'a.internal', port: 5673 },
        { host: 'b.internal', port: 5672 },
        { host: '10.0.0.3', port: 5674 },
      ]);
      expect(several).toMatchObject({
        vhost: 'edu/pulse',
        username: 'outbox',
        password: 'pa55-from-file',
        tls: undefined,
        heartbeatS: 15,
        frameMax: 8192,
        location: 'amqp://outbox:***@a.internal:5673,b.internal:5672,10.0.0.3:5674/edu%2Fpulse',
      });
      expect(amqpSettings('amqp://[::1]').servers).toEqual([{ host: '[::1]', port: 5672 }]);
      const tls = amqpSettings('amqps://u:p%40ss@rabbit/?servername=rabbit.internal');
      expect(tls).toMatchObject({
        servers: [{ host: 'rabbit', port: 5671 }],
        vhost: '/',
        password: 'p@ss',
        tls: { servername: 'rabbit.internal' },
        heartbeatS: 10,
        frameMax: undefined,
        serverUrl: 'amqps://u:p%40ss@rabbit:5671/',
      });
      for (const [url, text] of [
        [`amqp://h/?password_file=${password}`, /password_file needs a user in the URL/],
        [`amqp://u:p@h/?password_file=${password}`, /password_file and a password are both given/],
        ['amqp://u@h/?servername=h', /servername given with amqp:\/\//],
        ['amqps://u@h/?servername=a%20b', /servername="a b" is not a host name/],
        ['amqps://u@h/?cert_file=/c.pem', /cert_file and key_file go together/],
        ['amqp://u@h:70000,k:1', /"h:70000" is not a RabbitMQ server/],
      ] as const) {
        expect(() => amqpSettings(url), url).toThrow(text);
      }
    } finally {
      scratch.remove();
    }
  });

  it('declares the exchange durable and topic', async () => {
    const exchange = exchangeForTest();
    await connected(brokerUrl({ exchange }));
    // A declaration with other arguments than the existing exchange's is refused (406).
    await expect(
      withAmqpChannel((ch) => ch.assertExchange(exchange, 'topic', { durable: false })),
    ).rejects.toThrow(/PRECONDITION_FAILED - inequivalent arg 'durable'/);
    await expect(
      withAmqpChannel((ch) => ch.assertExchange(exchange, 'fanout', { durable: true })),
    ).rejects.toThrow(/PRECONDITION_FAILED - inequivalent arg 'type'/);
    await withAmqpChannel((ch) => ch.assertExchange(exchange, 'topic', { durable: true }));
  });

  it('an exchange deleted while connected is an outage; connecting again declares it', async () => {
    const exchange = exchangeForTest();
    const broker = await connected(brokerUrl({ exchange, accept_unroutable: 'true' }));
    expect(await broker.publish([outboxMessage()])).toEqual([{ ok: true }]);
    await deleteExchange(exchange);
    const error = await broker.publish([outboxMessage()]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String(error)).toContain('NOT_FOUND');
    // RabbitMQ dropped the queues' bindings with the exchange: the operator is told.
    expect(String(error)).toContain(
      `exchange "${exchange}" no longer exists: Channel closed by server: 404 (NOT-FOUND)`,
    );
    expect(String(error)).toContain('the queues bound to it lost their bindings: bind them again');
    await broker.connect();
    expect(await broker.publish([outboxMessage()])).toEqual([{ ok: true }]);
    await withAmqpChannel((ch) => ch.checkExchange(exchange));
  });

  it("an idle broker's check finds its exchange deleted and says what it means", async () => {
    const exchange = exchangeForTest();
    const broker = await connected(brokerUrl({ exchange }));
    await broker.check?.();
    await deleteExchange(exchange);
    const error = await broker.check?.().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String(error)).toMatch(
      new RegExp(
        `exchange "${exchange.replaceAll('.', '\\.')}" no longer exists: .*404.*; it is declared again on reconnecting`,
      ),
    );
  });

  it('sends persistent binary-mode CloudEvents, routed by aggregate and event type', async () => {
    const exchange = exchangeForTest();
    const received = await consumer(exchange, '#');
    const broker = await connected(brokerUrl({ exchange }));
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const plain = outboxMessage({ headers: { traceparent }, seq: '42' });
    const odd = outboxMessage({ aggregateType: 'quiz.v2', eventType: 'quiz submitted*#' });
    expect(await broker.publish([plain, odd])).toEqual([{ ok: true }, { ok: true }]);
    await waitFor('two deliveries', () => received.deliveries.length === 2);
    const byId = new Map(received.deliveries.map((d) => [d.properties.messageId, d]));
    const first = byId.get(plain.id);
    expect(first?.fields.routingKey).toBe('lesson.lesson-published');
    expect(byId.get(odd.id)?.fields.routingKey).toBe('quiz_v2.quiz_submitted__');
    expect(first?.properties).toMatchObject({
      deliveryMode: 2,
      contentType: 'application/json',
      messageId: plain.id,
      timestamp: Math.floor(Date.parse(plain.occurredAt) / 1000),
    });
    expect(first?.properties.headers).toEqual({
      'cloudEvents:specversion': '1.0',
      'cloudEvents:id': plain.id,
      'cloudEvents:source': SOURCE,
      'cloudEvents:type': 'lesson-published',
      'cloudEvents:subject': plain.aggregateId,
      'cloudEvents:time': plain.occurredAt,
      'cloudEvents:sequence': '0000000000000000042',
      'cloudEvents:partitionkey': plain.aggregateId,
      'cloudEvents:traceparent': traceparent,
    });
    expect(first?.content.toString()).toBe(plain.payload);
  });

  it('reports each unroutable message of a batch as a permanent failure, the others as published', async () => {
    const exchange = exchangeForTest();
    await consumer(exchange, 'lesson.#');
    const broker = await connected(brokerUrl({ exchange }));
    const batch = ['lesson', 'unrouted', 'lesson', 'unrouted', 'lesson'].map((aggregateType) =>
      outboxMessage({ aggregateType }),
    );
    const results = await broker.publish(batch);
    expect(results.map((r) => r.ok)).toEqual([true, false, true, false, true]);
    expect(results[1]).toEqual({
      ok: false,
      permanent: true,
      error: `unroutable: 312 NO_ROUTE (exchange ${exchange}, routing key unrouted.lesson-published)`,
    });
  });

  it('reports a message a queue refuses (nack) as a retryable failure', async () => {
    const exchange = exchangeForTest();
    const queue = `${exchange}.full`;
    // A queue that holds one message and refuses the next: the server nacks it.
    await withAmqpChannel(async (ch) => {
      await ch.assertExchange(exchange, 'topic', { durable: true });
      await ch.assertQueue(queue, { durable: false, maxLength: 1, overflow: 'reject-publish' });
      await ch.bindQueue(queue, exchange, 'lesson.#');
    });
    cleanups.push(() => withAmqpChannel((ch) => ch.deleteQueue(queue)));
    const broker = await connected(brokerUrl({ exchange }));
    const results = await broker.publish([outboxMessage(), outboxMessage()]);
    expect(results[0]).toEqual({ ok: true });
    expect(results[1]).toMatchObject({
      ok: false,
      permanent: false,
      error: expect.stringMatching(/^nacked by the server/),
    });
    // The channel stays usable after a nack.
    await withAmqpChannel((ch) => ch.purgeQueue(queue));
    expect(await broker.publish([outboxMessage()])).toEqual([{ ok: true }]);
  });

  it('with accept_unroutable=true counts an unroutable message as published', async () => {
    const exchange = exchangeForTest();
    const broker = await connected(brokerUrl({ exchange, accept_unroutable: 'true' }));
    expect(await broker.publish([outboxMessage({ aggregateType: 'unrouted' })])).toEqual([
      { ok: true },
    ]);
  });

  it('refuses a body over max_message_bytes itself, permanently, and keeps the channel', async () => {
    const exchange = exchangeForTest();
    const received = await consumer(exchange, '#');
    const broker = await connected(brokerUrl({ exchange, max_message_bytes: '100' }));
    const big = outboxMessage({ payload: JSON.stringify({ blob: 'x'.repeat(200) }) });
    const small = outboxMessage();
    const results = await broker.publish([big, small]);
    expect(results[0]).toMatchObject({
      ok: false,
      permanent: true,
      error: expect.stringMatching(/exceeds max_message_bytes \(100 bytes\)/),
    });
    expect(results[1]).toEqual({ ok: true });
    await waitFor('the small message', () => received.received.length === 1);
    expect(received.received[0]?.dedupId).toBe(small.id);
  });

  it('refuses properties over one frame of frame_max at claim and itself, and keeps the connection', async () => {
    const exchange = exchangeForTest();
    const received = await consumer(exchange, '#');
    // RabbitMQ closes the whole connection on a content header over frame_max (FRAME_ERROR),
    // which would be taken for an outage and retried for ever.
    const broker = await connected(brokerUrl({ exchange, frame_max: '4096' }));
    const long = outboxMessage({ aggregateId: 'z'.repeat(2600) });
    const refusal = expect.stringMatching(
      /^headers: the message's properties .* take 5\.\d KiB, over the 4\.0 KiB one frame holds \(frame_max 4096\)$/,
    );
    expect(broker.validate?.(long)).toEqual(refusal);
    expect(broker.validate?.(outboxMessage({ aggregateId: 'z'.repeat(1000) }))).toBeUndefined();
    const small = outboxMessage();
    const results = await broker.publish([long, small]);
    expect(results).toEqual([{ ok: false, permanent: true, error: refusal }, { ok: true }]);
    await waitFor('the small message', () => received.received.length === 1);
    expect(await broker.publish([outboxMessage()])).toEqual([{ ok: true }]);
  });

  it('refuses headers over the 64 KiB amqplib encodes a table in, at claim, though frame_max holds them', async () => {
    const exchange = exchangeForTest();
    const received = await consumer(exchange, '#');
    const broker = await connected(brokerUrl({ exchange }));
    // 100,000 bytes: within the default frame_max (128 KiB), beyond amqplib's table buffer.
    const wide = outboxMessage({ headers: { tenant: 't'.repeat(100_000) } });
    const refusal = expect.stringMatching(
      /^headers: the CloudEvents attributes and headers \(aggregate_id among them\) encode to 98\.\d KiB, over the 64\.0 KiB amqplib encodes a header table in$/,
    );
    expect(broker.validate?.(wide)).toEqual(refusal);
    const small = outboxMessage();
    expect(await broker.publish([wide, small])).toEqual([
      { ok: false, permanent: true, error: refusal },
      { ok: true },
    ]);
    await waitFor('the small message', () => received.received.length === 1);
  });

  it('publishes an event that occurred before 1970, which an AMQP timestamp cannot carry', async () => {
    const exchange = exchangeForTest();
    const received = await consumer(exchange, '#');
    const broker = await connected(brokerUrl({ exchange }));
    const old = outboxMessage({ occurredAt: '1969-12-31T23:59:59.000Z' });
    expect(await broker.publish([old])).toEqual([{ ok: true }]);
    await waitFor('the message', () => received.received.length === 1);
    expect(received.received[0]?.attributes.time).toBe('1969-12-31T23:59:59.000Z');
  });

  it('refuses a routing key over 255 bytes itself, permanently, and keeps the channel', async () => {
    const exchange = exchangeForTest();
    const received = await consumer(exchange, '#');
    const broker = await connected(brokerUrl({ exchange }));
    // `lesson.<event type>`: 255 bytes fit an AMQP short string, 256 do not.
    const fits = outboxMessage({ eventType: 'f'.repeat(255 - 'lesson.'.length) });
    const batch = [
      outboxMessage(),
      outboxMessage({ eventType: 't'.repeat(5000) }),
      fits,
      outboxMessage({ eventType: `${fits.eventType}x` }),
      outboxMessage({ aggregateType: 'é'.repeat(150) }),
      outboxMessage(),
    ];
    const refusal = (bytes: string) => ({
      ok: false,
      permanent: true,
      error: `aggregate_type and event_type: the routing key "<aggregate_type>.<event_type>" is ${bytes}, over AMQP's limit of 255 bytes`,
    });
    const results = await broker.publish(batch);
    expect(results).toEqual([
      { ok: true },
      refusal('4.9 KiB'),
      { ok: true },
      refusal('256 bytes'),
      refusal('317 bytes'),
      { ok: true },
    ]);
    // The same reasons when the dispatcher claims the rows, before any publish.
    expect(batch.map((m) => broker.validate?.(m))).toEqual(
      results.map((r) => (r.ok ? undefined : r.error)),
    );
    await broker.check?.();
    expect(await broker.publish([outboxMessage()])).toEqual([{ ok: true }]);
    await waitFor('the four published messages', () => received.received.length === 4);
    expect(received.deliveries.map((d) => d.fields.routingKey)).toContain(
      `lesson.${fits.eventType}`,
    );
  });

  it('keeps at most max_in_flight publishes unconfirmed', async () => {
    const exchange = exchangeForTest();
    const received = await consumer(exchange, '#');
    const p = await proxy();
    const broker = await connected(brokerUrl({ exchange, max_in_flight: '3' }, p.port));
    // Confirms are held on the way back; publishes still reach the server.
    p.freeze('to-client');
    const batch = Array.from({ length: 20 }, () => outboxMessage());
    const publishing = broker.publish(batch);
    await waitFor('3 deliveries', () => received.received.length >= 3);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received.received.length).toBe(3);
    p.thaw();
    expect((await publishing).every((r) => r.ok)).toBe(true);
    await waitFor('20 deliveries', () => received.received.length === 20);
    // One channel keeps publish order.
    expect(received.received.map((m) => m.dedupId)).toEqual(batch.map((m) => m.id));
  });

  it('waits for the channel to drain when its write buffer is full', async () => {
    const exchange = exchangeForTest();
    const received = await consumer(exchange, '#');
    // A window wider than amqplib's channel buffer (1024 frames) makes publish() say "wait".
    const broker = await connected(brokerUrl({ exchange, max_in_flight: '65535' }));
    const batch = Array.from({ length: 3000 }, () => outboxMessage());
    const results = await broker.publish(batch);
    expect(results.every((r) => r.ok)).toBe(true);
    await waitFor('3000 deliveries', () => received.received.length === 3000);
  });

  it('refuses to publish before connect and after close; close is idempotent; connects again', async () => {
    const exchange = exchangeForTest();
    const received = await consumer(exchange, '#');
    const broker = amqpBroker(brokerUrl({ exchange }));
    cleanups.push(() => broker.close());
    await expect(broker.publish([outboxMessage()])).rejects.toThrow(BrokerUnavailableError);
    await broker.connect();
    await broker.close();
    await broker.close();
    await expect(broker.publish([outboxMessage()])).rejects.toThrow(/not connected/);
    await broker.connect();
    const again = outboxMessage();
    expect(await broker.publish([again])).toEqual([{ ok: true }]);
    await waitFor('the delivery', () => received.received.some((m) => m.dedupId === again.id));
  });

  it('a wrong password: ConfigError naming the setting and the server, never the password', async () => {
    const url = new URL(AMQP_URL);
    url.password = 'Wr0ng-s3cret';
    const broker = amqpBroker(url.href);
    const error = await broker.connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    const text = String((error as Error).message);
    expect(text).toContain(`broker: cannot connect to amqp://${url.username}:***@${url.host}`);
    expect(text).toMatch(/refused user "guest" .*ACCESS_REFUSED/);
    expect(inspect(error, { depth: 10 })).not.toContain('Wr0ng-s3cret');
  });

  it('a server that cannot be reached: BrokerUnavailableError naming the server', async () => {
    const p = await proxy();
    await p.stop();
    const error = await amqpBroker(brokerUrl({}, p.port))
      .connect()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String((error as Error).message)).toMatch(
      new RegExp(
        `^cannot connect to amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${p.port}: .*ECONNREFUSED`,
      ),
    );
  });

  it('a connection cut while publishing rejects the batch as unavailable', async () => {
    const exchange = exchangeForTest();
    const p = await proxy();
    const broker = await connected(brokerUrl({ exchange, accept_unroutable: 'true' }, p.port));
    expect(await broker.publish([outboxMessage()])).toEqual([{ ok: true }]);
    const publishing = broker.publish(Array.from({ length: 50 }, () => outboxMessage()));
    await p.stop();
    await expect(publishing).rejects.toThrow(BrokerUnavailableError);
    await expect(broker.publish([outboxMessage()])).rejects.toThrow(BrokerUnavailableError);
  });

  it('a silent server: no confirm within timeout_ms is unavailable, and close() does not hang', async () => {
    const exchange = exchangeForTest();
    const p = await proxy();
    const broker = await connected(brokerUrl({ exchange, timeout_ms: '300' }, p.port));
    p.freeze();
    const started = Date.now();
    await expect(broker.publish([outboxMessage()])).rejects.toThrow(
      /: no publisher confirm within 300 ms/,
    );
    expect(Date.now() - started).toBeLessThan(3000);
    const closing = Date.now();
    await broker.close();
    expect(Date.now() - closing).toBeLessThan(2000);
  });
});
