/**
 * consume() on NATS JetStream: the consumer conformance suite. Each target has its own
 * stream `C_<random>` over `c<random>.>` on the machine's server, deleted afterwards; the
 * outage target lives on a private nats-server that the test stops and starts.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import { afterAll, expect, it, vi } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import { silentLogger } from '../../src/common/logger.js';
import { type Consumer, consume, createInbox } from '../../src/consumer/index.js';
import { QuizSubmitted } from '../../src/index.js';
import { consumeQuizzes } from '../helpers/consume.js';
import { createPgTestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { deleteStream, withConnection } from '../helpers/nats-consumer.js';
import { type PrivateNatsServer, startNatsServer } from '../helpers/nats-server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
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
  deliversOtherAggregateTypes: true,
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
      name: stream,
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
    consumeQuizzes(`${url}&deliver=new`, 'newcomer', pg, {
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

/** A fresh schema and stream on the shared server, and what the handler and the logger saw. */
async function ownStream(prefix: string) {
  const pg = await createPgTestSchema(prefix);
  const id = randomBytes(5).toString('hex');
  const stream = `C_${id}`;
  return {
    pg,
    stream,
    url: `${SHARED_URL}?stream=${stream}&subject_prefix=c${id}`,
    warnings: [] as string[],
    handled: [] as string[],
  };
}

it('a durable consumer deleted under a running process: the start that makes it again says what that skips', async () => {
  const { pg, stream, url, warnings, handled } = await ownStream('consume_nats_gone');
  const consumer = await consumeQuizzes(`${url}&deliver=new`, 'deleted-durable', pg, {
    handler: (event) => {
      handled.push(event.id);
    },
    logger: { ...silentLogger, warn: (_fields, message) => warnings.push(message) },
  });
  try {
    // What an operator does (`nats consumer rm`): the running process loses its source.
    await withConnection(SHARED_URL, async (nc) => {
      await (await jetstreamManager(nc)).consumers.delete(stream, 'deleted-durable');
    });
    await waitFor('the warning', () => warnings.some((w) => w.includes('was deleted')), {
      timeoutMs: 20_000,
    });
    expect(warnings.filter((w) => w.includes('was deleted'))).toEqual([
      "the durable JetStream consumer was deleted: created again from the stream's end (deliver=new); what was published since it was deleted is skipped",
    ]);
    // And it goes on receiving.
    const broker = brokerFromUrl(url, { source: '/edupulse/consumer-test' });
    await broker.connect();
    await broker.publish([quizMessage(randomUUID())]).finally(() => broker.close());
    await waitFor('the next event', () => handled.length === 1, { timeoutMs: 20_000 });
  } finally {
    await consumer.stop();
    await deleteStream(SHARED_URL, stream).catch(() => {});
    await pg.drop();
  }
});

it('a stream deleted and made again (by a dispatcher) is read from its start, whatever deliver says', async () => {
  const { pg, stream, url, warnings, handled } = await ownStream('consume_nats_remade');
  const run = () =>
    consumeQuizzes(`${url}&deliver=new`, 'remade', pg, {
      handler: (event) => {
        handled.push(event.id);
      },
      logger: { ...silentLogger, warn: (_fields, message) => warnings.push(message) },
    });
  try {
    const first = await run();
    await first.stop();
    await withConnection(SHARED_URL, async (nc) => {
      await (await jetstreamManager(nc)).streams.delete(stream);
    });
    // A dispatcher makes the stream again and publishes before the consumer starts again.
    const broker = brokerFromUrl(url, { source: '/edupulse/consumer-test' });
    await broker.connect();
    const sent = [quizMessage(randomUUID()), quizMessage(randomUUID())];
    await broker.publish(sent).finally(() => broker.close());
    const again = await run();
    try {
      await waitFor('both events', () => handled.length === 2, { timeoutMs: 15_000 });
    } finally {
      await again.stop();
    }
    expect(handled.sort()).toEqual(sent.map((m) => m.id).sort());
    expect(warnings).toContainEqual(expect.stringContaining('the stream was made again since'));
  } finally {
    await deleteStream(SHARED_URL, stream).catch(() => {});
    await pg.drop();
  }
});

