import type * as PromClient from 'prom-client';
import type { Counter, Histogram, Registry } from 'prom-client';
import { ConfigError } from '../common/errors.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import { clip, escapeControl } from '../common/text.js';
import type { Consumer, ConsumerHealth } from '../consumer/events.js';
import { eventTypeLabels, followTally, TALLY_KEYS } from '../consumer/tally.js';
import type { CheckResult } from './health.js';
import { promClient } from './prom.js';

export interface ConsumerMetricsOptions {
  consumer: Consumer;
  /** The consumer's name: the `consumer` label of every series. */
  name: string;
  /** Default: a new registry, with Node's process metrics (prefixed `consumer_`). */
  registry?: Registry;
}

const consumerMetricsOptions = optionNames<ConsumerMetricsOptions>({
  consumer: true,
  name: true,
  registry: true,
});

const states: readonly ConsumerHealth['state'][] = [
  'starting',
  'receiving',
  'standby',
  'reconnecting',
  'stopping',
  'stopped',
];

interface ConsumerSeries {
  processed: Counter<'consumer' | 'event_type'>;
  duplicates: Counter<'consumer' | 'event_type'>;
  stale: Counter<'consumer' | 'event_type'>;
  failed: Counter<'consumer' | 'event_type'>;
  parked: Counter<'consumer' | 'event_type'>;
  skipped: Counter<'consumer' | 'event_type'>;
  duration: Histogram<'consumer'>;
  age: Histogram<'consumer'>;
  /** The consumers these series count, by name; the gauges ask each when scraped. */
  members: Map<string, Consumer>;
}

// One set of series per registry, so several consumers of one process share a registry
// (and its /metrics), told apart by their `consumer` label.
const seriesByRegistry = new WeakMap<Registry, ConsumerSeries>();

