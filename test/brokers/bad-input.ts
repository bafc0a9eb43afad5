/**
 * The bad-input suite every broker passes: rows that the outbox table accepts from raw SQL
 * but that are odd or unfit as CloudEvents (non-string headers, infinite times, huge
 * payloads, names with dots, wildcards and control characters, huge ids), interleaved
 * with good events on one loop (`batchesInFlight: 1`). Every row leaves the outbox within
 * seconds: published (byte for byte where the consumer can see it) or dead-lettered with
 * a reason that names the field; the good events all arrive, in order per aggregate; no
 * batch is taken for a database outage.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventBroker } from '../../src/brokers/broker.js';
import { createDispatcher, type Dispatcher, type Logger } from '../../src/index.js';
import { createPgTestSchema, type TestSchema } from '../helpers/db.js';
import { waitFor } from '../helpers/wait.js';
import type { Consumer, ReceivedMessage } from './conformance.js';

export interface BadInputTarget {
  broker(): EventBroker;
  consume(): Promise<Consumer>;
  cleanup(): Promise<void>;
}

export interface BadInputHarness {
  /** `nats`, `amqp`, `kafka`, `memory`, `log`: picks the expectations below. */
  name: string;
  target(): Promise<BadInputTarget>;
}

type Outcome = 'published' | RegExp;

interface BadRow {
  name: string;
  aggregateType?: string;
  aggregateId?: string;
  eventType?: string;
  payload?: string;
  headers?: string;
  occurredAt?: string;
  /** The outcome on every broker, unless `on` names another for one. */
  expect: Outcome;
  on?: Partial<Record<string, Outcome>>;
}

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const twoMegabytes = JSON.stringify({ blob: 'x'.repeat(2 * 1024 * 1024) });
const natsSubject = /is not allowed in a NATS subject token/;
const amqpRoutingKey = /is not allowed in an AMQP routing key word/;
const kafkaTopic = /cannot be part of a Kafka topic name/;

