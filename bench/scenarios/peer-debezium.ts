import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Consumer, stringDeserializers } from '@platformatic/kafka';
import { createOutbox, type Database } from 'edupulse-outbox';
import pg from 'pg';
import {
  type BenchContext,
  errorMessage,
  median,
  round,
  type Scenario,
  type ScenarioResult,
} from '../context.js';
import { backendCpuSampler, machineBusyMs } from '../cpu.js';
import {
  buildDebeziumPeer,
  DEBEZIUM_VERSION,
  DebeziumProcess,
  debeziumUnavailable,
} from '../debezium.js';
import { BenchTopics } from '../kafka-topics.js';
import {
  type LatencyFigures,
  measureLatency,
  type Produce,
  type StartLatencyPublisher,
} from '../latency.js';
import { type LogicalPostgres, withPrivatePostgres } from '../private-postgres.js';
import { DispatcherProcess, waitUntilEmpty } from '../process.js';
import { quoteSchema } from '../schema.js';
import { delivery, lessonTraffic } from './steady-latency.js';

/**
 * Debezium beside our dispatcher: the same private PostgreSQL (wal_level = logical), the
 * same Kafka, topics of the run's own, each publisher a process of its own (ours the
 * package's `run`, Debezium an embedded engine in a JVM, bench/peers/debezium).
 */

/** Debezium's outbox table, as its outbox event router expects it by default. */
const DBZ_TABLE = 'outboxevent';
/** Rows per transaction when writing a backlog, on both sides. */
const FILL_TRANSACTION = 100;
const AGGREGATES = 10_000;
const PRODUCERS = 8;

interface Run {
  bench: BenchContext;
  server: LogicalPostgres;
  topics: BenchTopics;
}

/**
 * The topic of our lesson events in a scenario (named after its schema, which is unique to
 * it), and our `run`'s broker URL for it.
 */
function ourTopic(run: Run, schema: string): { topic: string; brokerUrl: string } {
  const base = run.bench.settings.kafkaUrl;
  const separator = base.includes('?') ? '&' : '?';
  return {
    topic: `edupulse.${schema}.ours.lesson`,
    brokerUrl: `${base}${separator}topic=edupulse.${schema}.ours.{aggregate_type}`,
  };
}

/** Debezium's topic of the lesson events, `${routedByValue}` being the aggregatetype. */
function debeziumTopic(schema: string, routedByValue = 'lesson'): string {
  return `edupulse.${schema}.dbz.${routedByValue}`;
}

/** Our events carry their id in the CloudEvents header `ce_id`. */
const ourId = (headers: Map<string, string>) => headers.get('ce_id');

/** The outbox router puts the event's id in header `id`, as JSON (`"…"`). */
function debeziumId(headers: Map<string, string>): string | undefined {
  const raw = headers.get('id');
  if (raw === undefined) return undefined;
  try {
    return String(JSON.parse(raw));
  } catch {
    return raw;
  }
}

/** Slot and publication of a schema's Debezium outbox (a server-wide name, per schema). */
function replicationNames(schema: string) {
  return { slot: `${schema}_dbz`, publication: `${schema}_dbz` };
}

/**
 * Debezium's outbox table in `schema`, its publication (inserts only, what the router
 * uses) and its logical slot (pgoutput), created before anything is written to it, as a
 * deployment sets them up before the connector first starts.
 */
async function createDebeziumOutbox(db: Database, schema: string): Promise<void> {
  const s = quoteSchema(schema);
  const { slot, publication } = replicationNames(schema);
  await db.query(
    `CREATE TABLE ${s}.${DBZ_TABLE} (
       id uuid PRIMARY KEY,
       aggregatetype varchar(255) NOT NULL,
       aggregateid varchar(255) NOT NULL,
       type varchar(255) NOT NULL,
       payload jsonb
     )`,
  );
  await db.query(
    `CREATE PUBLICATION "${publication}" FOR TABLE ${s}.${DBZ_TABLE} WITH (publish = 'insert')`,
  );
  await db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
}

