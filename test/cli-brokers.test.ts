/**
 * `edupulse-outbox run` against each real broker, end to end: 10,000 events inserted with
 * plain SQL over 100 aggregates, drained by the CLI process into NATS JetStream, RabbitMQ
 * and Kafka, and read back by an independent consumer (the server's own client library,
 * none of this project's code). Every case has its own schema, stream / exchange / topics
 * and consumer group, removed afterwards, so the file runs in parallel with others and
 * twice in a row.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Consumer, ReceivedMessage } from './brokers/conformance.js';
import { consumeExchange, deleteExchange, testExchange } from './helpers/amqp.js';
import { jsonLines, killChildren, spawnCli, stackLines } from './helpers/cli.js';
import { createPgTestSchema, PG_URL, type TestSchema } from './helpers/db.js';
import { consumeTestTopics, deleteTestResources, uniqueName } from './helpers/kafka.js';
import { consumeStream, createStream, deleteStream } from './helpers/nats-consumer.js';

// Not afterEach: the cases run concurrently, and each one awaits its own CLI's exit.
afterAll(killChildren);

const EVENTS = 10_000;
const AGGREGATES = 100;
/** The shared servers, not the private ones the broker tests take down. */
const NATS_SERVER = '127.0.0.1:4222';
const AMQP_SERVER = 'guest:guest@127.0.0.1:5672';
const KAFKA_SERVER = '127.0.0.1:9092';

/**
 * One case's destination: the broker URL for the CLI, an independent consumer on it, and a
 * clean-up that closes the consumer (if the test did not) and deletes what was created.
 */
interface Target {
  url: string;
  consumer: Consumer;
  cleanup(): Promise<void>;
}

/** Starts a consumer on fresh names; whatever was created is removed by `cleanup`. */
type Setup = () => Promise<Target>;

const nats: Setup = async () => {
  const prefix = uniqueName('t');
  const stream = `T_${prefix}`;
  // As an operator would declare it; the broker checks that it captures `<prefix>.>`.
  await createStream(`nats://${NATS_SERVER}`, stream, [`${prefix}.>`]);
  try {
    const consumer = await consumeStream(`nats://${NATS_SERVER}`, stream);
    return {
      url: `nats://${NATS_SERVER}?stream=${stream}&subject_prefix=${prefix}`,
      consumer,
      async cleanup() {
        await consumer.close().catch(() => {});
        await deleteStream(`nats://${NATS_SERVER}`, stream);
      },
    };
  } catch (error) {
    await deleteStream(`nats://${NATS_SERVER}`, stream);
    throw error;
  }
};

const amqp: Setup = async () => {
  const exchange = testExchange();
  // Declares the exchange and binds its queue before anything is published: the broker's
  // mandatory messages find a queue from the first one.
  const consumer = await consumeExchange(exchange, '#');
  return {
    url: `amqp://${AMQP_SERVER}?exchange=${exchange}`,
    consumer,
    async cleanup() {
      await consumer.close();
      await deleteExchange(exchange);
    },
  };
};

const kafka: Setup = async () => {
  const prefix = uniqueName('cb');
  // Waits for the topic the broker creates, then reads it from the earliest offset.
  const consumer = consumeTestTopics([`${prefix}.lesson`], `${prefix}-group`, KAFKA_SERVER);
  return {
    url: `kafka://${KAFKA_SERVER}?topic=${prefix}.{aggregate_type}`,
    consumer,
    async cleanup() {
      await consumer.close().catch(() => {});
      await deleteTestResources(prefix, KAFKA_SERVER);
    },
  };
};

interface Inserted {
  id: string;
  seq: string;
  aggregate_id: string;
  n: number;
}

/** Counts the distinct CloudEvents ids of `received` so far, reading each message once. */
function idCounter(received: readonly ReceivedMessage[]): () => Set<string> {
  const ids = new Set<string>();
  let read = 0;
  return () => {
    for (; read < received.length; read++) ids.add(received[read]?.attributes.id ?? '');
    return ids;
  };
}

