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

/** `text` with every registered secret replaced by `***`. */
export function scrubSecrets(text: string): string {
  let scrubbed = text;
  // Longest first, so a secret that contains another is replaced whole.
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (scrubbed.includes(secret)) scrubbed = scrubbed.split(secret).join('***');
  }
  return scrubbed;
}