/** Drops the slot (no WAL kept for it) and the publication. */
async function dropDebeziumOutbox(db: Database, schema: string): Promise<void> {
  const { slot, publication } = replicationNames(schema);
  await db.query(
    'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
    [slot],
  );
  await db.query(`DROP PUBLICATION IF EXISTS "${publication}"`);
}

function startDebezium(run: Run, schema: string): DebeziumProcess {
  const url = new URL(run.server.url);
  const { slot, publication } = replicationNames(schema);
  return new DebeziumProcess({
    host: url.hostname,
    port: run.server.port,
    user: decodeURIComponent(url.username),
    database: url.pathname.slice(1),
    table: `${schema}.${DBZ_TABLE}`,
    slot,
    publication,
    bootstrapServers: run.topics.bootstrapServers,
    // The outbox router's own placeholder, which it fills in with the aggregatetype.
    topic: debeziumTopic(schema, `\${routedByValue}`),
  });
}

/** The same lesson events as `fill` (about 80 bytes of JSON), row `i` of a backlog. */
const lessonRows = (from: string) => `
  SELECT 'lesson' AS aggregate_type, 'lesson-' || (i % ${AGGREGATES}) AS aggregate_id,
         'lesson-published' AS event_type,
         json_build_object('lesson_id', 'lesson-' || (i % ${AGGREGATES}), 'title', 'Fractions', 'n', i) AS payload
  FROM generate_series(${from}::int, ${from}::int + ${FILL_TRANSACTION - 1}) AS i`;

/** A backlog in our outbox, `FILL_TRANSACTION` events per transaction, then vacuumed. */
async function fillOurs(db: Database, schema: string, count: number): Promise<void> {
  const s = quoteSchema(schema);
  for (let i = 0; i < count; i += FILL_TRANSACTION) {
    await db.query(
      `INSERT INTO ${s}.outbox (aggregate_type, aggregate_id, event_type, payload)
       SELECT aggregate_type, aggregate_id, event_type, payload FROM (${lessonRows('$1')}) AS rows`,
      [i],
    );
  }
  await db.query(`VACUUM ANALYZE ${s}.outbox`);
}

/**
 * The same backlog written as Debezium's outbox is written: each row inserted and deleted
 * in its transaction (the Quarkus outbox extension's default, remove-after-insert), so it
 * lives in the WAL only; `FILL_TRANSACTION` events per transaction.
 */
async function fillDebezium(db: Database, schema: string, count: number): Promise<void> {
  const table = `${quoteSchema(schema)}.${DBZ_TABLE}`;
  for (let i = 0; i < count; i += FILL_TRANSACTION) {
    await db.query(
      `WITH inserted AS (
         INSERT INTO ${table} (id, aggregatetype, aggregateid, type, payload)
         SELECT gen_random_uuid(), aggregate_type, aggregate_id, event_type, payload
         FROM (${lessonRows('$1')}) AS rows
         RETURNING id)
       DELETE FROM ${table} AS o USING inserted WHERE o.id = inserted.id`,
      [i],
    );
  }
}

interface Publisher {
  pid: number;
  memory(): Promise<{ peakMb: number; rssMb: number } | undefined>;
  assertRunning(): void;
  stop(): Promise<void>;
  kill(): void;
}

interface DrainSide {
  /** Backlog ÷ (last append − first append), the broker's clock. */
  eventsPerS: number;
  /** From spawning the process to the last append: start-up included. */
  secondsFromStart: number;
  peakRssMb: number;
  /** Distinct event ids read back from the topic (must be the backlog). */
  delivered: number;
}

/**
 * Starts a publisher on a backlog of `backlog` events and waits until its topic holds them
 * all; samples the process's memory every 100 ms meanwhile, then reads the topic back.
 */
