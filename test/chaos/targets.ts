/**
 * The broker side of a chaos run, one target per broker: fresh names, the URL the `run`
 * processes publish to, a restart of the server, and an independent reader (the broker's
 * own client library, none of this project's code) that reads back everything the broker
 * stored once the run is over. Consumers (`consume()`, the consumer chaos phase) read the
 * same URL under a consumer name the target hands out and deletes at clean-up.
 *
 * Which server:
 * - NATS: the shared one on 4222 when the run does not restart the broker; a private
 *   nats-server (test/helpers/nats-server.ts: own port, own JetStream store) when it does,
 *   restarted with SIGTERM → pause → start on the same port and store.
 * - RabbitMQ: the shared one on 5672; the restart is `rabbitmqctl stop_app` → pause →
 *   `start_app` (there is no cheap private RabbitMQ). A durable named queue bound with `#`
 *   exists before the dispatchers start, so nothing is unroutable and every message waits
 *   in it across the restart; it is read after the run.
 * - Kafka: the shared one on 9092 when the run does not restart the broker; else a private
 *   one from this repository's scripts/kafka/kafka.sh (.kafka/chaos, ports 29092/29093),
 *   started here, restarted with `kafka.sh stop` → pause → `start`, stopped at clean-up.
 *   The Kafka on 9092 may be another checkout's, which `kafka.sh stop` would not touch.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import { Consumer, stringDeserializers } from '@platformatic/kafka';
import amqp from 'amqplib';
import { AMQP_URL, withAmqpChannel } from '../helpers/amqp.js';
import { deleteTestResources, kafkaInstance, testKafkaScript } from '../helpers/kafka.js';
import { createStream, deleteStream } from '../helpers/nats-consumer.js';
import { type PrivateNatsServer, startNatsServer } from '../helpers/nats-server.js';

const run = promisify(execFile);

export type BrokerName = 'nats' | 'amqp' | 'kafka';

/** One message as the independent reader got it, in the broker's order. */
export interface Delivery {
  /** CloudEvents `id` (header). */
  id: string;
  /** The broker's dedup id (Nats-Msg-Id, AMQP messageId, Kafka ce_id). */
  dedupId: string;
  /** What `dedupId` must be, where it is not the event id (NATS: `<id>@<source>`). */
  expectedDedupId?: string;
  /** CloudEvents `subject` (the aggregate id). */
  subject: string;
  /** CloudEvents `sequence` (the outbox seq, zero-padded). */
  sequence: string;
  /** The message body: the payload the producer wrote. */
  body: string;
}

export interface ChaosTarget {
  readonly broker: BrokerName;
  /** `--broker` for the `run` processes. */
  readonly url: string;
  /** A description of the server, for the report. */
  readonly server: string;
  /** Messages the broker holds for this run now (duplicates included where it keeps them). */
  stored(): Promise<number>;
  /** Stops the server, waits `pauseMs`, starts it again and waits until it serves. */
  restart(pauseMs: number): Promise<void>;
  /** Everything the broker stored for this run, in its order (per partition for Kafka). */
  readAll(timeoutMs: number): Promise<Delivery[]>;
  /**
   * A consumer name for `consume()` on `url`, unique to this target (Kafka groups are
   * server-wide); what it names on the broker (a JetStream durable consumer, a queue
   * `<exchange>.<name>`, a Kafka group) is deleted by `cleanup`.
   */
  consumerName(base: string): string;
  /** Deletes the names created and stops what was started. */
  cleanup(): Promise<void>;
}

export interface TargetOptions {
  /** The run restarts the broker: NATS and Kafka then use servers of the run's own. */
  restartable: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries `attempt` until it resolves or `timeoutMs` has passed (then throws the last error). */
async function retrying<T>(what: string, attempt: () => Promise<T>, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`${what}: still failing after ${timeoutMs} ms`, { cause: error });
      }
      await sleep(250);
    }
  }
}

export function uniqueSuffix(): string {
  return randomBytes(5).toString('hex');
}

// ------------------------------------------------------------------------------- NATS