function consumerSeries(registry: Registry, prom: typeof PromClient): ConsumerSeries {
  const known = seriesByRegistry.get(registry);
  if (known) return known;
  const { Counter, Gauge, Histogram } = prom;
  const registers = [registry];
  const byType = ['consumer', 'event_type'] as const;
  const counter = (name: string, help: string) =>
    new Counter({ name, help, labelNames: byType, registers });
  const members = new Map<string, Consumer>();
  const series: ConsumerSeries = {
    processed: counter(
      'consumer_events_processed_total',
      'Events whose handler completed and whose message was acked (duplicates included).',
    ),
    duplicates: counter(
      'inbox_duplicates_total',
      'Events the inbox had applied before: redeliveries it kept from applying twice.',
    ),
    stale: counter(
      'inbox_stale_events_total',
      "Events older than their aggregate's last applied one (parked, skipped or applied by policy).",
    ),
    failed: counter('consumer_handler_failures_total', 'Handler attempts that threw.'),
    parked: counter('consumer_events_parked_total', 'Messages parked as consumer dead letters.'),
    skipped: counter(
      'consumer_events_skipped_total',
      'Messages acked without a handler (unknown types, or invalid ones under the skip policy).',
    ),
    duration: new Histogram({
      name: 'consumer_handler_duration_seconds',
      help: 'Time in the handler, per completed event (its transaction included).',
      labelNames: ['consumer'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    age: new Histogram({
      name: 'consumer_event_age_seconds',
      help: 'From the event happening (its CloudEvents time) to its handler completing.',
      labelNames: ['consumer'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
    members,
  };
  new Gauge({
    name: 'consumer_messages_in_flight',
    help: 'Messages delivered and not yet acked.',
    labelNames: ['consumer'] as const,
    registers,
    collect() {
      for (const [name, consumer] of members)
        this.set({ consumer: name }, consumer.health().inFlight);
    },
  });
  new Gauge({
    name: 'consumer_backlog_messages',
    help: 'Messages the broker holds for the consumer not yet acknowledged (JetStream pending + ack pending; RabbitMQ ready + unacked; Kafka group lag). Absent while not receiving or when the broker does not answer.',
    labelNames: ['consumer'] as const,
    registers,
    async collect() {
      await Promise.all(
        [...members].map(async ([name, consumer]) => {
          const backlog = await consumer.backlog().catch(() => undefined);
          if (backlog === undefined) this.remove({ consumer: name });
          else this.set({ consumer: name }, backlog);
        }),
      );
    },
  });
  new Gauge({
    name: 'consumer_state',
    help: '1 for the state the consumer is in (starting, receiving, standby, reconnecting, stopping, stopped).',
    labelNames: ['consumer', 'state'] as const,
    registers,
    collect() {
      for (const [name, consumer] of members) {
        const current = consumer.health().state;
        for (const state of states) this.set({ consumer: name, state }, state === current ? 1 : 0);
      }
    },
  });
  seriesByRegistry.set(registry, series);
  return series;
}

/**
 * A consumer's Prometheus metrics, `consumer_` and `inbox_` prefixed, labelled with the
 * consumer's name (and the event type, bounded to the types this process declares).
 * `consumer_event_age_seconds` is the lag as the events show it: from the event's `time`
 * (when it happened in the producer's transaction) to the end of its handler. Several
 * consumers of one process can share a registry, each under its own name; a name already
 * counted there is refused unless that consumer has stopped (then the new one takes over
 * its series, which go on counting).
 */
export function consumerMetrics(options: ConsumerMetricsOptions): Registry {
  assertKnownOptions('consumerMetrics', options, consumerMetricsOptions);
  const prom = promClient('consumerMetrics');
  const { consumer, name } = options;
  const registry = options.registry ?? new prom.Registry();
  if (!options.registry) prom.collectDefaultMetrics({ register: registry, prefix: 'consumer_' });
  const series = consumerSeries(registry, prom);
  const counted = series.members.get(name);
  if (counted && counted !== consumer && counted.health().state !== 'stopped') {
    throw new ConfigError(
      'consumerMetrics.name',
      `"${clip(escapeControl(name), 100)}" is counted in this registry for a consumer still running: give each consumer a name of its own`,
    );
  }
  if (counted === consumer) return registry;
  series.members.set(name, consumer);
  const { duration, age } = series;
  // Counts only while it is the registry's consumer of this name.
  const current = () => series.members.get(name) === consumer;
  // Every series from 0, for each label it can take now: an alert on increase() sees the
  // first parked message, which a series born at 1 would not show.
  for (const key of TALLY_KEYS) {
    for (const label of eventTypeLabels())
      series[key].inc({ consumer: name, event_type: label }, 0);
  }
  // From what it did before this call (a backlog handled while the metrics module
  // loaded), so the counters agree with consumer.stats; the histograms start here.
  followTally(
    consumer,
    (key, label, count) => series[key].inc({ consumer: name, event_type: label }, count),
    (key, label) => {
      if (current()) series[key].inc({ consumer: name, event_type: label });
    },
  );
  consumer.on('processed', ({ event, durationMs }) => {
    if (!current()) return;
    duration.observe({ consumer: name }, durationMs / 1000);
    const happened = event.time ? Date.parse(event.time) : Number.NaN;
    if (!Number.isNaN(happened)) {
      age.observe({ consumer: name }, Math.max(0, Date.now() - happened) / 1000);
    }
  });
  return registry;
}

/**
 * A consumer's readiness: receiving, or standing by for another process of its name
 * (a standby is healthy: it takes over when the active one dies). Not ready while
 * starting, reconnecting (with the reason) or stopped.
 */
export function consumerReadiness(consumer: Consumer): CheckResult {
  const { state, reason } = consumer.health();
  if (state === 'receiving' || state === 'standby') return { ok: true, reasons: [] };
  return { ok: false, reasons: [`consumer ${state}${reason ? `: ${reason}` : ''}`] };
}
