import { randomBytes, randomUUID } from 'node:crypto';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import {
  Admin,
  Consumer,
  type Message,
  MessagesStreamFallbackModes,
  MessagesStreamModes,
} from '@platformatic/kafka';
import amqp from 'amqplib';
import {
  amqpSettings,
  brokerFromUrl,
  type EventBroker,
  type OutboxMessage,
  pgDatabase,
  QuizSubmitted,
  redactUrl,
} from 'edupulse-outbox';
import { consume, createInbox } from 'edupulse-outbox/consumer';
import pg from 'pg';
import type { BenchContext, Scenario, ScenarioResult } from '../context.js';
import { errorMessage, per1000, perTarget, round } from '../context.js';
import { cpuMeter } from '../cpu.js';
import { natsConnection } from '../jetstream.js';
import { quoteSchema } from '../schema.js';
import { kafkaClientOptions, withAmqpChannel } from './drain-brokers.js';

const source = '/edupulse-bench';
/** consume()'s defaults, which the raw consumers are given too. */
const concurrency = 16;
const maxInFlight = 256;
/** Connections in each side's pool: one per handler running at once. */
const poolSize = concurrency;
/** The backlog's aggregates (quizzes); each published batch holds one event of each. */
const aggregates = 1000;
/** A side that applies nothing for this long has stalled: the run fails instead of hanging. */
const stallMs = 60_000;
/** Application names of each side's pool, whose backends' CPU is measured. */
const oursApplication = 'edupulse-bench-consume';
const rawApplication = 'edupulse-bench-consume-raw';

/** The quiz-submitted payload, as the raw consumers read it with JSON.parse. */
interface QuizData {
  quiz_id: string;
  student_id: string;
  score: number;
}

/** The one-row effect both sides apply per event: a score into a table keyed as the README's. */
const effectInsert = (table: string) =>
  `INSERT INTO ${table} (quiz_id, student_id, score) VALUES ($1, $2, $3)`;

type Handle = (body: Uint8Array, ack: () => void) => void;

/**
 * What differs between the brokers. Every name carries `tag`, unique to the run, so the
 * bench never reads a real stream, queue or topic, and removes what it made.
 */
export interface ConsumeTarget {
  name: string;
  baseUrl(bench: BenchContext): string;
  /** Query parameters of the URL our publisher and `consume()` share. */
  query(tag: string): string;
  /** What must exist before publishing so that each consumer gets the whole backlog. */
  prepare?(url: string, tag: string, consumers: readonly string[]): Promise<void>;
  /**
   * The raw consumer `name` with the same client library, from the start of the
   * backlog: hands each message's body to `handle` with its ack, at most `maxInFlight`
   * unacked. Resolves once receiving.
   */
  raw(url: string, tag: string, name: string, handle: Handle): Promise<() => Promise<void>>;
  /** Removes what either side and the publisher created. */
  cleanup(url: string, tag: string, consumers: readonly string[]): Promise<void>;
}

const natsStream = (tag: string) => `BENCH_${tag}`;

const nats: ConsumeTarget = {
  name: 'consume-inbox-nats',
  baseUrl: (bench) => bench.settings.natsUrl,
  query: (tag) => `stream=${natsStream(tag)}&subject_prefix=bench_${tag}`,
  async raw(url, tag, name, handle) {
    const nc = await natsConnection(url, 'edupulse-bench-raw');
    try {
      // As our source declares its consumer: durable, explicit acks, the in-flight bound.
      await (await jetstreamManager(nc)).consumers.add(natsStream(tag), {
        durable_name: name,
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(30_000),
        max_ack_pending: maxInFlight,
        filter_subject: `bench_${tag}.>`,
        deliver_policy: DeliverPolicy.All,
      });
      const consumer = await jetstream(nc).consumers.get(natsStream(tag), name);
      const messages = await consumer.consume({
        max_messages: maxInFlight,
        callback: (message) => handle(message.data, () => message.ack()),
      });
      return async () => {
        await messages.close().catch(() => {});
        await nc.drain().catch(() => {});
      };
    } catch (error) {
      await nc.close();
      throw error;
    }
  },
  async cleanup(url, tag) {
    const nc = await natsConnection(url);
    try {
      await (await jetstreamManager(nc)).streams.delete(natsStream(tag)).catch(() => false);
    } finally {
      await nc.close();
    }
  },
};

