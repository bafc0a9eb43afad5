import { isIP } from 'node:net';
import type { BaseOptions } from '@platformatic/kafka';
import type { KafkaSettings } from './settings.js';

/** Few, short retries inside the client: a longer outage is the caller's backoff to handle. */
const clientRetries = 3;
const clientRetryDelayMs = 250;

/**
 * The options every client of a Kafka URL takes (the publisher's, in broker.ts, are the
 * same): the bound on connecting and on each request, retries, SASL, TLS.
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
    ...(sasl ? { sasl: { ...sasl } } : {}),
    // Node's TLS options: `ca` replaces the default store, `cert`/`key` a client certificate.
    ...(tls ? { tls: { ...tls }, tlsServerName: namedHosts(bootstrapServers) } : {}),
  };
}

/**
 * Whether to send each broker's host name in the TLS handshake (SNI), which proxies and
 * hosted clusters route by; Node sends none unless told. Only for a cluster addressed by
 * name: Node warns when told to send an IP address, which SNI does not allow.
 */
function namedHosts(servers: readonly string[]): boolean {
  return servers.every((server) => isIP(server.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')) === 0);
}
