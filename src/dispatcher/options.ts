import { assertBroker, type EventBroker } from '../brokers/broker.js';
import { ConfigError } from '../common/errors.js';
import { assertLogger, createLogger, type Logger, silentLogger } from '../common/logger.js';
import { quoted, readWholeNumber, wholeNumber } from '../common/numbers.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import { assertDatabase, type Database } from '../db/database.js';
import { quoteSchema } from '../db/identifier.js';
import { withTimeouts } from '../db/with-timeouts.js';
import {
  type DeadLetterPolicy,
  type DispatcherSettingName,
  deadLetterPolicies,
  deadLetterRetention,
  defaultDeadLetterPolicy,
  dispatcherSettings,
} from './settings.js';

/**
 * The dispatcher's options. Every number's default and range is in `dispatcherSettings`
 * (dispatcher/settings.ts), the one place the CLI's flags are made from too.
 */
export interface DispatcherOptions {
  /** Where the outbox lives: `pgDatabase(…)` or `pgliteDatabase(…)`. The caller closes it. */
  db: Database;
  /** Where events go. The dispatcher connects it on `start()` and closes it on `stop()`. */
  broker: EventBroker;
  /** Schema of the outbox tables. Default `public`. */
  schema?: string;
  /** Most rows claimed, published and settled per transaction. */
  batchSize?: number;
  /**
   * Batches in flight at once, each in its own transaction: the dispatcher runs this many
   * loops (lanes), lane i claiming from its owned partitions p with p mod n = i. Lanes
   * never share an aggregate, so order is kept as with one; one lane claims while another
   * publishes, and their claims use more than one database core. Needs at least as many
   * partitions as lanes to keep every lane busy. 1: one batch at a time.
   */
  batchesInFlight?: number;
  /** How often to claim from the start whatever the wake-up says (retries coming due). */
  pollIntervalMs?: number;
  /**
   * The wake-up: how often the dispatcher reads the write sequence to learn that events
   * were written, from `wakeProbeMinMs` while events flow, slowing to `wakeProbeMaxMs`
   * when idle. Costs producers nothing; costs the database one tiny statement per look.
   */
  wakeProbeMinMs?: number;
  wakeProbeMaxMs?: number;
  /**
   * Also LISTEN for the insert trigger's NOTIFY, when the schema sends it (`migrate
   * --producer-notify on`; off by default since it serialises producers' commits).
   * `false`: never. Default true.
   */
  notify?: boolean;
  /** Publishes an event gets before it becomes a dead letter. */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt, with jitter. */
  retryBaseDelayMs?: number;
  /** Longest retry delay (events and reconnects); at least retryBaseDelayMs. */
  retryMaxDelayMs?: number;
  /**
   * A batch the broker has not answered within this is rolled back and tried again (the
   * claim transaction must not outlive it by much).
   */
  publishTimeoutMs?: number;
  /**
   * A statement of the dispatcher's own that PostgreSQL has not answered within this
   * drops its connection and fails as a lost connection (retried on a new one): a network
   * partition or a failover to another address leaves connections open and silent. Its
   * dedicated sessions also ask the server to end them when left idle (PostgreSQL 14 and
   * later), so the partitions a cut-off dispatcher held come free. No effect on an
   * embedded database.
   */
  databaseTimeoutMs?: number;
  /**
   * How often dispatchers sharing a database recount each other and move partitions
   * towards a fair share; a joining, leaving or crashed dispatcher is balanced out within
   * about two rounds.
   */
  rebalanceIntervalMs?: number;
  /**
   * The dead-letter janitor: while running, deletes the dead letters dead-lettered longer
   * ago than this (by `dead_at`), a thousand per statement, every
   * `deadLetterPurgeIntervalMs`. Of several dispatchers of a schema, one janitor deletes at
   * a time. At least 60000 (a minute). Default: none, dead letters are kept until an
   * operator retries, discards or purges them.
   */
  deadLetterRetentionMs?: number;
  /** How often the janitor runs, with `deadLetterRetentionMs`. */
  deadLetterPurgeIntervalMs?: number;
  /**
   * What happens to the later events of an aggregate once one of its events is
   * dead-lettered. `continue` (default): they are published; the aggregate's consumers
   * see a gap but the aggregate keeps flowing. `hold`: they wait in the outbox until an
   * operator retries or discards the dead letter; no gap, but that aggregate stops.
   */
  onDeadLetter?: DeadLetterPolicy;
  /**
   * `start()` connects the broker, and declares its stream, exchange or topics, before it
   * resolves; it rejects with the broker's error (BrokerUnavailableError when it cannot be
   * reached, ConfigError when it refuses the setup) and starts nothing. `false`: resolve
   * at once and keep connecting in the background, as `run` does (it rides out a broker
   * that is down at start). Default true.
   */
  waitForBroker?: boolean;
  /**
   * Where the dispatcher logs (start, stop, outages, dead letters, a fatal error): any
   * logger of pino's shape, such as the application's pino logger. Default: JSON lines at
   * `info` on stderr, as the CLI writes them. `false`: no logging.
   */
  logger?: Logger | false;
  /** Stops the dispatcher, as `stop()` does, when aborted; `start()` rejects if it already is. */
  signal?: AbortSignal;
}

