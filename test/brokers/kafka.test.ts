import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EventBroker, OutboxMessage } from '../../src/brokers/broker.js';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { clientOptions } from '../../src/brokers/kafka/client-options.js';
import { kafkaLibrary } from '../../src/brokers/kafka/library.js';
import { kafkaPartition, kafkaTopic } from '../../src/brokers/kafka/records.js';
import { readKafkaSettings } from '../../src/brokers/kafka/settings.js';
import { BrokerUrlParams, parseBrokerUrl } from '../../src/brokers/url-params.js';
import { BrokerUnavailableError, ConfigError } from '../../src/common/errors.js';
import { scrubSecrets } from '../../src/common/secrets.js';
import {
  consumeTestTopics,
  deleteTestResources,
  type KafkaTestConsumer,
  testAdmin,
  testKafka,
  testKafkaScript,
  uniqueName,
} from '../helpers/kafka.js';
import { outboxMessage } from '../helpers/messages.js';
import { waitFor } from '../helpers/wait.js';
import { badInputSuite } from './bad-input.js';
import { type BrokerHarness, brokerConformance } from './conformance.js';

const source = '/edupulse/test';

beforeAll(() => testKafkaScript('start'), 120_000);
afterAll(() => testKafkaScript('stop'), 60_000);

/** A broker URL on the test Kafka, topics under `prefix`. */
function kafkaUrl(prefix: string, query = ''): string {
  return `kafka://${testKafka.bootstrap}/?topic=${prefix}.{aggregate_type}&timeout_ms=5000${query}`;
}

const harness: BrokerHarness = {
  name: 'kafka',
  async target() {
    const prefix = uniqueName();
    let down = false;
    return {
      broker: () => brokerFromUrl(kafkaUrl(prefix), { source }),
      consume: async () => consumeTestTopics([`${prefix}.lesson`], `${prefix}-group`),
      refused: {
        aggregateType: 'lesson',
        // Over the topic's max.message.bytes (1 MiB + 12 by default).
        payload: JSON.stringify({ blob: 'x'.repeat(1_100_000) }),
        reason: /^MESSAGE_TOO_LARGE: /,
      },
      outage: {
        async stop() {
          down = true;
          await testKafkaScript('stop');
        },
        async start() {
          // afterEach calls this after every test: only a stopped server needs the script.
          if (!down) return;
          await testKafkaScript('start');
          down = false;
        },
      },
      cleanup: () => deleteTestResources(prefix),
    };
  },
};

brokerConformance(harness);
badInputSuite(harness);

function message(aggregateType: string, aggregateId: string, payload: unknown): OutboxMessage {
  return outboxMessage({ aggregateType, aggregateId, payload: JSON.stringify(payload) });
}

