/**
 * A subject token from free text. The dispatcher refuses names with `.`, `*`, `>` or
 * white space when it claims them (NatsBroker.validate), since they would change the
 * subject's shape; a direct caller of publish still gets a subject of the right shape.
 * Non-ASCII is replaced, since many NATS tools assume ASCII subjects.
 */
export function subjectToken(text: string): string {
  return text.replace(/[^\x21-\x7e]|[.*>]/gu, '_') || '_';
}

const needsEscape = /[^\x21-\x7e]|["%]/u;

/**
 * Header value per the CloudEvents NATS binding: space, `"`, `%` and everything outside
 * printable ASCII are percent-encoded as UTF-8 bytes (a raw CR or LF would break the
 * header block; the client refuses them).
 */
export function headerValue(value: string): string {
  // Most values need no escape: testing first spares building a new string for them.
  if (!needsEscape.test(value)) return value;
  return value.replace(/[^\x21-\x7e]|["%]/gu, (char) =>
    Array.from(
      Buffer.from(char, 'utf8'),
      (byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`,
    ).join(''),
  );
}

/** True when the stream subject filter `filter` matches every subject of `pattern` (no `>`). */
export function captures(filter: string, pattern: string): boolean {
  const f = filter.split('.');
  const p = pattern.split('.');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return i < p.length;
    if (i >= p.length || (f[i] !== '*' && f[i] !== p[i])) return false;
  }
  return f.length === p.length;
}
