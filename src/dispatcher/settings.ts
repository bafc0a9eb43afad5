/**
 * The dispatcher's settings, each defined once: its default, its range and what it means.
 * `resolveDispatcherOptions` reads them for the library, the CLI builds its flags and
 * `--help` from them, and both check values with the same parser (common/numbers.ts).
 */

export interface WholeNumberSetting {
  /** The CLI flag, without `--`. */
  flag: string;
  /** What `--help` shows as the value: `<n>`, `<ms>`. */
  value: string;
  default: number;
  min: number;
  max: number;
  /** For `--help` and the docs. */
  description: string;
  /** The library option whose value is this one's minimum instead of `min`. */
  atLeast?: string;
  /** Set in code only: no CLI flag. */
  libraryOnly?: boolean;
}

export const dispatcherSettings = {
  batchSize: {
    flag: 'batch-size',
    value: '<n>',
    default: 500,
    min: 1,
    max: 10_000,
    description: 'events claimed, published and settled per transaction',
  },
  batchesInFlight: {
    flag: 'batches-in-flight',
    value: '<n>',
    default: 2,
    min: 1,
    max: 16,
    description:
      'loops claiming and publishing side by side during a backlog, each over its share of the partitions (1: one batch at a time)',
  },
  pollIntervalMs: {
    flag: 'poll-interval-ms',
    value: '<ms>',
    default: 1000,
    min: 10,
    max: 3_600_000,
    description:
      'claim from the start this often while retries are coming due, whatever the wake-up says (idle, every 30 s at least)',
  },
  maxAttempts: {
    flag: 'max-attempts',
    value: '<n>',
    default: 10,
    min: 1,
    max: 1000,
    description: 'publishes before an event becomes a dead letter',
  },
  retryBaseDelayMs: {
    flag: 'retry-base-delay-ms',
    value: '<ms>',
    default: 1000,
    min: 1,
    max: 86_400_000,
    description: 'first retry delay, doubled per attempt (with jitter)',
  },
  retryMaxDelayMs: {
    flag: 'retry-max-delay-ms',
    value: '<ms>',
    default: 300_000,
    min: 1,
    max: 86_400_000,
    atLeast: 'retryBaseDelayMs' as const,
    description: 'longest retry delay, of events and of reconnects',
  },
  publishTimeoutMs: {
    flag: 'publish-timeout-ms',
    value: '<ms>',
    default: 30_000,
    min: 100,
    max: 120_000,
    description:
      'give up on a publish the broker has not answered after this (its batch is rolled back and retried)',
  },
  databaseTimeoutMs: {
    flag: 'database-timeout-ms',
    value: '<ms>',
    default: 30_000,
    min: 100,
    max: 600_000,
    description:
      'a statement of the dispatcher PostgreSQL has not answered by then drops its connection, taken for lost (a partition, a failover), and is retried on a new one',
  },
  wakeProbeMinMs: {
    flag: 'wake-probe-min-ms',
    value: '<ms>',
    default: 2,
    min: 1,
    max: 10_000,
    description:
      'while events flow, look this often whether anything new was written (a read of the write sequence, no producer cost)',
  },
  wakeProbeMaxMs: {
    flag: 'wake-probe-max-ms',
    value: '<ms>',
    // Measured: each look costs its backend 0.25-0.35 ms of CPU when the backend sleeps in
    // between (waking it, not the statement, is the cost): at 50 ms an idle dispatcher
    // cost 0.9-1 % of a core, at 80 ms about 0.6 %.
    default: 80,
    min: 1,
    max: 60_000,
    atLeast: 'wakeProbeMinMs' as const,
    description:
      'the same when idle: the look slows down to this, bounding both the idle cost and the delay of a first event',
  },
  rebalanceIntervalMs: {
    flag: 'rebalance-interval-ms',
    value: '<ms>',
    default: 1000,
    min: 50,
    max: 60_000,
    libraryOnly: true,
    description: 'how often dispatchers sharing a database move partitions towards a fair share',
  },
  deadLetterPurgeIntervalMs: {
    flag: 'dead-letter-purge-interval-ms',
    value: '<ms>',
    default: 600_000,
    min: 10,
    max: 86_400_000,
    libraryOnly: true,
    description:
      'how often the dead-letter janitor looks for dead letters past the retention (with deadLetterRetentionMs)',
  },
} satisfies Record<string, WholeNumberSetting>;

export type DispatcherSettingName = keyof typeof dispatcherSettings;

/** `onDeadLetter`: its choices and default, for the library and `--on-dead-letter`. */
export const deadLetterPolicies = ['continue', 'hold'] as const;
export type DeadLetterPolicy = (typeof deadLetterPolicies)[number];
export const defaultDeadLetterPolicy: DeadLetterPolicy = 'continue';

/**
 * `deadLetterRetentionMs` / `--dead-letter-retention`: a duration with no default (dead
 * letters are kept until an operator acts). At least a minute: a shorter one would delete
 * what an operator has not had the time to see.
 */
export const deadLetterRetention = {
  flag: 'dead-letter-retention',
  value: '<duration>',
  minMs: 60_000,
  maxMs: 3650 * 86_400_000,
  description:
    'delete dead letters dead-lettered longer ago than this (30d, 12h; 1m–3650d), in batches, every 10 minutes; default: keep them',
};
