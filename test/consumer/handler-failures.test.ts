/**
 * What consume() does with what a handler throws: values it cannot read, plain objects,
 * a connection refused by a service other than the database, and an attempt that changed
 * the event before failing. On NATS JetStream, a stream of the file's own.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { type AddressInfo, createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import {
  type ConsumeOptions,
  type Consumer,
  consume,
  createInbox,
} from '../../src/consumer/index.js';
import { QuizSubmitted } from '../../src/index.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { deleteStream } from '../helpers/nats-consumer.js';
import { waitFor } from '../helpers/wait.js';

const SERVER = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const id = randomBytes(5).toString('hex');
const url = `${SERVER}?stream=HF_${id}&subject_prefix=hf${id}`;
let pg: TestSchema;
const consumers: Consumer[] = [];

beforeAll(async () => {
  pg = await createPgTestSchema('consumer_handler_failures');
});
afterAll(async () => {
  for (const consumer of consumers) await consumer.stop();
  await deleteStream(SERVER, `HF_${id}`).catch(() => {});
  await pg?.drop();
});

async function publish(...messages: ReturnType<typeof quizMessage>[]): Promise<void> {
  const broker = brokerFromUrl(url, { source: 'test' });
  await broker.connect();
  await broker.publish(messages);
  await broker.close();
}

type Options = ConsumeOptions<[typeof QuizSubmitted]>;

/** A consumer of its own name (it reads the stream from the start), with `handler`. */
async function start(
  name: string,
  handler: Options['handler'],
  warnings: string[] = [],
): Promise<Consumer> {
  const log = (_fields: object, message?: string) => void warnings.push(String(message));
  const logger = { debug: () => {}, info: () => {}, warn: log, error: log };
  const where = { broker: url, database: pg.db, schema: pg.schema };
  const consumer = await consume({
    ...where,
    consumer: name,
    events: [QuizSubmitted],
    maxAttempts: 2,
    retryDelayMs: 5,
    logger,
    handler,
  });
  consumers.push(consumer);
  return consumer;
}

/** A port nothing listens on: one the system gave a server that is closed again. */
async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The ids `consumer` has processed (acked after its handler returned). */
function processedIds(consumer: Consumer): Set<string> {
  const ids = new Set<string>();
  consumer.on('processed', ({ event }: { event: { id: string } }) => ids.add(event.id));
  return ids;
}

const parkedReasons = async (consumer: string) =>
  (
    await pg.db.query<{ event_id: string; last_error: string }>(
      `SELECT event_id, last_error FROM "${pg.schema}".consumer_dead_letter WHERE consumer = $1`,
      [consumer],
    )
  ).rows;

