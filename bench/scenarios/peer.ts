import { randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { brokerFromUrl, createDispatcher, type Database } from 'edupulse-outbox';
import pg from 'pg';
import {
  type BenchContext,
  errorMessage,
  round,
  type Scenario,
  type ScenarioResult,
  secondsSince,
} from '../context.js';
import { connectJetStream, createBenchStream } from '../jetstream.js';
import { measureLatency, type Produce, type StartLatencyPublisher } from '../latency.js';
import { withPrivatePostgres } from '../private-postgres.js';
import { quoteSchema } from '../schema.js';
import { delivery, lessonTraffic, ourLatency } from './steady-latency.js';

/**
 * The peer: pg-transactional-outbox (npm), the TypeScript outbox for PostgreSQL closest to
 * ours. It is a devDependency, loaded with import() so the other scenarios run without it.
 */
type Peer = typeof import('pg-transactional-outbox');

const PACKAGE = 'pg-transactional-outbox';
const TABLE = 'peer_outbox';
const NEXT_MESSAGES = 'peer_next_outbox_messages';

async function loadPeer(): Promise<Peer | undefined> {
  try {
    return (await import(PACKAGE)) as Peer;
  } catch {
    return undefined;
  }
}

/**
 * The peer's polling listener as its README sets up an outbox (max-attempts and poison
 * protection off, its outbox defaults; maxAttempts left at 5), tuned: 500 messages per
 * poll and in flight (`nextMessagesBatchSize`, default 5; the same as our default batch),
 * a handler pool of 50 connections (pg's default is 10), polled every 100 ms (default
 * 500). Of 5, 20, 50, 200, 500, 1000 and 2000 per poll, 500 drained fastest here; 50 and
 * 100 gave the same latency. Its automatic cleanup of processed rows is off during the
 * measurement (by default it would delete none younger than 7 days anyway).
 */
const PEER_TUNING = {
  nextMessagesBatchSize: 500,
  nextMessagesPollingIntervalInMs: 100,
  handlerConnections: 50,
} as const;

function peerSettings(schema: string) {
  return {
    dbSchema: schema,
    dbTable: TABLE,
    enableMaxAttemptsProtection: false,
    enablePoisonousMessageProtection: false,
    messageCleanupIntervalInMs: 0,
    nextMessagesFunctionSchema: schema,
    nextMessagesFunctionName: NEXT_MESSAGES,
    nextMessagesBatchSize: PEER_TUNING.nextMessagesBatchSize,
    nextMessagesPollingIntervalInMs: PEER_TUNING.nextMessagesPollingIntervalInMs,
  };
}

/**
 * The peer's table, polling function and indexes, from its own DatabaseSetup. Its
 * scripts name indexes without a schema, hence the search_path.
 */
async function createPeerTable(peer: Peer, databaseUrl: string, schema: string): Promise<void> {
  const config = {
    outboxOrInbox: 'outbox' as const,
    database: '',
    schema,
    table: TABLE,
    listenerRole: '',
    nextMessagesSchema: schema,
    nextMessagesName: NEXT_MESSAGES,
  };
  const client = new pg.Client(databaseUrl);
  await client.connect();
  try {
    await client.query(`SET search_path TO ${quoteSchema(schema)}`);
    await client.query(peer.DatabaseSetup.dropAndCreateTable(config));
    await client.query(peer.DatabaseSetup.createPollingFunction(config));
    await client.query(peer.DatabaseSetup.setupPollingIndexes(config));
  } finally {
    await client.end();
  }
}

interface PeerOptions {
  databaseUrl: string;
  schema: string;
  natsUrl: string;
  subjectPrefix: string;
}

/**
 * Starts the peer's polling listener with a message handler that publishes each message
 * to JetStream and awaits its PubAck, as our NATS broker does (with `Nats-Msg-Id` = the
 * peer's message id; without our CloudEvents headers, which only makes the peer's publish
 * lighter).
 */
async function startPeerListener(
  peer: Peer,
  options: PeerOptions,
  acked: (id: string) => void,
): Promise<() => Promise<void>> {
  const { nc, js } = await connectJetStream(options.natsUrl);
  const encoder = new TextEncoder();
  const listenerConfig = { connectionString: options.databaseUrl, application_name: 'peer-bench' };
  const [shutdown] = peer.initializePollingMessageListener(
    {
      outboxOrInbox: 'outbox',
      dbListenerConfig: listenerConfig,
      // Each message is handled in a transaction of its own on this pool.
      dbHandlerConfig: { ...listenerConfig, max: PEER_TUNING.handlerConnections } as pg.PoolConfig,
      settings: peerSettings(options.schema),
    },
    {
      async handle(message) {
        await js.publish(
          `${options.subjectPrefix}.${message.aggregateType}.${message.messageType}`,
          encoder.encode(JSON.stringify(message.payload)),
          { msgID: message.id, timeout: 5000 },
        );
        acked(message.id);
      },
    },
    peer.getDisabledLogger(),
    // The full batch from the first poll: the default takes one message per poll until
    // it has polled batch-size times, a guard against poisonous messages, which the peer
    // leaves off for outboxes as we do here.
    { batchSizeStrategy: async () => PEER_TUNING.nextMessagesBatchSize },
  );
  return async () => {
    await shutdown();
    await nc.drain();
  };
}

/** The peer in the latency worker. */
export const startLatencyPublisher: StartLatencyPublisher<PeerOptions> = async (options, acked) => {
  const peer = (await loadPeer()) as Peer;
  return startPeerListener(peer, options, acked);
};

/** One lesson-published per transaction through the peer's own storage API. */
function storeLesson(peer: Peer, schema: string): Produce {
  const store = peer.initializeMessageStorage(
    { outboxOrInbox: 'outbox', settings: peerSettings(schema) },
    peer.getDisabledLogger(),
  );
  const traffic = lessonTraffic();
  return async (client, n) => {
    const event = traffic(n);
    const id = randomUUID();
    // segment = aggregate: the peer's way to keep one aggregate's messages in order
    // while others go in parallel, which is what our dispatcher guarantees.
    await store(
      {
        id,
        aggregateType: event.aggregateType,
        aggregateId: event.aggregateId,
        messageType: event.type,
        segment: event.aggregateId,
        payload: event.payload,
      },
      client,
    );
    return id;
  };
}

/** Seconds until `count` events are acknowledged, or undefined after `limitS`. */
function timeUntil(count: number, limitS: number) {
  const started = process.hrtime.bigint();
  const acked = new Set<string>();
  let finish: (seconds: number | undefined) => void = () => {};
  const done = new Promise<number | undefined>((resolve) => {
    finish = resolve;
  });
  const timer = setTimeout(() => finish(undefined), limitS * 1000);
  return {
    acked: (id: string) => {
      acked.add(id);
      if (acked.size === count) {
        clearTimeout(timer);
        finish(secondsSince(started));
      }
    },
    done,
    count: () => acked.size,
    elapsed: () => secondsSince(started),
  };
}

/** Our dispatcher (batch 1000, as in the drain scenarios) drains the backlog to NATS. */
async function ourDrain(bench: BenchContext, db: Database, schema: string): Promise<number> {
  const stream = await createBenchStream(bench.settings.natsUrl, 'peer-ours');
  try {
    const broker = brokerFromUrl(stream.brokerUrl, { source: '/edupulse-bench' });
    const dispatcher = createDispatcher({ db, schema, broker, batchSize: 1000, logger: false });
    const started = process.hrtime.bigint();
    const done = new Promise<void>((resolve) =>
      dispatcher.on('batch', () => dispatcher.stats.published >= bench.backlog && resolve()),
    );
    await dispatcher.start();
    await done;
    const seconds = secondsSince(started);
    await dispatcher.stop();
    return seconds;
  } finally {
    await stream.remove();
  }
}

/**
 * The peer drains the same events from its own table, stopped after `limitS` if it has
 * not finished, its rate taken from what it published by then. That flatters it: its
 * polls get slower as processed rows pile up in its table (measured on 50,000: about
 * 500 events/s over the first 30 s, 83 events/s over the whole drain of 600 s).
 */
async function peerDrain(
  bench: BenchContext,
  peer: Peer,
  schema: string,
  limitS: number,
): Promise<{ drained: number; seconds: number }> {
  const stream = await createBenchStream(bench.settings.natsUrl, 'peer');
  try {
    const progress = timeUntil(bench.backlog, limitS);
    const stop = await startPeerListener(
      peer,
      {
        databaseUrl: bench.settings.databaseUrl,
        schema,
        natsUrl: bench.settings.natsUrl,
        subjectPrefix: stream.subjectPrefix,
      },
      progress.acked,
    );
    const seconds = (await progress.done) ?? progress.elapsed();
    const drained = progress.count();
    await stop();
    return { drained, seconds };
  } finally {
    await stream.remove();
  }
}

async function drainResult(bench: BenchContext, peer: Peer): Promise<ScenarioResult> {
  const backlog = bench.backlog;
  const limitS = bench.settings.quick ? 60 : 120;
  return bench.withSchema(async (db, schema) => {
    bench.log(`peer-drain: ${backlog} events in both outboxes`);
    await bench.fill(db, schema, backlog);
    await createPeerTable(peer, bench.settings.databaseUrl, schema);
    // The same events, in the same order, with the aggregate as the peer's segment.
    const s = quoteSchema(schema);
    await db.query(
      `INSERT INTO ${s}.${TABLE} (id, aggregate_type, aggregate_id, message_type, segment, payload)
       SELECT id, aggregate_type, aggregate_id, event_type, aggregate_id, payload
       FROM ${s}.outbox ORDER BY seq`,
    );
    await db.query(`VACUUM ANALYZE ${s}.${TABLE}`);
    bench.log('peer-drain: our dispatcher');
    const ours = await ourDrain(bench, db, schema);
    bench.log(`peer-drain: the peer's polling listener (at most ${limitS} s)`);
    const theirs = await peerDrain(bench, peer, schema, limitS);
    const events_per_s = Math.round(backlog / ours);
    const peer_events_per_s = Math.round(theirs.drained / theirs.seconds);
    const ratio = round(events_per_s / peer_events_per_s);
    return {
      name: 'peer-drain',
      backlog,
      events_per_s,
      peer_events_per_s,
      peer_drained: theirs.drained,
      ratio,
      target: 'ratio ≥ 5',
      met: ratio >= 5,
    };
  });
}

async function latencyResult(bench: BenchContext, peer: Peer): Promise<ScenarioResult> {
  bench.log('peer-latency: our dispatcher (NOTIFY)');
  const ours = await ourLatency(bench, true);
  bench.log("peer-latency: the peer's polling listener");
  const stream = await createBenchStream(bench.settings.natsUrl, 'peer-latency');
  try {
    const theirs = await bench.withSchema(async (_db, schema) => {
      await createPeerTable(peer, bench.settings.databaseUrl, schema);
      return measureLatency(bench, storeLesson(peer, schema), {
        module: import.meta.url,
        options: {
          databaseUrl: bench.settings.databaseUrl,
          schema,
          natsUrl: bench.settings.natsUrl,
          subjectPrefix: stream.subjectPrefix,
        },
      });
    });
    return {
      name: 'peer-latency',
      events: theirs.events,
      peer_p50_ms: theirs.p50_ms,
      peer_p95_ms: theirs.p95_ms,
      peer_p99_ms: theirs.p99_ms,
      peer_max_ms: theirs.max_ms,
      peer_late_events: theirs.late_events,
      peer_delivery: delivery(theirs),
      p50_ms: ours.p50_ms,
      p95_ms: ours.p95_ms,
      p99_ms: ours.p99_ms,
      max_ms: ours.max_ms,
      late_events: ours.late_events,
      delivery: delivery(ours),
      p99_ratio: round(theirs.p99_ms / ours.p99_ms),
    };
  } finally {
    await stream.remove();
  }
}

/** Rows per transaction of the peer's backlog for its logical-replication listener. */
const REPLICATION_FILL_TRANSACTION = 100;

/**
 * The heap the peer's logical-replication listener may use. It reads its slot faster than
 * it publishes and keeps what it has read (1.7 GB after 60 s of a 50,000-event backlog,
 * measured): unbounded, a full run's backlog ran the benchmark itself out of memory.
 */
const PEER_REPLICATION_HEAP_MB = 2048;

/** What the peer-logical worker is given: where the peer reads and publishes, and how far. */
export interface PeerReplicationWork extends PeerOptions {
  publication: string;
  slot: string;
  /** Events to wait for. */
  count: number;
  /** Seconds to wait at most. */
  limitS: number;
}

/**
 * The peer's logical-replication listener (`initializeReplicationMessageListener`), with
 * the same JetStream handler as its polling listener. Messages of one segment (= aggregate)
 * one after the other, segments in parallel (`createReplicationSegmentMutexConcurrencyController`;
 * the default handles every message one at a time), so it keeps the order we keep.
 * Run by peer-logical-worker.js.
 */
export async function startPeerReplication(
  options: PeerReplicationWork,
  acked: (id: string) => void,
): Promise<() => Promise<void>> {
  const peer = await loadPeer();
  if (!peer) throw new Error(`${PACKAGE} is not installed`);
  const { nc, js } = await connectJetStream(options.natsUrl);
  const encoder = new TextEncoder();
  const listenerConfig = { connectionString: options.databaseUrl, application_name: 'peer-bench' };
  const [shutdown] = peer.initializeReplicationMessageListener(
    {
      outboxOrInbox: 'outbox',
      dbListenerConfig: listenerConfig,
      dbHandlerConfig: { ...listenerConfig, max: PEER_TUNING.handlerConnections } as pg.PoolConfig,
      settings: {
        dbSchema: options.schema,
        dbTable: TABLE,
        dbPublication: options.publication,
        dbReplicationSlot: options.slot,
        enableMaxAttemptsProtection: false,
        enablePoisonousMessageProtection: false,
        messageCleanupIntervalInMs: 0,
      },
    },
    {
      async handle(message) {
        await js.publish(
          `${options.subjectPrefix}.${message.aggregateType}.${message.messageType}`,
          encoder.encode(JSON.stringify(message.payload)),
          { msgID: message.id, timeout: 5000 },
        );
        acked(message.id);
      },
    },
    peer.getDisabledLogger(),
    { concurrencyStrategy: peer.createReplicationSegmentMutexConcurrencyController() },
  );
  return async () => {
    await shutdown();
    await nc.drain();
  };
}

/** What the peer's logical-replication listener did in its worker. */
interface PeerReplicationRun {
  drained: number;
  seconds: number;
  /** The most of its heap it used, in MiB. */
  heapMb: number;
  unhandled: number;
  /** Why it stopped before its time, when it did. */
  failed?: string;
}

/** What peer-logical-worker.js posts: when its clock starts, how far it got, what it did. */
type PeerWorkerMessage =
  | { type: 'started' }
  | { type: 'progress'; acked: number; heapMb: number }
  | { type: 'done'; acked: number; heapMb: number; seconds: number; unhandled: number };

/**
 * Runs the peer's logical-replication listener in a worker thread under a heap limit and
 * returns what it drained by the time every event was acknowledged, its time was up, or
 * the worker ended (out of memory, say: then as far as its last progress report).
 */
async function peerReplicationInWorker(work: PeerReplicationWork): Promise<PeerReplicationRun> {
  const worker = new Worker(new URL('../peer-logical-worker.js', import.meta.url), {
    workerData: work,
    resourceLimits: { maxOldGenerationSizeMb: PEER_REPLICATION_HEAP_MB },
  });
  let started: bigint | undefined;
  let last = { acked: 0, heapMb: 0 };
  const ended = (failed: string): PeerReplicationRun => ({
    drained: last.acked,
    seconds: started === undefined ? 0 : secondsSince(started),
    heapMb: last.heapMb,
    unhandled: 0,
    failed,
  });
  try {
    return await new Promise<PeerReplicationRun>((resolve) => {
      worker.on('message', (message: PeerWorkerMessage) => {
        if (message.type === 'started') started = process.hrtime.bigint();
        else if (message.type === 'progress') last = message;
        else {
          const { acked, seconds, heapMb, unhandled } = message;
          resolve({ drained: acked, seconds, heapMb, unhandled });
        }
      });
      worker.once('error', (error: Error & { code?: string }) =>
        resolve(
          ended(
            error.code === 'ERR_WORKER_OUT_OF_MEMORY'
              ? `its listener ran out of its ${PEER_REPLICATION_HEAP_MB} MiB heap`
              : errorMessage(error),
          ),
        ),
      );
      worker.once('exit', (code) => resolve(ended(`its worker exited (${code})`)));
    });
  } finally {
    // After 'done' the worker is stopping its listener; it is ended either way.
    await worker.terminate();
  }
}

/**
 * On a private PostgreSQL with `wal_level = logical`: our dispatcher drains a backlog to
 * NATS, then the peer's logical-replication listener drains the same number of events from
 * its own table through a publication (inserts only, as its DatabaseSetup makes it) and a
 * pgoutput slot made after our drain, so it decodes only its own backlog. Given at most
 * 120 s (60 s quick), its rate taken from what it published by then, as in peer-drain.
 */
async function logicalResult(bench: BenchContext, peer: Peer): Promise<ScenarioResult> {
  const limitS = bench.settings.quick ? 60 : 120;
  const result = await withPrivatePostgres(bench, ({ bench: onPrivate }) =>
    onPrivate.withSchema(async (db, schema) => {
      const backlog = onPrivate.backlog;
      const s = quoteSchema(schema);
      bench.log(`peer-logical: ${backlog} events in our outbox`);
      await onPrivate.fill(db, schema, backlog);
      bench.log('peer-logical: our dispatcher');
      const ours = await ourDrain(onPrivate, db, schema);

      const publication = `${schema}_peer`;
      const slot = `${schema}_peer`;
      await createPeerTable(peer, onPrivate.settings.databaseUrl, schema);
      await db.query(
        `CREATE PUBLICATION "${publication}" FOR TABLE ${s}.${TABLE} WITH (publish = 'insert')`,
      );
      await db.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
      try {
        bench.log(`peer-logical: ${backlog} events in the peer's table`);
        for (let i = 0; i < backlog; i += REPLICATION_FILL_TRANSACTION) {
          await db.query(
            `INSERT INTO ${s}.${TABLE} (id, aggregate_type, aggregate_id, message_type, segment, payload)
             SELECT gen_random_uuid(), 'lesson', 'lesson-' || (i % 10000), 'lesson-published',
                    'lesson-' || (i % 10000),
                    json_build_object('lesson_id', 'lesson-' || (i % 10000), 'title', 'Fractions', 'n', i)
             FROM generate_series($1::int, $1::int + $2::int - 1) AS i`,
            [i, REPLICATION_FILL_TRANSACTION],
          );
        }
        bench.log(`peer-logical: the peer's logical-replication listener (at most ${limitS} s)`);
        const stream = await createBenchStream(bench.settings.natsUrl, 'peer-logical');
        let theirs: PeerReplicationRun;
        try {
          theirs = await peerReplicationInWorker({
            databaseUrl: onPrivate.settings.databaseUrl,
            schema,
            natsUrl: bench.settings.natsUrl,
            subjectPrefix: stream.subjectPrefix,
            publication,
            slot,
            count: backlog,
            limitS,
          });
        } finally {
          await stream.remove();
        }
        if (theirs.failed) bench.log(`peer-logical: the peer stopped early: ${theirs.failed}`);
        const events_per_s = Math.round(backlog / ours);
        const peer_events_per_s = Math.round(theirs.drained / theirs.seconds);
        return {
          name: 'peer-logical',
          backlog,
          events_per_s,
          peer_events_per_s,
          peer_drained: theirs.drained,
          peer_heap_mb: theirs.heapMb,
          ...(theirs.failed ? { peer_failed: theirs.failed } : {}),
          ...(theirs.unhandled > 0 ? { peer_unhandled_rejections: theirs.unhandled } : {}),
          ratio: round(events_per_s / peer_events_per_s),
        };
      } finally {
        await db.query(
          'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1',
          [slot],
        );
        await db.query(`DROP PUBLICATION IF EXISTS "${publication}"`);
      }
    }),
  );
  return 'skipped' in result ? { name: 'peer-logical', skipped: result.skipped } : result;
}

/**
 * Against pg-transactional-outbox: draining a backlog to NATS with its polling listener and
 * with its logical-replication listener, and latency under the steady traffic of
 * steady-latency, ours measured in the same run.
 */
export const peer: Scenario = {
  names: ['peer-drain', 'peer-latency', 'peer-logical'],
  async run(bench, only) {
    const wanted = peer.names.filter((name) => only.has(name));
    const loaded = await loadPeer();
    if (!loaded) {
      const skipped = `${PACKAGE} is not installed (it is a devDependency: npm install)`;
      return wanted.map((name) => ({ name, skipped }));
    }
    // The peer's listeners can leave a query of their own failing after they are shut
    // down (seen once: "Connection terminated" when its logical-replication listener's
    // server stopped), a rejection nobody handles that would end the whole benchmark run.
    // While the peer runs, such a rejection is logged and counted, not fatal.
    const peerFailures: string[] = [];
    const onUnhandled = (reason: unknown) => {
      peerFailures.push(errorMessage(reason));
      bench.log(`peer: a rejection the peer left unhandled: ${errorMessage(reason)}`);
    };
    process.on('unhandledRejection', onUnhandled);
    const results: ScenarioResult[] = [];
    try {
      if (only.has('peer-drain')) results.push(await drainResult(bench, loaded));
      if (only.has('peer-latency')) results.push(await latencyResult(bench, loaded));
      if (only.has('peer-logical')) results.push(await logicalResult(bench, loaded));
      // Late ones: give the peer's pools a moment to report.
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    if (peerFailures.length > 0) {
      for (const result of results) {
        if ('skipped' in result) continue;
        // Added to those the logical-replication worker counted on its own thread.
        result.peer_unhandled_rejections =
          Number(result.peer_unhandled_rejections ?? 0) + peerFailures.length;
      }
    }
    return results;
  },
};