const amqpExchange = (tag: string) => `edupulse.bench.${tag}`;
/** Our source's queue for a consumer (`<exchange>.<consumer>`); the raw one is named alike. */
const amqpQueue = (tag: string, consumer: string) => `${amqpExchange(tag)}.${consumer}`;

const amqpTarget: ConsumeTarget = {
  name: 'consume-inbox-amqp',
  baseUrl: (bench) => bench.settings.amqpUrl,
  query: (tag) => `exchange=${amqpExchange(tag)}`,
  // Both queues exist and are bound before publishing, so each holds the whole backlog.
  // Declared as our source declares its own (so it finds this one as it expects it).
  prepare: (url, tag, consumers) =>
    withAmqpChannel(url, async (channel) => {
      const exchange = amqpExchange(tag);
      await channel.assertExchange(exchange, 'topic', { durable: true });
      for (const consumer of consumers) {
        const queue = amqpQueue(tag, consumer);
        await channel.assertQueue(queue, {
          durable: true,
          arguments: { 'x-single-active-consumer': true, 'x-queue-type': 'classic' },
        });
        await channel.bindQueue(
          queue,
          exchange,
          `${QuizSubmitted.aggregateType}.${QuizSubmitted.type}`,
        );
      }
    }),
  async raw(url, tag, name, handle) {
    const connection = await amqp.connect(amqpSettings(url, 'amqp-url').serverUrl);
    try {
      const channel = await connection.createChannel();
      await channel.prefetch(maxInFlight);
      await channel.consume(amqpQueue(tag, name), (message) => {
        if (message) handle(message.content, () => channel.ack(message));
      });
      return () => connection.close().catch(() => {});
    } catch (error) {
      await connection.close();
      throw error;
    }
  },
  cleanup: (url, tag, consumers) =>
    withAmqpChannel(url, async (channel) => {
      for (const consumer of consumers) await channel.deleteQueue(amqpQueue(tag, consumer));
      await channel.deleteExchange(amqpExchange(tag));
    }),
};

const kafkaTopicPrefix = (tag: string) => `edupulse.bench.${tag}.`;

/**
 * What the raw Kafka consumer may commit: per partition the offsets delivered and not
 * yet acked; the commit point is the lowest of them, or past the highest delivered.
 */
class RawOffsets {
  private readonly partitions = new Map<number, { open: Set<bigint>; next: bigint }>();
  private committed = new Map<number, bigint>();

  deliver(partition: number, offset: bigint): () => void {
    let state = this.partitions.get(partition);
    if (!state) {
      state = { open: new Set(), next: 0n };
      this.partitions.set(partition, state);
    }
    state.open.add(offset);
    state.next = offset + 1n;
    const open = state.open;
    return () => open.delete(offset);
  }

  /** Partitions whose commit point moved since the last call. */
  take(): { partition: number; offset: bigint }[] {
    const moved: { partition: number; offset: bigint }[] = [];
    for (const [partition, { open, next }] of this.partitions) {
      let offset = next;
      for (const pending of open) if (pending < offset) offset = pending;
      if (offset === this.committed.get(partition)) continue;
      this.committed.set(partition, offset);
      moved.push({ partition, offset });
    }
    return moved;
  }
}

