import { ConfigError } from '../errors.js';
import type { EventBroker } from './broker.js';
import { LogBroker } from './log.js';
import { MemoryBroker } from './memory.js';

export interface BrokerFromUrlOptions {
  /** CloudEvents `source` of every message. */
  source: string;
  /** Setting name used in errors. Default `broker`. */
  setting?: string;
}

export const brokerSchemes = ['log:', 'memory:'] as const;

/** `log:` → NDJSON CloudEvents on stdout; `memory:` → kept in memory (tests). */
export function brokerFromUrl(url: string, options: BrokerFromUrlOptions): EventBroker {
  const setting = options.setting ?? 'broker';
  let scheme: string;
  try {
    scheme = new URL(url).protocol;
  } catch {
    throw new ConfigError(setting, `"${url}" is not a URL (expected ${brokerSchemes.join(', ')})`);
  }
  switch (scheme) {
    case 'log:':
      return new LogBroker({ source: options.source });
    case 'memory:':
      return new MemoryBroker();
    default:
      throw new ConfigError(
        setting,
        `unknown broker scheme "${scheme}" (expected ${brokerSchemes.join(', ')})`,
      );
  }
}
