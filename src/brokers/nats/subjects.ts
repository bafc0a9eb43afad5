import { clip, escapeControl } from '../../common/text.js';
import type { OutboxMessage } from '../broker.js';

/**
 * A subject token from free text. The dispatcher refuses names with `.`, `*`, `>` or
 * white space when it claims them (NatsBroker.validate), since they would change the
 * subject's shape; a direct caller of publish still gets a subject of the right shape.
 * Non-ASCII is replaced, since many NATS tools assume ASCII subjects.
 */
export function subjectToken(text: string): string {
  return text.replace(/[^\x21-\x7e]|[.*>]/gu, '_') || '_';
}

/**
 * The longest subject published, in bytes. A NATS server reads each protocol line, here
 * `HPUB <subject> <reply> <header bytes> <total bytes>`, into at most its max_control_line
 * (4096 bytes unless configured) and drops the connection on a longer one; the client does
 * not check. A dropped connection looks like an outage, retried for ever, so such a subject
 * is refused instead. INFO does not announce max_control_line (only the server's
 * /varz does), so the default is assumed. 512 bytes are left for the rest of the line: ours
 * takes under 100 (`HPUB`, the reply subject `_INBOX.<22-character NUID>.<counter>`, two byte
 * counts of at most 8 digits, spaces, CRLF), and a cluster forwarding the message from server
 * to server puts the account name (up to 56 characters) on its RMSG line too.
 */
export const maxSubjectBytes = 4096 - 512;

/**
 * Why `subject` (of `message`) cannot be published: longer than a control line carries,
 * naming the longer of aggregate_type and event_type. Undefined when it fits.
 */
export function subjectLengthRefusal(
  subject: string,
  message: Pick<OutboxMessage, 'aggregateType' | 'eventType'>,
): string | undefined {
  const bytes = Buffer.byteLength(subject);
  if (bytes <= maxSubjectBytes) return undefined;
  const [field, value] =
    subjectToken(message.eventType).length >= subjectToken(message.aggregateType).length
      ? ['event_type', message.eventType]
      : ['aggregate_type', message.aggregateType];
  return `${field}: "${clip(escapeControl(value), 80)}" makes the NATS subject ${bytes} bytes, over the ${maxSubjectBytes} a NATS server's control line leaves for a subject`;
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