const kafka: ConsumeTarget = {
  name: 'consume-inbox-kafka',
  baseUrl: (bench) => bench.settings.kafkaUrl,
  query: (tag) => `topic=${kafkaTopicPrefix(tag)}{aggregate_type}`,
  async raw(url, tag, name, handle) {
    const topic = `${kafkaTopicPrefix(tag)}${QuizSubmitted.aggregateType}`;
    // Our source's group settings and fetch buffer; offsets committed by hand.
    const consumer = new Consumer({
      ...kafkaClientOptions(url),
      groupId: name,
      autocommit: false,
      sessionTimeout: 10_000,
      rebalanceTimeout: 10_000,
      heartbeatInterval: 3_000,
      highWaterMark: maxInFlight,
      // As our source fetches: 1 MiB of records per request.
      maxBytes: 1_048_576,
    });
    const offsets = new RawOffsets();
    let timer: NodeJS.Timeout | undefined;
    // Forced: leaves the group and closes the stream (the promise overload takes no flag).
    const close = async () => {
      clearInterval(timer);
      await new Promise<void>((resolve) => consumer.close(true, () => resolve()));
    };
    try {
      const stream = await consumer.consume({
        topics: [topic],
        mode: MessagesStreamModes.COMMITTED,
        fallbackMode: MessagesStreamFallbackModes.EARLIEST,
        autocommit: false,
      });
      // The done prefix of each partition, every 100 ms, one commit at a time (as ours
      // does). A failed commit is not tried again: the run deletes the group anyway.
      let committing = false;
      timer = setInterval(() => {
        if (committing) return;
        const moved = offsets.take();
        if (moved.length === 0) return;
        committing = true;
        consumer
          .commit({
            offsets: moved.map(({ partition, offset }) => ({
              topic,
              partition,
              offset,
              leaderEpoch: -1,
            })),
          })
          .catch(() => {})
          .finally(() => {
            committing = false;
          });
      }, 100);
      let unacked = 0;
      stream.on('data', (message: Message<Buffer, Buffer, Buffer, Buffer>) => {
        const done = offsets.deliver(message.partition, message.offset);
        if (++unacked >= maxInFlight) stream.pause();
        handle(message.value, () => {
          done();
          if (unacked-- === maxInFlight) stream.resume();
        });
      });
      return close;
    } catch (error) {
      await close();
      throw error;
    }
  },
  async cleanup(url, tag, consumers) {
    const admin = new Admin(kafkaClientOptions(url));
    try {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(kafkaTopicPrefix(tag)));
      if (topics.length > 0) await admin.deleteTopics({ topics });
      await admin.deleteGroups({ groups: [...consumers] }).catch(() => {});
    } finally {
      await admin.close();
    }
  },
};

/**
 * Counts one run's applied effects up to `count`: `done` resolves at the last one and
 * rejects on a failure, or when nothing was applied for `stallMs`.
 */
class Tally {
  private applied = 0;
  private first: bigint | undefined;
  private last: bigint | undefined;
  private progressAt = Date.now();
  private readonly watchdog: NodeJS.Timeout;
  private finish: () => void = () => {};
  private reject: (error: Error) => void = () => {};
  readonly done = new Promise<void>((resolve, reject) => {
    this.finish = resolve;
    this.reject = reject;
  });

  constructor(
    private readonly count: number,
    private readonly label: string,
  ) {
    this.watchdog = setInterval(() => {
      if (Date.now() - this.progressAt > stallMs) {
        this.fail(new Error(`nothing applied for ${stallMs / 1000} s`));
      }
    }, 1000);
    this.watchdog.unref();
    void this.done.then(
      () => clearInterval(this.watchdog),
      () => clearInterval(this.watchdog),
    );
  }

  received(): void {
    this.first ??= process.hrtime.bigint();
  }

  apply(): void {
    this.progressAt = Date.now();
    if (++this.applied === this.count) {
      this.last = process.hrtime.bigint();
      this.finish();
    }
  }

  fail(error: unknown): void {
    this.reject(new Error(`${this.label}: ${errorMessage(error)} (${this.applied} applied)`));
  }

  /** From the first message in hand to the last effect committed. */
  get seconds(): number {
    return Number((this.last ?? 0n) - (this.first ?? 0n)) / 1e9;
  }
}

type SideName = 'ours' | 'raw';

/** What one run of a side measured. */
interface Run {
  seconds: number;
  node_cpu_ms: number;
  postgres_cpu_ms?: number | undefined;
}

/** Where one run of a side reads from and writes to. */
interface SideSetup {
  bench: BenchContext;
  target: ConsumeTarget;
  url: string;
  tag: string;
  consumer: string;
  schema: string;
  table: string;
  count: number;
}

/**
 * Times one run of a side: `start` begins consuming, counting into the tally, and returns
 * how to stop. CPU is measured from before it connects until its last effect, while its
 * connections are still open (their backends are read then).
 */
async function measure(
  setup: SideSetup,
  side: SideName,
  application: string,
  start: (tally: Tally) => Promise<() => Promise<void>>,
): Promise<Run> {
  const tally = new Tally(setup.count, `${setup.target.name} (${side})`);
  const cpu = await cpuMeter(setup.bench.settings.databaseUrl, application);
  let stop: (() => Promise<void>) | undefined;
  let used: Awaited<ReturnType<typeof cpu.stop>>;
  try {
    stop = await start(tally);
    await tally.done;
  } finally {
    used = await cpu.stop();
    await stop?.();
  }
  return { seconds: tally.seconds, ...used };
}

