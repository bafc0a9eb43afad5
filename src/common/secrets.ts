/**
 * The secrets of this process's settings (passwords, tokens), so that whatever is printed
 * — a log line, an error and its stack, an HTTP answer — can be swept for them. A safety
 * net behind redactUrl: a library or server message that quotes a setting back cannot
 * carry its secret out.
 */
import { urlSecrets } from './url.js';

const secrets = new Set<string>();

// Shorter values are left to the structural redaction: masking every "abc" in the
// output would garble it without protecting a secret that short.
const MIN_LENGTH = 4;

/** Remembers a secret (and its percent- and JSON-encoded forms) for `scrubSecrets`. */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < MIN_LENGTH) return;
  for (const form of [value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)]) {
    if (form.length >= MIN_LENGTH) secrets.add(form);
  }
}

/** Remembers the secrets of a URL setting (see urlSecrets). */
export function registerUrlSecrets(url: string, options: { userIsSecret?: boolean } = {}): void {
  for (const secret of urlSecrets(url, options)) registerSecret(secret);
}

/** What a secret shows as. */
export const MASK = '***';

/** `text` with every registered secret replaced by `***`. */
export function scrubSecrets(text: string): string {
  let scrubbed = text;
  // Longest first, so a secret that contains another is replaced whole.
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (scrubbed.includes(secret)) scrubbed = scrubbed.split(secret).join(MASK);
  }
  return scrubbed;
}

/**
 * Keys whose values are the events' own data, which producers chose: ids, types,
 * aggregates, payloads, headers. They are shown as they are, even where a secret's text
 * occurs in them (a password `guest` and an aggregate id `guest-lesson-1`): masking them
 * would show an operator ids and payloads that are not there.
 */
const DATA_KEYS: ReadonlySet<string> = new Set([
  'id',
  'eventId',
  'eventType',
  'aggregateType',
  'aggregateId',
  'type',
  'payload',
  'headers',
  'body',
  'origin',
]);

/**
 * `value` with every string swept by `scrubSecrets`, except under the keys of the events'
 * own data (and their keys, which are data too). For what is printed as JSON: log fields,
 * the console's answers. Errors are left to the logger's serializer.
 */
export function scrubSecretsIn<T>(value: T): T {
  if (secrets.size === 0) return value;
  return sweep(value) as T;
}

function sweep(value: unknown): unknown {
  if (typeof value === 'string') return scrubSecrets(value);
  if (typeof value !== 'object' || value === null || value instanceof Error) return value;
  if (Array.isArray(value)) return value.map(sweep);
  const swept: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    swept[key] = DATA_KEYS.has(key) ? field : sweep(field);
  }
  return swept;
}
