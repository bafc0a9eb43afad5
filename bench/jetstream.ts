import { randomBytes } from 'node:crypto';
import { type JetStreamClient, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, nanos } from '@nats-io/transport-node';
import { natsSettings } from 'edupulse-outbox';

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
 * Connects to the servers of a `nats://[user:pass@|token@]host:port` URL, with its
 * servers, credentials and TLS read as our NATS broker reads them.
 */
export function natsConnection(natsUrl: string, name = 'edupulse-bench'): Promise<NatsConnection> {
  const { servers, auth, tls } = natsSettings(natsUrl, 'nats-url');
  if (auth?.kind === 'nkey' || auth?.kind === 'creds') {
    throw new Error('nats-url: the benchmarks log in with a user and password or a token');
  }
  return connect({
    servers,
    name,
    ...(auth?.kind === 'password' ? { user: auth.user, pass: auth.pass } : {}),
    ...(auth?.kind === 'token' ? { token: auth.token } : {}),
    ...(tls ? { tls } : {}),
  });
}

const needsEscape = /[^\x21-\x7e]|["%]/u;

/**
 * A header value as the CloudEvents NATS binding writes it: space, `"`, `%` and everything
 * outside printable ASCII percent-encoded as UTF-8 bytes. The reference publisher's own
 * copy, so it is measured independently of the adapter it is compared with.
 */
export function natsHeaderValue(value: string): string {
  if (!needsEscape.test(value)) return value;
  return value.replace(/[^\x21-\x7e]|["%]/gu, (char) =>
    Array.from(
      Buffer.from(char, 'utf8'),
      (byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`,
    ).join(''),
  );
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
