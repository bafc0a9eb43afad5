/**
 * Text that came from the outbox table (aggregate ids, event types, errors) on its way to a
 * terminal or a log line: anyone who can INSERT a row chooses it, so it is escaped and cut.
 */

// C0 controls, DEL and C1 controls (U+009B is a one-byte CSI on some terminals), plus the
// line and paragraph separators and the bidirectional overrides that reorder what is shown,
// and unpaired surrogates (a terminal would show U+FFFD, hiding what is there; with the `u`
// flag the surrogate range matches only unpaired ones, so emoji pass).
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]/u;
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'gu');

/** `\n`, `\u001b`, …: control and reordering characters made visible; everything else as is. */
export function escapeControl(text: string): string {
  if (!UNSAFE.test(text)) return text;
  return text.replace(UNSAFE_ALL, (char) => {
    switch (char) {
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      case '\t':
        return '\\t';
      default:
        return `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
    }
  });
}

/** Default longest text a log field carries. */
export const CLIP_CHARS = 200;

/** `text`, or its first `max` characters and how long it was: `abc… (102400 characters)`. */
export function clip(text: string, max = CLIP_CHARS): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}… (${text.length} characters)`;
}

// What JSON.stringify leaves raw: it escapes C0 controls but not DEL, C1 controls, the
// separators or the bidi overrides. These only occur inside JSON strings, where `\uXXXX`
// stands for the same character.
const UNSAFE_IN_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON.stringify for a terminal: no raw control or reordering character, same value parsed. */
export function jsonForTerminal(value: unknown, indent?: number): string {
  return jsonTextForTerminal(JSON.stringify(value, null, indent));
}

/** Valid JSON text (a stored payload) for a terminal, as jsonForTerminal writes it. */
export function jsonTextForTerminal(text: string): string {
  return text.replace(
    UNSAFE_IN_JSON,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** `1 dead letter`, `2 dead letters`: a count with its noun, plural unless one. */
export function counted(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

// What the CloudEvents String type excludes: control characters and Unicode
// noncharacters (U+FDD0 to U+FDEF and the last two code points of every plane); and an
// unpaired surrogate, which is not text at all (PostgreSQL cannot store it, and a driver
// replaces it on the way).
const NOT_CLOUDEVENTS_TEXT = /\p{Cc}|\p{Noncharacter_Code_Point}|\p{Surrogate}/u;

/**
 * The first character of `text` no CloudEvents attribute may carry, as `U+000A`, or
 * undefined when there is none.
 */
export function unsendableCharacter(text: string): string | undefined {
  const bad = NOT_CLOUDEVENTS_TEXT.exec(text)?.[0];
  if (bad === undefined) return undefined;
  return `U+${(bad.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/** The reason a field holding `code` is refused, the same before commit and at claim. */
export const unsendableReason = (code: string) =>
  `contains ${code}, a character no CloudEvents attribute may carry`;

/**
 * What kind of value was passed, for an error that refuses it: `undefined`, `a string`,
 * `a Pool`, `a plain object with keys query, release`. Never the value itself, which may
 * be a secret or a connection string.
 */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') {
    return value.name ? `a function (${clip(escapeControl(value.name), 60)})` : 'a function';
  }
  if (typeof value !== 'object') return `a ${typeof value}`;
  const prototype = Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null;
  const name = prototype?.constructor?.name;
  if (prototype !== null && prototype !== Object.prototype && typeof name === 'string' && name) {
    return `${/^[AEIOU]/.test(name) ? 'an' : 'a'} ${clip(escapeControl(name), 60)}`;
  }
  const keys = Object.keys(value);
  if (keys.length === 0) return 'an empty object';
  const shown = keys.slice(0, 5).map((key) => clip(escapeControl(key), 40));
  return `a plain object with keys ${shown.join(', ')}${keys.length > 5 ? ', …' : ''}`;
}

/** `512 bytes`, `2.0 MiB`: sizes in refusals. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * A size and the limit it exceeds as formatBytes writes them, or in bytes where rounding
 * would make them look alike (`4100 bytes` over `4096 bytes`, not `4.0 KiB` over `4.0 KiB`).
 */
export function sizeOverLimit(bytes: number, limit: number): [size: string, limit: string] {
  const size = formatBytes(bytes);
  const max = formatBytes(limit);
  return size === max ? [`${bytes} bytes`, `${limit} bytes`] : [size, max];
}

/** `2.0 MiB exceeds maxPayloadBytes (1.0 MiB)`: a size over a limit, the limit named. */
export function bytesOverLimit(bytes: number, limit: number, limitName: string): string {
  const [size, max] = sizeOverLimit(bytes, limit);
  return `${size} exceeds ${limitName} (${max})`;
}