describe.concurrent('run drains 10,000 plain-SQL events to a real broker', () => {
  it.each([
    ['nats', nats],
    ['amqp', amqp],
    ['kafka', kafka],
  ] as const)('%s', { timeout: 180_000 }, async (name, setup) => {
    const cleanups: (() => Promise<void>)[] = [];
    try {
      const pg: TestSchema = await createPgTestSchema(`cli_${name}`);
      cleanups.push(() => pg.drop());
      const table = (suffix = '') => `"${pg.schema}".outbox${suffix}`;
      const count = async (suffix = '') => {
        const { rows } = await pg.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${table(suffix)}`,
        );
        return rows[0]?.n;
      };

      const { rows: inserted } = await pg.db.query<Inserted>(
        `INSERT INTO ${table()} (aggregate_type, aggregate_id, event_type, payload)
         SELECT 'lesson', 'agg-' || (i % ${AGGREGATES}), 'lesson-published', json_build_object('n', i)
         FROM generate_series(1, ${EVENTS}) i
         RETURNING id::text, seq::text, aggregate_id, (payload->>'n')::int AS n`,
      );
      expect(inserted).toHaveLength(EVENTS);
      const byId = new Map(inserted.map((row) => [row.id, row]));

      const target = await setup();
      cleanups.push(() => target.cleanup());
      const { consumer } = target;
      const ids = idCounter(consumer.received);

      const cli = spawnCli([
        'run',
        '--database-url',
        PG_URL,
        '--schema',
        pg.schema,
        '--broker',
        target.url,
        '--batch-size',
        '500',
      ]);
      cleanups.push(async () => {
        if (cli.child.exitCode === null && cli.child.signalCode === null) {
          cli.child.kill('SIGKILL');
          await cli.exited;
        }
      });
      await cli.waitFor(
        `${EVENTS} distinct events at the consumer`,
        () => ids().size >= EVENTS,
        120_000,
      );

      cli.child.kill('SIGTERM');
      const result = await cli.exited;
      expect(result.code, result.stderr).toBe(0);
      expect(stackLines(result.stderr)).toEqual([]);
      // The broker URL is logged (so the check below means something), its password masked.
      if (name === 'amqp') expect(result.stderr).toContain('@127.0.0.1:5672');
      expect(result.stderr).not.toContain('guest:guest@');
      // The batch in flight at SIGTERM was settled, not abandoned; nothing was dead-lettered.
      expect(await count()).toBe(0);
      expect(await count('_dead_letter')).toBe(0);
      // Kafka's consumer fails here if the cloudevents SDK refused a record.
      await consumer.close();

      const received = [...consumer.received];
      const distinct = ids();
      expect(distinct.size).toBe(EVENTS);
      expect([...distinct].filter((id) => !byId.has(id))).toEqual([]);
      expect(inserted.filter((row) => !distinct.has(row.id))).toEqual([]);

      // Every message: the CloudEvent of its row. Collected, so a failure lists a few at once.
      const wrong: string[] = [];
      for (const message of received) {
        const { attributes: ce } = message;
        const row = byId.get(ce.id ?? '');
        const problems = [
          ce.specversion === '1.0' ? '' : `specversion ${ce.specversion}`,
          ce.type === 'lesson-published' ? '' : `type ${ce.type}`,
          ce.source === '/edupulse' ? '' : `source ${ce.source}`,
          ce.subject === row?.aggregate_id ? '' : `subject ${ce.subject}`,
          row && sequenceOf(ce.sequence) === BigInt(row.seq) ? '' : `sequence ${ce.sequence}`,
          message.contentType === 'application/json' ? '' : `content type ${message.contentType}`,
          // NATS's dedup id is the source and the id: two services may share ids.
          message.dedupId === (name === 'nats' ? `${ce.id}@${ce.source}` : ce.id)
            ? ''
            : `dedup id ${message.dedupId}`,
          bodyOf(message.body) === row?.n ? '' : `body ${message.body}`,
        ].filter((problem) => problem !== '');
        if (problems.length > 0) wrong.push(`${ce.id}: ${problems.join(', ')}`);
      }
      expect(wrong.slice(0, 10), `${wrong.length} wrong messages`).toEqual([]);

      // Per aggregate, first deliveries in increasing sequence order (a redelivery may
      // repeat an earlier event; at-least-once allows it).
      const firstSeen = new Set<string>();
      const lastSequence = new Map<string, bigint>();
      const outOfOrder: string[] = [];
      for (const { attributes: ce } of received) {
        const id = ce.id ?? '';
        if (firstSeen.has(id)) continue;
        firstSeen.add(id);
        const subject = ce.subject ?? '';
        const sequence = sequenceOf(ce.sequence);
        const previous = lastSequence.get(subject);
        if (previous !== undefined && sequence <= previous) {
          outOfOrder.push(`${subject}: ${sequence} after ${previous}`);
        }
        lastSequence.set(subject, sequence);
      }
      expect(outOfOrder.slice(0, 10), `${outOfOrder.length} out of order`).toEqual([]);
      expect(lastSequence.size).toBe(AGGREGATES);

      // Not asserted (at-least-once allows redelivery), but worth seeing.
      const stopped = jsonLines(result.stderr).find((line) => line.msg === 'dispatcher stopped');
      console.info(
        `${name}: ${received.length} messages, ${received.length - distinct.size} duplicates;` +
          ` dispatcher published ${stopped?.published}, retried ${stopped?.retried},` +
          ` batches ${stopped?.batches}`,
      );
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    }
  });
});

/** `n` of a `{"n": …}` body with nothing else in it; undefined for anything else. */
function bodyOf(body: string): number | undefined {
  try {
    const parsed = JSON.parse(body) as unknown;
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const keys = Object.keys(parsed);
    const { n } = parsed as { n?: unknown };
    return keys.length === 1 && typeof n === 'number' ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The CloudEvents `sequence` attribute (zero-padded decimal) as a number; -1 if it is not one. */
function sequenceOf(sequence: string | undefined): bigint {
  return sequence !== undefined && /^\d+$/.test(sequence) ? BigInt(sequence) : -1n;
}
