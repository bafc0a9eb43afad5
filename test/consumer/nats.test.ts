/**
 * consume() on NATS JetStream: the consumer conformance suite. Each target has its own
 * stream `C_<random>` over `c<random>.>` on the machine's server, deleted afterwards; the
 * outage target lives on a private nats-server that the test stops and starts.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { afterAll, expect, it } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { consume } from '../../src/consumer/index.js';
import { QuizSubmitted } from '../../src/index.js';
import { createPgTestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { deleteStream, withConnection } from '../helpers/nats-consumer.js';
import { type PrivateNatsServer, startNatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/wait.js';
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

it('deliver=new skips the history at the first start, and at every start until it acks', async () => {
  const pg = await createPgTestSchema('consume_nats_new');
  const id = randomBytes(5).toString('hex');
  const url = `${SHARED_URL}?stream=C_${id}&subject_prefix=c${id}`;
  const publish = async (count: number) => {
    const broker = brokerFromUrl(url, { source: '/edupulse/consumer-test' });
    await broker.connect();
    try {
      await broker.publish(Array.from({ length: count }, () => quizMessage(randomUUID())));
    } finally {
      await broker.close();
    }
  };
  const handled: string[] = [];
  const run = () =>
    consume({
      broker: `${url}&deliver=new`,
      consumer: 'newcomer',
      database: pg.db,
      schema: pg.schema,
      events: [QuizSubmitted],
      handler: (event) => {
        handled.push(event.id);
      },
    });
  try {
    await publish(5);
    // Two runs that receive nothing: the history stays behind both.
    for (let i = 0; i < 2; i++) {
      const idle = await run();
      await new Promise((resolve) => setTimeout(resolve, 500));
      await idle.stop();
      expect(idle.stats.received, `run ${i + 1}`).toBe(0);
    }
    const last = await run();
    await publish(1);
    await waitFor('the new event', () => handled.length >= 1, { timeoutMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await last.stop();
    expect(last.stats.received).toBe(1);
    expect(handled).toHaveLength(1);
  } finally {
    await deleteStream(SHARED_URL, `C_${id}`).catch(() => {});
    await pg.drop();
  }
});