export type ResolvedDispatcherOptions = Required<
  Omit<DispatcherOptions, 'logger' | 'signal' | 'deadLetterRetentionMs'>
> & {
  logger: Logger;
  signal: AbortSignal | undefined;
  deadLetterRetentionMs: number | undefined;
};

/**
 * Each whole-number setting from `values`, defaulted and checked against its range;
 * `setting(name)` names it in the error (the option's name here, the flag in the CLI).
 */
export function resolveWholeNumbers(
  values: Partial<Record<DispatcherSettingName, unknown>>,
  setting: (name: DispatcherSettingName) => string,
): Record<DispatcherSettingName, number> {
  const resolved = {} as Record<DispatcherSettingName, number>;
  // In table order, so a setting's `atLeast` is resolved before it.
  for (const name of Object.keys(dispatcherSettings) as DispatcherSettingName[]) {
    const spec = dispatcherSettings[name];
    const floor = 'atLeast' in spec ? (spec.atLeast as DispatcherSettingName) : undefined;
    const min = floor ? resolved[floor] : spec.min;
    const value = values[name] ?? spec.default;
    // Under the setting it pairs with: say so, or the range's low end looks arbitrary.
    if (floor && readWholeNumber(value, 0, spec.max) !== undefined && Number(value) < min) {
      throw new ConfigError(
        setting(name),
        `${quoted(value)} is below ${setting(floor)} (${min}), which it must be at least`,
      );
    }
    resolved[name] = wholeNumber(setting(name), value, min, spec.max);
  }
  return resolved;
}

/** `continue` or `hold`, or a ConfigError naming `setting`. */
export function deadLetterPolicy(setting: string, value: unknown): DeadLetterPolicy {
  const resolved = value ?? defaultDeadLetterPolicy;
  if (!deadLetterPolicies.includes(resolved as DeadLetterPolicy)) {
    throw new ConfigError(setting, `must be "continue" or "hold", got ${quoted(value)}`);
  }
  return resolved as DeadLetterPolicy;
}

export const dispatcherOptions = optionNames<DispatcherOptions>({
  db: true,
  broker: true,
  schema: true,
  batchSize: true,
  batchesInFlight: true,
  pollIntervalMs: true,
  wakeProbeMinMs: true,
  wakeProbeMaxMs: true,
  notify: true,
  maxAttempts: true,
  retryBaseDelayMs: true,
  retryMaxDelayMs: true,
  publishTimeoutMs: true,
  databaseTimeoutMs: true,
  rebalanceIntervalMs: true,
  deadLetterRetentionMs: true,
  deadLetterPurgeIntervalMs: true,
  onDeadLetter: true,
  waitForBroker: true,
  logger: true,
  signal: true,
});

/** Fills in defaults and checks every field; a bad one throws ConfigError naming it. */
export function resolveDispatcherOptions(options: DispatcherOptions): ResolvedDispatcherOptions {
  assertKnownOptions('createDispatcher', options, dispatcherOptions);
  assertDatabase(options.db, 'db');
  assertBroker(options.broker, 'broker');
  assertLogger(options.logger, 'logger', true);
  const schema = options.schema ?? 'public';
  quoteSchema(schema);
  const numbers = resolveWholeNumbers(
    options as Partial<Record<DispatcherSettingName, unknown>>,
    (name) => name,
  );
  return {
    db: withDispatcherTimeouts(options.db, numbers),
    broker: options.broker,
    schema,
    ...numbers,
    notify: options.notify ?? true,
    waitForBroker: options.waitForBroker ?? true,
    onDeadLetter: deadLetterPolicy('onDeadLetter', options.onDeadLetter),
    deadLetterRetentionMs:
      options.deadLetterRetentionMs === undefined
        ? undefined
        : wholeNumber(
            'deadLetterRetentionMs',
            options.deadLetterRetentionMs,
            deadLetterRetention.minMs,
            deadLetterRetention.maxMs,
          ),
    logger: options.logger === false ? silentLogger : (options.logger ?? createLogger('info')),
    signal: options.signal,
  };
}

/**
 * The database as the dispatcher uses it: its statements answered within
 * `databaseTimeoutMs`, and its sessions (partition ownership, the write probe) ended by
 * the server once idle for twice the longest gap between their statements, each taking
 * up to `databaseTimeoutMs`.
 */
function withDispatcherTimeouts(
  db: Database,
  numbers: Record<DispatcherSettingName, number>,
): Database {
  const { databaseTimeoutMs, rebalanceIntervalMs, wakeProbeMaxMs } = numbers;
  const gapMs = Math.max(rebalanceIntervalMs, wakeProbeMaxMs) + databaseTimeoutMs;
  return withTimeouts(db, { answerMs: databaseTimeoutMs, idleSessionMs: 2 * gapMs });
}