/**
 * Ours: `consume()` with an inbox; each event's handler records it and inserts its effect
 * in one transaction (`database.transaction` on a pool of `poolSize`).
 */
async function oursSide(setup: SideSetup): Promise<Run> {
  const { url, consumer: name, schema, table } = setup;
  const database = pgDatabase({
    connectionString: setup.bench.settings.databaseUrl,
    applicationName: oursApplication,
    maxConnections: poolSize,
  });
  const inbox = createInbox({ consumer: name, schema });
  const insert = effectInsert(table);
  try {
    return await measure(setup, 'ours', oursApplication, async (tally) => {
      const consumer = await consume({
        broker: url,
        consumer: name,
        database,
        schema,
        events: [QuizSubmitted],
        concurrency,
        maxInFlight,
        handler: async (event) => {
          tally.received();
          const { outcome } = await database.transaction((tx) =>
            inbox.process(tx, event, () =>
              tx.query(insert, [event.data.quiz_id, event.data.student_id, event.data.score]),
            ),
          );
          if (outcome === 'applied') tally.apply();
        },
      });
      consumer.on('parked', (parked) => tally.fail(`parked ${parked.id}: ${parked.reason}`));
      return () => consumer.stop();
    });
  } finally {
    await database.close();
  }
}

/**
 * The raw side's transaction: the effect inserted in a transaction of its own (BEGIN,
 * INSERT, COMMIT on a pg Pool of `poolSize`).
 */
function rawEffect(pool: pg.Pool, table: string): (data: QuizData) => Promise<void> {
  // Prepared once per connection, as our database adapter prepares its statements.
  const insert = { name: 'bench-effect', text: effectInsert(table) };
  return async (data) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query({ ...insert, values: [data.quiz_id, data.student_id, data.score] });
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  };
}

/** The raw side's pool, its backends named for the CPU meter. */
const rawPool = (bench: BenchContext) =>
  new pg.Pool({
    connectionString: bench.settings.databaseUrl,
    application_name: rawApplication,
    max: poolSize,
  });

/**
 * Raw: the broker's client hands each message over with its ack; up to `concurrency` at
 * once, each body is JSON.parse'd and its effect applied (`rawEffect`), then the message
 * is acked.
 */
async function rawSide(setup: SideSetup): Promise<Run> {
  const { target, url, tag, consumer: name, table } = setup;
  const pool = rawPool(setup.bench);
  const effect = rawEffect(pool, table);
  const decoder = new TextDecoder();
  const apply = (body: Uint8Array) => effect(JSON.parse(decoder.decode(body)) as QuizData);
  try {
    return await measure(setup, 'raw', rawApplication, (tally) => {
      const waiting: { body: Uint8Array; ack: () => void }[] = [];
      let running = 0;
      const pump = () => {
        while (running < concurrency) {
          const next = waiting.shift();
          if (!next) return;
          running++;
          apply(next.body)
            .then(
              () => {
                next.ack();
                tally.apply();
              },
              (error) => tally.fail(error),
            )
            .finally(() => {
              running--;
              pump();
            });
        }
      };
      return target.raw(url, tag, name, (body, ack) => {
        tally.received();
        waiting.push({ body, ack });
        pump();
      });
    });
  } finally {
    await pool.end();
  }
}

/**
 * Each side's database work alone, no broker: `concurrency` loops apply `setup.count`
 * quiz-submitted events as its handler would (ours through `database.transaction` and the
 * inbox, raw by `rawEffect`). Each consumer's rate is bounded by its side's here, and the
 * ratio of the two is what the database work alone leaves of `ratio`.
 */
