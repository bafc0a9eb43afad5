/**
 * consume() on Kafka: the consumer conformance suite. Each target has its own topics
 * (`c<random>.<aggregate_type>`) and consumer groups (`c<random>-<name>`) on the machine's
 * Kafka, deleted afterwards; the outage target is a private Kafka the test stops and
 * starts (its own ports and storage under .kafka/consumer).
 */
import { Producer, stringSerializers } from '@platformatic/kafka';
import { afterAll } from 'vitest';
import {
  deleteTestResources,
  kafkaInstance,
  testKafkaScript,
  uniqueName,
} from '../helpers/kafka.js';
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
