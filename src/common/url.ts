/**
 * Connection URLs as settings: parsed once, and shown only with their secrets masked.
 *
 * Redaction rule: a password is masked (`user:***@`), and a lone user where it is a token
 * (`nats://***@`, unless `password_file` holds its password); every query parameter whose name
 * says secret (`password`, `sslpassword`, `sasl_password`, `token`, `nkey`, …) shows `***`;
 * a URL that does not parse shows nothing of itself.
 */

import { ConfigError } from './errors.js';

const SECRET_PARAMETER = /pass|secret|token|nkey|seed|credential|auth|api_?key|private|signature/i;

/**
 * True for a query parameter whose value is a secret, by its name. A `…_file` parameter
 * (`password_file`) names where a secret is kept: its path is shown, its content never.
 */
export function isSecretParameter(name: string): boolean {
  return SECRET_PARAMETER.test(name) && !/_file$/i.test(name);
}

// scheme://[userinfo@]hosts[rest]: the user info may not hold / ? # (they end the authority).
const AUTHORITY = /^([a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?)([^/?#]*)(.*)$/is;

/**
 * `kafka://a:9092,b:9092` and `nats://a:4222,b:4222` name several servers, but a URL allows
 * one port: every `:` of the list but the last server's is written `%3A` for the parser.
 * `hostList(url)` gives the servers back.
 */
function encodeHostList(text: string): string {
  const match = AUTHORITY.exec(text);
  if (!match) return text;
  const [, head, hosts = '', rest] = match;
  if (!hosts.includes(',')) return text;
  const list = hosts.split(',');
  const last = list.pop() ?? '';
  return `${head}${[...list.map((host) => host.replaceAll(':', '%3A')), last].join(',')}${rest}`;
}

/**
 * The URL, or undefined when it does not parse or would be read other than as written: an
 * `@` after the host means a password holding `/`, `?` or `#` that was not
 * percent-encoded, and the parser would take part of the password for the host or path.
 */
export function parseUrl(text: string): URL | undefined {
  let url: URL;
  try {
    url = new URL(encodeHostList(text.trim()));
  } catch {
    return undefined;
  }
  const afterHost = `${url.pathname}${url.hash}${[...url.searchParams.keys()].join('')}`;
  if (decodePercent(afterHost).includes('@')) return undefined;
  return url;
}

/**
 * Refuses a URL that gives a query parameter more than once, naming `setting`. Readers
 * differ on which one counts (URLSearchParams.get takes the first, node-postgres's parser
 * the last), so a parameter given twice is refused rather than guessed:
 * `sslmode=verify-full&sslmode=disable`.
 */
export function assertParametersOnce(url: URL, setting: string): void {
  const seen = new Set<string>();
  for (const name of url.searchParams.keys()) {
    if (seen.has(name)) {
      throw new ConfigError(setting, `${name} is given more than once: give it once`);
    }
    seen.add(name);
  }
}

/** The servers of a URL's authority: `["a:9092", "b:9093"]` (ports as written, if any). */
export function hostList(url: URL): string[] {
  return decodePercent(url.host)
    .split(',')
    .map((host) => host.trim());
}

/** Percent-decoding that leaves a malformed escape as written. */
export function decodePercent(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Whether the user of a URL without a password is a secret: a NATS URL's lone user is its
 * token, unless `password_file` holds its password. Elsewhere it is only a name.
 */
export function loneUserIsSecret(url: URL): boolean {
  return url.protocol === 'nats:' && !url.searchParams.has('password_file');
}

/** What a setting's URL looks like in messages and logs: secrets masked (see the rule above). */
export function redactUrl(text: string): string {
  const url = parseUrl(text);
  if (!url) return '(a malformed URL, not shown)';
  if (url.password) url.password = '***';
  else if (url.username && loneUserIsSecret(url)) url.username = '***';
  // Each secret parameter's value replaced where it stands, the others left as written
  // (setting one through searchParams would write the whole query again, encoded).
  url.search = url.search
    .slice(1)
    .split('&')
    .map((pair) => {
      const at = pair.indexOf('=');
      const name = decodePercent((at < 0 ? pair : pair.slice(0, at)).replaceAll('+', ' '));
      return isSecretParameter(name) ? `${at < 0 ? pair : pair.slice(0, at)}=***` : pair;
    })
    .join('&');
  url.hash = '';
  const shown = url.href;
  // Give a host list its colons back (only in the authority).
  const match = AUTHORITY.exec(shown);
  if (!match) return shown;
  const [, head, hosts = '', rest] = match;
  return `${head}${hosts.replaceAll('%3A', ':').replaceAll('%3a', ':')}${rest}`;
}

/**
 * The secret parts of a URL as written and decoded: the password, every secret query
 * parameter's value, and a lone user when `userIsSecret` (a NATS token). A URL that does
 * not parse is a secret as a whole.
 */
export function urlSecrets(text: string, options: { userIsSecret?: boolean } = {}): string[] {
  const url = parseUrl(text);
  if (!url) return [text];
  const found: string[] = [];
  if (url.password) found.push(url.password, decodePercent(url.password));
  else if (url.username && options.userIsSecret) {
    found.push(url.username, decodePercent(url.username));
  }
  for (const [name, value] of url.searchParams) {
    if (isSecretParameter(name) && value) found.push(value);
  }
  return found;
}
