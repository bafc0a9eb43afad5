/**
 * The conformance suite every EventBroker passes against its real server (the memory
 * broker too): the dispatcher drains a real PostgreSQL outbox into the broker, and an
 * independent consumer — the server's own client library, not this project's code —
 * checks what arrived. A broker test file supplies a `BrokerHarness` and calls
 * `brokerConformance(harness)`.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { EventBroker } from '../../src/brokers/broker.js';
import { BrokerUnavailableError } from '../../src/common/errors.js';
import { withTimeout } from '../../src/common/timeout.js';
import {
  createDispatcher,
  type Dispatcher,
  type DispatcherOptions,
  type Logger,
} from '../../src/index.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';

/** One message as the independent consumer saw it. */
export interface ReceivedMessage {
  /** The broker-level dedup id: `Nats-Msg-Id`, AMQP `messageId`, Kafka `ce_id`. */
  dedupId: string;
  /** CloudEvents attributes read from the binding's headers, without prefix (`id`, `type`, …). */
  attributes: Record<string, string>;
  /** The protocol's content type (`content-type` header or AMQP property). */
  contentType: string;
  /** The message body, as text. */
  body: string;
}

export interface Consumer {
  /** Messages in the order the consumer received them. */
  readonly received: ReceivedMessage[];
  close(): Promise<void>;
}

/** One test's own destination (stream / exchange / topic names unique to it). */
export interface BrokerTarget {
  /** A new broker publishing to this target (the dispatcher connects and closes it). */
  broker(): EventBroker;
  /** Starts an independent consumer of everything published to this target. */
  consume(): Promise<Consumer>;
  /**
   * An event the server refuses (too large, unroutable), and a pattern of the reason the
   * server gives, as stored in `last_error`.
   */
  refused: { aggregateType: string; payload: string; reason: RegExp };
  /** Takes the server (or the network path to it) down, and back up. */
  outage: { stop(): Promise<void>; start(): Promise<void> };
  cleanup(): Promise<void>;
}

export interface BrokerHarness {
  name: string;
  /** The dedup id a message of these CloudEvents attributes carries; the event id unless given. */
  dedupId?(attributes: Record<string, string>): string;
  target(): Promise<BrokerTarget>;
}

interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  object: Record<string, unknown>;
  message: string;
}