async function drainSide(
  run: Run,
  topic: string,
  backlog: number,
  start: () => Publisher,
  idOf: (headers: Map<string, string>) => string | undefined,
): Promise<DrainSide> {
  const startedMs = Date.now();
  const publisher = start();
  let peakRssMb = 0;
  let sampling = true;
  const sample = async () => {
    const memory = await publisher.memory();
    if (memory) peakRssMb = Math.max(peakRssMb, memory.peakMb, memory.rssMb);
  };
  const sampler = (async () => {
    while (sampling) {
      await sample();
      await sleep(100);
    }
  })();
  try {
    await run.topics.waitForCount(topic, backlog, {
      intervalMs: 200,
      onPoll: () => publisher.assertRunning(),
    });
    sampling = false;
    await sampler;
    await sample();
    await publisher.stop();
  } finally {
    sampling = false;
    publisher.kill();
  }
  const appended = await run.topics.appended(topic, backlog, idOf);
  const seconds = Math.max(appended.lastMs - appended.firstMs, 1) / 1000;
  return {
    eventsPerS: Math.round(backlog / seconds),
    secondsFromStart: round((appended.lastMs - startedMs) / 1000, 1),
    peakRssMb,
    delivered: appended.distinct,
  };
}

async function drainResult(run: Run): Promise<ScenarioResult> {
  const backlog = run.bench.backlog;
  return run.bench.withSchema(async (db, schema) => {
    const ours = ourTopic(run, schema);
    await run.topics.create(ours.topic);
    run.bench.log(`peer-debezium-drain: ${backlog} events in our outbox`);
    await fillOurs(db, schema, backlog);
    // Defaults, as peer-debezium-latency runs it: batches of 500. (The other drains give
    // 1000 to match their raw baselines; to Kafka it cost more CPU and memory, see README.)
    run.bench.log('peer-debezium-drain: our dispatcher (a run process, defaults)');
    const ourSide = await drainSide(
      run,
      ours.topic,
      backlog,
      () => new DispatcherProcess(run.server.url, schema, [], ours.brokerUrl),
      ourId,
    );

    // The slot is made after our drain, so Debezium decodes only its own backlog.
    const topic = debeziumTopic(schema);
    await run.topics.create(topic);
    await createDebeziumOutbox(db, schema);
    try {
      run.bench.log(`peer-debezium-drain: ${backlog} events through Debezium's outbox`);
      await fillDebezium(db, schema, backlog);
      run.bench.log(`peer-debezium-drain: Debezium ${DEBEZIUM_VERSION} (embedded engine)`);
      const theirs = await drainSide(
        run,
        topic,
        backlog,
        () => startDebezium(run, schema),
        debeziumId,
      );
      const ratio = round(ourSide.eventsPerS / theirs.eventsPerS);
      const memoryRatio = round(ourSide.peakRssMb / theirs.peakRssMb);
      const rateMet = ratio >= 1.5;
      const memoryMet = ourSide.peakRssMb <= theirs.peakRssMb / 3;
      return {
        name: 'peer-debezium-drain',
        backlog,
        events_per_s: ourSide.eventsPerS,
        debezium_events_per_s: theirs.eventsPerS,
        ratio,
        seconds_from_start: ourSide.secondsFromStart,
        debezium_seconds_from_start: theirs.secondsFromStart,
        peak_rss_mb: round(ourSide.peakRssMb, 1),
        debezium_peak_rss_mb: round(theirs.peakRssMb, 1),
        rss_ratio: memoryRatio,
        delivered: ourSide.delivered,
        debezium_delivered: theirs.delivered,
        target: 'ratio ≥ 1.5; rss_ratio ≤ 0.33',
        rate_met: rateMet,
        rss_met: memoryMet,
        met: rateMet && memoryMet && ourSide.delivered === backlog && theirs.delivered === backlog,
      };
    } finally {
      await dropDebeziumOutbox(db, schema);
    }
  });
}

// ---------------------------------------------------------------- latency

interface TopicReader {
  bootstrapServers: string[];
  topic: string;
  groupId: string;
  debezium: boolean;
  /** Keys (aggregate ids) of the warm-up events, which are not measured. */
  warmUpKeys: string[];
  /** How many warm-up events to read before the producers may start. */
  warmUpEvents: number;
}

/**
 * In the latency worker: a consumer of the run's topic, reporting each event's id as it
 * arrives (the same consumer, and clock, for both publishers). Ready once it has read every
 * warm-up event (written before it started), so the whole path, the consumer included, has
 * run before the producers start; warm-up events are known by their keys and not reported.
 */
