import type { BaseOptions } from '@platformatic/kafka';
import type { KafkaSettings } from './settings.js';

/** Few, short retries inside the client: a longer outage is the caller's backoff to handle. */
const clientRetries = 3;
const clientRetryDelayMs = 250;

/**
 * The options every client of a Kafka URL takes (the publisher's, in broker.ts, are the
 * same): the bound on connecting and on each request, retries, SASL PLAIN, TLS.
 */
export function clientOptions(settings: KafkaSettings): BaseOptions {
  const { bootstrapServers, clientId, timeoutMs, sasl, tls } = settings;
  return {
    clientId,
    bootstrapBrokers: bootstrapServers,
    timeout: timeoutMs,
    connectTimeout: timeoutMs,
    requestTimeout: timeoutMs,
    retries: clientRetries,
    retryDelay: clientRetryDelayMs,
    ...(sasl ? { sasl: { mechanism: 'PLAIN' as const, ...sasl } } : {}),
    ...(tls ? { tls: {} } : {}),
  };
}