async function natsTarget(options: TargetOptions): Promise<ChaosTarget> {
  let server: PrivateNatsServer | undefined;
  if (options.restartable) server = await startNatsServer();
  const url = server?.url ?? 'nats://127.0.0.1:4222';
  const prefix = `tx${uniqueSuffix()}`;
  const stream = `T_${prefix}`;
  try {
    // As an operator would declare it (server defaults: 2 minute duplicate window); the
    // broker checks that it captures `<prefix>.>`.
    await createStream(url, stream, [`${prefix}.>`]);
  } catch (error) {
    await server?.destroy();
    throw error;
  }
  const streamInfo = async () => {
    const nc = await natsConnect({ servers: url.replace(/^nats:\/\//, ''), timeout: 5000 });
    try {
      return await (await jetstreamManager(nc)).streams.info(stream);
    } finally {
      await nc.close().catch(() => {});
    }
  };

  return {
    broker: 'nats',
    url: `${url}?stream=${stream}&subject_prefix=${prefix}`,
    server: server ? `private nats-server ${url}` : `shared NATS ${url}`,
    async stored() {
      return (await streamInfo()).state.messages;
    },
    async restart(pauseMs) {
      if (!server) throw new Error('the shared NATS is not restarted; use restartable: true');
      try {
        await server.stop();
        await sleep(pauseMs);
      } finally {
        await server.start();
      }
    },
    async readAll(timeoutMs) {
      const total = (await retrying('NATS stream info', streamInfo)).state.messages;
      const deliveries: Delivery[] = [];
      if (total === 0) return deliveries;
      const nc = await natsConnect({ servers: url.replace(/^nats:\/\//, ''), timeout: 5000 });
      try {
        // An ordered consumer from the start of the stream: every stored message once, in
        // stream order.
        const consumer = await jetstream(nc).consumers.get(stream);
        const messages = await consumer.consume({ max_messages: 2000, expires: 2000 });
        const timer = setTimeout(() => void messages.close(), timeoutMs);
        try {
          for await (const m of messages) {
            const header = (name: string) => m.headers?.get(name) ?? '';
            deliveries.push({
              id: decode(header('ce-id')),
              dedupId: header('Nats-Msg-Id'),
              expectedDedupId: `${decode(header('ce-id'))}@${decode(header('ce-source'))}`,
              subject: decode(header('ce-subject')),
              sequence: decode(header('ce-sequence')),
              body: m.string(),
            });
            if (deliveries.length >= total || m.info.pending === 0) break;
          }
        } finally {
          clearTimeout(timer);
          await messages.close().catch(() => {});
        }
      } finally {
        await nc.close().catch(() => {});
      }
      return deliveries;
    },
    // Durable consumers go with their stream.
    consumerName: (base) => base,
    async cleanup() {
      try {
        await deleteStream(url, stream).catch(() => {});
      } finally {
        await server?.destroy();
      }
    },
  };
}

function decode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

// --------------------------------------------------------------------------- RabbitMQ

async function rabbitmqctl(command: 'stop_app' | 'start_app' | 'await_startup'): Promise<void> {
  await run('rabbitmqctl', ['-q', command], { timeout: 120_000 });
}

async function amqpTarget(): Promise<ChaosTarget> {
  const exchange = `t.${uniqueSuffix()}`;
  const queue = `${exchange}.chaos`;
  // Declared as the broker declares it, with a durable queue bound to everything: every
  // message the dispatchers publish is routable, persistent, and survives stop_app.
  await withAmqpChannel(async (channel) => {
    await channel.assertExchange(exchange, 'topic', { durable: true });
    await channel.assertQueue(queue, { durable: true, exclusive: false, autoDelete: false });
    await channel.bindQueue(queue, exchange, '#');
  });
  const [, hostPart] = AMQP_URL.split('@');
  const consumers = new Set<string>();
  return {
    broker: 'amqp',
    url: `${AMQP_URL}?exchange=${exchange}`,
    server: `shared RabbitMQ ${hostPart ?? AMQP_URL}`,
    async stored() {
      return withAmqpChannel(async (channel) => (await channel.checkQueue(queue)).messageCount);
    },
    async restart(pauseMs) {
      try {
        await rabbitmqctl('stop_app');
        await sleep(pauseMs);
      } finally {
        await rabbitmqctl('start_app');
        await rabbitmqctl('await_startup');
        await retrying('RabbitMQ after start_app', () =>
          withAmqpChannel((channel) => channel.checkQueue(queue)),
        );
      }
    },
    async readAll(timeoutMs) {
      const connection = await retrying('RabbitMQ connect', () => amqp.connect(AMQP_URL));
      connection.on('error', () => {});
      const deliveries: Delivery[] = [];
      try {
        const channel = await connection.createChannel();
        channel.on('error', () => {});
        const { messageCount } = await channel.checkQueue(queue);
        if (messageCount === 0) return deliveries;
        await channel.prefetch(2000);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          void channel.consume(queue, (message) => {
            if (!message) return;
            const headers = message.properties.headers ?? {};
            const attribute = (name: string) => String(headers[`cloudEvents:${name}`] ?? '');
            deliveries.push({
              id: attribute('id'),
              dedupId: String(message.properties.messageId ?? ''),
              subject: attribute('subject'),
              sequence: attribute('sequence'),
              body: message.content.toString('utf8'),
            });
            // Acknowledged in bulk so the prefetch window keeps moving; the queue is
            // deleted afterwards anyway.
            if (deliveries.length % 1000 === 0 || deliveries.length >= messageCount) {
              channel.ack(message, true);
            }
            if (deliveries.length >= messageCount) {
              clearTimeout(timer);
              resolve();
            }
          });
        });
      } finally {
        await connection.close().catch(() => {});
      }
      return deliveries;
    },
    consumerName(base) {
      // The reader's queue is `<exchange>.chaos`; a consumer's, `<exchange>.<name>`.
      if (base === 'chaos') throw new Error('"chaos" names the reader\'s queue');
      consumers.add(base);
      return base;
    },
    async cleanup() {
      await withAmqpChannel(async (channel) => {
        for (const consumer of consumers) await channel.deleteQueue(`${exchange}.${consumer}`);
        await channel.deleteQueue(queue);
        await channel.deleteExchange(exchange);
      });
    },
  };
}

// ------------------------------------------------------------------------------ Kafka

/** The Kafka of the chaos runs that restart it: this repository's script, other ports. */
export const chaosKafka = kafkaInstance('chaos', 29092);

function chaosKafkaScript(command: 'start' | 'stop'): Promise<void> {
  return testKafkaScript(command, chaosKafka);
}

function kafkaConsumer(bootstrap: string, groupId: string) {
  return new Consumer({
    clientId: 'edupulse-chaos-reader',
    groupId,
    bootstrapBrokers: [bootstrap],
    deserializers: stringDeserializers,
    maxWaitTime: 500,
    sessionTimeout: 10_000,
    rebalanceTimeout: 10_000,
    heartbeatInterval: 500,
    retries: 5,
    retryDelay: 500,
  });
}

function closeConsumer(consumer: Consumer<string, string, string, string>): Promise<void> {
  return new Promise((resolve) => consumer.close(true, () => resolve()));
}

async function kafkaTarget(options: TargetOptions): Promise<ChaosTarget> {
  const bootstrap = options.restartable ? chaosKafka.bootstrap : '127.0.0.1:9092';
  if (options.restartable) await chaosKafkaScript('start');
  const prefix = `ch${uniqueSuffix()}`;
  // Every event of a run has aggregate type `chaos`: one topic, 3 partitions (the broker's
  // default), created by the broker on its first publish.
  const topic = `${prefix}.chaos`;

  /** Latest offset of every partition: what a reader from the earliest offset must reach. */
  const endOffsets = async (): Promise<bigint[]> => {
    const consumer = kafkaConsumer(bootstrap, `${prefix}-offsets`);
    consumer.on('error', () => {});
    try {
      const offsets = await consumer.listOffsets({ topics: [topic] });
      return offsets.get(topic) ?? [];
    } finally {
      await closeConsumer(consumer);
    }
  };

  return {
    broker: 'kafka',
    url: `kafka://${bootstrap}?topic=${prefix}.{aggregate_type}`,
    server: options.restartable
      ? `private Kafka ${bootstrap} (.kafka/chaos)`
      : `shared Kafka ${bootstrap}`,
    async stored() {
      // Offsets are contiguous: the idempotent producer writes no control records.
      return Number((await endOffsets()).reduce((sum, offset) => sum + offset, 0n));
    },
    async restart(pauseMs) {
      if (!options.restartable) throw new Error('the shared Kafka is not restarted');
      try {
        await chaosKafkaScript('stop');
        await sleep(pauseMs);
      } finally {
        await chaosKafkaScript('start');
      }
    },
    async readAll(timeoutMs) {
      const ends = await retrying('Kafka offsets', endOffsets);
      const total = Number(ends.reduce((sum, offset) => sum + offset, 0n));
      const deliveries: Delivery[] = [];
      if (total === 0) return deliveries;
      const consumer = kafkaConsumer(bootstrap, `${prefix}-reader`);
      consumer.on('error', () => {});
      try {
        const stream = await consumer.consume({ topics: [topic], mode: 'earliest' });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs);
          const done = () => {
            clearTimeout(timer);
            resolve();
          };
          stream.on('data', (message) => {
            const headers = Object.fromEntries(message.headers) as Record<string, string>;
            deliveries.push({
              id: headers.ce_id ?? '',
              dedupId: headers.ce_id ?? '',
              subject: headers.ce_subject ?? '',
              sequence: headers.ce_sequence ?? '',
              body: message.value,
            });
            if (deliveries.length >= total) done();
          });
          stream.once('error', done);
          stream.once('close', done);
        });
        await stream.close().catch(() => {});
      } finally {
        await closeConsumer(consumer);
      }
      return deliveries;
    },
    // Groups named after the prefix go with the topics.
    consumerName: (base) => `${prefix}-${base}`,
    async cleanup() {
      try {
        await deleteTestResources(prefix, bootstrap);
      } finally {
        if (options.restartable) await chaosKafkaScript('stop');
      }
    },
  };
}

export async function createTarget(
  broker: BrokerName,
  options: TargetOptions,
): Promise<ChaosTarget> {
  switch (broker) {
    case 'nats':
      return natsTarget(options);
    case 'amqp':
      return amqpTarget();
    case 'kafka':
      return kafkaTarget(options);
  }
}
