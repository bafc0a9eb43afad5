import { ConfigError } from '../common/errors.js';
import { assertKnownOptions, optionNames } from '../common/options.js';
import { optionalPeers } from '../common/peers.js';
import {
  readAmqpConsumerParams,
  readAmqpSettings,
  readAmqpSourceSettings,
} from './amqp/settings.js';
import type { EventBroker } from './broker.js';
import { assertCloudEventsSource } from './cloudevents.js';
import {
  readKafkaConsumerParams,
  readKafkaSettings,
  readKafkaSourceSettings,
} from './kafka/settings.js';
import { LazyBroker, LazySource } from './lazy.js';
import { LogBroker } from './log.js';
import { MemoryBroker } from './memory.js';
import {
  readNatsConsumerParams,
  readNatsSettings,
  readNatsSourceSettings,
} from './nats/settings.js';
import type { MessageSource, MessageSourceOptions } from './source.js';
import { BrokerUrlParams, parseBrokerUrl } from './url-params.js';

export interface BrokerFromUrlOptions {
  /** CloudEvents `source` of every message. */
  source: string;
  /** Setting name used in errors. Default `broker`. */
  setting?: string;
}

const brokerFromUrlOptions = optionNames<BrokerFromUrlOptions>({ source: true, setting: true });

export const brokerSchemes = ['nats:', 'amqp:', 'amqps:', 'kafka:', 'log:', 'memory:'] as const;

/**
 * A broker from its URL: `nats://host:4222`, `amqp://user:pass@host:5672`,
 * `kafka://host:9092`, `log:` (NDJSON CloudEvents on stdout) or `memory:` (tests). Names
 * and limits are query parameters (`?stream=EDUPULSE`); an unknown one is refused, and so
 * (ConfigError naming the packages to install) is a scheme whose client is not installed.
 * The client is imported on the broker's first `connect()`.
 */
export function brokerFromUrl(url: string, options: BrokerFromUrlOptions): EventBroker {
  const source = (options as BrokerFromUrlOptions | undefined)?.source;
  if (options) assertKnownOptions('brokerFromUrl', options, brokerFromUrlOptions);
  if (source === undefined) {
    throw new ConfigError(
      'source',
      'brokerFromUrl(url, { source }) needs the CloudEvents source of the events it publishes: a URI-reference naming your service, such as "/lessons-service" (the CLI uses "/edupulse")',
    );
  }
  assertCloudEventsSource(source, 'source');
  const setting = options.setting ?? 'broker';
  const parsed = parseBrokerUrl(url, setting, `expected ${brokerSchemes.join(', ')}`);
  const params = new BrokerUrlParams(parsed, setting);
  let broker: EventBroker;
  switch (parsed.protocol) {
    case 'nats:': {
      const settings = readNatsSettings(params);
      // The consumer's parameters too, checked and unused: one URL serves both halves.
      readNatsConsumerParams(params);
      broker = new LazyBroker('nats', {
        peer: optionalPeers.nats,
        setting,
        load: async () => (await import('./nats/broker.js')).createNatsBroker(settings, source),
      });
      break;
    }
    case 'amqp:':
    case 'amqps:': {
      const settings = readAmqpSettings(params);
      // The consumer's parameters too, checked and unused: one URL serves both halves.
      readAmqpConsumerParams(params);
      broker = new LazyBroker('amqp', {
        peer: optionalPeers.amqp,
        setting,
        load: async () => (await import('./amqp/broker.js')).createAmqpBroker(settings, source),
      });
      break;
    }
    case 'kafka:': {
      const settings = readKafkaSettings(params);
      // The consumer's parameters too, checked and unused: one URL serves both halves.
      readKafkaConsumerParams(params);
      broker = new LazyBroker('kafka', {
        peer: optionalPeers.kafka,
        setting,
        load: async () => (await import('./kafka/broker.js')).createKafkaBroker(settings, source),
      });
      break;
    }
    case 'log:':
      broker = new LogBroker({ source });
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
  if (broker instanceof LazyBroker) broker.assertInstalled();
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
  let source: LazySource;
  switch (parsed.protocol) {
    case 'nats:': {
      const settings = readNatsSourceSettings(params);
      source = new LazySource('nats', settings.location, true, {
        peer: optionalPeers.nats,
        setting,
        load: async () => (await import('./nats/source.js')).createNatsSource(settings, options),
      });
      break;
    }
    case 'amqp:':
    case 'amqps:': {
      const settings = readAmqpSourceSettings(params, options.consumer);
      source = new LazySource('amqp', settings.location, false, {
        peer: optionalPeers.amqp,
        setting,
        load: async () => (await import('./amqp/source.js')).createAmqpSource(settings, options),
      });
      break;
    }
    case 'kafka:': {
      const settings = readKafkaSourceSettings(params);
      source = new LazySource('kafka', settings.location, false, {
        peer: optionalPeers.kafka,
        setting,
        load: async () => (await import('./kafka/source.js')).createKafkaSource(settings, options),
      });
      break;
    }
    default:
      throw new ConfigError(
        setting,
        `cannot consume from "${parsed.protocol}" (expected ${sourceSchemes.join(', ')})`,
      );
  }
  params.assertNoneUnknown();
  source.assertInstalled();
  return source;
}
