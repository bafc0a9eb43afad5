import { catalogue } from '../events/catalogue.js';
import { declaredEventTypes, isDeclaredEventType } from '../events/define.js';
import type { Consumer } from './events.js';

/**
 * The `event_type` label of a consumer's series: an event type this process declares or
 * the catalogue names, else `other` (the types a broker delivers are anyone's, so the
 * label set stays as small as the code); `unknown` for a message with no type.
 */
export function eventTypeLabel(type: string | undefined): string {
  if (type === undefined) return 'unknown';
  return isDeclaredEventType(type) || catalogue.some((event) => event.type === type)
    ? type
    : 'other';
}

/** Every `event_type` label a consumer's series can take now. */
export function eventTypeLabels(): string[] {
  const known = [...declaredEventTypes(), ...catalogue.map((event) => event.type)];
  return [...new Set([...known, 'other', 'unknown'])];
}

/** A consumer's counters: the ones consumerMetrics exports. */
export const TALLY_KEYS = [
  'processed',
  'duplicates',
  'stale',
  'failed',
  'parked',
  'skipped',
] as const;
export type TallyKey = (typeof TALLY_KEYS)[number];

/** Counts by `event_type` label, for each of a consumer's counters. */
export type ConsumerTally = Record<TallyKey, Map<string, number>>;

interface Tallied {
  counts: ConsumerTally;
  /** Told of each count as it is made. */
  watchers: Set<(key: TallyKey, label: string) => void>;
}

const tallies = new WeakMap<object, Tallied>();

/**
 * Counts what a consumer does, by counter and label, from before its first event (called
 * by consume()): metrics attached later (after an `await import` of the metrics entry,
 * say) start from these counts instead of from 0, and so agree with `consumer.stats`.
 */
export function startTally(consumer: Consumer): Tallied {
  const tallied: Tallied = {
    counts: {
      processed: new Map(),
      duplicates: new Map(),
      stale: new Map(),
      failed: new Map(),
      parked: new Map(),
      skipped: new Map(),
    },
    watchers: new Set(),
  };
  const count = (key: TallyKey, type: string | undefined) => {
    const label = eventTypeLabel(type);
    const counts = tallied.counts[key];
    counts.set(label, (counts.get(label) ?? 0) + 1);
    for (const watcher of tallied.watchers) watcher(key, label);
  };
  consumer.on('processed', ({ event, outcome }) => {
    count('processed', event.type);
    if (outcome === 'duplicate') count('duplicates', event.type);
    if (outcome === 'stale') count('stale', event.type);
  });
  consumer.on('failed', ({ event }) => count('failed', event.type));
  consumer.on('parked', (message) => {
    count('parked', message.type);
    if (message.stale) count('stale', message.type);
  });
  consumer.on('skipped', ({ type }) => count('skipped', type));
  tallies.set(consumer, tallied);
  return tallied;
}

/**
 * The counts so far (`seed`, at once), then each new one (`watch`), for a consumer that
 * consume() made or any other (whose tally starts now).
 */
export function followTally(
  consumer: Consumer,
  seed: (key: TallyKey, label: string, count: number) => void,
  watch: (key: TallyKey, label: string) => void,
): void {
  const tallied = tallies.get(consumer) ?? startTally(consumer);
  for (const [key, counts] of Object.entries(tallied.counts) as [TallyKey, Map<string, number>][]) {
    for (const [label, count] of counts) seed(key, label, count);
  }
  tallied.watchers.add(watch);
}
