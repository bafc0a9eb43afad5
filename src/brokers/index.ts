import { ConfigError } from '../common/errors.js';
import { createAmqpBroker } from './amqp/broker.js';
import { createAmqpSource } from './amqp/source.js';
import type { EventBroker } from './broker.js';
import { createKafkaBroker } from './kafka/broker.js';
import { createKafkaSource } from './kafka/source.js';
import { LogBroker } from './log.js';
import { MemoryBroker } from './memory.js';
import { createNatsBroker } from './nats/broker.js';
import { createNatsSource } from './nats/source.js';
import type { MessageSource, MessageSourceOptions } from './source.js';
import { BrokerUrlParams, parseBrokerUrl } from './url-params.js';

export interface BrokerFromUrlOptions {
  /** CloudEvents `source` of every message. */
  source: string;
  /** Setting name used in errors. Default `broker`. */
  setting?: string;
}

export const brokerSchemes = ['nats:', 'amqp:', 'amqps:', 'kafka:', 'log:', 'memory:'] as const;

/**
 * A broker from its URL: `nats://host:4222`, `amqp://user:pass@host:5672`,
 * `kafka://host:9092`, `log:` (NDJSON CloudEvents on stdout) or `memory:` (tests). Names
 * and limits are query parameters (`?stream=EDUPULSE`); an unknown one is refused.
 */
export function brokerFromUrl(url: string, options: BrokerFromUrlOptions): EventBroker {
  const setting = options.setting ?? 'broker';
  const parsed = parseBrokerUrl(url, setting, `expected ${brokerSchemes.join(', ')}`);
  const params = new BrokerUrlParams(parsed, setting);
  let broker: EventBroker;
  switch (parsed.protocol) {
    case 'nats:':
      broker = createNatsBroker(params, options.source);
      break;
    case 'amqp:':
    case 'amqps:':
      broker = createAmqpBroker(params, options.source);
      break;
    case 'kafka:':
      broker = createKafkaBroker(params, options.source);
      break;
    case 'log:':
      broker = new LogBroker({ source: options.source });
      break;
    case 'memory:':
      broker = new MemoryBroker();
      break;
    default:
      throw new ConfigError(
        setting,
        `unknown broker scheme "${parsed.protocol}" (expected ${brokerSchemes.join(', ')})`,
      );
  }
  params.assertNoneUnknown();
  return broker;
}

export const sourceSchemes = ['nats:', 'amqp:', 'amqps:', 'kafka:'] as const;

/**
 * The receiving side of a broker URL, for `consume()`: the same URL the dispatcher
 * publishes with (same stream, exchange, topic template), plus the consumer's own
 * parameters (`ack_wait_s`, `queue`, `from`, …); an unknown one is refused.
 */
export function sourceFromUrl(
  url: string,
  options: MessageSourceOptions & { setting?: string },
): MessageSource {
  const setting = options.setting ?? 'broker';
  const parsed = parseBrokerUrl(url, setting, `expected ${sourceSchemes.join(', ')}`);
  const params = new BrokerUrlParams(parsed, setting);
  let source: MessageSource;
  switch (parsed.protocol) {
    case 'nats:':
      source = createNatsSource(params, options);
      break;
    case 'amqp:':
    case 'amqps:':
      source = createAmqpSource(params, options);
      break;
    case 'kafka:':
      source = createKafkaSource(params, options);
      break;
    default:
      throw new ConfigError(
        setting,
        `cannot consume from "${parsed.protocol}" (expected ${sourceSchemes.join(', ')})`,
      );
  }
  params.assertNoneUnknown();
  return source;
}