export const startLatencyPublisher: StartLatencyPublisher<TopicReader> = async (options, acked) => {
  const consumer = new Consumer({
    clientId: 'edupulse-bench',
    groupId: options.groupId,
    bootstrapBrokers: options.bootstrapServers,
    deserializers: stringDeserializers,
    maxWaitTime: 500,
    autocommit: false,
  });
  const idOf = options.debezium ? debeziumId : ourId;
  const warmUpKeys = new Set(options.warmUpKeys);
  let warmUpRead = 0;
  let warmed: () => void = () => {};
  const warmedUp = new Promise<void>((resolve) => {
    warmed = resolve;
  });
  const stream = await consumer.consume({ topics: [options.topic], mode: 'earliest' });
  stream.on('data', (message) => {
    if (warmUpKeys.has(message.key)) {
      if (++warmUpRead >= options.warmUpEvents) warmed();
      return;
    }
    const id = idOf(message.headers);
    if (id !== undefined) acked(id);
  });
  const timeout = sleep(180_000, 'timeout' as const, { ref: false });
  if ((await Promise.race([warmedUp.then(() => 'read' as const), timeout])) === 'timeout') {
    throw new Error(
      `the latency consumer read ${warmUpRead} of ${options.warmUpEvents} warm-up events from ${options.topic} in 180 s`,
    );
  }
  return async () => {
    await stream.close().catch(() => {});
    // The callback form: the promise overload is not picked for close(true).
    await new Promise<void>((resolve) => consumer.close(true, () => resolve()));
  };
};

/** One lesson-published per transaction through the public enqueue API. */
function enqueueOurs(schema: string, traffic = lessonTraffic()): Produce {
  const outbox = createOutbox({ schema });
  return async (client, n) => {
    const [id] = await outbox.enqueue(client, traffic(n));
    return id as string;
  };
}

/**
 * One event per transaction into Debezium's outbox as its Quarkus extension writes it by
 * default: INSERT, then DELETE of the same row (remove-after-insert), in the caller's
 * transaction.
 */
function insertDebezium(schema: string, traffic = lessonTraffic()): Produce {
  const table = `${quoteSchema(schema)}.${DBZ_TABLE}`;
  return async (client, n) => {
    const event = traffic(n);
    const id = randomUUID();
    await client.query(
      `INSERT INTO ${table} (id, aggregatetype, aggregateid, type, payload) VALUES ($1, $2, $3, $4, $5)`,
      [id, event.aggregateType, event.aggregateId, event.type, JSON.stringify(event.payload)],
    );
    await client.query(`DELETE FROM ${table} WHERE id = $1`, [id]);
    return id;
  };
}

/** Writes one event with `produce` in a transaction of its own and waits until `topic` holds it. */
async function warmUp(run: Run, produce: Produce, topic: string): Promise<void> {
  const client = new pg.Client(run.server.url);
  await client.connect();
  try {
    await client.query('BEGIN');
    await produce(client as unknown as pg.PoolClient, 0);
    await client.query('COMMIT');
  } finally {
    await client.end();
  }
  await run.topics.waitForCount(topic, 1, { intervalMs: 50, timeoutMs: 120_000 });
}

/** Warm-up traffic before a latency measurement: events over aggregates of its own. */
const WARM_UP_EVENTS = 2000;
const WARM_UP_AGGREGATES = 100;

/**
 * Writes `WARM_UP_EVENTS` with `produceFor(traffic)` (8 producers, each event its own
 * transaction, as fast as they go), then measures: the JIT of either runtime (the JVM's
 * most) and every connection on the path have run before the measured phase.
 */
