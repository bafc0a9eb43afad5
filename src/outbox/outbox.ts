import { randomUUID } from 'node:crypto';
import { ValidationError } from '../common/errors.js';
import { wholeNumber } from '../common/numbers.js';
import { assertKnownOptions, optionNames, unknownName } from '../common/options.js';
import { bytesOverLimit, clip, escapeControl } from '../common/text.js';
import { activeTraceHeaders, TRACE_HEADERS } from '../common/trace-context.js';
import { type TransactionLike, toExecutor } from '../db/executor.js';
import { quoteSchema } from '../db/identifier.js';
import {
  errorText,
  hasSqlState,
  missingTableError,
  UNIQUE_VIOLATION,
} from '../db/missing-table.js';
import { refusedPrivilege } from '../db/privileges.js';
import { statements } from '../db/sql/index.js';
import {
  eventEnvelopeSchema,
  eventFields,
  type OutboxEvent,
  parseOrThrow,
} from '../events/define.js';
import { payloadJson } from '../events/json-values.js';

export interface OutboxOptions {
  /** Schema holding the outbox tables. Default `public`. */
  schema?: string;
  /**
   * The largest payload `enqueue` takes, in bytes of its JSON text (UTF-8). Undefined: no
   * limit here. Set it to your broker's limit (NATS `max_payload`, Kafka's
   * `max.message.bytes`, the AMQP URL's `max_message_bytes`) to refuse before commit what
   * the dispatcher would otherwise dead-letter.
   */
  maxPayloadBytes?: number;
}

export const outboxOptions = optionNames<OutboxOptions>({ schema: true, maxPayloadBytes: true });

/** The most `maxPayloadBytes` takes: 1 GiB, PostgreSQL's most for one value. */
const MAX_PAYLOAD_LIMIT = 1024 * 1024 * 1024;

export interface Outbox {
  /**
   * Writes events into the outbox inside the caller's transaction, in one statement.
   * Commit and they will be published; roll back and they never existed. Every event is
   * validated first: an invalid one throws ValidationError and nothing is written.
   * The active OpenTelemetry context (when the application registered an SDK) is stored
   * with each event as `traceparent`/`tracestate` headers. Returns the event ids, in order.
   */
  enqueue(tx: TransactionLike, events: OutboxEvent | readonly OutboxEvent[]): Promise<string[]>;
}

/** A validated event as the insert statements take it: every value as text (or null). */
interface Row {
  id: string;
  aggregateType: string;
  aggregateId: string;
  eventType: string;
  /** The payload's JSON text: serialised once, here, and sent as it is. */
  payload: string;
  headers: string | null;
  occurredAt: string | null;
}

/** A property of a hand-built event that is no field of one, if any. */
function strayField(event: OutboxEvent): string | undefined {
  if (typeof event !== 'object' || event === null) return undefined;
  return Object.keys(event).find((key) => !eventFields.has(key));
}

function toRow(
  event: OutboxEvent,
  index: number,
  many: boolean,
  trace: Record<string, string> | undefined,
  maxPayloadBytes: number | undefined,
): Row {
  const prefix = many ? `events[${index}]` : '';
  // The event's type in a refusal's message: as given, but readable (a type that is itself
  // the problem may be 10,000 characters, or hold an escape sequence).
  const type = event?.type;
  const label = typeof type === 'string' ? clip(escapeControl(type), 100) : 'event';
  const stray = strayField(event);
  if (stray !== undefined) {
    throw new ValidationError(
      `${prefix ? `${prefix}.` : ''}${stray}`,
      `${unknownName(stray, eventFields, 'a field of an event', 'fields')} (${label})`,
    );
  }
  // A header named __proto__ (from JSON.parse) would be dropped by the parse, silently.
  const rawHeaders = (event as { headers?: unknown } | null)?.headers;
  if (
    typeof rawHeaders === 'object' &&
    rawHeaders !== null &&
    Object.hasOwn(rawHeaders, '__proto__')
  ) {
    throw new ValidationError(
      `${prefix ? `${prefix}.` : ''}headers.__proto__`,
      `is a name no header can have: JavaScript objects take it for their prototype (${label})`,
    );
  }
  const valid = parseOrThrow(eventEnvelopeSchema, event, prefix, label);
  const field = `${prefix ? `${prefix}.` : ''}payload`;
  const { text: payload, problem } = payloadJson(valid.payload);
  if (problem) {
    throw new ValidationError(`${field}${problem.path}`, `is ${problem.reason} (${label})`);
  }
  if (payload === undefined) {
    throw new ValidationError(field, `is missing (${label})`);
  }
  if (maxPayloadBytes !== undefined && payload.length > maxPayloadBytes / 3) {
    const bytes = Buffer.byteLength(payload, 'utf8');
    if (bytes > maxPayloadBytes) {
      throw new ValidationError(
        field,
        `${bytesOverLimit(bytes, maxPayloadBytes, 'maxPayloadBytes')} (${label})`,
      );
    }
  }
  // The caller's own trace context wins over the active one, whole: W3C ties a tracestate
  // to its traceparent, so none of the active context's is paired with the caller's.
  // By their names as the dispatcher reads them, in lower case.
  const ownTrace = Object.keys(valid.headers ?? {}).some((name) =>
    (TRACE_HEADERS as readonly string[]).includes(name),
  );
  const headers = trace && !ownTrace ? { ...trace, ...valid.headers } : valid.headers;
  const occurredAt = valid.occurredAt;
  return {
    // PostgreSQL's uuid is written in lower case: the id returned is the one published.
    id: valid.id?.toLowerCase() ?? randomUUID(),
    aggregateType: valid.aggregateType,
    aggregateId: valid.aggregateId,
    eventType: valid.type,
    payload,
    headers: headers ? JSON.stringify(headers) : null,
    occurredAt: occurredAt instanceof Date ? occurredAt.toISOString() : (occurredAt ?? null),
  };
}

