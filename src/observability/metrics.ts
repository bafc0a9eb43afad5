import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Executor } from '../db/executor.js';
import { statements } from '../db/statements.js';
import type { Dispatcher, SettledBatch } from '../dispatcher/dispatcher.js';
import { errorMessage } from '../errors.js';
import { withTimeout } from '../timeout.js';
import { type Logger, silentLogger } from './logger.js';

export interface MetricsOptions {
  dispatcher: Dispatcher;
  /** Where the backlog and dead letters are counted at each scrape. */
  db: Executor;
  schema: string;
  /** The broker's name (`nats`, `amqp`, `kafka`, …), a label of the per-event counters. */
  broker: string;
  /** Default: a new registry, with Node's process metrics (prefixed `outbox_`). */
  registry?: Registry;
  logger?: Logger;
  /** A scrape gives up on the database after this. Default 2000. */
  queryTimeoutMs?: number;
}

interface BacklogRow {
  key: string;
  pending: number;
  oldest_age_s: number;
}

/**
 * The dispatcher's Prometheus metrics, every name prefixed `outbox_`. Counters and
 * histograms follow the dispatcher's events; the backlog, its age per partition and
 * the dead letters are counted in the database when scraped (a scrape the database
 * cannot answer within `queryTimeoutMs` leaves them at their last values).
 */
export function dispatcherMetrics(options: MetricsOptions): Registry {
  const { dispatcher, db, broker } = options;
  const logger = options.logger ?? silentLogger;
  const registry = options.registry ?? new Registry();
  if (!options.registry) collectDefaultMetrics({ register: registry, prefix: 'outbox_' });
  const registers = [registry];
  const sql = statements(options.schema);
  const timeoutMs = options.queryTimeoutMs ?? 2000;

  const published = new Counter({
    name: 'outbox_events_published_total',
    help: 'Events the broker acknowledged.',
    labelNames: ['event_type', 'broker'] as const,
    registers,
  });
  const failed = new Counter({
    name: 'outbox_events_failed_total',
    help: 'Failed publishes of single events (each is retried, or dead-lettered after max attempts).',
    labelNames: ['event_type', 'broker'] as const,
    registers,
  });
  const deadLettered = new Counter({
    name: 'outbox_events_dead_lettered_total',
    help: 'Events parked as dead letters after their last failed attempt.',
    labelNames: ['event_type', 'broker'] as const,
    registers,
  });
  const latency = new Histogram({
    name: 'outbox_publish_latency_seconds',
    help: "From the event's occurred_at (its transaction's start unless the producer set it) to the broker's acknowledgement.",
    labelNames: ['broker'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers,
  });
  const batchSize = new Histogram({
    name: 'outbox_batch_size',
    help: 'Events claimed per batch.',
    buckets: [1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    registers,
  });

  dispatcher.on('batch', (report: { claimed: number }) => batchSize.observe(report.claimed));
  dispatcher.on('settled', (batch: SettledBatch) => {
    for (const message of batch.published) {
      published.inc({ event_type: message.eventType, broker });
      const occurred = Date.parse(message.occurredAt);
      if (!Number.isNaN(occurred)) {
        latency.observe({ broker }, Math.max(0, batch.acknowledgedAt - occurred) / 1000);
      }
    }
    for (const { message } of batch.retried) failed.inc({ event_type: message.eventType, broker });
    for (const { message } of batch.deadLettered) {
      failed.inc({ event_type: message.eventType, broker });
      deadLettered.inc({ event_type: message.eventType, broker });
    }
  });

  new Gauge({
    name: 'outbox_owned_partitions',
    help: 'Partitions this dispatcher claims from.',
    registers,
    collect() {
      this.set(dispatcher.ownedPartitions().length);
    },
  });
  new Gauge({
    name: 'outbox_broker_connected',
    help: '1 while the dispatcher holds a connection to the broker, else 0.',
    labelNames: ['broker'] as const,
    registers,
    collect() {
      this.set({ broker }, dispatcher.health().brokerConnected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'outbox_dispatcher_state',
    help: '1 for the state the dispatch loop is in (idle, dispatching, backoff, stopped).',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const current = dispatcher.health().state;
      for (const state of ['idle', 'dispatching', 'backoff', 'stopped']) {
        this.set({ state }, state === current ? 1 : 0);
      }
    },
  });

  // One round of database counts per scrape, shared by the gauges below.
  let counting: Promise<{ partitions: BacklogRow[]; dead: number } | undefined> | undefined;
  const countOnce = () => {
    counting ??= withTimeout(
      Promise.all([
        db.query<BacklogRow>(sql.outboxBacklogByPartition),
        db.query<{ dead: number }>(sql.deadLetterCount),
      ]),
      timeoutMs,
      () => new Error(`the database did not answer within ${timeoutMs} ms`),
    )
      .then(([partitions, dead]) => ({
        partitions: partitions.rows,
        dead: Number(dead.rows[0]?.dead ?? 0),
      }))
      .catch((error: unknown) => {
        logger.debug({ err: errorMessage(error) }, 'metrics: cannot count the backlog');
        return undefined;
      })
      .finally(() => {
        setImmediate(() => {
          counting = undefined;
        });
      });
    return counting;
  };
  new Gauge({
    name: 'outbox_pending_events',
    help: 'Events in the outbox not yet published (all partitions).',
    registers,
    async collect() {
      const counts = await countOnce();
      if (counts) this.set(counts.partitions.reduce((sum, row) => sum + Number(row.pending), 0));
    },
  });
  new Gauge({
    name: 'outbox_oldest_pending_age_seconds',
    help: 'Age of the oldest pending event, per partition that has a backlog.',
    labelNames: ['partition'] as const,
    registers,
    async collect() {
      const counts = await countOnce();
      if (!counts) return;
      this.reset();
      for (const row of counts.partitions) {
        this.set({ partition: String(row.key) }, Number(row.oldest_age_s));
      }
    },
  });
  new Gauge({
    name: 'outbox_dead_letters',
    help: 'Dead letters waiting for an operator (dead retry / dead discard).',
    registers,
    async collect() {
      const counts = await countOnce();
      if (counts) this.set(counts.dead);
    },
  });
  return registry;
}
