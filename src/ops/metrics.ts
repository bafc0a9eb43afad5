import type { Registry } from 'prom-client';
import { ConfigError, errorMessage } from '../common/errors.js';
import { type Logger, silentLogger } from '../common/logger.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import { SCAN_DUTY, SharedCheck } from '../common/shared-check.js';
import { withTimeout } from '../common/timeout.js';
import type { Executor } from '../db/executor.js';
import { statements } from '../db/sql/index.js';
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import { catalogue } from '../events/catalogue.js';
import { declaredEventTypes, isDeclaredEventType } from '../events/define.js';
import { assertHealthNumbers } from './health.js';
import { promClient } from './prom.js';

export interface MetricsOptions {
  dispatcher: Dispatcher;
  /**
   * Where the backlog and dead letters are counted. Give it a connection of its own (e.g.
   * a second `pgDatabase` with `maxConnections: 1`), not the dispatcher's pool, so scrapes
   * never take a connection a claim needs.
   */
  db: Executor;
  schema: string;
  /** The broker's name (`nats`, `amqp`, `kafka`, …), a label of the per-event counters. */
  broker: string;
  /**
   * Event types that keep their name as the `event_type` label, besides the catalogue's
   * and those declared with `defineEvent` in this process; every other type is counted
   * as `other`. Default none.
   */
  eventTypeLabels?: readonly string[];
  /**
   * Default: a new registry, with Node's process metrics (prefixed `outbox_`). One
   * dispatcher's metrics per registry (a second is refused); consumers' may share it.
   */
  registry?: Registry;
  logger?: Logger;
  /** A scrape gives up on the database after this. Default 2000. */
  queryTimeoutMs?: number;
  /** One round of database counts serves every scrape for this long (or nine times as long as it took, if longer). Default 1000. */
  databaseCacheMs?: number;
}

const metricsOptions = optionNames<MetricsOptions>({
  dispatcher: true,
  db: true,
  schema: true,
  broker: true,
  eventTypeLabels: true,
  registry: true,
  logger: true,
  queryTimeoutMs: true,
  databaseCacheMs: true,
});

/** The `event_type` label of the events of a type that is neither known nor listed. */
const OTHER_EVENT_TYPE = 'other';

/**
 * The `event_type` label of an event: its type when the code knows it (the catalogue,
 * `defineEvent` in this process) or the operator listed it, else `other`. The table takes
 * any text, so labelling every type seen would make one series per type and per metric.
 */
function eventTypeLabeller(listed: readonly string[]): {
  label: (eventType: string) => string;
  /** Every label it gives now: the named types, those declared so far, and `other`. */
  all: () => Set<string>;
} {
  const named = new Set([...catalogue.map((event) => event.type), ...listed]);
  return {
    label: (eventType) =>
      named.has(eventType) || isDeclaredEventType(eventType) ? eventType : OTHER_EVENT_TYPE,
    all: () => new Set([...named, ...declaredEventTypes(), OTHER_EVENT_TYPE]),
  };
}

interface BacklogRow {
  key: string;
  pending: number;
  oldest_age_s: string;
}

/**
 * The dispatcher's Prometheus metrics, every name prefixed `outbox_`. Counters and
 * histograms follow the dispatcher's events; the backlog, its age per partition and
 * the dead letters are counted in the database when scraped, at most once per
 * `databaseCacheMs` however many scrapes arrive, and after a count that took long not
 * before nine times as long has passed (a scrape the database cannot answer
 * within `queryTimeoutMs` leaves them at their last values, NaN before its first
 * answer). The `event_type` label
 * is bounded: see `eventTypeLabels`.
 */
