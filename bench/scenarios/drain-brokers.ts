import { randomBytes, randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { Admin, ProduceAcks, Producer, stringSerializers } from '@platformatic/kafka';
import amqp from 'amqplib';
import {
  amqpSettings,
  binaryModeHeaders,
  bindingPrefix,
  brokerFromUrl,
  createDispatcher,
  type Database,
  kafkaSettings,
  natsSettings,
  type OutboxMessage,
  redactUrl,
} from 'edupulse-outbox';
import {
  type BenchContext,
  errorMessage,
  per1000,
  perTarget,
  round,
  type Scenario,
  type ScenarioResult,
  secondsSince,
} from '../context.js';
import { type BrokerServer, cpuMeter, serverCpuMeter } from '../cpu.js';
import { createBenchStream, natsConnection, natsHeaderValue } from '../jetstream.js';
import { quoteSchema } from '../schema.js';

const source = '/edupulse-bench';
const batchSize = 1000;

/**
 * What differs between the brokers. Every name carries `tag`, unique to the run, so the
 * bench never publishes into a real stream, exchange or topic, and removes what it made.
 */
interface BrokerTarget {
  name: string;
  /** The broker server's kind, to find its processes on this machine. */
  server: BrokerServer;
  /** The broker URL given to `bench`. */
  baseUrl(bench: BenchContext): string;
  /** Query parameters of our adapter's URL. */
  query(tag: string): string;
  /** What must exist before our adapter publishes (a queue keeping messages routable). */
  prepare?(url: string, tag: string): Promise<void>;
  /**
   * The raw client: publishes `count` messages shaped like `sample` with our adapter's
   * default in-flight window, and returns the time until the last is acknowledged
   * (connecting and declaring are not timed).
   */
  reference(url: string, tag: string, sample: OutboxMessage, count: number): Promise<Took>;
  /** Removes what either side created. */
  cleanup(url: string, tag: string): Promise<void>;
}

/** Runs `publishOne(i)` for i in [0, count) with at most `window` of them unfinished. */
async function windowed(
  count: number,
  window: number,
  publishOne: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await publishOne(next++);
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
}

/**
 * What one side took: wall seconds, CPU milliseconds of this process, and (where /proc
 * tells) of the broker server and of the whole machine.
 */
interface Took {
  seconds: number;
  node_cpu_ms: number;
  broker_cpu_ms?: number;
  machine_cpu_ms?: number;
}

/** Times `work`: wall clock, this process's CPU, the broker server's and the machine's. */
async function timed(server: BrokerServer, work: () => Promise<unknown>): Promise<Took> {
  const servers = serverCpuMeter(server);
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  await work();
  const seconds = secondsSince(started);
  const { user, system } = process.cpuUsage(cpu);
  return { seconds, node_cpu_ms: (user + system) / 1000, ...servers.stop() };
}

/** Our adapter's window for `url`: its `max_in_flight` (256 unless the URL sets it). */
const natsWindow = (url: string) => natsSettings(url, 'nats-url').maxInFlight;

const nats: BrokerTarget = {
  name: 'drain-nats',
  server: 'nats',
  baseUrl: (bench) => bench.settings.natsUrl,
  query: (tag) => `stream=BENCH_${tag}&subject_prefix=bench_${tag}`,
  async reference(url, tag, sample, count) {
    const stream = await createBenchStream(url, `ref_${tag}`);
    const nc = await natsConnection(url);
    try {
      const js = jetstream(nc, { timeout: 5000 });
      const subject = `${stream.subjectPrefix}.${sample.aggregateType}.${sample.eventType}`;
      const payload = new TextEncoder().encode(sample.payload);
      const fixed = Object.entries(binaryModeHeaders(sample, source, bindingPrefix.nats)).map(
        ([name, value]) => [name, natsHeaderValue(value)] as const,
      );
      return await timed('nats', () =>
        windowed(count, natsWindow(url), (i) => {
          const id = randomUUID();
          const headers = natsHeaders();
          for (const [name, value] of fixed) headers.set(name, value);
          headers.set('ce-id', id);
          headers.set('ce-sequence', String(i).padStart(19, '0'));
          // Our dedup id: `<event id>@<source>`.
          return js.publish(subject, payload, { msgID: `${id}@${source}`, headers, timeout: 5000 });
        }),
      );
    } finally {
      await nc.close();
      await stream.remove();
    }
  },
  async cleanup(url, tag) {
    const nc = await natsConnection(url);
    try {
      await (await jetstreamManager(nc)).streams.delete(`BENCH_${tag}`).catch(() => false);
    } finally {
      await nc.close();
    }
  },
};

/** Our adapter's window for `url`: its `max_in_flight` (512 unless the URL sets it). */
const amqpWindow = (url: string) => amqpSettings(url, 'amqp-url').maxInFlight;

/**
 * A queue bound to every routing key of `exchange`, so the `mandatory` messages are
 * routed, not returned. It keeps the newest 10,000: the bench measures publishing, not
 * RabbitMQ holding a backlog.
 */
async function declareRoutedExchange(channel: amqp.Channel, exchange: string): Promise<void> {
  await channel.assertExchange(exchange, 'topic', { durable: true });
  await channel.assertQueue(exchange, { durable: false, arguments: { 'x-max-length': 10_000 } });
  await channel.bindQueue(exchange, exchange, '#');
}

/** A confirm channel on the server of an `amqp://` URL (our parameters left out), closed after `use`. */
export async function withAmqpChannel<T>(
  url: string,
  use: (channel: amqp.ConfirmChannel) => Promise<T>,
): Promise<T> {
  // Without our query parameters, which amqplib would read as its own.
  const connection = await amqp.connect(amqpSettings(url, 'amqp-url').serverUrl);
  try {
    return await use(await connection.createConfirmChannel());
  } finally {
    await connection.close();
  }
}

const amqpTarget: BrokerTarget = {
  name: 'drain-amqp',
  server: 'amqp',
  baseUrl: (bench) => bench.settings.amqpUrl,
  query: (tag) => `exchange=edupulse.bench.${tag}`,
  prepare: (url, tag) =>
    withAmqpChannel(url, (channel) => declareRoutedExchange(channel, `edupulse.bench.${tag}`)),
  reference: (url, tag, sample, count) =>
    withAmqpChannel(url, async (channel) => {
      const exchange = `edupulse.bench.ref.${tag}`;
      await declareRoutedExchange(channel, exchange);
      const body = Buffer.from(sample.payload);
      const { 'content-type': contentType, ...fixed } = binaryModeHeaders(
        sample,
        source,
        bindingPrefix.amqp,
      );
      const routingKey = `${sample.aggregateType}.${sample.eventType}`;
      const timestamp = Math.floor(Date.parse(sample.occurredAt) / 1000);
      return timed('amqp', () =>
        windowed(count, amqpWindow(url), (i) => {
          const id = randomUUID();
          const options: amqp.Options.Publish = {
            persistent: true,
            mandatory: true,
            messageId: id,
            ...(contentType === undefined ? {} : { contentType }),
            timestamp,
            headers: {
              ...fixed,
              'cloudEvents:id': id,
              'cloudEvents:sequence': String(i).padStart(19, '0'),
            },
          };
          return new Promise<void>((resolve, reject) =>
            channel.publish(exchange, routingKey, body, options, (error: unknown) =>
              error ? reject(new Error('nacked')) : resolve(),
            ),
          );
        }),
      );
    }),
  cleanup: (url, tag) =>
    withAmqpChannel(url, async (channel) => {
      for (const exchange of [`edupulse.bench.${tag}`, `edupulse.bench.ref.${tag}`]) {
        await channel.deleteQueue(exchange);
        await channel.deleteExchange(exchange);
      }
    }),
};

/** Client id and bootstrap servers of a `kafka://` URL, for the raw clients. */
export function kafkaClientOptions(url: string) {
  const { bootstrapServers } = kafkaSettings(url, 'kafka-url');
  return { clientId: 'edupulse-bench', bootstrapBrokers: bootstrapServers };
}

const kafka: BrokerTarget = {
  name: 'drain-kafka',
  server: 'kafka',
  baseUrl: (bench) => bench.settings.kafkaUrl,
  query: (tag) => `topic=edupulse.bench.${tag}.{aggregate_type}`,
  async reference(url, tag, sample, count) {
    const options = kafkaClientOptions(url);
    const topic = `edupulse.bench.ref.${tag}.${sample.aggregateType}`;
    const admin = new Admin(options);
    const producer = new Producer({
      ...options,
      idempotent: true,
      acks: ProduceAcks.ALL,
      serializers: stringSerializers,
      autocreateTopics: false,
    });
    try {
      // Our adapter's default partitions and replication factor.
      await admin.createTopics({ topics: [topic], partitions: 3, replicas: 1 });
      await producer.metadata({ topics: [topic] });
      const fixed = binaryModeHeaders(sample, source, bindingPrefix.kafka);
      // Our adapter's window: each publish call (a dispatcher batch) is one send, one at a time.
      return await timed('kafka', async () => {
        for (let first = 0; first < count; first += batchSize) {
          const messages = Array.from({ length: Math.min(batchSize, count - first) }, (_, j) => ({
            topic,
            key: `lesson-${(first + j) % 10_000}`,
            value: sample.payload,
            headers: {
              ...fixed,
              ce_id: randomUUID(),
              ce_sequence: String(first + j).padStart(19, '0'),
            },
          }));
          await producer.send({ messages });
        }
      });
    } finally {
      await Promise.allSettled([producer.close(), admin.close()]);
    }
  },
  async cleanup(url, tag) {
    const admin = new Admin(kafkaClientOptions(url));
    try {
      const topics = (await admin.listTopics()).filter(
        (topic) =>
          topic.startsWith(`edupulse.bench.${tag}.`) ||
          topic.startsWith(`edupulse.bench.ref.${tag}.`),
      );
      if (topics.length > 0) await admin.deleteTopics({ topics });
    } finally {
      await admin.close();
    }
  },
};

interface ClaimedSample {
  id: string;
  seq: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: string;
  partition: number;
  occurred_at: string;
}

/** One filled row as the dispatcher would hand it to a broker, to shape the reference's messages. */
async function sampleMessage(db: Database, schema: string): Promise<OutboxMessage> {
  const { rows } = await db.query<ClaimedSample>(
    `SELECT id, seq, aggregate_type, aggregate_id, event_type, payload::text AS payload, partition,
            to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at
     FROM ${quoteSchema(schema)}.outbox ORDER BY seq LIMIT 1`,
  );
  const row = rows[0];
  if (!row) throw new Error('the filled outbox is empty');
  return {
    id: row.id,
    seq: String(row.seq),
    aggregateType: row.aggregate_type,
    aggregateId: row.aggregate_id,
    eventType: row.event_type,
    payload: row.payload,
    headers: {},
    partition: Number(row.partition),
    occurredAt: row.occurred_at,
    attempts: 0,
  };
}

/**
 * One broker: a backlog drained by a started dispatcher (batch 1000) into the real broker,
 * against the same client library publishing as many messages of the same shape with our
 * adapter's window and no database.
 */
async function drainBroker(bench: BenchContext, target: BrokerTarget): Promise<ScenarioResult> {
  const { name } = target;
  const backlog = bench.backlog;
  const tag = randomBytes(4).toString('hex');
  const url = target.baseUrl(bench);
  const broker = brokerFromUrl(adapterUrl(target, url, tag), { source });
  try {
    await broker.connect();
    await target.prepare?.(url, tag);
  } catch (error) {
    await broker.close().catch(() => {});
    await target.cleanup(url, tag).catch(() => {});
    return { name, skipped: `${redactUrl(url)} not reachable: ${errorMessage(error)}` };
  }
  try {
    return await bench.withSchema(async (db, schema) => {
      await bench.fill(db, schema, backlog);
      const sample = await sampleMessage(db, schema);
      bench.log(`${name}: reference publisher, ${backlog} messages`);
      const reference = await target.reference(url, tag, sample, backlog);
      bench.log(`${name}: dispatcher drain of ${backlog}`);
      const dispatcher = createDispatcher({ db, schema, broker, batchSize, logger: false });
      const done = new Promise<void>((resolve, reject) => {
        dispatcher.on('batch', (report: { retried: number; deadLettered: number }) => {
          if (report.retried + report.deadLettered > 0) {
            reject(new Error(`${name}: ${report.retried + report.deadLettered} events failed`));
          } else if (dispatcher.stats.published >= backlog) resolve();
        });
        dispatcher.on('unavailable', ({ error }: { error: unknown }) =>
          reject(new Error(`${name}: broker unavailable: ${errorMessage(error)}`)),
        );
        dispatcher.on('fatal', reject);
      });
      const cpu = await cpuMeter(bench.settings.databaseUrl, 'edupulse-bench');
      const servers = serverCpuMeter(target.server);
      const started = process.hrtime.bigint();
      let seconds: number;
      let used: Awaited<ReturnType<typeof cpu.stop>>;
      let serversUsed: ReturnType<typeof servers.stop>;
      try {
        await dispatcher.start();
        await done;
        seconds = secondsSince(started);
        serversUsed = servers.stop();
      } finally {
        // While the dispatcher's connections are still open (their backends are measured).
        used = await cpu.stop();
        await dispatcher.stop();
      }
      const events_per_s = Math.round(backlog / seconds);
      const reference_events_per_s = Math.round(backlog / reference.seconds);
      const ratio = round(events_per_s / reference_events_per_s);
      // Where the cycles go: this process, its PostgreSQL backends, the broker server, and
      // the whole machine (both sides share its cores with the broker).
      return {
        name,
        backlog,
        events_per_s,
        reference_events_per_s,
        ratio,
        node_cpu_ms_per_1000: per1000(used.node_cpu_ms, backlog),
        postgres_cpu_ms_per_1000: per1000(used.postgres_cpu_ms, backlog),
        broker_cpu_ms_per_1000: per1000(serversUsed.broker_cpu_ms, backlog),
        machine_cpu_ms_per_1000: per1000(serversUsed.machine_cpu_ms, backlog),
        reference_node_cpu_ms_per_1000: per1000(reference.node_cpu_ms, backlog),
        reference_broker_cpu_ms_per_1000: per1000(reference.broker_cpu_ms, backlog),
        reference_machine_cpu_ms_per_1000: per1000(reference.machine_cpu_ms, backlog),
        target: 'ratio ≥ 0.8',
        met: ratio >= 0.8,
      };
    });
  } finally {
    await broker.close().catch(() => {});
    await target
      .cleanup(url, tag)
      .catch((error) => bench.log(`${name}: cleanup failed: ${errorMessage(error)}`));
  }
}

const targets: readonly BrokerTarget[] = [nats, amqpTarget, kafka];

/** Our adapter's URL for `target` on the server of `url`: names of the run's `tag`. */
function adapterUrl(target: BrokerTarget, url: string, tag: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}${target.query(tag)}`;
}

/**
 * A stream, exchange or topic of its own on `broker` (as the drain scenarios make them):
 * our adapter's URL for it, and what removes it afterwards.
 */
export async function benchDestination(
  bench: BenchContext,
  broker: 'amqp' | 'kafka',
): Promise<{ brokerUrl: string; remove(): Promise<void> }> {
  const target = broker === 'amqp' ? amqpTarget : kafka;
  const tag = randomBytes(4).toString('hex');
  const url = target.baseUrl(bench);
  await target.prepare?.(url, tag);
  return { brokerUrl: adapterUrl(target, url, tag), remove: () => target.cleanup(url, tag) };
}

/** Drains a backlog into NATS JetStream, RabbitMQ and Kafka, each against a raw publisher. */
export const drainBrokers: Scenario = perTarget(targets, drainBroker);