async function withoutBroker(setup: SideSetup, side: SideName): Promise<Run> {
  const { bench, consumer, schema, table, count } = setup;
  const quizzes = Array.from({ length: aggregates }, () => randomUUID());
  const events = Array.from({ length: count }, (_, i) => ({
    id: randomUUID(),
    type: QuizSubmitted.type,
    aggregateId: quizzes[i % aggregates] as string,
    sequence: String(i + 1),
    data: { quiz_id: quizzes[i % aggregates] as string, student_id: randomUUID(), score: i % 100 },
  }));
  type Event = (typeof events)[number];
  let apply: (event: Event) => Promise<unknown>;
  let close: () => Promise<void>;
  if (side === 'ours') {
    const database = pgDatabase({
      connectionString: bench.settings.databaseUrl,
      applicationName: oursApplication,
      maxConnections: poolSize,
    });
    const inbox = createInbox({ consumer, schema });
    const insert = effectInsert(table);
    apply = (event) =>
      database.transaction((tx) =>
        inbox.process(tx, event, () =>
          tx.query(insert, [event.data.quiz_id, event.data.student_id, event.data.score]),
        ),
      );
    close = () => database.close();
  } else {
    const pool = rawPool(bench);
    const effect = rawEffect(pool, table);
    apply = (event) => effect(event.data);
    close = () => pool.end();
  }
  try {
    return await measure(
      setup,
      side,
      side === 'ours' ? oursApplication : rawApplication,
      async (tally) => {
        let next = 0;
        const loop = async () => {
          for (let event = events[next++]; event; event = events[next++]) {
            tally.received();
            await apply(event);
            tally.apply();
          }
        };
        void Promise.all(Array.from({ length: concurrency }, loop)).catch((error) =>
          tally.fail(error),
        );
        return async () => {};
      },
    );
  } finally {
    await close();
  }
}

/** Events each side consumes: two runs over a backlog of half as many. */
const eventsPerSide = (bench: BenchContext) => (bench.settings.quick ? 20_000 : 100_000);

/**
 * `count` quiz-submitted events over `aggregates` quizzes, published with our publisher
 * (closed after) in batches of one event per quiz (a batch's messages may go out in any order), so each
 * quiz's events are in the stream in `sequence` order. Each student id is new: an event's
 * effect is a row of its own.
 */
export async function publishBacklog(broker: EventBroker, count: number): Promise<void> {
  try {
    const quizzes = Array.from({ length: aggregates }, () => randomUUID());
    const occurredAt = new Date().toISOString();
    let seq = 0;
    for (let first = 0; first < count; first += aggregates) {
      const batch = quizzes.slice(0, Math.min(aggregates, count - first)).map(
        (quizId): OutboxMessage => ({
          id: randomUUID(),
          seq: String(++seq),
          aggregateType: QuizSubmitted.aggregateType,
          aggregateId: quizId,
          eventType: QuizSubmitted.type,
          payload: JSON.stringify({
            quiz_id: quizId,
            student_id: randomUUID(),
            score: seq % 100,
            submitted_at: occurredAt,
          }),
          headers: {},
          partition: 0,
          occurredAt,
          attempts: 0,
        }),
      );
      const failed = (await broker.publish(batch)).find((result) => !result.ok);
      if (failed && !failed.ok) throw new Error(`publishing the backlog: ${failed.error}`);
    }
  } finally {
    await broker.close();
  }
}

/**
 * One broker: a backlog published once, then consumed from the start four times, each by
 * a consumer of its own (durable consumer, queue or group) into an effects table of its
 * own, the sides in `order` (ABBA, so that load that drifts during the run, and whatever
 * a first reader warms, falls on both alike). Each side's rate is its events over its
 * two runs' time.
 */