async function latencySide(
  run: Run,
  topic: string,
  produceFor: (traffic: ReturnType<typeof lessonTraffic>) => Produce,
  debezium: boolean,
): Promise<LatencyFigures> {
  const warmUpKeys = Array.from({ length: WARM_UP_AGGREGATES }, () => randomUUID());
  const warmUp = produceFor(lessonTraffic(warmUpKeys));
  const clients = Array.from({ length: PRODUCERS }, () => new pg.Client(run.server.url));
  try {
    await Promise.all(clients.map((client) => client.connect()));
    await Promise.all(
      clients.map(async (client, p) => {
        for (let n = p; n < WARM_UP_EVENTS; n += PRODUCERS) {
          await client.query('BEGIN');
          await warmUp(client as unknown as pg.PoolClient, n);
          await client.query('COMMIT');
        }
      }),
    );
  } finally {
    await Promise.all(clients.map((client) => client.end().catch(() => {})));
  }
  const groupId = `edupulse-bench-latency-${topic}`;
  run.topics.own(groupId);
  return measureLatency(run.bench, produceFor(lessonTraffic()), {
    module: import.meta.url,
    options: {
      bootstrapServers: run.topics.bootstrapServers,
      topic,
      groupId,
      debezium,
      warmUpKeys,
      warmUpEvents: WARM_UP_EVENTS,
    },
  });
}

async function latencyResult(run: Run): Promise<ScenarioResult> {
  const ours = await run.bench.withSchema(async (_db, schema) => {
    const { topic, brokerUrl } = ourTopic(run, schema);
    await run.topics.create(topic);
    run.bench.log('peer-debezium-latency: our dispatcher (a run process, defaults)');
    const dispatcher = new DispatcherProcess(run.server.url, schema, [], brokerUrl);
    try {
      return await latencySide(run, topic, (traffic) => enqueueOurs(schema, traffic), false);
    } finally {
      await dispatcher.stop().catch(() => dispatcher.kill());
    }
  });
  const theirs = await run.bench.withSchema(async (db, schema) => {
    const topic = debeziumTopic(schema);
    await run.topics.create(topic);
    await createDebeziumOutbox(db, schema);
    const debezium = startDebezium(run, schema);
    try {
      run.bench.log('peer-debezium-latency: Debezium (waiting for the engine to start)');
      await debezium.whenReady();
      return await latencySide(run, topic, (traffic) => insertDebezium(schema, traffic), true);
    } finally {
      await debezium.stop().catch(() => debezium.kill());
      await dropDebeziumOutbox(db, schema);
    }
  });
  const complete = ours.unacknowledged === 0 && theirs.unacknowledged === 0;
  return {
    name: 'peer-debezium-latency',
    events: ours.events,
    events_per_s: ours.events_per_s,
    p50_ms: ours.p50_ms,
    p95_ms: ours.p95_ms,
    p99_ms: ours.p99_ms,
    max_ms: ours.max_ms,
    late_events: ours.late_events,
    delivery: delivery(ours),
    debezium_events: theirs.events,
    debezium_events_per_s: theirs.events_per_s,
    debezium_p50_ms: theirs.p50_ms,
    debezium_p95_ms: theirs.p95_ms,
    debezium_p99_ms: theirs.p99_ms,
    debezium_max_ms: theirs.max_ms,
    debezium_late_events: theirs.late_events,
    debezium_delivery: delivery(theirs),
    p99_ratio: round(ours.p99_ms / theirs.p99_ms),
    target: 'p99_ms ≤ ½ debezium_p99_ms',
    met: complete && ours.p99_ms <= theirs.p99_ms / 2,
  };
}

// ---------------------------------------------------------------- producer cost

interface Side {
  produce: Produce;
  /** Commits per second, one entry per round. */
  rates: number[];
  /** Per round, µs of CPU per commit in the producers' backends, and everywhere else on the machine. */
  producerUs: number[];
  elsewhereUs: number[];
  /** Resolves once the side's publisher has published everything committed so far. */
  settle(): Promise<unknown>;
}

/**
 * Medians over the rounds of each side's CPU per commit: in the producers' backends (the
 * transaction's own cost to the server) and elsewhere (what publishing it cost the machine).
 * Empty where the CPU could not be read (a server on another machine).
 */
function cpuFigures(ours: Side, theirs: Side): Record<string, number> {
  if (ours.producerUs.length === 0 || theirs.producerUs.length === 0) return {};
  return {
    producer_backend_us_per_commit: round(median(ours.producerUs)),
    debezium_producer_backend_us_per_commit: round(median(theirs.producerUs)),
    elsewhere_us_per_commit: round(median(ours.elsewhereUs)),
    debezium_elsewhere_us_per_commit: round(median(theirs.elsewhereUs)),
  };
}

