import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { ConfigError } from './errors.js';
import { registerSecret } from './secrets.js';
import { clip, escapeControl } from './text.js';

/**
 * Who may reach an HTTP endpoint of ours (the console, the metrics and health endpoints):
 * on a loopback address anyone on this machine; on any other address only requests that
 * carry the token, `Authorization: Bearer <token>`.
 */

/** The shortest token taken: long enough not to be guessed. */
export const TOKEN_MIN = 16;

// A host name: dot-separated labels of letters, digits and inner hyphens.
const HOST_NAME =
  /^(?=.{1,253}\.?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/**
 * Refuses, naming `setting`, an address to bind that is none: empty (which Node reads as
 * every interface, as an unset variable in a template would give), or neither an IP
 * address nor a host name.
 */
export function assertBindAddress(setting: string, host: string): void {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare) !== 0 || HOST_NAME.test(host)) return;
  throw new ConfigError(
    setting,
    host.trim() === ''
      ? 'is empty: give the address to bind (127.0.0.1, the default; 0.0.0.0 for every interface, with a token)'
      : `"${clip(escapeControl(host), 80)}" is not an address to bind (an IP address such as 127.0.0.1 or 0.0.0.0, or a host name)`,
  );
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127\.\d+\.\d+\.\d+$/.test(bare);
}

/**
 * The access rule, checked before anything listens: loopback needs nothing; any other
 * address needs a token, long enough not to be guessed and sendable in a header.
 * `what` names the endpoint (`the console`), `give` how to give it a token.
 */
export function checkTokenAccess(
  host: string,
  token: string | undefined,
  setting: string,
  what: string,
  give: string,
): void {
  if (token !== undefined && token.length < TOKEN_MIN) {
    throw new ConfigError(setting, `must be at least ${TOKEN_MIN} characters`);
  }
  // An Authorization header loses the spaces around a value and cannot carry a line
  // break: a token holding one would start the endpoint and refuse every request.
  if (token !== undefined && /\s/.test(token)) {
    throw new ConfigError(
      setting,
      'holds whitespace (a space, tab or line break), which no request can send back as it is',
    );
  }
  // Node reads header values as Latin-1, and browsers and curl send a value outside
  // printable ASCII each their own way: such a token would refuse every request.
  if (token !== undefined && /[^\x21-\x7e]/.test(token)) {
    throw new ConfigError(
      setting,
      'holds a character outside printable ASCII (letters, digits and punctuation), which requests do not send back alike',
    );
  }
  if (token === undefined && !isLoopback(host)) {
    throw new ConfigError(
      setting,
      `${host} is reachable beyond this machine: give ${what} a token (${give}), or bind 127.0.0.1`,
    );
  }
}

/** The token as compared: digests of equal length, compared in constant time. */
const tokenDigest = (value: string) => createHash('sha256').update(value).digest();

/**
 * Why a request is refused under a token, or undefined when it carries the token. Says
 * what is wrong (none, in the URL, another scheme, not this token), never what is right.
 */
function tokenRefusal(request: IncomingMessage, url: URL, expected: Buffer): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) {
    return ['token', 'access_token'].some((name) => url.searchParams.has(name))
      ? 'a token in the URL is not read (URLs end up in logs and histories): send it as Authorization: Bearer <token>'
      : 'a token is required: Authorization: Bearer <token>';
  }
  const match = /^Bearer (.+)$/i.exec(header);
  if (match?.[1] === undefined) return 'the Authorization header must be Bearer <token>';
  return timingSafeEqual(tokenDigest(match[1]), expected) ? undefined : 'the token is not accepted';
}

/**
 * Without a token an endpoint trusts whoever reaches it, so it must be this machine: a
 * page of another site that renamed its host to 127.0.0.1 (DNS rebinding) sends its own
 * Host.
 */
function hostIsLoopback(request: IncomingMessage): boolean {
  const host = request.headers.host ?? '';
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0];
  return isLoopback(name ?? '');
}

/** Why a request is not answered: 401 without the token, 403 to a host beyond loopback. */
export interface AccessRefusal {
  status: 401 | 403;
  reason: string;
}

/**
 * The check every request meets (after checkTokenAccess passed at start): with a token,
 * it must carry it; without one, it must be addressed to a loopback host. The token is
 * kept among the secrets never printed.
 */
export function requestGuard(
  token: string | undefined,
): (request: IncomingMessage, url: URL) => AccessRefusal | undefined {
  registerSecret(token);
  const expected = token === undefined ? undefined : tokenDigest(token);
  return (request, url) => {
    if (expected) {
      const reason = tokenRefusal(request, url, expected);
      return reason === undefined ? undefined : { status: 401, reason };
    }
    return hostIsLoopback(request)
      ? undefined
      : {
          status: 403,
          reason:
            'without a token only requests addressed to 127.0.0.1, ::1 or localhost are answered',
        };
  };
}