describe('kafka broker', () => {
  let prefix: string;
  let consumer: KafkaTestConsumer | undefined;
  const brokers: EventBroker[] = [];

  const connected = async (query = '') => {
    const broker = brokerFromUrl(kafkaUrl(prefix, query), { source });
    brokers.push(broker);
    await broker.connect();
    return broker;
  };

  beforeAll(() => {
    prefix = uniqueName();
  });
  afterEach(async () => {
    for (const broker of brokers.splice(0)) await broker.close();
    await consumer?.close();
    consumer = undefined;
  });
  afterAll(() => deleteTestResources(prefix));

  it('creates a missing topic with the configured partitions; key = aggregate id, one partition per aggregate', async () => {
    const broker = await connected('&partitions=4');
    const aggregates = ['a-1', 'a-2', 'a-3', 'a-4', 'a-5', 'a-6'];
    const sent: OutboxMessage[] = [];
    // One event per aggregate per call, as the dispatcher publishes.
    for (let round = 0; round < 5; round++) {
      const batch = aggregates.map((id) => message('Course Module', id, { id, round }));
      expect(await broker.publish(batch)).toEqual(batch.map(() => ({ ok: true })));
      sent.push(...batch);
    }
    const topic = `${prefix}.Course_Module`;
    const admin = testAdmin();
    try {
      const metadata = await admin.metadata({ topics: [topic] });
      expect(metadata.topics.get(topic)?.partitionsCount).toBe(4);
    } finally {
      await admin.close();
    }
    consumer = consumeTestTopics([topic], `${prefix}-keys`);
    await waitFor('every record', () => consumer?.records.length === sent.length);
    const partitionsOf = new Map<string, Set<number>>();
    for (const record of consumer.records) {
      expect(record.key).toBe(record.headers.ce_subject);
      const seen = partitionsOf.get(record.key) ?? new Set();
      seen.add(record.partition);
      partitionsOf.set(record.key, seen);
    }
    for (const id of aggregates) {
      // The Java client's murmur2 partition of the key, so Java producers agree.
      expect([...(partitionsOf.get(id) ?? [])]).toEqual([kafkaPartition(id, 4)]);
      const rounds = consumer.records
        .filter((record) => record.key === id)
        .map((record) => (JSON.parse(record.value) as { round: number }).round);
      expect(rounds).toEqual([0, 1, 2, 3, 4]);
    }
  });

  it('writes binary-mode CloudEvents that the cloudevents SDK reads as valid', async () => {
    const broker = await connected();
    const sent = message('quiz', 'quiz-7', { quiz_id: 'quiz-7', score: 93 });
    expect(await broker.publish([sent])).toEqual([{ ok: true }]);
    consumer = consumeTestTopics([`${prefix}.quiz`], `${prefix}-sdk`);
    await waitFor('the event', () => consumer?.events.length === 1);
    expect(consumer.invalid).toEqual([]);
    const event = consumer.events[0];
    expect(event).toMatchObject({
      specversion: '1.0',
      id: sent.id,
      type: 'lesson-published',
      source,
      subject: 'quiz-7',
      datacontenttype: 'application/json',
      partitionkey: 'quiz-7',
      traceparent: sent.headers.traceparent,
      sequence: sent.seq.padStart(19, '0'),
      data: { quiz_id: 'quiz-7', score: 93 },
    });
    expect(consumer.records[0]?.headers['content-type']).toBe('application/json');
  });

  it('refuses only the oversized record of a shared partition batch, and keeps publishing', async () => {
    // One partition: every record of a call shares one batch.
    const broker = await connected('&partitions=1');
    const batch = [
      message('lesson', 'small-1', { n: 1 }),
      message('lesson', 'big', { blob: 'x'.repeat(1_100_000) }),
      message('lesson', 'small-2', { n: 2 }),
    ];
    const results = await broker.publish(batch);
    expect(results[0]).toEqual({ ok: true });
    expect(results[1]).toMatchObject({ ok: false, permanent: true });
    expect(results[1]?.ok === false && results[1].error).toMatch(/^MESSAGE_TOO_LARGE: /);
    // The record's size and where the limit is set, which Kafka's words leave out.
    expect(results[1]?.ok === false && results[1].error).toMatch(
      new RegExp(
        `\\(a record of about 1\\.\\d MiB with its key and headers, to topic "${prefix}\\.lesson": over the topic's max\\.message\\.bytes or the broker's message\\.max\\.bytes\\)$`,
      ),
    );
    expect(results[2]).toEqual({ ok: true });
    // The failed send restarted the producer's sequence numbers: the next ones are taken.
    const after = [message('lesson', 'small-1', { n: 3 }), message('lesson', 'small-2', { n: 4 })];
    expect(await broker.publish(after)).toEqual([{ ok: true }, { ok: true }]);
    consumer = consumeTestTopics([`${prefix}.lesson`], `${prefix}-big`);
    await waitFor('four records', () => consumer?.records.length === 4);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(consumer.records.map((r) => (JSON.parse(r.value) as { n: number }).n)).toEqual([
      1, 2, 3, 4,
    ]);
  });

  it('publishes a batch larger than one produce request takes, in order', async () => {
    // 120 records of 0.9 MiB, each under the server's message.max.bytes (1 MiB), 108 MiB
    // together: over its socket.request.max.bytes (100 MiB), one request was cut off by
    // the server, taken for an outage, and sent again for ever.
    const broker = await connected('&partitions=2');
    const blob = 'x'.repeat(900 * 1024);
    const batch = Array.from({ length: 120 }, (_, n) =>
      message('attachment', `a${n % 3}`, { n, blob }),
    );
    const results = await broker.publish(batch);
    expect(results.filter((result) => result.ok)).toHaveLength(120);
    consumer = consumeTestTopics([`${prefix}.attachment`], `${prefix}-large`);
    await waitFor('120 records', () => consumer?.records.length === 120, { timeoutMs: 60_000 });
    // Each aggregate's records in the order published.
    for (const id of ['a0', 'a1', 'a2']) {
      const ns = consumer.records
        .filter((record) => record.key === id)
        .map((record) => (JSON.parse(record.value) as { n: number }).n);
      expect(ns).toEqual([...ns].sort((a, b) => a - b));
      expect(ns).toHaveLength(40);
    }
  });

  it('refuses a topic over 249 characters alone, and keeps publishing', async () => {
    const broker = await connected();
    const long = message('a'.repeat(300), 'long-1', { n: 0 });
    const batch = [
      message('shortname', 'ok-1', { n: 1 }),
      long,
      message('shortname', 'ok-2', { n: 2 }),
    ];
    // When the dispatcher claims the row, before any publish.
    expect(broker.validate?.(long)).toBe(
      `topic "${`${prefix}.${'a'.repeat(300)}`.slice(0, 80)}… (${prefix.length + 301} characters)" is ${prefix.length + 301} characters, over Kafka's 249 (aggregate_type or event_type too long)`,
    );
    // A direct caller: the server refuses to create the topic, for that message alone.
    const results = await broker.publish(batch);
    expect(results[0]).toEqual({ ok: true });
    expect(results[1]).toMatchObject({ ok: false, permanent: true });
    expect(results[1]?.ok === false && results[1].error).toMatch(/INVALID_TOPIC_EXCEPTION/);
    expect(results[2]).toEqual({ ok: true });
    await broker.check?.();
    expect(await broker.publish([message('shortname', 'ok-1', { n: 3 })])).toEqual([{ ok: true }]);
    consumer = consumeTestTopics([`${prefix}.shortname`], `${prefix}-long`);
    await waitFor('three records', () => consumer?.records.length === 3);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // Three partitions: the aggregates' records arrive in any order between them.
    const numbers = consumer.records.map((r) => (JSON.parse(r.value) as { n: number }).n);
    expect(numbers.sort()).toEqual([1, 2, 3]);
  });

  it('close() is idempotent and connect() after close() publishes again', async () => {
    const broker = await connected();
    expect(await broker.publish([message('course', 'c-1', { n: 1 })])).toEqual([{ ok: true }]);
    await broker.close();
    await broker.close();
    await expect(broker.publish([message('course', 'c-1', { n: 2 })])).rejects.toBeInstanceOf(
      BrokerUnavailableError,
    );
    await broker.connect();
    expect(await broker.publish([message('course', 'c-1', { n: 3 })])).toEqual([{ ok: true }]);
  });

  it('warns once, on its first connect, that {event_type} in the topic spreads an aggregate over topics', async () => {
    const warnings: string[] = [];
    const logger = {
      debug() {},
      info() {},
      warn: (_: object, m: string) => warnings.push(m),
      error() {},
    };
    const url = `kafka://${testKafka.bootstrap}/?topic=${prefix}.{aggregate_type}.{event_type}&timeout_ms=5000`;
    const broker = brokerFromUrl(url, { source });
    brokers.push(broker);
    await broker.connect({ logger });
    await broker.close();
    await broker.connect({ logger });
    expect(warnings).toEqual([
      expect.stringContaining(
        "an aggregate's events of different types go to different topics, between which Kafka keeps no order",
      ),
    ]);
    const plain = brokerFromUrl(kafkaUrl(prefix), { source });
    brokers.push(plain);
    await plain.connect({ logger });
    expect(warnings).toHaveLength(1);
  });

  it('a replication factor above the brokers registered is ridden out as an outage, saying why first', async () => {
    // One broker: replication_factor=3 cannot be met now; in a cluster whose brokers are
    // restarting it passes, so no attempt is spent and the dispatcher does not stop.
    const broker = await connected('&replication_factor=3');
    const error = await broker.publish([message('lab', 'l-1', { n: 1 })]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect((error as Error).message).toMatch(
      /: replication_factor 3 is more than the brokers the cluster has registered now, so topic "[^"]+\.lab" cannot be created .*INVALID_REPLICATION_FACTOR: .*only 1 broker/,
    );
  });

  it('fails to connect within timeout_ms, naming the servers, password redacted', async () => {
    const started = Date.now();
    const broker = brokerFromUrl('kafka://user:s3cret@127.0.0.1:1/?timeout_ms=2000', { source });
    const error = await broker.connect().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String((error as Error).message)).toContain('kafka://user:***@127.0.0.1:1');
    expect(String((error as Error).message)).not.toContain('s3cret');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('a topic deleted while running is an outage, created again on the next try', async () => {
    const broker = await connected();
    expect(await broker.publish([message('vanish', 'v-1', { n: 1 })])).toEqual([{ ok: true }]);
    await deleteTestResources(`${prefix}.vanish`, undefined, { untilGone: true });
    const error = await broker.publish([message('vanish', 'v-1', { n: 2 })]).catch((e) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String(error)).toMatch(/topic "[^"]+\.vanish" is gone \(it is created again/);
    // The dispatcher closes and connects again after an outage; the topic comes back.
    await broker.close();
    await broker.connect();
    expect(await broker.publish([message('vanish', 'v-1', { n: 3 })])).toEqual([{ ok: true }]);
    const admin = testAdmin();
    try {
      expect(await admin.listTopics()).toContain(`${prefix}.vanish`);
    } finally {
      await admin.close();
    }
  });

  it('with create_topics=false a topic that vanished is an outage, not a refusal', async () => {
    const admin = testAdmin();
    try {
      await admin.createTopics({ topics: [`${prefix}.gone`], partitions: 1, replicas: 1 });
    } finally {
      await admin.close();
    }
    const broker = await connected('&create_topics=false');
    expect(await broker.publish([message('gone', 'g-1', { n: 1 })])).toEqual([{ ok: true }]);
    await deleteTestResources(`${prefix}.gone`, undefined, { untilGone: true });
    const error = await broker.publish([message('gone', 'g-1', { n: 2 })]).catch((e) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect(String(error)).toContain('create_topics=false: waiting for it to be created again');
  });

  it('publishes to a topic that exists when create_topics=false, refuses a missing one', async () => {
    const admin = testAdmin();
    try {
      await admin.createTopics({ topics: [`${prefix}.student`], partitions: 2, replicas: 1 });
    } finally {
      await admin.close();
    }
    const broker = await connected('&create_topics=false');
    const results = await broker.publish([
      message('student', 's-1', { n: 1 }),
      message('missing', 'm-1', { n: 1 }),
    ]);
    expect(results[0]).toEqual({ ok: true });
    expect(results[1]).toMatchObject({ ok: false, permanent: true });
    expect(results[1]?.ok === false && results[1].error).toMatch(/create_topics=false/);
  });
});

describe('kafka broker URL', () => {
  const settings = (url: string) =>
    readKafkaSettings(new BrokerUrlParams(parseBrokerUrl(url, 'broker', 'kafka://'), 'broker'));
  const refused = (url: string) => {
    try {
      brokerFromUrl(url, { source });
    } catch (error) {
      return error;
    }
    return undefined;
  };

  it('has defaults, and reads several bootstrap servers and SASL credentials', () => {
    expect(settings('kafka://k1')).toMatchObject({
      bootstrapServers: ['k1:9092'],
      sasl: undefined,
      topicTemplate: 'edupulse.{aggregate_type}',
      createTopics: true,
      partitions: 3,
      replicationFactor: 1,
      clientId: 'edupulse-outbox',
      timeoutMs: 10_000,
    });
    expect(settings('kafka://k1,k2:9093').bootstrapServers).toEqual(['k1:9092', 'k2:9093']);
    const both = settings('kafka://u%40x:p%2Fw@k1%3A9094,k2:9095');
    expect(both.bootstrapServers).toEqual(['k1:9094', 'k2:9095']);
    expect(both.sasl).toEqual({ mechanism: 'PLAIN', username: 'u@x', password: 'p/w' });
    expect(both.location).not.toContain('p%2Fw');
    // The usual way to write several servers, each with its port.
    expect(settings('kafka://u:p@k1:9092,k2:9093,k3:9094/?partitions=1').bootstrapServers).toEqual([
      'k1:9092',
      'k2:9093',
      'k3:9094',
    ]);
  });

  it.each([
    ['partitions=0', /partitions="0"/],
    ['partitions=many', /partitions="many"/],
    ['replication_factor=-1', /replication_factor/],
    ['create_topics=yes', /create_topics="yes" must be true or false/],
    ['timeout_ms=5', /timeout_ms/],
    ['topic=edu/{aggregate_type}', /topic="edu\/\{aggregate_type\}" is not valid/],
    ['topic={aggregate}', /topic=/],
    ['client_id=a b', /client_id/],
    ['partition=3', /unknown parameter "partition"; did you mean "partitions"\?/],
    ['tpoic=edu.{aggregate_type}', /unknown parameter "tpoic"; did you mean "topic"\?/],
    ['topic=..', /topic="\.\." is a name Kafka does not allow/],
    [`topic=${'x'.repeat(250)}`, /makes topic names of 250 characters or more, over Kafka's 249/],
    [`topic=${'x'.repeat(248)}.{aggregate_type}`, /of 250 characters or more/],
    ['partitions=3&partitions=6', /partitions is given more than once: give it once/],
  ])('refuses %s with a ConfigError naming the broker setting', (query, message) => {
    const error = refused(`kafka://127.0.0.1:9092/?${query}`);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe('broker');
    expect((error as Error).message).toMatch(message);
  });

  it('reads sasl_mechanism, password_file and the TLS files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'edupulse-kafka-url-'));
    try {
      const password = join(dir, 'password');
      writeFileSync(password, 'Kafka-From-File-41\n');
      const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
      const ca = join(dir, 'ca.pem');
      writeFileSync(ca, pem);

      expect(settings('kafka://app:pw@k1').sasl?.mechanism).toBe('PLAIN');
      const scram = settings(
        `kafka://app@k1/?sasl_mechanism=scram-sha-512&password_file=${password}`,
      );
      expect(scram.sasl).toEqual({
        mechanism: 'SCRAM-SHA-512',
        username: 'app',
        password: 'Kafka-From-File-41',
      });
      // The user is shown, the password masked, the file's path shown (not a secret).
      expect(scram.location).toBe('kafka://app:***@k1:9092');
      expect(scrubSecrets('refused Kafka-From-File-41')).toBe('refused ***');
      // Either case.
      const upper = settings(
        `kafka://u@k1/?sasl_mechanism=SCRAM-SHA-256&password_file=${password}`,
      );
      expect(upper.sasl?.mechanism).toBe('SCRAM-SHA-256');

      expect(settings('kafka://k1').tls).toBeUndefined();
      expect(settings('kafka://k1/?tls=true').tls).toEqual({});
      // A file of TLS means TLS.
      expect(settings(`kafka://k1/?ca_file=${ca}`).tls).toEqual({ ca: pem });
      // SNI for a cluster addressed by name; none for addresses (Node warns, RFC 6066 forbids).
      expect(clientOptions(settings('kafka://k1,k2/?tls=true')).tlsServerName).toBe(true);
      expect(clientOptions(settings('kafka://10.0.0.1/?tls=true')).tlsServerName).toBe(false);
      expect(clientOptions(settings('kafka://k1')).tlsServerName).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['kafka://k1/?sasl_mechanism=plain', /sasl_mechanism needs a user name in the URL/],
    ['kafka://k1/?password_file=/x', /password_file needs a user name in the URL/],
    ['kafka://u:p@k1/?sasl_mechanism=gssapi', /sasl_mechanism="gssapi" is not valid/],
    ['kafka://u:p@k1/?password_file=/x', /password_file and a password are both given/],
    [
      'kafka://u@k1/?password_file=/nowhere/pw',
      /^broker: password_file: cannot read \/nowhere\/pw/,
    ],
    ['kafka://k1/?ca_file=/nowhere/ca.pem', /^broker: ca_file: cannot read \/nowhere\/ca\.pem/],
    ['kafka://k1/?ca_file=', /ca_file is empty/],
    ['kafka://k1/?tls=false&ca_file=/x', /ca_file given with tls=false/],
    ['kafka://k1/?cert_file=/x', /cert_file and key_file go together/],
    ['kafka://k1/?ca_file=/dev/null', /ca_file: \/dev\/null holds no PEM certificate/],
  ])('refuses %s with a ConfigError naming the broker setting', (url, message) => {
    const error = refused(url);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe('broker');
    expect((error as Error).message).toMatch(message);
  });

  it('fills the topic template with legal topic characters only', () => {
    const m = message('course/module v2', 'x', {});
    expect(kafkaTopic('edupulse.{aggregate_type}', m)).toBe('edupulse.course_module_v2');
    expect(kafkaTopic('{aggregate_type}-{event_type}', { ...m, eventType: 'a:b' })).toBe(
      'course_module_v2-a_b',
    );
  });
});

describe('kafka partition of a key', () => {
  it("is the Java client's: murmur2 of the key's bytes, sign bit masked", () => {
    // Kafka's UtilsTest.testMurmur2: the Java client's hash of these keys.
    const java: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [key, hash] of java) {
      for (const partitions of [1, 3, 7, 64]) {
        expect(kafkaPartition(key, partitions), key).toBe((hash & 0x7fffffff) % partitions);
      }
    }
  });

  it("hashes as the client library's murmur2 does, for keys of every length and script", async () => {
    const { murmur2 } = await kafkaLibrary();
    const pieces = ['a', 'Z', '7', '-', 'é', 'ß', '€', '語', '😀', '\u0000', ' '];
    const keys = [''];
    for (let length = 1; length <= 70; length++) {
      for (let variant = 0; variant < 3; variant++) {
        keys.push(
          Array.from(
            { length },
            (_, i) => pieces[(i * (variant + 3) + length) % pieces.length] as string,
          ).join(''),
        );
      }
    }
    keys.push('lesson-'.repeat(200), randomUUID(), '語'.repeat(333));
    for (const key of keys) {
      expect(kafkaPartition(key, 2 ** 31 - 1), JSON.stringify(key)).toBe(
        (murmur2(key) & 0x7fffffff) % (2 ** 31 - 1),
      );
    }
  });
});
