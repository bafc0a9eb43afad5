/**
 * A NATS consumer name is the stream's, not the database's: two services that pick the
 * same name for their consumers of one stream (each with its own inbox) would each delete
 * the other's durable at start, for ever, and split the stream's messages. The durable
 * says whose inbox it feeds; a consumer of another inbox is refused, naming both.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { AckPolicy, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { brokerFromUrl } from '../../src/brokers/index.js';
import type { Consumer } from '../../src/consumer/index.js';
import { ConfigError, QuizSubmitted } from '../../src/index.js';
import { consumeIds } from '../helpers/consume.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { deleteStream, withConnection } from '../helpers/nats-consumer.js';
import { waitFor } from '../helpers/wait.js';

const SERVER = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const id = randomBytes(5).toString('hex');
const stream = `N_${id}`;
const url = `${SERVER}?stream=${stream}&subject_prefix=n${id}`;
const database = new URL(PG_URL).pathname.slice(1);
let lessons: TestSchema;
let quizzes: TestSchema;
const consumers: Consumer[] = [];

beforeAll(async () => {
  lessons = await createPgTestSchema('names_lessons');
  quizzes = await createPgTestSchema('names_quizzes');
});

afterAll(async () => {
  await Promise.all(consumers.map((consumer) => consumer.stop().catch(() => {})));
  await deleteStream(SERVER, stream).catch(() => {});
  await lessons?.drop();
  await quizzes?.drop();
});

const start = (schema: TestSchema, applied: string[]) =>
  consumeIds(
    {
      broker: url,
      consumer: 'orders',
      database: schema.db,
      schema: schema.schema,
      events: [QuizSubmitted],
    },
    applied,
  );

const description = () =>
  withConnection(SERVER, async (nc) => {
    const info = await (await jetstreamManager(nc)).consumers.info(stream, 'orders');
    return info.config.description;
  });

it("refuses a consumer of another inbox under a name the stream's consumer has", async () => {
  const first: string[] = [];
  consumers.push(await start(lessons, first));
  expect(await description()).toBe(
    `EduPulse outbox consumer (inbox ${database}/${lessons.schema})`,
  );

  const refused = await start(quizzes, []).then(
    (consumer) => {
      consumers.push(consumer);
      return undefined;
    },
    (error: unknown) => error,
  );
  expect(refused).toBeInstanceOf(ConfigError);
  expect((refused as ConfigError).setting).toBe('broker');
  expect((refused as Error).message).toContain(
    `NATS consumer "orders" on stream "${stream}" is the consumer of the inbox ${database}/${lessons.schema}, not of ${database}/${quizzes.schema}: two services reading one stream need a consumer name each`,
  );

  // The first goes on receiving: its durable was left alone.
  const broker = brokerFromUrl(url, { source: 'test' });
  await broker.connect();
  const event = quizMessage(randomUUID());
  await broker.publish([event]);
  await broker.close();
  await waitFor('the first applies it', () => first.includes(event.id), { timeoutMs: 10_000 });
  await Promise.all(consumers.splice(0).map((consumer) => consumer.stop()));
});

it('takes over a durable an earlier release made, which names no inbox', async () => {
  await withConnection(SERVER, async (nc) => {
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.delete(stream, 'orders').catch(() => false);
    await jsm.consumers.add(stream, {
      durable_name: 'orders',
      ack_policy: AckPolicy.Explicit,
      description: 'EduPulse outbox consumer',
    });
  });
  consumers.push(await start(quizzes, []));
  expect(await description()).toBe(
    `EduPulse outbox consumer (inbox ${database}/${quizzes.schema})`,
  );
});