async function consumeBroker(
  bench: BenchContext,
  target: ConsumeTarget,
  order: readonly SideName[],
): Promise<ScenarioResult> {
  const { name } = target;
  const count = eventsPerSide(bench);
  const backlog = count / 2;
  const tag = randomBytes(4).toString('hex');
  const runs = order.map((side, i) => ({
    side,
    consumer: `bench-${tag}-${side}-${i + 1}`,
    effects: `effects_${side}_${i + 1}`,
  }));
  const names = runs.map((run) => run.consumer);
  const baseUrl = target.baseUrl(bench);
  const url = `${baseUrl}${baseUrl.includes('?') ? '&' : '?'}${target.query(tag)}`;
  const broker = brokerFromUrl(url, { source });
  try {
    await broker.connect();
    await target.prepare?.(baseUrl, tag, names);
  } catch (error) {
    await broker.close().catch(() => {});
    await target.cleanup(baseUrl, tag, names).catch(() => {});
    return { name, skipped: `${redactUrl(baseUrl)} not reachable: ${errorMessage(error)}` };
  }
  try {
    bench.log(`${name}: publishing ${backlog} events over ${aggregates} quizzes`);
    await publishBacklog(broker, backlog);
    return await bench.withSchema(async (db, schema) => {
      const total: Record<SideName, Run> = {
        ours: { seconds: 0, node_cpu_ms: 0, postgres_cpu_ms: 0 },
        raw: { seconds: 0, node_cpu_ms: 0, postgres_cpu_ms: 0 },
      };
      /** One run into an effects table of its own, started after a checkpoint. */
      const runInto = async (
        side: SideName,
        consumer: string,
        effects: string,
        how: (setup: SideSetup) => Promise<Run>,
      ): Promise<Run> => {
        const table = `${quoteSchema(schema)}.${effects}`;
        await db.query(`CREATE TABLE ${table} (
          quiz_id uuid, student_id uuid, score numeric NOT NULL, PRIMARY KEY (quiz_id, student_id))`);
        // Each run starts after a checkpoint: none pays for another's dirty pages.
        await db.query('CHECKPOINT').catch(() => {});
        const setup = { bench, target, url, tag, consumer, schema, table, count: backlog };
        const run = await how(setup);
        const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
        if (rows[0]?.n !== backlog) {
          throw new Error(`${name} (${side}): ${rows[0]?.n} effects for ${backlog} events`);
        }
        return run;
      };
      for (const { side, consumer, effects } of runs) {
        bench.log(`${name}: ${side} consumer, ${backlog} events`);
        const run = await runInto(side, consumer, effects, side === 'ours' ? oursSide : rawSide);
        const sum = total[side];
        sum.seconds += run.seconds;
        sum.node_cpu_ms += run.node_cpu_ms;
        sum.postgres_cpu_ms =
          run.postgres_cpu_ms === undefined || sum.postgres_cpu_ms === undefined
            ? undefined
            : sum.postgres_cpu_ms + run.postgres_cpu_ms;
      }
      // The same database work without the broker, in the order of the first two runs.
      const alone: Partial<Record<SideName, Run>> = {};
      for (const side of order.slice(0, 2)) {
        bench.log(`${name}: ${side} transactions without a broker, ${backlog} events`);
        alone[side] = await runInto(
          side,
          `bench-${tag}-${side}-alone`,
          `effects_${side}_alone`,
          (setup) => withoutBroker(setup, side),
        );
      }
      const { ours, raw } = total;
      const events_per_s = Math.round(count / ours.seconds);
      const reference_events_per_s = Math.round(count / raw.seconds);
      const ratio = round(events_per_s / reference_events_per_s);
      return {
        name,
        events: count,
        runs: order.join(', '),
        aggregates,
        concurrency,
        pool: poolSize,
        events_per_s,
        reference_events_per_s,
        ratio,
        node_cpu_ms_per_1000: per1000(ours.node_cpu_ms, count),
        postgres_cpu_ms_per_1000: per1000(ours.postgres_cpu_ms, count),
        reference_node_cpu_ms_per_1000: per1000(raw.node_cpu_ms, count),
        reference_postgres_cpu_ms_per_1000: per1000(raw.postgres_cpu_ms, count),
        ...withoutBrokerFigures(alone, backlog),
        target: 'ratio ≥ 0.7',
        met: ratio >= 0.7,
      };
    });
  } finally {
    await target
      .cleanup(baseUrl, tag, names)
      .catch((error) => bench.log(`${name}: cleanup failed: ${errorMessage(error)}`));
  }
}

/** The broker-less pair's figures: each side's rate, and their ratio. */
function withoutBrokerFigures(alone: Partial<Record<SideName, Run>>, count: number) {
  const rate = (run: Run | undefined) => (run ? Math.round(count / run.seconds) : 0);
  const ours = rate(alone.ours);
  const raw = rate(alone.raw);
  return {
    without_broker_events_per_s: ours,
    without_broker_reference_events_per_s: raw,
    without_broker_ratio: raw > 0 ? round(ours / raw) : 0,
  };
}

export const consumeTargets: readonly ConsumeTarget[] = [nats, amqpTarget, kafka];

/**
 * Consumes a backlog from NATS JetStream, RabbitMQ and Kafka through `consume()` and an
 * inbox, each against a raw consumer of the same client library applying the same effect
 * without one. Which side goes first alternates from broker to broker.
 */
export const consumeInbox: Scenario = perTarget(consumeTargets, (bench, target, index) =>
  consumeBroker(
    bench,
    target,
    index % 2 === 0 ? ['ours', 'raw', 'raw', 'ours'] : ['raw', 'ours', 'ours', 'raw'],
  ),
);
