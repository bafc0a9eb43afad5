/**
 * The consumer conformance suite every broker passes against its real server: events are
 * published with this project's publisher (as the dispatcher would), or raw with the
 * server's own client (structured mode, as another producer would), and `consume()` with
 * an inbox applies them to an effects table in PostgreSQL. A broker's test file supplies a
 * `ConsumerHarness` and calls `consumerConformance(harness)`.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { retryConsumerDeadLetters } from '../../src/admin/consumer-dead-letters.js';
import type { OutboxMessage } from '../../src/brokers/broker.js';
import { brokerFromUrl } from '../../src/brokers/index.js';
import {
  type ConsumeOptions,
  type Consumer,
  consume,
  createInbox,
  type InboxEvent,
} from '../../src/consumer/index.js';
import { defineEvent, LessonPublished, QuizSubmitted } from '../../src/index.js';
import { consumerMetrics } from '../../src/ops/consumer-metrics.js';
import { createPgTestSchema, PG_URL, type TestSchema } from '../helpers/db.js';
import { quizMessage } from '../helpers/messages.js';
import { waitFor } from '../helpers/wait.js';

/** A message from another producer: raw headers and body, addressed like one of ours. */
export interface RawMessage {
  aggregateType: string;
  /** The record key where the broker has one (Kafka). */
  aggregateId: string;
  eventType: string;
  headers: Record<string, string>;
  contentType: string;
  body: string;
}

/** One test's own destination: stream / exchange / topics unique to it. */
export interface ConsumerTarget {
  /** The broker URL publisher and consumer share. */
  url: string;
  /** The target's own name (stream, exchange, topic prefix), which what a consumer reads carries. */
  name: string;
  /** Publishes with the server's own client, not this project's publisher. */
  publishRaw(message: RawMessage): Promise<void>;
  /** Takes the server (or the path to it) down and back up; absent when this target has none. */
  outage?: { stop(): Promise<void>; start(): Promise<void> } | undefined;
  /** The consumer name to use for `base`, unique to this target (Kafka groups are server-wide). */
  consumerName(base: string): string;
  /** Removes the target's stream / exchange / topics and the consumers' queues or groups. */
  cleanup(consumerNames: readonly string[]): Promise<void>;
}

export interface ConsumerHarness {
  name: string;
  /** False when the broker never delivers a type the consumer did not ask for (RabbitMQ binds by type). */
  deliversUnknownTypes: boolean;
  /**
   * True when an event of a type the consumer handles, but of another aggregate type it
   * handles other types of, reaches it (NATS reads the whole stream, Kafka that aggregate
   * type's topic); RabbitMQ binds the queue by aggregate type and event type.
   */
  deliversOtherAggregateTypes: boolean;
  /** `outage: true` gives a target whose server may be taken down. */
  target(options?: { outage?: boolean }): Promise<ConsumerTarget>;
}

const SOURCE = '/edupulse/consumer-test';
/** A QuizSubmitted outbox row for `aggregateId`; each has a higher sequence than the last. */
const quiz = (aggregateId: string, score = 1) => quizMessage(aggregateId, { score });

async function publish(url: string, messages: readonly OutboxMessage[]): Promise<void> {
  const broker = brokerFromUrl(url, { source: SOURCE });
  await broker.connect();
  try {
    // One aggregate's events in order: one publish call per event keeps them so.
    for (const message of messages) {
      const [result] = await broker.publish([message]);
      if (!result?.ok) throw new Error(`publish failed: ${JSON.stringify(result)}`);
    }
  } finally {
    await broker.close();
  }
}

/** A promise and the function that resolves it. */
function latch(): { done: Promise<void>; open: () => void } {
  let open = () => {};
  const done = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { done, open };
}

/** Interleaves `perAggregate` events of each of `aggregates` aggregates, round robin. */
function interleaved(aggregates: number, perAggregate: number): OutboxMessage[] {
  const ids = Array.from({ length: aggregates }, () => randomUUID());
  const messages: OutboxMessage[] = [];
  for (let i = 0; i < perAggregate; i++) for (const id of ids) messages.push(quiz(id));
  return messages;
}