export function dispatcherMetrics(options: MetricsOptions): Registry {
  assertKnownOptions('dispatcherMetrics', options, metricsOptions);
  assertHealthNumbers(options);
  const { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } =
    promClient('dispatcherMetrics');
  const { dispatcher, db, broker } = options;
  const logger = options.logger ?? silentLogger;
  const registry = options.registry ?? new Registry();
  // The series carry no label of their dispatcher: a second one would count into the first's.
  if (registry.getSingleMetric('outbox_events_published_total')) {
    throw new ConfigError(
      'dispatcherMetrics.registry',
      "this registry already holds a dispatcher's metrics: give each dispatcher a registry of its own (and its own /metrics), or run one dispatcher per process",
    );
  }
  if (!options.registry) collectDefaultMetrics({ register: registry, prefix: 'outbox_' });
  const registers = [registry];
  const sql = statements(options.schema);
  const timeoutMs = options.queryTimeoutMs ?? 2000;
  const cacheMs = options.databaseCacheMs ?? 1000;
  const { label, all: allLabels } = eventTypeLabeller(options.eventTypeLabels ?? []);

  const published = new Counter({
    name: 'outbox_events_published_total',
    help: 'Events the broker acknowledged.',
    labelNames: ['event_type', 'broker'] as const,
    registers,
  });
  const failed = new Counter({
    name: 'outbox_events_failed_total',
    help: 'Failed publishes of single events (each is retried, or dead-lettered after max attempts), and events no broker could take as written (dead-lettered when claimed).',
    labelNames: ['event_type', 'broker'] as const,
    registers,
  });
  const deadLettered = new Counter({
    name: 'outbox_events_dead_lettered_total',
    help: 'Events parked as dead letters: after their last failed attempt, or when claimed as no broker could take them as written.',
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
  const purged = new Counter({
    name: 'outbox_dead_letters_purged_total',
    help: "Dead letters this dispatcher's janitor deleted past the retention (--dead-letter-retention).",
    registers,
  });
  const batchSize = new Histogram({
    name: 'outbox_batch_size',
    help: 'Events claimed per batch.',
    buckets: [1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    registers,
  });

  // Every series from 0, for each label it can take now: an alert on increase() sees the
  // first dead letter, which a series born at 1 would not show.
  for (const eventType of allLabels()) {
    for (const counter of [published, failed, deadLettered]) {
      counter.inc({ event_type: eventType, broker }, 0);
    }
  }

  dispatcher.on('batch', (report) => batchSize.observe(report.claimed));
  dispatcher.on('purged', (report) => purged.inc(report.deadLetters));
  dispatcher.on('settled', (batch) => {
    for (const message of batch.published) {
      published.inc({ event_type: label(message.eventType), broker });
      const occurred = Date.parse(message.occurredAt);
      if (!Number.isNaN(occurred)) {
        latency.observe({ broker }, Math.max(0, batch.acknowledgedAt - occurred) / 1000);
      }
    }
    for (const { message } of batch.retried) {
      failed.inc({ event_type: label(message.eventType), broker });
    }
    for (const { message } of batch.deadLettered) {
      const labels = { event_type: label(message.eventType), broker };
      failed.inc(labels);
      deadLettered.inc(labels);
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
    help: '1 for the state the dispatch loop is in (idle, dispatching, backoff, stopping, stopped).',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const current = dispatcher.health().state;
      for (const state of ['idle', 'dispatching', 'backoff', 'stopping', 'stopped']) {
        this.set({ state }, state === current ? 1 : 0);
      }
    },
  });

  // One round of database counts shared by the gauges below and by concurrent scrapes;
  // a round that took long (a count over a long backlog) serves nine times as long.
  const countCheck = new SharedCheck<{
    partitions: BacklogRow[];
    dead: number;
    oldestDeadAgeSeconds: number;
  }>(SCAN_DUTY);
  /** Whether the database has answered a count yet. */
  let counted = false;
  const count = async () => {
    const [partitions, dead] = await withTimeout(
      Promise.all([
        db.query<BacklogRow>(sql.outboxBacklogByPartition),
        db.query<{ dead: number; oldest_age_s: string }>(sql.deadLetterCount),
      ]),
      timeoutMs,
      () => new Error(`the database did not answer within ${timeoutMs} ms`),
    ).catch((error: unknown) => {
      logger.debug({ err: errorMessage(error) }, 'metrics: cannot count the backlog');
      throw error;
    });
    counted = true;
    return {
      partitions: partitions.rows,
      dead: Number(dead.rows[0]?.dead ?? 0),
      oldestDeadAgeSeconds: Number(dead.rows[0]?.oldest_age_s ?? 0),
    };
  };
  const countOnce = async () => {
    const outcome = await countCheck.get(count, cacheMs);
    return outcome.ok ? outcome.value : undefined;
  };
  type Counts = NonNullable<Awaited<ReturnType<typeof countOnce>>>;
  /**
   * One of the database's totals: from this scrape's count; from the last one when the
   * database did not answer; NaN until it has answered once (0 would read as an empty
   * backlog during an outage that began before the first scrape).
   */
  const total = (name: string, help: string, value: (counts: Counts) => number) =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        const counts = await countOnce();
        if (counts) this.set(value(counts));
        else if (!counted) this.set(Number.NaN);
      },
    });
  total(
    'outbox_pending_events',
    'Events in the outbox not yet published (all partitions).',
    (counts) => counts.partitions.reduce((sum, row) => sum + Number(row.pending), 0),
  );
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
  total(
    'outbox_dead_letters',
    'Dead letters waiting for an operator (dead retry / dead discard).',
    (counts) => counts.dead,
  );
  total(
    'outbox_oldest_dead_letter_age_seconds',
    'How long ago the oldest dead letter was dead-lettered (0 when none); a retention keeps it below the retention plus the janitor interval.',
    (counts) => counts.oldestDeadAgeSeconds,
  );
  return registry;
}
