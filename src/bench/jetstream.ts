import { randomBytes } from 'node:crypto';
import { type JetStreamClient, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, nanos } from '@nats-io/transport-node';

/**
 * A JetStream stream of one measurement's own, so runs never share messages or the
 * duplicate window; `remove()` deletes it with everything it stored.
 */
export interface BenchStream {
  name: string;
  subjectPrefix: string;
  /** `nats://…?stream=…&subject_prefix=…`, for `brokerFromUrl`. */
  brokerUrl: string;
  remove(): Promise<void>;
}

/**
 * Connects to the server of a `nats://[user:pass@|token@]host:port` URL, with its
 * credentials read as our NATS broker reads them (its query, if any, ignored).
 */
export function natsConnection(natsUrl: string, name = 'edupulse-bench'): Promise<NatsConnection> {
  const { hostname, port, username, password } = new URL(natsUrl);
  const user = decodeURIComponent(username);
  return connect({
    servers: `${hostname || '127.0.0.1'}:${port || '4222'}`,
    name,
    ...(password ? { user, pass: decodeURIComponent(password) } : user ? { token: user } : {}),
  });
}

/** Creates a stream over `<prefix>.>` with the settings our NATS broker would give it. */
export async function createBenchStream(natsUrl: string, label: string): Promise<BenchStream> {
  const tag = randomBytes(4).toString('hex');
  const name = `BENCH_${label.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_${tag}`;
  const subjectPrefix = `bench_${tag}`;
  const nc = await natsConnection(natsUrl);
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({
      name,
      subjects: [`${subjectPrefix}.>`],
      duplicate_window: nanos(120_000),
    });
  } finally {
    await nc.close();
  }
  const url = new URL(natsUrl);
  url.searchParams.set('stream', name);
  url.searchParams.set('subject_prefix', subjectPrefix);
  return {
    name,
    subjectPrefix,
    brokerUrl: url.href,
    async remove() {
      const conn = await natsConnection(natsUrl);
      try {
        await (await jetstreamManager(conn)).streams.delete(name);
      } finally {
        await conn.close();
      }
    },
  };
}

/** A bare JetStream client, for publishing the way a peer's message handler would. */
export async function connectJetStream(
  natsUrl: string,
): Promise<{ nc: NatsConnection; js: JetStreamClient }> {
  const nc = await natsConnection(natsUrl, 'edupulse-bench-peer');
  return { nc, js: jetstream(nc) };
}
