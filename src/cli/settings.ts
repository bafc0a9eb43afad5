import { Option } from 'commander';
import { ConfigError } from '../common/errors.js';
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
    description = 'PostgreSQL connection URL (libpq parameters: sslmode, sslrootcert, sslcert, sslkey; password_file; pooler=session)',
  ) => new Option('--database-url <url>', description).env('DATABASE_URL'),
  schema: () =>
    new Option('--schema <name>', 'schema holding the outbox tables')
      .env('OUTBOX_SCHEMA')
      .default('public'),
  broker: () =>
    new Option('--broker <url>', 'where events go: log: (NDJSON CloudEvents on stdout)')
      .env('OUTBOX_BROKER_URL')
      .default('log:'),
  source: () =>
    new Option('--source <uri-reference>', 'CloudEvents source of every event').default(
      '/edupulse',
    ),
  notify: () => new Option('--no-notify', 'do not LISTEN for the outbox trigger; poll only'),
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

/** A dispatcher setting's flag, default and description, from dispatcher/settings.ts. */
function dispatcherOption(name: DispatcherSettingName): Option {
  const spec: WholeNumberSetting = dispatcherSettings[name];
  return new Option(`--${spec.flag} ${spec.value}`, spec.description).default(String(spec.default));
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

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `90s`, `15m`, `12h`, `30d` in milliseconds, or a ConfigError naming the setting. */
export function parseDuration(setting: string, raw: string): number {
  const match = DURATION.exec(raw.trim());
  const ms = match ? Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS] : Number.NaN;
  if (!Number.isSafeInteger(ms)) {
    throw new ConfigError(
      setting,
      `"${escapeControl(raw)}" is not a duration (like 90s, 15m, 12h or 30d)`,
    );
  }
  return ms;
}

// The times the CLI accepts: PostgreSQL has no year 0 and JavaScript writes years past
// 9999 with a sign PostgreSQL does not read, so a time outside these years would only
// come back as a database error.
const EARLIEST_MS = Date.parse('0001-01-01T00:00:00.000Z');
const LATEST_MS = Date.parse('9999-12-31T23:59:59.999Z');
const TIME_WINDOW = 'the years 0001 to 9999 (UTC)';

const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * The instant an ISO 8601 time names, or undefined when a field is not a real one
 * (2026-02-30, 25:00): the fields must come back unchanged from the calendar. As in
 * `Date.parse`, a date alone is UTC and a time without an offset is local time.
 */
function isoInstant(text: string): number | undefined {
  const match = ISO_TIME.exec(text);
  if (!match) return undefined;
  const [, year, month, day, hour = '0', minute = '0', second = '0', fraction = '', zone] = match;
  const [y, mo, d] = [Number(year), Number(month) - 1, Number(day)];
  const [h, mi, s] = [Number(hour), Number(minute), Number(second)];
  const ms = Number(fraction.slice(0, 3).padEnd(3, '0'));
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0-99 as 1900-1999.
  const date = new Date(0);
  date.setUTCFullYear(y, mo, d);
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo || date.getUTCDate() !== d) {
    return undefined;
  }
  if (h > 23 || mi > 59 || s > 59) return undefined;
  if (match[4] === undefined) return date.getTime(); // a date alone
  if (zone === undefined) {
    const local = new Date(0);
    local.setFullYear(y, mo, d);
    local.setHours(h, mi, s, ms);
    return local.getTime();
  }
  date.setUTCHours(h, mi, s, ms);
  if (zone === 'Z') return date.getTime();
  const offset = /^([+-])(\d{2}):?(\d{2})$/.exec(zone);
  const [offsetHours, offsetMinutes] = [Number(offset?.[2]), Number(offset?.[3])];
  if (offsetHours > 23 || offsetMinutes > 59) return undefined;
  const sign = offset?.[1] === '-' ? -1 : 1;
  return date.getTime() - sign * (offsetHours * 60 + offsetMinutes) * 60_000;
}

/**
 * A point in time: an ISO 8601 timestamp (`2026-11-27T10:00:00Z`) or a duration ago
 * (`2h`), in the years 0001-9999, or a ConfigError naming the setting.
 */
export function parseTime(setting: string, raw: string, now = Date.now()): Date {
  const text = raw.trim();
  const shown = escapeControl(raw);
  if (DURATION.test(text)) {
    const time = now - parseDuration(setting, raw);
    if (time < EARLIEST_MS) {
      throw new ConfigError(setting, `"${shown}" ago is not within ${TIME_WINDOW}`);
    }
    return new Date(time);
  }
  if (!ISO_TIME.test(text)) {
    throw new ConfigError(
      setting,
      `"${shown}" is neither an ISO 8601 time (2026-11-27T10:00:00Z) nor a duration ago (2h)`,
    );
  }
  const time = isoInstant(text);
  if (time === undefined) {
    throw new ConfigError(setting, `"${shown}" is not a real date and time`);
  }
  if (time < EARLIEST_MS || time > LATEST_MS) {
    throw new ConfigError(setting, `"${shown}" is not within ${TIME_WINDOW}`);
  }
  return new Date(time);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Event ids (CloudEvent ids, UUIDs), or a ConfigError naming the setting. */
export function parseEventIds(setting: string, raw: readonly string[]): string[] {
  for (const id of raw) {
    if (!UUID.test(id)) throw new ConfigError(setting, `"${id}" is not an event id (a UUID)`);
  }
  return [...raw];
}
