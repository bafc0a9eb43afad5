import type { Registry } from 'prom-client';
import { assertKnownOptions, optionNames } from '../common/options.js';
import type { Consumer, ConsumerHealth } from '../consumer/events.js';
import { catalogue } from '../events/catalogue.js';
import { isDeclaredEventType } from '../events/define.js';
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

/** The `event_type` label: a type this process declared (or the catalogue's), else `other`. */
function eventTypeLabel(type: string | undefined): string {
  if (type === undefined) return 'unknown';
  return isDeclaredEventType(type) || catalogue.some((event) => event.type === type)
    ? type
    : 'other';
}

/**
 * A consumer's Prometheus metrics, `consumer_` and `inbox_` prefixed, labelled with the
 * consumer's name (and the event type, bounded to the types this process declares).
 * `consumer_event_age_seconds` is the lag as the events show it: from the event's `time`
 * (when it happened in the producer's transaction) to the end of its handler.
 */
export function consumerMetrics(options: ConsumerMetricsOptions): Registry {
  assertKnownOptions('consumerMetrics', options, consumerMetricsOptions);
  const { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } =
    promClient('consumerMetrics');
  const { consumer, name } = options;
  const registry = options.registry ?? new Registry();
  if (!options.registry) collectDefaultMetrics({ register: registry, prefix: 'consumer_' });
  const registers = [registry];
  const byType = ['consumer', 'event_type'] as const;

  const processed = new Counter({
    name: 'consumer_events_processed_total',
    help: 'Events whose handler completed and whose message was acked (duplicates included).',
    labelNames: byType,
    registers,
  });
  const duplicates = new Counter({
    name: 'inbox_duplicates_total',
    help: 'Events the inbox had applied before: redeliveries it kept from applying twice.',
    labelNames: byType,
    registers,
  });
  const stale = new Counter({
    name: 'inbox_stale_events_total',
    help: "Events older than their aggregate's last applied one (parked, skipped or applied by policy).",
    labelNames: byType,
    registers,
  });
  const failed = new Counter({
    name: 'consumer_handler_failures_total',
    help: 'Handler attempts that threw.',
    labelNames: byType,
    registers,
  });
  const parked = new Counter({
    name: 'consumer_events_parked_total',
    help: 'Messages parked as consumer dead letters.',
    labelNames: byType,
    registers,
  });
  const skipped = new Counter({
    name: 'consumer_events_skipped_total',
    help: 'Messages acked without a handler (unknown types, or invalid ones under the skip policy).',
    labelNames: byType,
    registers,
  });
  const duration = new Histogram({
    name: 'consumer_handler_duration_seconds',
    help: 'Time in the handler, per completed event (its transaction included).',
    labelNames: ['consumer'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const age = new Histogram({
    name: 'consumer_event_age_seconds',
    help: 'From the event happening (its CloudEvents time) to its handler completing.',
    labelNames: ['consumer'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers,
  });
  new Gauge({
    name: 'consumer_messages_in_flight',
    help: 'Messages delivered and not yet acked.',
    labelNames: ['consumer'] as const,
    registers,
    collect() {
      this.set({ consumer: name }, consumer.health().inFlight);
    },
  });
  new Gauge({
    name: 'consumer_backlog_messages',
    help: 'Messages the broker holds for the consumer not yet acknowledged (JetStream pending + ack pending; RabbitMQ ready + unacked; Kafka group lag). Absent while not receiving or when the broker does not answer.',
    labelNames: ['consumer'] as const,
    registers,
    async collect() {
      const backlog = await consumer.backlog().catch(() => undefined);
      if (backlog === undefined) this.remove({ consumer: name });
      else this.set({ consumer: name }, backlog);
    },
  });
  new Gauge({
    name: 'consumer_state',
    help: '1 for the state the consumer is in (starting, receiving, standby, reconnecting, stopping, stopped).',
    labelNames: ['consumer', 'state'] as const,
    registers,
    collect() {
      const current = consumer.health().state;
      for (const state of states) this.set({ consumer: name, state }, state === current ? 1 : 0);
    },
  });

  consumer.on('processed', ({ event, outcome, durationMs }) => {
    const labels = { consumer: name, event_type: eventTypeLabel(event.type) };
    processed.inc(labels);
    if (outcome === 'duplicate') duplicates.inc(labels);
    if (outcome === 'stale') stale.inc(labels);
    duration.observe({ consumer: name }, durationMs / 1000);
    const happened = event.time ? Date.parse(event.time) : Number.NaN;
    if (!Number.isNaN(happened)) {
      age.observe({ consumer: name }, Math.max(0, Date.now() - happened) / 1000);
    }
  });
  consumer.on('failed', ({ event }) => {
    failed.inc({ consumer: name, event_type: eventTypeLabel(event.type) });
  });
  consumer.on('parked', (message) => {
    const labels = { consumer: name, event_type: eventTypeLabel(message.type) };
    parked.inc(labels);
    if (message.stale) stale.inc(labels);
  });
  consumer.on('skipped', ({ type }) => {
    skipped.inc({ consumer: name, event_type: eventTypeLabel(type) });
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