describe('what a handler throws', () => {
  it('a value it cannot read is retried and parked, and its aggregate waits meanwhile', async () => {
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const unreadable: Record<string, () => unknown> = {
      getter: () =>
        Object.defineProperty(new Error('boom'), 'code', {
          get() {
            throw new Error('no code');
          },
        }),
      prototypeless: () => Object.create(null),
      revoked: () => revoked.proxy,
    };
    const aggregates = Object.fromEntries(
      Object.keys(unreadable).map((kind) => [kind, randomUUID()]),
    );
    const first = Object.values(aggregates).map((aggregate) => quizMessage(aggregate));
    const second = Object.values(aggregates).map((aggregate) => quizMessage(aggregate));
    const failing = new Map(first.map((m, i) => [m.id, Object.values(unreadable)[i]]));
    const order: string[] = [];
    const consumer = await start(`unreadable_${id}`, (event) => {
      const thrown = failing.get(event.id);
      if (thrown) throw thrown();
      order.push(event.id);
    });
    await publish(...first, ...second);
    await waitFor('the later events applied', () => second.every((m) => order.includes(m.id)), {
      timeoutMs: 20_000,
    });
    expect(consumer.stats).toMatchObject({ parked: 3, failed: 6 });
    expect(consumer.health().inFlight).toBe(0);
    const reasons = await parkedReasons(`unreadable_${id}`);
    expect(reasons.map((r) => r.event_id).sort()).toEqual(first.map((m) => m.id).sort());
    const kindOf = new Map(first.map((m, i) => [m.id, Object.keys(unreadable)[i]]));
    const byKind = Object.fromEntries(reasons.map((r) => [kindOf.get(r.event_id), r.last_error]));
    expect(byKind).toEqual({
      // What reads of it still says: the Error's message.
      getter:
        'handler failed 2 times; last error: boom (reading the rest of the thrown value throws)',
      prototypeless: 'handler failed 2 times; last error: a thrown value that cannot be read',
      revoked:
        'handler failed 2 times; last error: a thrown value that cannot be read (reading it throws)',
    });
  });

  it("the inbox's stale refusal wrapped by the handler is still a stale event: parked at once", async () => {
    const inbox = createInbox({ schema: pg.schema, consumer: 'wrapped-stale' });
    const consumer = await start('wrapped-stale', async (event) => {
      try {
        await pg.db.transaction((tx) => inbox.process(tx, event, async () => {}));
      } catch (error) {
        // As a framework or a helper of the service rethrows what it caught.
        throw new Error('could not apply the event', { cause: error });
      }
    });
    const aggregate = randomUUID();
    const older = quizMessage(aggregate);
    const newer = quizMessage(aggregate);
    await publish(newer, older);
    await waitFor(
      'the late one parked',
      async () => (await parkedReasons('wrapped-stale')).length === 1,
    );
    const [parked] = (
      await pg.db.query<{ event_id: string; stale: boolean; attempts: number }>(
        `SELECT event_id, stale, attempts FROM "${pg.schema}".consumer_dead_letter WHERE consumer = $1`,
        ['wrapped-stale'],
      )
    ).rows;
    expect(parked).toEqual({ event_id: older.id, stale: true, attempts: 1 });
    expect(consumer.stats.stale).toBe(1);
  });

  it('a plain object is parked with its message, or its JSON, or as Node prints a cycle', async () => {
    const [withMessage, withStatus, cyclic] = [1, 2, 3].map(() => quizMessage(randomUUID()));
    await start(`plain_${id}`, (event) => {
      if (event.id === withMessage?.id) throw { message: 'upstream answered 503', status: 503 };
      if (event.id === withStatus?.id) throw { status: 503 };
      if (event.id === cyclic?.id) {
        const loop: Record<string, unknown> = { status: 502 };
        loop.self = loop;
        throw loop;
      }
    });
    await publish(...[withMessage, withStatus, cyclic].filter((m) => m !== undefined));
    await waitFor('all parked', async () => (await parkedReasons(`plain_${id}`)).length === 3, {
      timeoutMs: 20_000,
    });
    const reasons = new Map(
      (await parkedReasons(`plain_${id}`)).map((r) => [r.event_id, r.last_error]),
    );
    expect(reasons.get(withMessage?.id ?? '')).toBe(
      'handler failed 2 times; last error: upstream answered 503',
    );
    expect(reasons.get(withStatus?.id ?? '')).toBe(
      'handler failed 2 times; last error: {"status":503}',
    );
    expect(reasons.get(cyclic?.id ?? '')).toBe(
      'handler failed 2 times; last error: <ref *1> { status: 502, self: [Circular *1] }',
    );
  });

  it('a refused connection to another service spends no attempt, and the log says the database answers', async () => {
    const event = quizMessage(randomUUID());
    const closedPort = await unusedPort();
    let calls = 0;
    const warnings: string[] = [];
    const consumer = await start(
      `downstream_${id}`,
      async (received) => {
        if (received.id !== event.id) return;
        calls++;
        // Nothing listens there any more: the connection is refused.
        if (calls <= 3) await fetch(`http://127.0.0.1:${closedPort}/grades`);
      },
      warnings,
    );
    const processed = processedIds(consumer);
    await publish(event);
    await waitFor('applied once the service answers', () => processed.has(event.id), {
      timeoutMs: 30_000,
    });
    expect(calls).toBe(4);
    expect(consumer.stats).toMatchObject({ failed: 0, parked: 0 });
    expect(warnings).toContain(
      'a connection the handler needs was refused or lost, and the database answers: a service it calls is unreachable; retrying without spending attempts',
    );
    expect(warnings).not.toContain('database unavailable in the handler; retrying');
  });

  it('each attempt gets the event as received, not as a failed attempt left it', async () => {
    const event = quizMessage(randomUUID(), { score: 7 });
    const seen: number[] = [];
    const consumer = await start(`mutating_${id}`, (received) => {
      if (received.id !== event.id) return;
      seen.push(received.data.score);
      if (seen.length === 1) {
        received.data.score = 1000;
        throw new Error('first attempt fails after changing the event');
      }
    });
    const processed = processedIds(consumer);
    await publish(event);
    await waitFor('applied on the second attempt', () => processed.has(event.id), {
      timeoutMs: 20_000,
    });
    expect(seen).toEqual([7, 7]);
  });
});
