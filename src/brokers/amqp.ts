import { ConfigError } from '../errors.js';
import type { EventBroker } from './broker.js';
import type { BrokerUrlParams } from './names.js';

export function createAmqpBroker(params: BrokerUrlParams, _source: string): EventBroker {
  throw new ConfigError('broker', `${params.url.protocol} is not implemented yet`);
}
