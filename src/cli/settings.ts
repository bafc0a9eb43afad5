import { Option } from 'commander';
import { parseDuration } from '../common/admin-input.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import { wholeNumber } from '../common/numbers.js';
import { escapeControl } from '../common/text.js';
import { parseUrl } from '../common/url.js';
import { deadLetterPolicy, resolveWholeNumbers } from '../dispatcher/options.js';
import {
  type DispatcherSettingName,
  deadLetterPolicies,
  deadLetterRetention,
  defaultDeadLetterPolicy,
  dispatcherSettings,
  type WholeNumberSetting,
} from '../dispatcher/settings.js';

/**
 * Every CLI setting: flag, environment variable, default. Commander applies the order
 * flag → environment → default; the parse functions below check the value and name the
 * setting when it is wrong.
 */
export const settings = {
  databaseUrl: (
    description = 'PostgreSQL connection URL (libpq parameters: sslmode, sslrootcert, sslcert, sslkey; password_file; connect_timeout; several hosts with target_session_attrs; pooler=session)',
  ) => new Option('--database-url <url>', description).env('DATABASE_URL'),
  schema: () =>
    new Option('--schema <name>', 'schema holding the outbox tables')
      .env('OUTBOX_SCHEMA')
      .default('public'),
  broker: () =>
    new Option(
      '--broker <url>',
      "where events go: nats://host:4222, amqp(s)://user@host/vhost, kafka://host:9092, log: (NDJSON CloudEvents on stdout), or memory: (tests only: published nowhere); the README's Brokers section lists each URL's parameters",
    )
      .env('OUTBOX_BROKER_URL')
      .default('log:'),
  source: () =>
    new Option('--source <uri-reference>', 'CloudEvents source of every event').default(
      '/edupulse',
    ),
  notify: () =>
    new Option(
      '--no-notify',
      "do not LISTEN for the insert trigger's NOTIFY (sent after migrate --producer-notify on); new events are still found by probing the write sequence",
    ),
  onDeadLetter: () =>
    new Option(
      '--on-dead-letter <policy>',
      "after an aggregate's event is dead-lettered, publish its later events (continue) or keep them until the dead letter is retried or discarded (hold)",
    )
      .choices(deadLetterPolicies)
      .default(defaultDeadLetterPolicy),
  deadLetterRetention: () =>
    new Option(
      `--${deadLetterRetention.flag} ${deadLetterRetention.value}`,
      deadLetterRetention.description,
    ),
  verbose: () => new Option('--verbose', 'debug logs, and stack traces on errors'),
};

/** A whole number within bounds, or a ConfigError naming the setting (common/numbers.ts). */
export const parseInteger = wholeNumber;

/** What the system says of an address that cannot be bound: no such name, or not this machine's. */
const HOST_ERRORS = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_NONAME',
  'EADDRNOTAVAIL',
  'EAFNOSUPPORT',
]);

/**
 * A server that could not listen, as a ConfigError naming the setting at fault: the
 * address when the system refused it, else the port (in use, or privileged).
 */
export function listenError(
  error: unknown,
  where: { host: string; port: number; hostSetting: string; portSetting: string },
): ConfigError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return new ConfigError(
    code !== undefined && HOST_ERRORS.has(code) ? where.hostSetting : where.portSetting,
    `cannot listen on ${where.host}:${where.port}: ${errorMessage(error)}`,
    { cause: error },
  );
}

/**
 * A postgres:// or postgresql:// URL, or a ConfigError naming the setting. A URL that does
 * not parse is not quoted: it may hold a password.
 */
export function parseDatabaseUrl(setting: string, raw: string | undefined): string {
  if (raw === undefined || raw === '') {
    throw new ConfigError(setting, 'is not set (use --database-url or DATABASE_URL)');
  }
  const url = parseUrl(raw);
  if (!url) {
    throw new ConfigError(
      setting,
      'is not a valid URL (expected postgres://user@host:5432/database); a password containing / ? # or @ must be percent-encoded',
    );
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(
      setting,
      `unsupported scheme "${url.protocol}" (expected postgres: or postgresql:)`,
    );
  }
  return raw;
}

/** A dispatcher setting's flag, default, description and range, from dispatcher/settings.ts. */
function dispatcherOption(name: DispatcherSettingName): Option {
  const spec: WholeNumberSetting = dispatcherSettings[name];
  const floor = spec.atLeast
    ? `at least --${(dispatcherSettings[spec.atLeast as DispatcherSettingName] as WholeNumberSetting).flag}`
    : `from ${spec.min}`;
  return new Option(
    `--${spec.flag} ${spec.value}`,
    `${spec.description} (${floor}, at most ${spec.max})`,
  ).default(String(spec.default));
}

/**
 * The flags of every dispatcher setting the CLI offers, then --no-notify,
 * --on-dead-letter and --dead-letter-retention.
 */
export function dispatchOptions(): Option[] {
  const names = Object.keys(dispatcherSettings) as DispatcherSettingName[];
  return [
    ...names
      .filter((name) => !(dispatcherSettings[name] as WholeNumberSetting).libraryOnly)
      .map(dispatcherOption),
    settings.notify(),
    settings.onDeadLetter(),
    settings.deadLetterRetention(),
  ];
}

/** The dispatcher options as the CLI's flags give them (strings), checked. */
export type DispatchFlags = Partial<Record<DispatcherSettingName, string>> & {
  notify: boolean;
  onDeadLetter: string;
  deadLetterRetention?: string;
};

/** The dispatcher options of `run` and `demo`, checked before anything is opened. */
export function parseDispatchFlags(flags: DispatchFlags) {
  const retention = flags.deadLetterRetention;
  return {
    ...resolveWholeNumbers(flags, (name) => dispatcherSettings[name].flag),
    notify: flags.notify,
    onDeadLetter: deadLetterPolicy('on-dead-letter', flags.onDeadLetter),
    ...(retention !== undefined && { deadLetterRetentionMs: parseRetention(retention) }),
  };
}

/** `--dead-letter-retention`: a duration from a minute to ten years, in milliseconds. */
function parseRetention(raw: string): number {
  const { flag, minMs, maxMs } = deadLetterRetention;
  const ms = parseDuration(flag, raw);
  if (ms < minMs || ms > maxMs) {
    const range = `${minMs / 60_000}m to ${maxMs / 86_400_000}d`;
    throw new ConfigError(flag, `"${escapeControl(raw)}" is not from ${range}`);
  }
  return ms;
}

/** The flags `run` and `demo` share: where events go and how the dispatcher behaves. */
export interface DispatcherFlags extends DispatchFlags {
  schema: string;
  broker: string;
  source: string;
}

export {
  filterText,
  parseDuration,
  parseEventIds,
  parseTime,
  untouched,
} from '../common/admin-input.js';
