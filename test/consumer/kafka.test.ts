/**
 * consume() on Kafka: the consumer conformance suite. Each target has its own topics
 * (`c<random>.<aggregate_type>`) and consumer groups (`c<random>-<name>`) on the machine's
 * Kafka, deleted afterwards; the outage target is a private Kafka the test stops and
 * starts (its own ports and storage under .kafka/consumer).
 */
import { randomUUID } from 'node:crypto';
import { Producer, stringSerializers } from '@platformatic/kafka';
import { afterAll, expect, it } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { ConfigError } from '../../src/common/errors.js';
import { type Consumer, consume } from '../../src/consumer/index.js';
import { QuizSubmitted } from '../../src/index.js';
import { createPgTestSchema } from '../helpers/db.js';
import {
  deleteTestResources,
  kafkaInstance,
  testKafkaScript,
  uniqueName,
} from '../helpers/kafka.js';
import { quizMessage } from '../helpers/messages.js';
import { waitFor } from '../helpers/wait.js';
import { type ConsumerHarness, consumerConformance } from './conformance.js';

const SHARED = process.env.KAFKA_BOOTSTRAP ?? '127.0.0.1:9092';
const outageKafka = kafkaInstance('consumer', 39092);
let outageStarted: Promise<void> | undefined;
afterAll(async () => {
  if (outageStarted) await testKafkaScript('stop', outageKafka);
}, 60_000);

const harness: ConsumerHarness = {
  name: 'kafka',
  deliversUnknownTypes: true,
  async target(options) {
    let bootstrap = SHARED;
    let outage: { stop(): Promise<void>; start(): Promise<void> } | undefined;
    if (options?.outage) {
      outageStarted ??= testKafkaScript('start', outageKafka);
      await outageStarted;
      bootstrap = outageKafka.bootstrap;
      outage = {
        stop: () => testKafkaScript('stop', outageKafka),
        start: () => testKafkaScript('start', outageKafka),
      };
    }
    const prefix = uniqueName('c');
    return {
      url: `kafka://${bootstrap}/?topic=${prefix}.{aggregate_type}&timeout_ms=5000`,
      outage,
      async publishRaw(message) {
        const producer = new Producer({
          clientId: 'edupulse-test-raw',
          bootstrapBrokers: [bootstrap],
          serializers: stringSerializers,
        });
        try {
          await producer.send({
            messages: [
              {
                topic: `${prefix}.${message.aggregateType}`,
                key: message.aggregateId,
                value: message.body,
                headers: new Map([
                  ['content-type', message.contentType],
                  ...Object.entries(message.headers),
                ]),
              },
            ],
          });
        } finally {
          await producer.close();
        }
      },
      consumerName: (base) => `${prefix}-${base}`,
      cleanup: () => deleteTestResources(prefix, bootstrap),
    };
  },
};

consumerConformance(harness);

it('group_instance_id: a process fenced out by another of the same name stops, saying why; the other goes on', async () => {
  const prefix = uniqueName('c');
  const url = `kafka://${SHARED}/?topic=${prefix}.{aggregate_type}&timeout_ms=5000`;
  const pg = await createPgTestSchema('consume_static');
  const broker = brokerFromUrl(url, { source: '/edupulse/consumer-test' });
  const consumers: Consumer[] = [];
  const seen = { first: [] as string[], second: [] as string[] };
  const start = async (who: keyof typeof seen) => {
    const consumer = await consume({
      broker: `${url}&group_instance_id=pod-0`,
      consumer: `${prefix}-static`,
      database: pg.db,
      schema: pg.schema,
      events: [QuizSubmitted],
      handler: (event) => {
        seen[who].push(event.id);
      },
    });
    consumers.push(consumer);
    return consumer;
  };
  const send = async () => {
    const message = quizMessage(randomUUID(), { score: 1 });
    expect(await broker.publish([message])).toEqual([{ ok: true }]);
    return message.id;
  };
  try {
    await broker.connect();
    const first = await start('first');
    const fatal: Error[] = [];
    first.on('fatal', (error) => fatal.push(error));
    const early = await send();
    await waitFor('the first process to apply', () => seen.first.includes(early), {
      timeoutMs: 30_000,
    });
    const second = await start('second');
    await send();
    await waitFor('the first process to stop', () => first.health().state === 'stopped', {
      timeoutMs: 20_000,
    });
    await expect(first.closed).rejects.toBeInstanceOf(ConfigError);
    expect(fatal.map((error) => error.message)).toEqual([first.health().reason]);
    expect(first.health().reason).toMatch(
      /^broker: group_instance_id="pod-0": another process joined consumer group "c[\w-]+-static" under the same name and the group fenced this one out; give each process its own group_instance_id$/,
    );
    const later = await send();
    await waitFor(
      'the second process to apply what came after',
      () => seen.second.includes(later),
      {
        timeoutMs: 30_000,
      },
    );
    expect(second.health().state).toBe('receiving');
    expect(seen.first).not.toContain(later);
    await second.stop();
    await expect(second.closed).resolves.toBeUndefined();
  } finally {
    await Promise.allSettled(consumers.map((c) => c.stop()));
    await broker.close();
    await deleteTestResources(prefix, SHARED);
    await pg.drop();
  }
}, 120_000);