it('a handler slower than ack_wait_s keeps its message: the broker hears it is worked on within every ack wait', async () => {
  const pg = await createPgTestSchema('consume_nats_slow');
  const id = randomBytes(5).toString('hex');
  const stream = `C_${id}`;
  const url = `${SHARED_URL}?stream=${stream}&subject_prefix=c${id}`;
  const aggregate = randomUUID();
  // The first event's handler runs for three ack waits; the second waits behind it.
  const messages = [quizMessage(aggregate), quizMessage(aggregate), quizMessage(randomUUID())];
  const handled: string[] = [];
  // What the consumer tells the server about each message (+WPI, then +ACK), by reply subject.
  const told = new Map<string, { at: number; what: string }[]>();
  const listener = await connect({ servers: SHARED_URL.replace(/^nats:\/\//, '') });
  listener.subscribe(`$JS.ACK.${stream}.slow.>`, {
    callback: (_error, message) => {
      const said = told.get(message.subject) ?? [];
      said.push({ at: Date.now(), what: message.string() });
      told.set(message.subject, said);
    },
  });
  await listener.flush();
  let consumer: Consumer | undefined;
  try {
    const broker = brokerFromUrl(url, { source: '/edupulse/consumer-test' });
    await broker.connect();
    for (const message of messages) await broker.publish([message]);
    await broker.close();
    consumer = await consume({
      broker: `${url}&ack_wait_s=5`,
      consumer: 'slow',
      database: pg.db,
      schema: pg.schema,
      events: [QuizSubmitted],
      handler: async (event) => {
        if (event.id === messages[0]?.id)
          await new Promise((resolve) => setTimeout(resolve, 15_000));
        handled.push(event.id);
      },
    });
    await waitFor('every event handled', () => handled.length >= messages.length, {
      timeoutMs: 30_000,
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(handled).toEqual([messages[2]?.id, messages[0]?.id, messages[1]?.id]);
    expect(consumer.stats.received).toBe(messages.length);
    const info = await withConnection(SHARED_URL, async (nc) =>
      (await jetstreamManager(nc)).consumers.info(stream, 'slow'),
    );
    expect(info.num_redelivered).toBe(0);
    // The slow message's marks: none more than an ack wait after the one before.
    const marks = [...told.values()].reduce((a, b) => (b.length > a.length ? b : a));
    expect(marks.at(-1)?.what).toBe('+ACK');
    const gaps = marks.slice(1).map((mark, i) => mark.at - (marks[i]?.at ?? 0));
    expect(Math.max(...gaps)).toBeLessThan(5_000);
  } finally {
    await consumer?.stop();
    await listener.close();
    await deleteStream(SHARED_URL, stream).catch(() => {});
    await pg.drop();
  }
}, 60_000);

it('says it is not receiving as soon as its connection drops, and receiving once back', async () => {
  privateServer ??= startNatsServer();
  const own = await privateServer;
  const pg = await createPgTestSchema('consume_nats_drop');
  const id = randomBytes(5).toString('hex');
  const url = `${own.url}?stream=C_${id}&subject_prefix=c${id}`;
  let consumer: Consumer | undefined;
  try {
    consumer = await consumeQuizzes(url, 'dropped', pg, { handler: () => {} });
    const states: string[] = [];
    consumer.on('state', (state) => states.push(state));
    await own.stop();
    const stoppedAt = Date.now();
    // A dropped connection loses the source at once (not after the client's own ~10 s of
    // reconnecting): the state says so within a second or two.
    await waitFor('not receiving', () => consumer?.health().state === 'reconnecting', {
      timeoutMs: 4000,
      intervalMs: 50,
    });
    expect(Date.now() - stoppedAt).toBeLessThan(4000);
    expect(consumer.health().reason).toMatch(/NATS at .*: connection lost/);
    await own.start();
    await waitFor('receiving again', () => consumer?.health().state === 'receiving', {
      timeoutMs: 30_000,
    });
    expect(states.slice(0, 2)).toEqual(['reconnecting', 'receiving']);
  } finally {
    await consumer?.stop();
    await deleteStream(own.url, `C_${id}`).catch(() => {});
    await pg.drop();
  }
}, 60_000);

it("an event lost on its way when the connection drops comes again before its aggregate's later ones", async () => {
  // The server counts a message delivered once it has sent it: lost in a dropped
  // connection, it comes again only after ack_wait. A client that reconnected and went on
  // pulling received the aggregate's next event first, and the lost one was parked as stale.
  const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(SHARED_URL).port) });
  const pg = await createPgTestSchema('consume_nats_blip');
  const id = randomBytes(5).toString('hex');
  const query = `stream=C_${id}&subject_prefix=c${id}`;
  const quiz = randomUUID();
  const applied: number[] = [];
  const inbox = createInbox({ schema: pg.schema, consumer: 'blip' });
  const broker = brokerFromUrl(`${SHARED_URL}?${query}`, { source: '/edupulse/consumer-test' });
  let consumer: Consumer | undefined;
  try {
    consumer = await consume({
      broker: `nats://127.0.0.1:${proxy.port}?${query}&ack_wait_s=5`,
      consumer: 'blip',
      database: pg.db,
      schema: pg.schema,
      events: [QuizSubmitted],
      leaseRetryMs: 100,
      handler: (event) =>
        pg.db.transaction((tx) =>
          inbox.process(tx, event, () => {
            applied.push(event.data.score);
          }),
        ),
    });
    await broker.connect();
    const publish = async (score: number) => {
      const [result] = await broker.publish([quizMessage(quiz, { score })]);
      expect(result?.ok).toBe(true);
    };
    await publish(1);
    await waitFor('the first applied', () => applied.length === 1, { timeoutMs: 10_000 });
    // The second is sent into a connection that holds it, then drops.
    proxy.freeze('to-client');
    await publish(2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await proxy.stop();
    proxy.thaw();
    await waitFor('the drop noticed', () => consumer?.health().state === 'reconnecting', {
      timeoutMs: 5000,
      intervalMs: 20,
    });
    await proxy.start();
    await waitFor('receiving again', () => consumer?.health().state === 'receiving', {
      timeoutMs: 20_000,
      intervalMs: 20,
    });
    await publish(3);
    // Past ack_wait (5 s), when the server sends again what it sent into the dropped connection.
    const settled = () => (consumer?.stats.processed ?? 0) + (consumer?.stats.parked ?? 0) >= 3;
    await waitFor('three settled', settled, { timeoutMs: 20_000 });
    expect(applied).toEqual([1, 2, 3]);
    expect(consumer.stats).toMatchObject({ parked: 0, stale: 0 });
  } finally {
    await consumer?.stop();
    await broker.close();
    await proxy.stop();
    await deleteStream(SHARED_URL, `C_${id}`).catch(() => {});
    await pg.drop();
  }
}, 60_000);

it('takes a backlog of large messages in order, not cut off as a slow consumer', async () => {
  // 300 messages of 600 KB: pulled 256 at a time they were sent faster than the consumer
  // read them, past the server's max_pending (64 MiB); it cut the connection, and what was
  // on its way came again after ack_wait, behind later events of its aggregate: parked as
  // stale (1500 such messages: 202 parked).
  const pg = await createPgTestSchema('consume_nats_large');
  const id = randomBytes(5).toString('hex');
  const url = `${SHARED_URL}?stream=C_${id}&subject_prefix=c${id}`;
  const blob = randomBytes(450 * 1024).toString('base64');
  const aggregates = Array.from({ length: 10 }, () => randomUUID());
  const messages = Array.from({ length: 300 }, (_, n) =>
    quizMessage(aggregates[n % 10] as string, {
      payload: JSON.stringify({
        quiz_id: aggregates[n % 10],
        student_id: randomUUID(),
        score: n,
        submitted_at: '2026-12-06T10:00:00Z',
        comment: blob,
      }),
    }),
  );
  const broker = brokerFromUrl(url, { source: '/edupulse/consumer-test' });
  await broker.connect();
  try {
    for (let first = 0; first < messages.length; first += 50) {
      const results = await broker.publish(messages.slice(first, first + 50));
      expect(results.every((result) => result.ok)).toBe(true);
    }
  } finally {
    await broker.close();
  }
  const handled = new Map<string, number[]>();
  let consumer: Consumer | undefined;
  try {
    consumer = await consume({
      broker: url,
      consumer: 'large',
      database: pg.db,
      schema: pg.schema,
      events: [QuizSubmitted],
      handler: async (event) => {
        // A handler's pace: a transaction per event.
        await pg.db.transaction((tx) => tx.query('SELECT 1'));
        handled.set(event.aggregateId, [
          ...(handled.get(event.aggregateId) ?? []),
          event.data.score,
        ]);
      },
    });
    const settled = () => (consumer?.stats.processed ?? 0) + (consumer?.stats.parked ?? 0) >= 300;
    await waitFor('300 settled', settled, { timeoutMs: 90_000 });
    expect(consumer.stats).toMatchObject({ processed: 300, parked: 0, stale: 0 });
    for (const scores of handled.values())
      expect(scores).toEqual([...scores].sort((a, b) => a - b));
  } finally {
    await consumer?.stop();
    await deleteStream(SHARED_URL, `C_${id}`).catch(() => {});
    await pg.drop();
  }
}, 120_000);

it('acks the handlers that finish in one turn of the event loop in one write, not one each', async () => {
  // Each handler below finishes in its own timer callback, as handlers do when each waits
  // for its own database answer. Acked at once, every message cost a write to the socket.
  const pg = await createPgTestSchema('consume_nats_acks');
  const id = randomBytes(5).toString('hex');
  const url = `${SHARED_URL}?stream=C_${id}&subject_prefix=c${id}`;
  const count = 40;
  const broker = brokerFromUrl(url, { source: '/edupulse/consumer-test' });
  await broker.connect();
  try {
    const messages = Array.from({ length: count }, (_, score) =>
      quizMessage(randomUUID(), { score }),
    );
    expect((await broker.publish(messages)).every((result) => result.ok)).toBe(true);
  } finally {
    await broker.close();
  }
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let started = 0;
  const port = Number(new URL(SHARED_URL).port);
  const write = vi.spyOn(net.Socket.prototype, 'write');
  const writesToNats = () =>
    write.mock.contexts.filter((socket) => (socket as net.Socket).remotePort === port).length;
  let consumer: Consumer | undefined;
  try {
    consumer = await consumeQuizzes(url, 'acks', pg, {
      concurrency: count,
      handler: async () => {
        started++;
        await gate;
        await new Promise((resolve) => setTimeout(resolve, 5));
      },
    });
    await waitFor('every handler started', () => started === count, { timeoutMs: 10_000 });
    const before = writesToNats();
    release();
    await waitFor('every event processed', () => consumer?.stats.processed === count);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const writes = writesToNats() - before;
    expect(writes).toBeGreaterThan(0);
    expect(writes).toBeLessThanOrEqual(4);
    // And acked: a consumer started again under the name is given none of them.
    await consumer.stop();
    consumer = await consumeQuizzes(url, 'acks', pg, { handler: () => {} });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(consumer.stats.received).toBe(0);
  } finally {
    write.mockRestore();
    await consumer?.stop();
    await deleteStream(SHARED_URL, `C_${id}`).catch(() => {});
    await pg.drop();
  }
}, 60_000);