/** The producers' connections, whose backends' CPU a round measures. */
const PRODUCER_APPLICATION = 'edupulse-bench-producers';

/**
 * One side's round and the wait until its publisher has published it, with where the CPU
 * went: the producers' backends, and the rest of the machine (the publisher, its
 * database sessions or walsender, Kafka, the producers' client), each per commit.
 */
async function measuredRound(
  databaseUrl: string,
  clients: readonly pg.Client[],
  side: Side,
  seconds: number,
  /** Told the round's commits before the wait (what Debezium's topic must then hold). */
  committed: (commits: number) => void,
): Promise<void> {
  const backends = await backendCpuSampler(
    databaseUrl,
    { applicationNames: [PRODUCER_APPLICATION], pids: () => [] },
    // stop() waits out the sampler's current interval.
    250,
  );
  const busyBefore = machineBusyMs();
  const result = await commitRound(clients, side.produce, seconds);
  committed(result.commits);
  await side.settle();
  const busyAfter = machineBusyMs();
  const producers = await backends?.stop();
  side.rates.push(result.rate);
  if (producers && busyBefore !== undefined && busyAfter !== undefined && result.commits > 0) {
    const perCommit = (ms: number) => round((ms * 1000) / result.commits);
    side.producerUs.push(perCommit(producers.postgres_cpu_ms));
    side.elsewhereUs.push(perCommit(busyAfter - busyBefore - producers.postgres_cpu_ms));
  }
}

