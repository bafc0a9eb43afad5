/**
 * NATS JetStream for tests through the NATS client only, never through the broker under
 * test: stream declarations / clean-up, and an independent ordered consumer.
 */
import { jetstream, jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import type { Consumer, ReceivedMessage } from '../brokers/conformance.js';

export interface NatsReceived extends ReceivedMessage {
  subject: string;
  /** Header values as they were on the wire, before percent-decoding. */
  raw: Record<string, string>;
}

/** The client's `servers` from a URL that may list several: `nats://a:4222,b:4222`. */
const serversOf = (url: string) => url.replace(/^nats:\/\//, '').split(',');

/** `options`: TLS and credentials, for a server that requires them. */
export async function withConnection<T>(
  url: string,
  use: (nc: NatsConnection) => Promise<T>,
  options: NodeConnectionOptions = {},
) {
  const nc = await connect({ servers: serversOf(url), ...options });
  try {
    return await use(nc);
  } finally {
    await nc.close();
  }
}

export const createStream = (
  url: string,
  stream: string,
  subjects: string[],
  limits: Partial<StreamConfig> = {},
) =>
  withConnection(url, async (nc) => {
    await (await jetstreamManager(nc)).streams.add({ name: stream, subjects, ...limits });
  });

export const deleteStream = (url: string, stream: string) =>
  withConnection(url, async (nc) => {
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => false);
  });

export const streamInfo = (url: string, stream: string) =>
  withConnection(url, async (nc) => (await jetstreamManager(nc)).streams.info(stream));

export function decodeHeader(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/**
 * An ordered consumer over the whole stream, with the NATS client only: it reconnects
 * without limit and resumes where it stopped, so it sees everything across an outage.
 * `options`: TLS and credentials, for a server that requires them.
 */
export async function consumeStream(
  url: string,
  stream: string,
  options: NodeConnectionOptions = {},
): Promise<Consumer & { received: NatsReceived[] }> {
  const nc = await connect({
    servers: serversOf(url),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    ...options,
  });
  // Short pulls: after a server restart the ordered consumer is recreated but its pull can
  // stall until heartbeats are missed, which is 2 × expires/2 (default expires: 30 s).
  const messages = await (await jetstream(nc).consumers.get(stream)).consume({ expires: 1000 });
  const received: NatsReceived[] = [];
  const reading = (async () => {
    for await (const m of messages) {
      const raw: Record<string, string> = {};
      for (const [name, values] of m.headers ?? []) raw[name.toLowerCase()] = values[0] ?? '';
      const attributes = Object.fromEntries(
        Object.entries(raw)
          .filter(([name]) => name.startsWith('ce-'))
          .map(([name, value]) => [name.slice(3), decodeHeader(value)]),
      );
      received.push({
        subject: m.subject,
        raw,
        dedupId: raw['nats-msg-id'] ?? '',
        attributes,
        contentType: raw['content-type'] ?? '',
        body: m.string(),
      });
    }
  })();
  return {
    received,
    async close() {
      await messages.close();
      await reading;
      await nc.close();
    },
  };
}
