import { ConfigError } from '../errors.js';
import { redactUrl } from '../observability/logger.js';

/** Query parameters of a broker URL, each read once; an unknown one is an error, not ignored. */
export class BrokerUrlParams {
  private readonly params: URLSearchParams;
  private readonly known = new Set<string>();

  constructor(
    readonly url: URL,
    private readonly setting: string,
  ) {
    this.params = url.searchParams;
  }

  string(name: string, fallback: string, pattern?: RegExp, hint?: string): string {
    this.known.add(name);
    const value = this.params.get(name) ?? fallback;
    if (pattern && !pattern.test(value)) {
      throw new ConfigError(
        this.setting,
        `${name}="${value}" is not valid${hint ? ` (${hint})` : ''}`,
      );
    }
    return value;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const raw = this.string(name, String(fallback));
    const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new ConfigError(
        this.setting,
        `${name}="${raw}" is not a whole number from ${min} to ${max}`,
      );
    }
    return value;
  }

  boolean(name: string, fallback: boolean): boolean {
    const raw = this.string(name, String(fallback));
    if (raw !== 'true' && raw !== 'false') {
      throw new ConfigError(this.setting, `${name}="${raw}" must be true or false`);
    }
    return raw === 'true';
  }

  /** Call after reading every parameter: refuses the ones nobody read (typos). */
  assertNoneUnknown(): void {
    for (const name of this.params.keys()) {
      if (!this.known.has(name)) {
        throw new ConfigError(
          this.setting,
          `unknown parameter "${name}" (this broker takes: ${[...this.known].join(', ')})`,
        );
      }
    }
  }
}

/**
 * `kafka://a:9092,b:9092` is the usual way to name several servers, but a URL allows one
 * port: every `:port` of the list but the last is written `%3A` for the parser, and the
 * Kafka broker decodes it.
 */
function encodeServerList(url: string): string {
  const match = /^(kafka:\/\/(?:[^@/?#]*@)?)([^/?#]*)(.*)$/s.exec(url);
  if (!match) return url;
  const [, head, hosts = '', rest] = match;
  const list = hosts.split(',');
  const last = list.pop() ?? '';
  return `${head}${[...list.map((host) => host.replaceAll(':', '%3A')), last].join(',')}${rest}`;
}

/** A broker URL parsed, or a ConfigError naming the setting (password redacted). */
export function parseBrokerUrl(url: string, setting: string, expected: string): URL {
  try {
    return new URL(encodeServerList(url));
  } catch {
    throw new ConfigError(setting, `"${redactUrl(url)}" is not a URL (${expected})`);
  }
}
