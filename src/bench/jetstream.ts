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

/** The server address of a `nats://host:port` URL (its query, if any, dropped). */
function server(natsUrl: string): string {
  const url = new URL(natsUrl);
  return `${url.hostname || '127.0.0.1'}:${url.port || '4222'}`;
}

/** Creates a stream over `<prefix>.>` with the settings our NATS broker would give it. */
export async function createBenchStream(natsUrl: string, label: string): Promise<BenchStream> {
  const tag = randomBytes(4).toString('hex');
  const name = `BENCH_${label.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_${tag}`;
  const subjectPrefix = `bench_${tag}`;
  const nc = await connect({ servers: server(natsUrl) });
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
      const conn = await connect({ servers: server(natsUrl) });
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
  const nc = await connect({ servers: server(natsUrl), name: 'edupulse-bench-peer' });
  return { nc, js: jetstream(nc) };
}
