/**
 * consume() on NATS JetStream: the consumer conformance suite. Each target has its own
 * stream `C_<random>` over `c<random>.>` on the machine's server, deleted afterwards; the
 * outage target lives on a private nats-server that the test stops and starts.
 */
import { randomBytes } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { afterAll } from 'vitest';
import { deleteStream, withConnection } from '../helpers/nats-consumer.js';
import { type PrivateNatsServer, startNatsServer } from '../helpers/nats-server.js';
import { type ConsumerHarness, consumerConformance } from './conformance.js';

const SHARED_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

let privateServer: Promise<PrivateNatsServer> | undefined;
afterAll(async () => {
  await (await privateServer)?.destroy();
});

const harness: ConsumerHarness = {
  name: 'nats',
  deliversUnknownTypes: true,
  async target(options) {
    let server = SHARED_URL;
    let outage: { stop(): Promise<void>; start(): Promise<void> } | undefined;
    if (options?.outage) {
      privateServer ??= startNatsServer();
      const own = await privateServer;
      server = own.url;
      outage = { stop: () => own.stop(), start: () => own.start() };
    }
    const id = randomBytes(5).toString('hex');
    const stream = `C_${id}`;
    const prefix = `c${id}`;
    return {
      url: `${server}?stream=${stream}&subject_prefix=${prefix}`,
      outage,
      publishRaw: (message) =>
        withConnection(server, async (nc) => {
          const headers = natsHeaders();
          headers.set('content-type', message.contentType);
          for (const [name, value] of Object.entries(message.headers)) headers.set(name, value);
          await jetstream(nc).publish(
            `${prefix}.${message.aggregateType}.${message.eventType}`,
            message.body,
            { headers },
          );
        }),
      // JetStream consumers go with their stream.
      consumerName: (base) => base,
      cleanup: () => deleteStream(server, stream).catch(() => {}),
    };
  },
};

consumerConformance(harness);
