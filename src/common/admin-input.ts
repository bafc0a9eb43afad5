import { ConfigError } from './errors.js';
import { escapeControl } from './text.js';

/*
 * What an operator types to pick events: durations, times and event ids. The CLI's flags
 * and the console's API read them alike, and refuse them alike (a ConfigError naming the
 * setting or field).
 */

// Room for whatever a dead letter holds: an error is kept to 2,000 characters (and the
// count of the rest), an event type or aggregate id as long as the index takes.
const TEXT_MAX = 8000;

/**
 * A filter's text (an event type, an error to look for): 1 to 8,000 characters. Empty text
 * is refused rather than read as no filter: `--error-contains ""` is contained in every
 * error, so a retry or discard given it would take every dead letter without `--all`.
 */
export function filterText(setting: string, value: unknown): string {
  if (typeof value !== 'string' || value === '' || value.length > TEXT_MAX) {
    throw new ConfigError(setting, `expected text of 1 to ${TEXT_MAX} characters`);
  }
  // PostgreSQL's text cannot hold it: no row could match, and the server refuses the value.
  if (value.includes('\0')) {
    throw new ConfigError(setting, 'contains a NUL character, which no stored text can hold');
  }
  return value;
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
      `"${escapeControl(raw)}" is not a duration (a whole number and ms, s, m, h or d: 15m, 12h, 30d)`,
    );
  }
  return ms;
}

// The times accepted: PostgreSQL has no year 0 and JavaScript writes years past
// 9999 with a sign PostgreSQL does not read, so a time outside these years would only
// come back as a database error.
export const EARLIEST_MS = Date.parse('0001-01-01T00:00:00.000Z');
export const LATEST_MS = Date.parse('9999-12-31T23:59:59.999Z');
export const TIME_WINDOW = 'the years 0001 to 9999 (UTC)';

const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

// Microseconds past the millisecond, of the Dates parseTime made from a time that gave
// them: PostgreSQL keeps microseconds and the commands print them, so a time copied from
// a listing must name the instant it shows, not the millisecond before it.
const extraMicros = new WeakMap<Date, number>();

/** `date` as ISO 8601 text, with the microseconds it was given (see parseTime). */
export function isoWithMicros(date: Date): string {
  const micros = extraMicros.get(date);
  const iso = date.toISOString();
  return micros ? `${iso.slice(0, -1)}${String(micros).padStart(3, '0')}Z` : iso;
}

/**
 * The instant an ISO 8601 time names, or undefined when a field is not a real one
 * (2026-02-30, 25:00): the fields must come back unchanged from the calendar. A date
 * alone, and a time without an offset, are UTC, as every time the commands and the
 * console show: not the local time of the machine that parses them (a console's server
 * is not where its user sits).
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
  date.setUTCHours(h, mi, s, ms);
  if (zone === undefined || zone === 'Z') return date.getTime();
  const offset = /^([+-])(\d{2}):?(\d{2})$/.exec(zone);
  const [offsetHours, offsetMinutes] = [Number(offset?.[2]), Number(offset?.[3])];
  if (offsetHours > 23 || offsetMinutes > 59) return undefined;
  const sign = offset?.[1] === '-' ? -1 : 1;
  return date.getTime() - sign * (offsetHours * 60 + offsetMinutes) * 60_000;
}

/**
 * Refuses a time window that nothing can match: `until` (exclusive) not after `since`,
 * such as the two given the wrong way round.
 */
export function assertTimeWindow(
  since: Date | undefined,
  until: Date | undefined,
  names: { since: string; until: string },
): void {
  const micros = (date: Date) => date.getTime() * 1000 + (extraMicros.get(date) ?? 0);
  if (since && until && micros(until) <= micros(since)) {
    throw new ConfigError(
      names.until,
      `${isoWithMicros(until)} is not after ${names.since} (${isoWithMicros(since)}): no time lies between them`,
    );
  }
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
      `"${shown}" is neither an ISO 8601 time (2026-11-27T10:00:00Z) nor a duration ago (a whole number and ms, s, m, h or d: 2h, 7d)`,
    );
  }
  const time = isoInstant(text);
  if (time === undefined) {
    throw new ConfigError(setting, `"${shown}" is not a real date and time`);
  }
  if (time < EARLIEST_MS || time > LATEST_MS) {
    throw new ConfigError(setting, `"${shown}" is not within ${TIME_WINDOW}`);
  }
  const date = new Date(time);
  // The fraction's digits past the millisecond (isoInstant used the first three).
  const micros = Number((ISO_TIME.exec(text)?.[7] ?? '').slice(3, 6).padEnd(3, '0'));
  if (micros > 0) extraMicros.set(date, micros);
  return date;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Event ids (CloudEvent ids, UUIDs), or a ConfigError naming the setting. */
export function parseEventIds(setting: string, raw: readonly string[]): string[] {
  for (const id of raw) {
    if (!UUID.test(id)) throw new ConfigError(setting, `"${id}" is not an event id (a UUID)`);
  }
  return [...raw];
}

/**
 * The ids asked for that an action (retry, discard) did not touch: not dead letters, or
 * not any more. The outbox's event ids are UUIDs, equal whatever their case; a consumer's
 * are compared as given (`exact`).
 */
export function untouched(
  asked: readonly string[],
  touched: readonly string[],
  exact = false,
): string[] {
  const key = (id: string) => (exact ? id : id.toLowerCase());
  const done = new Set(touched.map(key));
  return asked.filter((id) => !done.has(key(id)));
}