/** The rows as the JSON array outboxInsert reads, with each payload's text spliced in as it is. */
function recordset(rows: readonly Row[]): string {
  const text = (value: string | null) => (value === null ? 'null' : JSON.stringify(value));
  return `[${rows
    .map(
      (row) =>
        `{"id":${text(row.id)},"aggregate_type":${text(row.aggregateType)},"aggregate_id":${text(row.aggregateId)},"event_type":${text(row.eventType)},"payload":${row.payload},"headers":${row.headers ?? 'null'},"occurred_at":${text(row.occurredAt)}}`,
    )
    .join(',')}]`;
}

/**
 * The call's rows as the one JSON text the insert takes, or a ValidationError when they
 * are together more than one string can hold (about 512 MiB: V8's longest), which each
 * event alone may not be.
 */
function oneText(rows: readonly Row[]): string {
  try {
    return recordset(rows);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw new ValidationError(
      'events',
      `are together more than one call can send (${rows.length} events, over the 512 MiB or so one string holds): enqueue them in several calls in the same transaction`,
    );
  }
}

/** One call's events each have an id of their own: the second of two is named. */
function assertDistinctIds(rows: readonly Row[]): void {
  const seen = new Map<string, number>();
  rows.forEach((row, index) => {
    const first = seen.get(row.id);
    if (first !== undefined) {
      throw new ValidationError(`events[${index}].id`, `repeats events[${first}].id`);
    }
    seen.set(row.id, index);
  });
}

/**
 * An id already in the outbox (another call's event, not yet published): the unique
 * violation becomes a ValidationError naming the event. The transaction is aborted by
 * then, as by any failed statement.
 */
function takenIdError(
  error: unknown,
  rows: readonly Row[],
  many: boolean,
): ValidationError | undefined {
  if (!hasSqlState(error, UNIQUE_VIOLATION)) return undefined;
  const index = rows.findIndex((row) => errorText(error).includes(row.id));
  const path = many ? `events[${Math.max(index, 0)}].id` : 'id';
  return new ValidationError(
    path,
    'is already in the outbox: each event needs an id of its own (consumers take an id seen before for a repeat); found by the insert, so the transaction is aborted: roll it back',
    { cause: error },
  );
}

/** The producer side: `createOutbox().enqueue(tx, LessonPublished.create({…}))`. */
export function createOutbox(options: OutboxOptions = {}): Outbox {
  assertKnownOptions('createOutbox', options, outboxOptions);
  const schema = options.schema ?? 'public';
  const maxPayloadBytes =
    options.maxPayloadBytes === undefined
      ? undefined
      : wholeNumber('maxPayloadBytes', options.maxPayloadBytes, 1, MAX_PAYLOAD_LIMIT);
  quoteSchema(schema);
  const sql = statements(schema);
  return {
    async enqueue(tx, events) {
      const list: readonly OutboxEvent[] = Array.isArray(events) ? events : [events as OutboxEvent];
      if (list.length === 0) return [];
      // Validate everything before touching the database: one bad event refuses the call.
      const traceHeaders = activeTraceHeaders();
      const trace = Object.keys(traceHeaders).length > 0 ? traceHeaders : undefined;
      const many = Array.isArray(events);
      // Array.from, not map: a hole in the array is an event too, refused as missing.
      const rows = Array.from(list, (event, index) =>
        toRow(event, index, many, trace, maxPayloadBytes),
      );
      assertDistinctIds(rows);
      const set = rows.length > 1 ? oneText(rows) : undefined;
      const executor = toExecutor(tx);
      const [one] = rows;
      try {
        if (rows.length === 1 && one) {
          await executor.query(sql.outboxInsertOne, [
            one.id,
            one.aggregateType,
            one.aggregateId,
            one.eventType,
            one.payload,
            one.headers,
            one.occurredAt,
          ]);
        } else {
          await executor.query(sql.outboxInsert, [set]);
        }
      } catch (error) {
        throw (
          missingTableError(error, schema, 'outbox') ??
          refusedPrivilege(error, schema, 'enqueue') ??
          takenIdError(error, rows, many) ??
          error
        );
      }
      return rows.map((row) => row.id);
    },
  };
}