/** Commits per second of `PRODUCERS` clients, one event per transaction, for `seconds`. */
async function commitRound(
  clients: readonly pg.Client[],
  produce: Produce,
  seconds: number,
): Promise<{ rate: number; commits: number }> {
  const started = process.hrtime.bigint();
  const deadline = Date.now() + seconds * 1000;
  const counts = await Promise.all(
    clients.map(async (client, producer) => {
      let commits = 0;
      while (Date.now() < deadline) {
        await client.query('BEGIN');
        await produce(client as unknown as pg.PoolClient, producer * 7919 + commits);
        await client.query('COMMIT');
        commits++;
      }
      return commits;
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  const commits = counts.reduce((sum, n) => sum + n, 0);
  return { rate: commits / elapsed, commits };
}

/**
 * Both publishers running (ours a `run` process on our outbox as migrated, Debezium with
 * its slot active), producers writing to one side at a time in alternating rounds; after
 * each round, a wait until that side has published it, so a round never pays for the
 * other's backlog.
 */
async function producerCostResult(run: Run): Promise<ScenarioResult> {
  const rounds = run.bench.settings.quick ? 5 : 10;
  const roundSeconds = run.bench.settings.quick ? 1 : 2;
  return run.bench.withSchema(
    async (db, schema) => {
      const ours = ourTopic(run, schema);
      const theirTopic = debeziumTopic(schema);
      await run.topics.create(ours.topic);
      await run.topics.create(theirTopic);
      await createDebeziumOutbox(db, schema);
      const dispatcher = new DispatcherProcess(run.server.url, schema, [], ours.brokerUrl);
      const debezium = startDebezium(run, schema);
      const clients = Array.from(
        { length: PRODUCERS },
        () =>
          new pg.Client({
            connectionString: run.server.url,
            application_name: PRODUCER_APPLICATION,
          }),
      );
      try {
        run.bench.log('peer-debezium-producer-cost: waiting for Debezium to start');
        await debezium.whenReady();
        await Promise.all(clients.map((client) => client.connect()));
        let debeziumCommitted = 0;
        const oursSide: Side = {
          produce: enqueueOurs(schema),
          rates: [],
          producerUs: [],
          elsewhereUs: [],
          // Our dispatcher has published what was committed once the outbox is empty.
          settle: () =>
            waitUntilEmpty(db, schema, Number.MAX_SAFE_INTEGER, {
              timeoutMs: 60_000,
              onPoll: () => dispatcher.assertRunning(),
            }),
        };
        const theirSide: Side = {
          produce: insertDebezium(schema),
          rates: [],
          producerUs: [],
          elsewhereUs: [],
          // Debezium's table stays empty: its topic must hold every event committed.
          settle: () =>
            run.topics.waitForCount(theirTopic, debeziumCommitted, {
              timeoutMs: 60_000,
              onPoll: () => debezium.assertRunning(),
            }),
        };
        const sides = [oursSide, theirSide];
        // Each side's pipeline carries one event before the rounds start.
        await warmUp(run, oursSide.produce, ours.topic);
        await warmUp(run, theirSide.produce, theirTopic);
        debeziumCommitted = 1;
        const ratios: number[] = [];
        for (let r = 0; r < rounds; r++) {
          for (let i = 0; i < sides.length; i++) {
            const side = sides[(r + i) % sides.length] as Side;
            await measuredRound(run.server.url, clients, side, roundSeconds, (commits) => {
              if (side === theirSide) debeziumCommitted += commits;
            });
          }
          ratios.push((oursSide.rates[r] as number) / (theirSide.rates[r] as number));
          const cpu = (side: Side) =>
            side.producerUs[r] === undefined
              ? ''
              : ` (CPU per commit: ${side.producerUs[r]} µs in its backend, ${side.elsewhereUs[r]} µs elsewhere)`;
          run.bench.log(
            `peer-debezium-producer-cost: round ${r + 1}: ours ${Math.round(oursSide.rates[r] as number)}/s${cpu(oursSide)}, Debezium's table ${Math.round(theirSide.rates[r] as number)}/s${cpu(theirSide)}`,
          );
        }
        const ratio = round(median(ratios));
        return {
          name: 'peer-debezium-producer-cost',
          producers: PRODUCERS,
          rounds,
          round_seconds: roundSeconds,
          commits_per_s: Math.round(median(oursSide.rates)),
          debezium_commits_per_s: Math.round(median(theirSide.rates)),
          ratio,
          ratio_range: `${round(Math.min(...ratios))}–${round(Math.max(...ratios))}`,
          ...cpuFigures(oursSide, theirSide),
          target: 'ratio ≥ 1.0',
          met: ratio >= 1,
        };
      } finally {
        await Promise.all(clients.map((client) => client.end().catch(() => {})));
        await debezium.stop().catch(() => debezium.kill());
        await dispatcher.stop().catch(() => dispatcher.kill());
        await dropDebeziumOutbox(db, schema);
      }
    },
    { maxConnections: 2 },
  );
}

// ---------------------------------------------------------------- the scenario

const NAMES = ['peer-debezium-drain', 'peer-debezium-latency', 'peer-debezium-producer-cost'];

/**
 * Against Debezium: draining a backlog to Kafka (events/s and peak RSS), commit → Kafka
 * latency under steady traffic, and what each costs a producer's commit; all on one private
 * PostgreSQL with wal_level = logical, started for the run.
 */
export const peerDebezium: Scenario = {
  names: NAMES,
  async run(bench, only) {
    const wanted = NAMES.filter((name) => only.has(name));
    const skip = (skipped: string) => wanted.map((name) => ({ name, skipped }));
    const unavailable = await debeziumUnavailable();
    if (unavailable) return skip(unavailable);
    const topics = new BenchTopics(bench.settings.kafkaUrl);
    try {
      await topics.check();
    } catch (error) {
      await topics.close().catch(() => {});
      return skip(`Kafka not reachable: ${errorMessage(error)}`);
    }
    try {
      await buildDebeziumPeer((line) => bench.log(line));
      const results = await withPrivatePostgres(bench, async ({ bench: onPrivate, server }) => {
        const run: Run = { bench: onPrivate, server, topics };
        const measured: ScenarioResult[] = [];
        if (only.has('peer-debezium-drain')) measured.push(await drainResult(run));
        if (only.has('peer-debezium-latency')) measured.push(await latencyResult(run));
        if (only.has('peer-debezium-producer-cost')) measured.push(await producerCostResult(run));
        return measured;
      });
      return 'skipped' in results ? skip(results.skipped) : results;
    } finally {
      await topics
        .close()
        .catch((error) => bench.log(`peer-debezium: cleanup failed: ${errorMessage(error)}`));
    }
  },
};