function capturingLogger(lines: LogLine[]): Logger {
  const at = (level: LogLine['level']) => (object: Record<string, unknown>, message: string) =>
    lines.push({ level, object, message });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export function brokerConformance(harness: BrokerHarness): void {
  describe(`${harness.name} broker conformance`, () => {
    let pg: TestSchema;
    let target: BrokerTarget;
    let consumer: Consumer | undefined;
    const dispatchers: Dispatcher[] = [];
    let log: LogLine[] = [];

    beforeAll(async () => {
      pg = await createPgTestSchema(`conf_${harness.name}`);
    });
    afterAll(async () => {
      await pg?.drop();
    });
    beforeEach(async () => {
      log = [];
      await pg.db.query(`TRUNCATE "${pg.schema}".outbox, "${pg.schema}".outbox_dead_letter`);
      target = await harness.target();
    });
    afterEach(async () => {
      for (const d of dispatchers.splice(0)) await d.stop();
      await consumer?.close();
      consumer = undefined;
      await target?.outage.start();
      await target?.cleanup();
    });

    const dispatcher = (options: Partial<DispatcherOptions> = {}) => {
      const d = createDispatcher({
        db: pg.db,
        broker: target.broker(),
        schema: pg.schema,
        batchSize: 100,
        pollIntervalMs: 100,
        retryBaseDelayMs: 100,
        retryMaxDelayMs: 1000,
        publishTimeoutMs: 10_000,
        logger: capturingLogger(log),
        ...options,
      });
      dispatchers.push(d);
      return d;
    };

    /** Enqueues `count` events over `aggregates` aggregates with raw SQL; returns their ids in seq order. */
    const enqueue = async (count: number, aggregates: number, aggregatePrefix = randomUUID()) => {
      const { rows } = await pg.db.query<{ id: string }>(
        `INSERT INTO "${pg.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         SELECT 'lesson', $1 || '-' || (i % $2), 'lesson-published',
                json_build_object('lesson_id', $1 || '-' || (i % $2), 'n', i)
         FROM generate_series(1, $3) AS i
         ORDER BY i
         RETURNING id::text`,
        [aggregatePrefix, aggregates, count],
      );
      return rows.map((row) => row.id);
    };

    const pending = async () => {
      const { rows } = await pg.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${pg.schema}".outbox`,
      );
      return rows[0]?.n ?? -1;
    };

    const receivedIds = () => new Set(consumer?.received.map((m) => m.attributes.id));

    const waitForAll = async (ids: readonly string[], timeoutMs = 60_000) => {
      await waitFor(
        `${ids.length} events at the consumer`,
        () => {
          const seen = receivedIds();
          return ids.every((id) => seen.has(id));
        },
        { timeoutMs, intervalMs: 50 },
      );
    };

    it('publishes a batch, every event acknowledged and removed, as binary-mode CloudEvents', async () => {
      consumer = await target.consume();
      const ids = await enqueue(300, 20);
      await dispatcher().start();
      await waitForAll(ids);
      await waitFor('the outbox to be empty', async () => (await pending()) === 0);
      const { rows } = await pg.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${pg.schema}".outbox_dead_letter`,
      );
      expect(rows[0]?.n).toBe(0);
      const sample = consumer.received.find((m) => m.attributes.id === ids[0]);
      expect(sample).toBeDefined();
      expect(sample?.attributes.specversion).toBe('1.0');
      expect(sample?.attributes.type).toBe('lesson-published');
      expect(sample?.contentType).toBe('application/json');
      expect(sample?.attributes.subject).toBe(sample?.attributes.partitionkey);
      expect(sample?.attributes.source).toBeTruthy();
      expect(sample?.attributes.time).toMatch(/^\d{4}-\d\d-\d\dT/);
      const body = JSON.parse(sample?.body ?? 'null') as { lesson_id: string; n: number };
      expect(body.lesson_id).toBe(sample?.attributes.subject);
      expect(body.n).toBe(1);
    });

    it('delivers each aggregate in seq order on the wire', async () => {
      consumer = await target.consume();
      const ids = await enqueue(600, 15);
      await dispatcher().start();
      await waitForAll(ids);
      const firstSeen = new Map<string, ReceivedMessage>();
      for (const message of consumer.received) {
        if (!firstSeen.has(message.attributes.id as string)) {
          firstSeen.set(message.attributes.id as string, message);
        }
      }
      const lastSequence = new Map<string, string>();
      for (const message of firstSeen.values()) {
        const aggregate = message.attributes.subject as string;
        const sequence = message.attributes.sequence as string;
        const previous = lastSequence.get(aggregate);
        if (previous !== undefined)
          expect(sequence > previous, `${aggregate}: ${sequence} after ${previous}`).toBe(true);
        lastSequence.set(aggregate, sequence);
      }
      expect(lastSequence.size).toBe(15);
    });

    it('carries the event id as the broker dedup id', async () => {
      consumer = await target.consume();
      const ids = await enqueue(50, 5);
      await dispatcher().start();
      await waitForAll(ids);
      for (const message of consumer.received) {
        expect(message.dedupId).toBe(
          harness.dedupId?.(message.attributes) ?? message.attributes.id,
        );
      }
    });

    it('with the broker down at start: a clear error, retries, no attempts spent, then delivery', async () => {
      consumer = await target.consume();
      await target.outage.stop();
      const ids = await enqueue(40, 4);
      // By default start() waits for the broker, and says why it cannot reach it.
      const waiting = dispatcher();
      await expect(waiting.start()).rejects.toBeInstanceOf(BrokerUnavailableError);
      // Without waiting (as `run` starts) it keeps trying in the background.
      const d = dispatcher({ waitForBroker: false });
      await d.start();
      await waitFor('an unavailable report', () =>
        log.some((line) => line.level === 'warn' && line.object.target === 'broker'),
      );
      const warning = log.find((line) => line.level === 'warn' && line.object.target === 'broker');
      expect(String(warning?.object.err)).not.toBe('');
      const { rows } = await pg.db.query<{ attempts: number }>(
        `SELECT max(attempts)::int AS attempts FROM "${pg.schema}".outbox`,
      );
      expect(rows[0]?.attempts).toBe(0);
      await target.outage.start();
      await waitForAll(ids);
      await waitFor('the outbox to be empty', async () => (await pending()) === 0, {
        timeoutMs: 30_000,
      });
    });

    it('recovers by itself from an outage mid-drain, loses nothing, logs once per backoff step', async () => {
      consumer = await target.consume();
      const ids = await enqueue(3000, 50);
      const d = dispatcher({ batchSize: 50 });
      await d.start();
      await waitFor('part of the drain', () => receivedIds().size > 0, { timeoutMs: 30_000 });
      await target.outage.stop();
      await new Promise((resolve) => setTimeout(resolve, 3000));
      await target.outage.start();
      await waitForAll(ids, 120_000);
      await waitFor('the outbox to be empty', async () => (await pending()) === 0, {
        timeoutMs: 30_000,
      });
      const outageLines = log.filter(
        (line) => line.level === 'warn' && line.object.target === 'broker',
      );
      // Backoff 100 ms doubling to 1 s over a ~3 s outage is a handful of steps, not one per event.
      expect(outageLines.length).toBeGreaterThan(0);
      expect(outageLines.length).toBeLessThan(30);
    });

    it('retries a refused event, then dead-letters it with the server reason; others flow', async () => {
      consumer = await target.consume();
      const refusedAggregate = randomUUID();
      await pg.db.query(
        `INSERT INTO "${pg.schema}".outbox (aggregate_type, aggregate_id, event_type, payload)
         VALUES ($1, $2, 'lesson-published', $3::text::json)`,
        [target.refused.aggregateType, refusedAggregate, target.refused.payload],
      );
      const ids = await enqueue(30, 3);
      const d = dispatcher({ maxAttempts: 3, retryBaseDelayMs: 50, retryMaxDelayMs: 200 });
      await d.start();
      await waitForAll(ids);
      await waitFor(
        'the refused event to be a dead letter',
        async () => {
          const { rows } = await pg.db.query(`SELECT 1 FROM "${pg.schema}".outbox_dead_letter`);
          return rows.length === 1;
        },
        { timeoutMs: 30_000 },
      );
      const { rows } = await pg.db.query<{
        aggregate_id: string;
        attempts: number;
        last_error: string;
      }>(`SELECT aggregate_id, attempts, last_error FROM "${pg.schema}".outbox_dead_letter`);
      expect(rows[0]?.aggregate_id).toBe(refusedAggregate);
      expect(rows[0]?.attempts).toBe(3);
      expect(rows[0]?.last_error).toMatch(target.refused.reason);
      expect(await pending()).toBe(0);
    });

    it('check() answers while the broker is up and fails within 5 s while it is down', async () => {
      const broker = target.broker();
      await broker.connect();
      try {
        expect(broker.check).toBeDefined();
        await broker.check?.();
        await target.outage.stop();
        const started = Date.now();
        await expect(withTimeout(broker.check?.() ?? Promise.resolve(), 5000)).rejects.toThrow();
        expect(Date.now() - started).toBeLessThan(5500);
      } finally {
        await target.outage.start();
        await broker.close();
      }
    });

    it('close() flushes what publish accepted', async () => {
      consumer = await target.consume();
      const broker = target.broker();
      await broker.connect();
      const messages = Array.from({ length: 100 }, (_, i) => ({
        id: randomUUID(),
        seq: String(i + 1),
        aggregateType: 'lesson',
        aggregateId: `flush-${i % 10}`,
        eventType: 'lesson-published',
        payload: JSON.stringify({ n: i }),
        headers: {},
        partition: 0,
        occurredAt: new Date().toISOString(),
        attempts: 0,
      }));
      const publishing = broker.publish(messages);
      await broker.close();
      const results = await publishing;
      expect(results.every((r) => r.ok)).toBe(true);
      await waitForAll(messages.map((m) => m.id));
    });
  });
}