const rows: BadRow[] = [
  {
    name: 'a traceparent that is a number',
    headers: '{"traceparent": 5}',
    expect: /^headers\.traceparent: not a string \(a number\)$/,
  },
  {
    name: 'a nested header value',
    headers: `{"traceparent": {"value": "${TRACEPARENT}"}}`,
    expect: /^headers\.traceparent: not a string \(an object\)$/,
  },
  {
    name: 'a null header value',
    headers: '{"x-note": null}',
    expect: /^headers\.x-note: not a string \(null\)$/,
  },
  {
    name: 'an array header value',
    headers: '{"tracestate": ["a=b"]}',
    expect: /^headers\.tracestate: not a string \(an array\)$/,
  },
  {
    name: 'a traceparent with a line break',
    headers: JSON.stringify({ traceparent: `${TRACEPARENT}\r\nx-injected: 1` }),
    expect: /^headers\.traceparent: contains U\+000D, a character no CloudEvents attribute/,
  },
  {
    name: 'a published header with a line break',
    headers: JSON.stringify({ tenant: 'north\r\nx-injected: 1', 'x-note': 'a\tb' }),
    expect: /^headers\.tenant: contains U\+000D, a character no CloudEvents attribute/,
  },
  {
    name: 'a published header of 200 KB',
    headers: JSON.stringify({ tenant: 'n'.repeat(200_000) }),
    expect: 'published',
    on: {
      // JetStream stores at most 64 KiB of headers with a message.
      nats: /^headers: the CloudEvents headers \(aggregate_id and the event's headers among them\) take 195\.\d KiB, over the 64\.0 KiB JetStream stores with a message$/,
      amqp: /^headers: the CloudEvents attributes and headers \(aggregate_id among them\) encode to 195\.\d KiB, over the 64\.0 KiB amqplib encodes a header table in$/,
    },
  },
  {
    name: 'a header only kept in the row, with a tab',
    headers: JSON.stringify({ 'x-note': 'a\tb' }),
    expect: 'published',
  },
  {
    name: 'occurred_at infinity',
    occurredAt: 'infinity',
    expect: /^occurred_at: "infinity" is not a finite time$/,
  },
  {
    name: 'occurred_at -infinity',
    occurredAt: '-infinity',
    expect: /^occurred_at: "-infinity" is not a finite time$/,
  },
  {
    name: 'occurred_at in the year 20000',
    occurredAt: '20000-01-01 00:00:00+00',
    expect: /^occurred_at: "20000-01-01 00:00:00\+00" is outside the years 0001-9999/,
  },
  {
    name: 'occurred_at before Christ',
    occurredAt: '0044-03-15 00:00:00+00 BC',
    expect: /^occurred_at: "0044-03-15 00:00:00\+00 BC" is outside the years 0001-9999/,
  },
  {
    name: 'a 2 MB payload',
    payload: twoMegabytes,
    expect: 'published',
    on: {
      nats: /^payload: 2\.0 MiB exceeds the NATS server's max_payload \(64\.0 KiB\)$/,
      kafka: /^MESSAGE_TOO_LARGE: /,
      memory: /exceeds 10000/,
    },
  },
  {
    name: 'big numbers and duplicate keys',
    payload: '{"n": 12345678901234567890, "k": 1, "k": 2, "f": 1.0e+2, "s": "\\u00e9"}',
    expect: 'published',
  },
  {
    name: 'a pretty-printed payload',
    payload: '{\n  "a": [1,\r\n    2],\n  "b": "line\\nbreak"\n}\n',
    expect: 'published',
  },
  {
    name: 'an aggregate type with a space',
    aggregateType: 'lesson plan',
    expect: 'published',
    on: { nats: natsSubject, amqp: amqpRoutingKey, kafka: kafkaTopic },
  },
  {
    name: 'an aggregate type with a dot',
    aggregateType: 'lesson.v2',
    expect: 'published',
    on: { nats: natsSubject, amqp: amqpRoutingKey },
  },
  {
    name: 'an event type with wildcards',
    eventType: 'room.*>',
    expect: 'published',
    on: {
      nats: /^event_type: "room\.\*>" is not allowed in a NATS subject token/,
      amqp: /^event_type: "room\.\*>" is not allowed in an AMQP routing key word/,
    },
  },
  {
    name: 'an event type with a control character',
    eventType: 'lesson\u0007published',
    expect: /^event_type: contains U\+0007, a character no CloudEvents attribute may carry$/,
  },
  {
    name: 'an aggregate id with a terminal escape',
    aggregateId: `evil\u001b[31m-${randomUUID()}`,
    expect: /^aggregate_id: contains U\+001B/,
  },
  {
    name: 'a 1,500-character aggregate id',
    aggregateId: `long-${randomUUID()}-${'i'.repeat(1500)}`.slice(0, 1500),
    expect: 'published',
  },
  {
    name: 'a 100 KB aggregate id with a control character',
    aggregateId: `huge-${'h'.repeat(100 * 1024)}\u0001`,
    expect: /^aggregate_id: contains U\+0001/,
  },
  {
    name: 'non-ASCII names',
    eventType: 'leçon-publiée',
    aggregateId: `café "1" 100% ${randomUUID()}`,
    expect: 'published',
    // A subject token is printable ASCII: renamed (le_on-publi_e), two types would share one.
    on: {
      nats: /^event_type: "leçon-publiée" is not allowed in a NATS subject token \(printable ASCII only/,
    },
  },
  {
    name: 'a right-to-left override in an event type',
    eventType: 'lesson-\u202epublished',
    expect: 'published',
    on: { nats: natsSubject },
  },
  {
    // Over a NATS control line (the server would drop the connection) and an AMQP shortstr.
    name: 'a 5,000-character event type',
    eventType: 't'.repeat(5000),
    expect: 'published',
    on: {
      nats: /^event_type: "t{80}… \(5000 characters\)" makes the NATS subject \d+ bytes, over the 3584 a NATS server's control line leaves for a subject$/,
      amqp: /^aggregate_type and event_type: the routing key .* is 4\.9 KiB, over AMQP's limit of 255 bytes$/,
    },
  },
  {
    name: 'a 300-character aggregate type',
    aggregateType: 'a'.repeat(300),
    expect: 'published',
    on: {
      amqp: /^aggregate_type and event_type: the routing key .* is 317 bytes, over AMQP's limit of 255 bytes$/,
      kafka:
        /^topic "[\w.-]+… \(\d+ characters\)" is \d+ characters, over Kafka's 249 \(aggregate_type or event_type too long\)$/,
    },
  },
];

/** Where a published row can be seen: the consumers listen to aggregate type `lesson` only. */
const observable = (row: BadRow) => (row.aggregateType ?? 'lesson') === 'lesson';

const outcomeOn = (row: BadRow, broker: string): Outcome => row.on?.[broker] ?? row.expect;

/** The body as it reaches a consumer: the log broker takes line breaks out of the payload. */
const expectedBody = (broker: string, payload: string) =>
  broker === 'log' ? payload.replace(/[\r\n]+/g, '') : payload;

export function badInputSuite(harness: BadInputHarness): void {
  describe(`${harness.name} broker with bad input`, () => {
    let pg: TestSchema;
    let target: BadInputTarget;
    let consumer: Consumer | undefined;
    let dispatcher: Dispatcher | undefined;
    const log: { level: string; message: string; object: Record<string, unknown> }[] = [];

    beforeAll(async () => {
      pg = await createPgTestSchema(`bad_${harness.name}`);
      target = await harness.target();
    });
    afterAll(async () => {
      await dispatcher?.stop();
      await consumer?.close();
      await target?.cleanup();
      await pg?.drop();
    });

    const logger: Logger = Object.fromEntries(
      ['debug', 'info', 'warn', 'error'].map((level) => [
        level,
        (object: Record<string, unknown>, message: string) => log.push({ level, message, object }),
      ]),
    ) as unknown as Logger;

    it('publishes or dead-letters every row with a reason naming the field; good events flow in order', async () => {
      consumer = await target.consume();
      const goodAggregates = Array.from({ length: 20 }, () => `good-${randomUUID()}`);
      const good: { id: string; aggregateId: string; n: number }[] = [];
      const bad: { id: string; row: BadRow; payload: string }[] = [];
      const insert = async (values: {
        aggregateType: string;
        aggregateId: string;
        eventType: string;
        payload: string;
        headers: string;
        occurredAt: string | null;
      }) => {
        const { rows: inserted } = await pg.db.query<{ id: string }>(
          `INSERT INTO "${pg.schema}".outbox
             (aggregate_type, aggregate_id, event_type, payload, headers, occurred_at)
           VALUES ($1, $2, $3, $4::text::json, $5::text::jsonb, coalesce($6::timestamptz, now()))
           RETURNING id::text`,
          [
            values.aggregateType,
            values.aggregateId,
            values.eventType,
            values.payload,
            values.headers,
            values.occurredAt,
          ],
        );
        return inserted[0]?.id as string;
      };
      // Ten rounds: every good aggregate gets one event per round, and bad rows sit between
      // them (two per round, and the rows past the twentieth one per round after those); the
      // bad rows of round 4 belong to good aggregates, in the middle of their events.
      for (let round = 0; round < 10; round++) {
        for (const [i, aggregateId] of goodAggregates.entries()) {
          const payload = JSON.stringify({ lesson_id: aggregateId, n: round });
          const id = await insert({
            aggregateType: 'lesson',
            aggregateId,
            eventType: 'lesson-published',
            payload,
            headers: '{}',
            occurredAt: null,
          });
          good.push({ id, aggregateId, n: round });
          const row = i < 2 ? rows[round * 2 + i] : i === 2 ? rows[20 + round] : undefined;
          if (row) {
            const inGoodAggregate = round === 4;
            const payloadText = row.payload ?? JSON.stringify({ lesson_id: 'bad', row: row.name });
            bad.push({
              row,
              payload: payloadText,
              id: await insert({
                aggregateType: row.aggregateType ?? 'lesson',
                aggregateId:
                  row.aggregateId ?? (inGoodAggregate ? aggregateId : `bad-${randomUUID()}`),
                eventType: row.eventType ?? 'lesson-published',
                payload: payloadText,
                headers: row.headers ?? '{}',
                occurredAt: row.occurredAt ?? null,
              }),
            });
          }
        }
      }
      expect(bad.map((b) => b.row.name).sort()).toEqual(rows.map((row) => row.name).sort());

      dispatcher = createDispatcher({
        db: pg.db,
        broker: target.broker(),
        schema: pg.schema,
        batchSize: 50,
        batchesInFlight: 1,
        pollIntervalMs: 50,
        maxAttempts: 2,
        retryBaseDelayMs: 50,
        retryMaxDelayMs: 100,
        publishTimeoutMs: 10_000,
        logger,
      });
      await dispatcher.start();
      await waitFor(
        'every row to leave the outbox',
        async () => {
          const { rows: left } = await pg.db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM "${pg.schema}".outbox`,
          );
          return left[0]?.n === 0;
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      const received = consumer.received;
      await waitFor('the good events at the consumer', () => {
        const seen = new Set(received.map((m) => m.attributes.id));
        return good.every((g) => seen.has(g.id));
      });

      // Good events: all there, each aggregate in the order written.
      const firstSeen = new Map<string, ReceivedMessage>();
      for (const message of received) {
        const id = message.attributes.id as string;
        if (!firstSeen.has(id)) firstSeen.set(id, message);
      }
      for (const aggregateId of goodAggregates) {
        const order = [...firstSeen.values()]
          .filter((m) => m.attributes.subject === aggregateId)
          .map((m) => JSON.parse(m.body) as { n?: number })
          .filter((body) => typeof body.n === 'number')
          .map((body) => body.n);
        expect(order, aggregateId).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      }

      // Bad rows: published as written, or dead-lettered with the expected reason.
      const { rows: dead } = await pg.db.query<{ id: string; last_error: string }>(
        `SELECT id::text, last_error FROM "${pg.schema}".outbox_dead_letter`,
      );
      const reasons = new Map(dead.map((d) => [d.id, d.last_error]));
      for (const { id, row, payload } of bad) {
        const outcome = outcomeOn(row, harness.name);
        if (outcome === 'published') {
          expect(reasons.get(id), `${row.name}: not dead-lettered`).toBeUndefined();
          if (!observable(row)) continue;
          const message = firstSeen.get(id);
          expect(message, `${row.name}: received`).toBeDefined();
          expect(message?.body, `${row.name}: body`).toBe(expectedBody(harness.name, payload));
          expect(message?.attributes.time, `${row.name}: time`).toMatch(
            /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/,
          );
        } else {
          expect(reasons.get(id), `${row.name}: reason`).toMatch(outcome);
        }
      }
      expect(dead.length).toBe(
        bad.filter((b) => outcomeOn(b.row, harness.name) !== 'published').length,
      );

      // No batch was taken for an outage or an internal error, and no log field is huge.
      const trouble = log.filter(
        (line) => line.level === 'error' || /unavailable/.test(line.message),
      );
      expect(trouble).toEqual([]);
      for (const line of log) {
        for (const value of Object.values(line.object)) {
          if (typeof value === 'string') expect(value.length).toBeLessThan(2100);
        }
      }
    });
  });
}