export function consumerConformance(harness: ConsumerHarness): void {
  describe(`${harness.name} consumer conformance`, () => {
    let pg: TestSchema;
    const consumers: Consumer[] = [];
    const targets = new Map<ConsumerTarget, string[]>();

    beforeAll(async () => {
      pg = await createPgTestSchema(`consume_${harness.name}`);
      await pg.db.query(`CREATE TABLE "${pg.schema}".effects (
        n bigserial PRIMARY KEY, consumer text, event_id text, aggregate_id text, sequence bigint)`);
    });

    afterAll(async () => {
      await Promise.allSettled(consumers.map((c) => c.stop()));
      await Promise.allSettled([...targets].map(([t, names]) => t.cleanup(names)));
      await pg?.drop();
    });

    async function target(options?: { outage?: boolean }): Promise<ConsumerTarget> {
      const created = await harness.target(options);
      targets.set(created, []);
      return created;
    }

    /** The target's name for a consumer, remembered for the clean-up. */
    function named(t: ConsumerTarget, base: string): string {
      const name = t.consumerName(base);
      targets.get(t)?.push(name);
      return name;
    }

    /** One row in the effects table for `event`, through `name`'s inbox, in a transaction of its own. */
    function applyEffect(name: string, event: InboxEvent) {
      return pg.db.transaction((tx) =>
        createInbox({ schema: pg.schema, consumer: name }).process(tx, event, () =>
          tx.query(
            `INSERT INTO "${pg.schema}".effects (consumer, event_id, aggregate_id, sequence) VALUES ($1, $2, $3, $4)`,
            [name, event.id, event.aggregateId, event.sequence],
          ),
        ),
      );
    }

    /** A consumer applying quiz events through the inbox into the effects table. */
    async function start(
      url: string,
      name: string,
      extra: Partial<ConsumeOptions<[typeof QuizSubmitted]>> = {},
    ): Promise<Consumer> {
      const consumer = await consume({
        broker: url,
        consumer: name,
        database: pg.db,
        schema: pg.schema,
        events: [QuizSubmitted],
        leaseRetryMs: 100,
        handler: (event) => applyEffect(name, event),
        ...extra,
      });
      consumers.push(consumer);
      return consumer;
    }

    async function applied(
      name: string,
    ): Promise<{ event_id: string; aggregate_id: string; sequence: string }[]> {
      const { rows } = await pg.db.query<{
        event_id: string;
        aggregate_id: string;
        sequence: string;
      }>(
        `SELECT event_id, aggregate_id, sequence::text AS sequence FROM "${pg.schema}".effects WHERE consumer = $1 ORDER BY n`,
        [name],
      );
      return rows;
    }

    /** Every message applied exactly once, and each aggregate's in sequence order. */
    async function expectAppliedOnceInOrder(
      name: string,
      sent: readonly OutboxMessage[],
    ): Promise<void> {
      await waitFor(
        `${sent.length} effects of ${name}`,
        async () => (await applied(name)).length >= sent.length,
        {
          timeoutMs: 60_000,
          intervalMs: 100,
        },
      );
      const rows = await applied(name);
      expect(rows.length).toBe(sent.length);
      expect(new Set(rows.map((r) => r.event_id))).toEqual(new Set(sent.map((m) => m.id)));
      const last = new Map<string, bigint>();
      for (const row of rows) {
        const sequence = BigInt(row.sequence);
        expect(sequence, `aggregate ${row.aggregate_id} out of order`).toBeGreaterThan(
          last.get(row.aggregate_id) ?? -1n,
        );
        last.set(row.aggregate_id, sequence);
      }
    }

    it('decodes what the dispatcher publishes into typed, validated events', async () => {
      const t = await target();
      const lesson = {
        lesson_id: randomUUID(),
        author_id: randomUUID(),
        title: 'Fractions ü "quoted" 100%',
        published_at: '2026-12-01T09:00:00Z',
      };
      const messages: OutboxMessage[] = [
        quiz(randomUUID(), 7.5),
        {
          ...quiz('x'),
          aggregateType: 'lesson',
          aggregateId: lesson.lesson_id,
          eventType: 'lesson-published',
          payload: JSON.stringify(lesson),
          headers: {
            traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
            tenant: 'north 100% ü',
            correlationid: randomUUID(),
            'x-request-id': 'kept in the outbox row',
          },
        },
      ];
      const received: unknown[] = [];
      await consume({
        broker: t.url,
        consumer: named(t, 'typed'),
        database: pg.db,
        schema: pg.schema,
        events: [QuizSubmitted, LessonPublished],
        handler: (event) => {
          // Switching on the type narrows the data (checked by tsc).
          if (event.type === 'lesson-published') received.push({ title: event.data.title, event });
          else received.push({ score: event.data.score, event });
        },
      }).then((c) => consumers.push(c));
      await publish(t.url, messages);
      await waitFor('2 events', () => received.length === 2, { timeoutMs: 30_000 });
      const [first, second] = messages as [OutboxMessage, OutboxMessage];
      expect(received).toEqual([
        {
          score: 7.5,
          event: expect.objectContaining({
            id: first.id,
            type: 'quiz-submitted',
            source: SOURCE,
            subject: first.aggregateId,
            aggregateType: 'quiz',
            aggregateId: first.aggregateId,
            sequence: first.seq,
            time: first.occurredAt,
            data: JSON.parse(first.payload),
            extensions: {},
            attempt: 1,
          }),
        },
        {
          title: lesson.title,
          event: expect.objectContaining({
            id: second.id,
            type: 'lesson-published',
            aggregateType: 'lesson',
            aggregateId: lesson.lesson_id,
            sequence: second.seq,
            data: lesson,
            traceparent: second.headers.traceparent,
            extensions: {
              tenant: 'north 100% ü',
              correlationid: second.headers.correlationid,
            },
          }),
        },
      ]);
    });

    it('says in its log what it reads: the stream and durable, the queue, or the topics and group', async () => {
      const t = await target();
      const name = named(t, 'logged');
      const receiving: Record<string, unknown>[] = [];
      const ignore = () => {};
      await start(t.url, name, {
        logger: {
          debug: ignore,
          warn: ignore,
          error: ignore,
          info: (fields, message) => {
            if (message === 'consumer receiving') receiving.push(fields);
          },
        },
      });
      await waitFor('the receiving log line', () => receiving.length > 0, { timeoutMs: 30_000 });
      const reading = String(receiving[0]?.reading);
      expect(reading).toContain(t.name);
      expect(reading).toContain(name);
      expect(receiving[0]?.broker).not.toBe(reading);
    });

    it('decodes structured mode (application/cloudevents+json) from another producer', async () => {
      const t = await target();
      const received: {
        id: string;
        aggregateId: string;
        sequence?: string | undefined;
        extensions: Record<string, string>;
        data: unknown;
      }[] = [];
      await consume({
        broker: t.url,
        consumer: named(t, 'structured'),
        database: pg.db,
        schema: pg.schema,
        events: [QuizSubmitted],
        handler: (event) => {
          received.push(event);
        },
      }).then((c) => consumers.push(c));
      const data = {
        quiz_id: randomUUID(),
        student_id: randomUUID(),
        score: 3,
        submitted_at: '2026-12-01T10:00:00Z',
      };
      await t.publishRaw({
        aggregateType: 'quiz',
        aggregateId: data.quiz_id,
        eventType: 'quiz-submitted',
        headers: {},
        contentType: 'application/cloudevents+json; charset=utf-8',
        body: JSON.stringify({
          specversion: '1.0',
          id: 'other-producer-1',
          source: 'urn:other',
          type: 'quiz-submitted',
          subject: data.quiz_id,
          datacontenttype: 'application/json',
          tenant: 'south',
          data,
        }),
      });
      await waitFor('the structured event', () => received.length === 1, { timeoutMs: 30_000 });
      expect(received[0]).toMatchObject({
        id: 'other-producer-1',
        aggregateId: data.quiz_id,
        sequence: undefined,
        extensions: { tenant: 'south' },
        data,
      });
    });

    it('applies one aggregate at a time in sequence order, different aggregates at once', async () => {
      const t = await target();
      const messages = interleaved(12, 15);
      let running = 0;
      let maxRunning = 0;
      const busy = new Set<string>();
      let overlapped = false;
      const name = named(t, 'order');
      // Handlers wait until everything is published, so every aggregate has a queue of
      // events waiting when they start: what would let them overlap if nothing held them.
      let published = () => {};
      const gate = new Promise<void>((resolve) => {
        published = resolve;
      });
      await start(t.url, name, {
        concurrency: 8,
        handler: async (event) => {
          await gate;
          if (busy.has(event.aggregateId)) overlapped = true;
          busy.add(event.aggregateId);
          running++;
          maxRunning = Math.max(maxRunning, running);
          try {
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 4));
            await applyEffect(name, event);
          } finally {
            running--;
            busy.delete(event.aggregateId);
          }
        },
      });
      await publish(t.url, messages);
      published();
      await expectAppliedOnceInOrder(name, messages);
      expect(overlapped).toBe(false);
      expect(maxRunning).toBeGreaterThan(1);
      expect(maxRunning).toBeLessThanOrEqual(8);
    });

    it("reports the broker's backlog: what is published and not yet acked, then none", async () => {
      const t = await target();
      const name = named(t, 'backlog');
      const messages = interleaved(3, 10);
      let release = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const consumer = await start(t.url, name, {
        handler: async (event) => {
          await gate;
          await applyEffect(name, event);
        },
      });
      const metrics = consumerMetrics({ consumer, name });
      const scraped = async () =>
        (await metrics.metrics())
          .split('\n')
          .find((line) => line.startsWith(`consumer_backlog_messages{consumer="${name}"}`));
      expect(await consumer.backlog()).toBe(0);
      await publish(t.url, messages);
      await waitFor(
        'the backlog holds every message',
        async () => (await consumer.backlog()) === 30,
      );
      expect(await scraped()).toBe(`consumer_backlog_messages{consumer="${name}"} 30`);
      release();
      await expectAppliedOnceInOrder(name, messages);
      await waitFor('the backlog is empty', async () => (await consumer.backlog()) === 0);
      expect(await scraped()).toBe(`consumer_backlog_messages{consumer="${name}"} 0`);
      await consumer.stop();
      expect(await consumer.backlog()).toBeUndefined();
      expect(await scraped()).toBeUndefined();
    });

    it('redelivers what a killed consumer applied but never acked, and the inbox applies it once', async () => {
      const t = await target();
      const name = named(t, 'killed');
      const messages = interleaved(10, 12);
      // A consumer process that commits its 40th effect and then hangs before the ack.
      const child = spawn(
        process.execPath,
        [new URL('./consumer-process.mjs', import.meta.url).pathname],
        {
          env: {
            ...process.env,
            BROKER_URL: t.url,
            DATABASE_URL: PG_URL,
            SCHEMA: pg.schema,
            CONSUMER: name,
            HANG_AFTER: '40',
          },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let hung = false;
      let ready = false;
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) ready = true;
        if (chunk.toString().includes('hanging')) hung = true;
      });
      try {
        await waitFor('the child to receive', () => ready, { timeoutMs: 30_000 });
        await publish(t.url, messages);
        await waitFor('the child to apply 40 and hang', () => hung, { timeoutMs: 60_000 });
      } finally {
        child.kill('SIGKILL');
      }
      await new Promise((resolve) => child.once('exit', resolve));
      const before = (await applied(name)).length;
      expect(before).toBeGreaterThanOrEqual(40);
      const survivor = await start(t.url, name);
      await expectAppliedOnceInOrder(name, messages);
      // At least the 40th came again and was recognised.
      expect(survivor.stats.duplicates).toBeGreaterThanOrEqual(1);
    }, 120_000);

    it('stop() lets the running handler finish and acks its message before it closes', async () => {
      const t = await target();
      const name = named(t, 'stopping');
      const { done: running, open: started } = latch();
      const { done: gate, open: release } = latch();
      let finished = false;
      const first = await start(t.url, name, {
        handler: async (event) => {
          started();
          await gate;
          await applyEffect(name, event);
          finished = true;
        },
      });
      const before = [quiz(randomUUID())];
      await publish(t.url, before);
      await running;
      const stopping = first.stop();
      await new Promise((resolve) => setTimeout(resolve, 300));
      release();
      await stopping;
      expect(finished).toBe(true);
      expect(first.stats.processed).toBe(1);
      // The next run of the same consumer is not given that message again.
      const next = await start(t.url, name);
      const after = [quiz(randomUUID())];
      await publish(t.url, after);
      await expectAppliedOnceInOrder(name, [...before, ...after]);
      expect(next.stats.received).toBe(1);
      expect(next.stats.duplicates).toBe(0);
    }, 120_000);

    it('stop() leaves a handler that hangs past stopTimeoutMs: its message comes again and applies once', async () => {
      const t = await target();
      const name = named(t, 'hung');
      const { done: running, open: started } = latch();
      const { done: gate, open: release } = latch();
      let aborted: unknown;
      let origin = '';
      let late: ReturnType<typeof applyEffect> | undefined;
      const warnings: { fields: { origins?: string[] }; message: string }[] = [];
      const quiet = () => {};
      const first = await start(t.url, name, {
        stopTimeoutMs: 500,
        logger: {
          debug: quiet,
          info: quiet,
          error: quiet,
          warn: (fields: { origins?: string[] }, message: string) =>
            warnings.push({ fields, message }),
        },
        handler: async (event, { signal }) => {
          signal.addEventListener('abort', () => {
            aborted = signal.reason;
          });
          origin = event.origin;
          started();
          await gate;
          late = applyEffect(name, event);
          await late;
        },
      });
      let told = 0;
      first.on('processed', () => told++);
      const sent = [quiz(randomUUID())];
      await publish(t.url, sent);
      await running;
      const asked = performance.now();
      await first.stop();
      const waited = performance.now() - asked;
      // It waited for the handler, as long as it was told to, and not for ever.
      expect(waited).toBeGreaterThanOrEqual(450);
      expect(waited).toBeLessThan(15_000);
      expect(first.health().state).toBe('stopped');
      expect(String(aborted)).toContain('stopTimeoutMs');
      // The operator is told which message was left unacked.
      const left = warnings.find((w) => w.message.includes('stopping without them'));
      expect(left?.message).toContain('their message is not acked and will be delivered again');
      expect(left?.fields.origins).toEqual([origin]);
      expect(first.stats.processed).toBe(0);
      // Not acked: the next run is given it again and applies it.
      const next = await start(t.url, name);
      await expectAppliedOnceInOrder(name, sent);
      expect(next.stats.processed).toBeGreaterThanOrEqual(1);
      // The handler left behind commits after all: the inbox finds a duplicate.
      release();
      await waitFor('the late handler to run', () => late !== undefined);
      await expect(late).resolves.toMatchObject({ outcome: 'duplicate' });
      expect((await applied(name)).length).toBe(1);
      // Its handler ended after stop() gave up on it: not acked, so not processed either.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(first.stats.processed).toBe(0);
      expect(told).toBe(0);
    }, 120_000);

    it('a restart after a run that acked nothing resumes where it was, not from the start', async () => {
      const t = await target();
      const name = named(t, 'idle');
      const first = interleaved(3, 2);
      // Started first: RabbitMQ keeps for a consumer what arrives once its queue exists.
      const reader = await start(t.url, name);
      await publish(t.url, first);
      await expectAppliedOnceInOrder(name, first);
      await reader.stop();
      // A run that receives nothing, so acks nothing.
      const idle = await start(t.url, name);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await idle.stop();
      expect(idle.stats.received).toBe(0);
      const second = interleaved(2, 1);
      await publish(t.url, second);
      const next = await start(t.url, name);
      await expectAppliedOnceInOrder(name, [...first, ...second]);
      // Only what came after: the applied events were not delivered again.
      expect(next.stats.received).toBe(second.length);
      expect(next.stats.duplicates).toBe(0);
    }, 120_000);

    it('parks a poison message and a handler that keeps failing, without blocking other aggregates', async () => {
      const t = await target();
      const [poisonAggregate, failingAggregate, fine] = [randomUUID(), randomUUID(), randomUUID()];
      const invalid = {
        ...quiz(poisonAggregate),
        payload: JSON.stringify({ quiz_id: poisonAggregate, score: -1 }),
      };
      const afterInvalid = quiz(poisonAggregate);
      const failing = quiz(failingAggregate);
      const afterFailing = quiz(failingAggregate);
      const others = [quiz(fine), quiz(fine), quiz(fine)];
      const unknown = { ...quiz(fine), eventType: 'quiz-archived' };
      const handled: string[] = [];
      const poisonName = named(t, 'poison');
      const consumer = await consume({
        broker: t.url,
        consumer: poisonName,
        database: pg.db,
        schema: pg.schema,
        events: [QuizSubmitted],
        maxAttempts: 3,
        retryDelayMs: 20,
        handler: (event) => {
          if (event.id === failing.id) throw new Error(`cannot grade quiz ${event.aggregateId}`);
          handled.push(event.id);
        },
      });
      consumers.push(consumer);
      await publish(t.url, [invalid, afterInvalid, failing, afterFailing, ...others, unknown]);
      const settled = () => handled.length === 5 && consumer.stats.parked === 2;
      await waitFor('5 handled, 2 parked', settled, { timeoutMs: 30_000 });
      // The unknown type came last: once it is skipped (or never comes), nothing else is due.
      if (harness.deliversUnknownTypes) {
        await waitFor('the unknown type skipped', () => consumer.stats.skipped === 1);
      }
      expect(handled).toContain(afterInvalid.id);
      expect(handled).toContain(afterFailing.id);
      expect(consumer.stats).toMatchObject({
        parked: 2,
        failed: 3,
        skipped: harness.deliversUnknownTypes ? 1 : 0,
      });
      const { rows } = await pg.db.query<{
        event_id: string;
        attempts: number;
        last_error: string;
        body: string;
      }>(
        `SELECT event_id, attempts, last_error, body FROM "${pg.schema}".consumer_dead_letter WHERE consumer = $1 ORDER BY dead_at`,
        [poisonName],
      );
      const byId = new Map(rows.map((row) => [row.event_id, row]));
      expect(byId.get(invalid.id)?.last_error).toMatch(/payload\.student_id|payload\.score/);
      expect(byId.get(invalid.id)?.body).toBe(invalid.payload);
      expect(byId.get(failing.id)).toMatchObject({
        attempts: 3,
        last_error: `handler failed 3 times; last error: cannot grade quiz ${failingAggregate}`,
      });
    });

    it("hands a definition only its aggregate type's events, though another's have the type's name", async () => {
      const t = await target();
      const own = quiz(randomUUID());
      // A pupil's quiz-submitted: the same event type, another aggregate type.
      const pupils = { ...quiz(randomUUID()), aggregateType: 'pupil' };
      const name = named(t, 'own-type');
      const handled: string[] = [];
      // A pupil's own event type too: the consumer reads the pupil's topic (Kafka).
      const PupilJoined = defineEvent({
        type: 'pupil-joined',
        aggregateType: 'pupil',
        schema: z.object({ pupil_id: z.string() }),
        aggregateId: (payload) => payload.pupil_id,
      });
      const consumer = await consume({
        broker: t.url,
        consumer: name,
        database: pg.db,
        schema: pg.schema,
        events: [QuizSubmitted, PupilJoined],
        leaseRetryMs: 100,
        onUnknownType: 'park',
        handler: (event) => {
          handled.push(`${event.aggregateType} ${event.id}`);
        },
      });
      consumers.push(consumer);
      // RabbitMQ would refuse the pupil's as unroutable: no queue is bound to its key.
      if (harness.deliversUnknownTypes) await publish(t.url, [pupils]);
      await publish(t.url, [own]);
      await waitFor('the quiz handled', () => handled.length > 0, { timeoutMs: 30_000 });
      if (harness.deliversOtherAggregateTypes) {
        await waitFor('the pupil parked', () => consumer.stats.parked === 1, { timeoutMs: 30_000 });
        const { rows } = await pg.db.query<{ event_id: string; last_error: string }>(
          `SELECT event_id, last_error FROM "${pg.schema}".consumer_dead_letter WHERE consumer = $1`,
          [name],
        );
        expect(rows).toEqual([
          {
            event_id: pupils.id,
            last_error:
              'event type "quiz-submitted" of aggregate type "pupil" is not one this consumer handles (it handles "quiz-submitted" of "quiz")',
          },
        ]);
        // Retried by an operator: refused again, as the broker first routed it (before
        // migration 0014 the retry was matched by the type's name and applied as a quiz's).
        await retryConsumerDeadLetters(pg.db, pg.schema, { consumer: name }, { all: true });
        await waitFor('the retry parked anew', () => consumer.stats.parked === 2, {
          timeoutMs: 30_000,
        });
      }
      expect(handled).toEqual([`quiz ${own.id}`]);
      expect(consumer.stats.parked).toBe(harness.deliversOtherAggregateTypes ? 2 : 0);
    });

    it.runIf(harness.deliversOtherAggregateTypes)(
      'skipping events of a handled type routed under another aggregate type says so once, as a warning',
      async () => {
        const t = await target();
        const pupils = [1, 2].map(() => ({ ...quiz(randomUUID()), aggregateType: 'pupil' }));
        const own = quiz(randomUUID());
        const warnings: { reason: string | undefined; message: string }[] = [];
        const handled: string[] = [];
        const consumer = await consume({
          broker: t.url,
          consumer: named(t, 'skip-said'),
          database: pg.db,
          schema: pg.schema,
          // The definition says quiz; the producer's pupils' quiz-submitted are skipped. A
          // pupil's own event type too: the consumer reads the pupil's topic (Kafka).
          events: [
            QuizSubmitted,
            defineEvent({
              type: 'pupil-joined',
              aggregateType: 'pupil',
              schema: z.object({ pupil_id: z.string() }),
              aggregateId: (payload) => payload.pupil_id,
            }),
          ],
          logger: {
            debug: () => {},
            info: () => {},
            error: () => {},
            warn: (fields: { reason?: string }, message: string) =>
              warnings.push({ reason: fields.reason, message }),
          },
          handler: (event) => {
            handled.push(event.id);
          },
        });
        consumers.push(consumer);
        await publish(t.url, [...pupils, own]);
        await waitFor('the quiz handled', () => handled.length > 0, { timeoutMs: 30_000 });
        await waitFor('both skipped', () => consumer.stats.skipped === 2, { timeoutMs: 30_000 });
        expect(warnings.filter((w) => w.message.startsWith('skipping its events'))).toEqual([
          {
            reason:
              'event type "quiz-submitted" of aggregate type "pupil" is not one this consumer handles (it handles "quiz-submitted" of "quiz")',
            message:
              "skipping its events (onUnknownType: 'skip'): check the definition's aggregateType against the producer's; counted in stats.skipped",
          },
        ]);
      },
    );

    it('parks what the inbox cannot keep (a NUL, 3,000 characters) and goes on with the aggregate', async () => {
      const t = await target();
      const aggregate = randomUUID();
      const before = quiz(aggregate);
      const withNul = { ...quiz(aggregate), id: `nul-\u0000-${randomUUID()}` };
      // An aggregate id (CloudEvents subject) no index entry holds.
      const long = { ...quiz(aggregate), aggregateId: 'q'.repeat(3000) };
      // Beyond a bigint: taken as no sequence, the event applied.
      const huge = { ...quiz(aggregate), seq: '9999999999999999999' };
      const after = quiz(aggregate);
      const handled: string[] = [];
      const name = named(t, 'unkept');
      const consumer = await consume({
        broker: t.url,
        consumer: name,
        database: pg.db,
        schema: pg.schema,
        events: [QuizSubmitted],
        handler: (event) => {
          handled.push(event.id);
        },
      });
      consumers.push(consumer);
      await publish(t.url, [before, withNul, long, huge, after]);
      await waitFor(
        '3 handled, 2 parked',
        () => handled.length === 3 && consumer.stats.parked === 2,
        {
          timeoutMs: 30_000,
        },
      );
      expect(handled).toEqual([before.id, huge.id, after.id]);
      const { rows } = await pg.db.query<{ event_id: string | null; last_error: string }>(
        `SELECT event_id, last_error FROM "${pg.schema}".consumer_dead_letter WHERE consumer = $1 ORDER BY dead_at`,
        [name],
      );
      // Two aggregates: parked in either order (on Kafka, two partitions).
      expect(rows.sort((a, b) => a.last_error.localeCompare(b.last_error))).toEqual([
        {
          event_id: null,
          last_error:
            'CloudEvent attribute "id" holds a NUL character, which PostgreSQL cannot store',
        },
        {
          event_id: null,
          last_error:
            'CloudEvent attribute "subject" is 3000 characters long, over the 500 a consumer keeps',
        },
      ]);
    });

    it('rides out a broker outage mid-consume: everything applied once, in order', async () => {
      const t = await target({ outage: true });
      if (!t.outage) throw new Error('the harness gave no outage');
      const name = named(t, 'outage');
      const first = interleaved(8, 10);
      const consumer = await start(t.url, name);
      await publish(t.url, first);
      await waitFor('some effects', async () => (await applied(name)).length >= 20, {
        timeoutMs: 30_000,
      });
      await t.outage.stop();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await t.outage.start();
      const second = interleaved(8, 10);
      await publish(t.url, second);
      await expectAppliedOnceInOrder(name, [...first, ...second]);
      expect(consumer.health().state).toBe('receiving');
    }, 240_000);
  });
}
