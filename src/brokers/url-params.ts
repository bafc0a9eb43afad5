import { ConfigError } from '../common/errors.js';
import { readWholeNumber } from '../common/numbers.js';
import { closestName } from '../common/options.js';
import { clip, escapeControl } from '../common/text.js';
import { assertParametersOnce, decodePercent, hostList, parseUrl } from '../common/url.js';

/** One server of a broker URL; an IPv6 host keeps its brackets. */
export interface BrokerServer {
  host: string;
  port: number;
}

const SERVER = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9._-]+)(?::(\d{1,5}))?$/;

/** Query parameters of a broker URL, each read once; an unknown one is an error, not ignored. */
export class BrokerUrlParams {
  private readonly params: URLSearchParams;
  private readonly known = new Set<string>();

  constructor(
    readonly url: URL,
    /** The setting the URL came from, for errors (`broker` by default). */
    readonly setting: string,
  ) {
    this.params = url.searchParams;
    assertParametersOnce(url, setting);
  }

  /** The parameter's value as written, or undefined when the URL does not give it. */
  optional(name: string): string | undefined {
    this.known.add(name);
    return this.params.get(name) ?? undefined;
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
    const value = readWholeNumber(raw, min, max);
    if (value === undefined) {
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

  /**
   * The servers of the URL's authority (`a:5672,b:5672`, see hostList), each as host and
   * port, `defaultPort` where none is written; `what` names a server in the error.
   */
  servers(defaultPort: number, what: string): BrokerServer[] {
    return hostList(this.url).map((server) => {
      const match = SERVER.exec(server);
      const port = Number(match?.[2] ?? defaultPort);
      if (!match?.[1] || port < 1 || port > 65_535) {
        throw new ConfigError(
          this.setting,
          `"${server}" is not ${what} (expected host:port, several separated by commas)`,
        );
      }
      return { host: match[1], port };
    });
  }

  /**
   * Refuses a path, for a broker whose URLs have none (`/` alone is the empty one): it
   * would be ignored without a word, where a stream or topic was perhaps meant.
   */
  assertNoPath(hint: string): void {
    const path = this.url.pathname;
    if (path === '' || path === '/') return;
    throw new ConfigError(
      this.setting,
      `the path "${clip(escapeControl(decodePercent(path)), 80)}" means nothing in this URL (${hint})`,
    );
  }

  /** Call after reading every parameter: refuses the ones nobody read (typos). */
  assertNoneUnknown(): void {
    for (const name of this.params.keys()) {
      if (!this.known.has(name)) {
        const meant = closestName(name, this.known);
        throw new ConfigError(
          this.setting,
          `unknown parameter "${name}"${meant ? `; did you mean "${meant}"?` : ''} (${this.known.size > 0 ? `this broker takes: ${[...this.known].join(', ')}` : 'this broker takes none'})`,
        );
      }
    }
  }
}

/**
 * A broker URL parsed (several servers allowed: `kafka://a:9092,b:9092`), or a ConfigError
 * naming the setting. A URL that does not parse is not quoted: it may hold a password.
 */
export function parseBrokerUrl(url: string, setting: string, expected: string): URL {
  const parsed = parseUrl(url);
  if (!parsed) {
    throw new ConfigError(
      setting,
      `is not a valid URL (${expected}); a password containing / ? # or @ must be percent-encoded`,
    );
  }
  return parsed;
}

/**
 * A broker's settings from its URL alone, read by that broker's own reader and with
 * unknown parameters refused: what tools (the benchmarks) use to configure a client the
 * way the broker would.
 */
export function settingsFromUrl<T>(
  url: string,
  read: (params: BrokerUrlParams) => T,
  setting = 'broker',
): T {
  const params = new BrokerUrlParams(parseBrokerUrl(url, setting, 'a broker URL'), setting);
  const settings = read(params);
  params.assertNoneUnknown();
  return settings;
}
